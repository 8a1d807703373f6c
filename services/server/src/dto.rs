//! The JSON shapes of the REST API (documented in the OpenAPI document). They are mapped from
//! the engine crates' types here, so that the API stays stable when the engines change.

use enclave_answer::{Answer, Citation};
use enclave_retrieval::Passage;
use enclave_storage::{Collection, CollectionStats, Document, VersionRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Link to the passage view of the web UI, with the span highlighted.
pub fn passage_url(document_id: &str, version: i64, start: i64, end: i64) -> String {
    format!("/documents/{document_id}/passage?version={version}&start={start}&end={end}")
}

/// A collection with its document counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionOut {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// The retrieval mode searches of this collection use when they name none (`null`:
    /// hybrid).
    pub mode: Option<String>,
    /// Chunk size in tokens for documents processed from now on (`null`: the configured one).
    pub chunk_tokens: Option<u64>,
    /// Tokens shared by neighbouring chunks (`null`: the configured overlap).
    pub chunk_overlap: Option<u64>,
    /// Passages given to the model per question (`null`: the configured number).
    pub passages: Option<u64>,
    /// Of those, the model reads the passages whose sentence nearest the question is at most
    /// this far below the best passage's (`null`: `generation.passage_margin`).
    pub passage_margin: Option<f64>,
    /// Whether the passages of one section are given together, in the document's order
    /// (`null`: `generation.reading_order`).
    pub reading_order: Option<bool>,
    /// Instructions to the model for questions to this collection (`null`: the default).
    pub system_prompt: Option<String>,
    /// The model answering questions to this collection (`null`: the server's default).
    pub model: Option<String>,
    /// Weight of the dense ranking in hybrid fusion (`null`: `retrieval.dense_weight`).
    pub dense_weight: Option<f64>,
    /// Weight of the BM25 ranking in hybrid fusion (`null`: `retrieval.bm25_weight`).
    pub bm25_weight: Option<f64>,
    /// What the last `enclave calibrate` measured (`null`: never calibrated): when, how many
    /// questions, nDCG@10 at the configured and the chosen weights, the model.
    #[schema(value_type = Option<Object>)]
    pub fusion_calibration: Option<serde_json::Value>,
    /// Documents ready to be searched.
    pub ready: i64,
    /// Documents that failed or hold no text.
    pub failed: i64,
    /// Documents queued or being processed.
    pub pending: i64,
    pub pages: i64,
    pub chunks: i64,
}

impl CollectionOut {
    pub fn new(c: Collection, stats: Option<&CollectionStats>) -> Self {
        let s = stats.cloned().unwrap_or(CollectionStats {
            collection: c.name.clone(),
            ready: 0,
            failed: 0,
            no_text: 0,
            other: 0,
            pages: 0,
            chunks: 0,
        });
        let mode = c
            .settings
            .get("mode")
            .and_then(|m| m.as_str())
            .map(str::to_string);
        let number = |key: &str| c.settings.get(key).and_then(|v| v.as_u64());
        Self {
            dense_weight: c.settings.get("dense_weight").and_then(|v| v.as_f64()),
            bm25_weight: c.settings.get("bm25_weight").and_then(|v| v.as_f64()),
            fusion_calibration: c
                .settings
                .get("fusion_calibration")
                .filter(|v| v.is_object())
                .cloned(),
            chunk_tokens: number("chunk_tokens"),
            chunk_overlap: number("chunk_overlap"),
            passages: number("passages"),
            passage_margin: c.settings.get("passage_margin").and_then(|v| v.as_f64()),
            reading_order: c.settings.get("reading_order").and_then(|v| v.as_bool()),
            system_prompt: c
                .settings
                .get("system_prompt")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            model: c
                .settings
                .get("model")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            id: c.id,
            name: c.name,
            created_at: c.created_at,
            mode,
            ready: s.ready,
            failed: s.failed + s.no_text,
            pending: s.other,
            pages: s.pages,
            chunks: s.chunks,
        }
    }
}

/// A field of a `PATCH`: absent (unchanged), `null` (back to the default) or a value.
fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Changes to a collection: its name and its settings. A field left out stays as it is;
/// `null` goes back to the configured default.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CollectionSettingsBody {
    /// A new name (1 to 64 letters, digits, '.', '_' or '-').
    pub name: Option<String>,
    /// Default retrieval mode of the collection: `hybrid`, `dense` or `bm25`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub mode: Option<Option<String>>,
    /// Chunk size in tokens (16 to the embedding model's input size) for documents processed
    /// from now on; re-index to apply it to existing ones.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub chunk_tokens: Option<Option<u64>>,
    /// Tokens shared by neighbouring chunks (smaller than the chunk size).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub chunk_overlap: Option<Option<u64>>,
    /// Passages given to the model per question, 1 to 50.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub passages: Option<Option<u64>>,
    /// Of those, the model reads the passages whose sentence nearest the question is at most
    /// this far below the best passage's, 0 to 2 (2: every passage).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub passage_margin: Option<Option<f64>>,
    /// Whether the passages of one section are given together, in the document's order
    /// (`null`: `generation.reading_order`). Suits manuals whose sections run over several
    /// chunks; the collection's eval shows whether it helps.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<bool>)]
    pub reading_order: Option<Option<bool>>,
    /// Instructions to the model for questions to this collection (at most 4,000 characters).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Option<Option<String>>,
    /// The model that answers questions to this collection: a name of `generation.models`
    /// (`null`: the server's default model).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub model: Option<Option<String>>,
    /// Weight of the dense ranking in hybrid fusion, 0 to 10; given with `bm25_weight`
    /// (`null` for both: the configured weights).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub dense_weight: Option<Option<f64>>,
    /// Weight of the BM25 ranking in hybrid fusion, 0 to 10; given with `dense_weight`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub bm25_weight: Option<Option<f64>>,
}

/// The collections.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionOut>,
}

/// A new collection.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCollection {
    /// 1 to 64 characters: letters, digits, `.`, `_` and `-`, starting with a letter or digit.
    pub name: String,
}

/// A document's metadata and status.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentOut {
    pub id: String,
    pub collection: String,
    pub external_id: Option<String>,
    /// The document this one is attached to (e-mail attachments).
    pub parent_id: Option<String>,
    pub title: String,
    pub source_uri: String,
    pub mime_type: Option<String>,
    pub sha256: String,
    /// `queued`, `indexing`, `ready`, `failed`, `no_text`, `interrupted` or `deleting`.
    pub status: String,
    /// Why the last content could not be ingested.
    pub error: Option<String>,
    /// The version readers see (0: none yet).
    pub version: i64,
    pub byte_size: i64,
    pub page_count: i64,
    pub chunk_count: i64,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Left out of retrieval by a curator.
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl DocumentOut {
    pub fn new(d: Document, collection: &str) -> Self {
        Self {
            id: d.id,
            collection: collection.to_string(),
            external_id: d.external_id,
            parent_id: d.parent_id,
            title: d.title,
            source_uri: d.source_uri,
            mime_type: d.mime_type,
            sha256: d.sha256,
            status: d.status,
            error: d.error,
            version: d.version,
            byte_size: d.byte_size,
            page_count: d.page_count,
            chunk_count: d.chunk_count,
            tags: d.tags,
            metadata: d.metadata,
            disabled: d.disabled,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// One version of a document.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionOut {
    pub version: i64,
    /// `indexing`, `active`, `superseded`, `purged`, `failed` or `abandoned`.
    pub state: String,
    pub sha256: String,
    pub error: Option<String>,
    pub page_count: i64,
    pub chunk_count: i64,
    pub created_at: String,
    pub finished_at: Option<String>,
}

impl From<VersionRecord> for VersionOut {
    fn from(v: VersionRecord) -> Self {
        Self {
            version: v.version,
            state: serde_json::to_value(v.state)
                .ok()
                .and_then(|s| s.as_str().map(str::to_string))
                .unwrap_or_default(),
            sha256: v.sha256,
            error: v.error,
            page_count: v.page_count,
            chunk_count: v.chunk_count,
            created_at: v.created_at,
            finished_at: v.finished_at,
        }
    }
}

/// A document with its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentDetail {
    #[serde(flatten)]
    pub document: DocumentOut,
    pub versions: Vec<VersionOut>,
    /// Attachments stored as their own documents.
    pub attachments: Vec<String>,
    /// Who may read it besides administrators (all empty: everyone who reads the collection).
    pub readers: ReadersBody,
}

/// The answer to an upload or a create-or-replace.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadOut {
    #[serde(flatten)]
    pub document: DocumentOut,
    /// True when the content equals the version already processed (nothing queued).
    pub unchanged: bool,
    /// The ingest job queued for it (`GET /api/v1/jobs/{id}`), unless unchanged.
    pub job_id: Option<String>,
}

/// A job of the durable ingest queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobOut {
    pub id: String,
    /// `ingest`.
    pub kind: String,
    pub document_id: Option<String>,
    /// `queued`, `running`, `done`, `dead` (gave up after its attempts) or `cancelled`.
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Pages done and pages in all, while it runs (0 when not known yet).
    pub progress_done: i64,
    pub progress_total: i64,
    /// Why the last attempt failed, or why a done job's document failed.
    pub last_error: Option<String>,
    /// The worker holding it, while running.
    pub worker: Option<String>,
    /// Not tried again before this time (after a failed attempt).
    pub run_after: String,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

impl From<enclave_storage::JobRecord> for JobOut {
    fn from(j: enclave_storage::JobRecord) -> Self {
        Self {
            id: j.id,
            kind: j.kind,
            document_id: j.document_id,
            status: j.status.as_str().to_string(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            progress_done: j.progress_done,
            progress_total: j.progress_total,
            last_error: j.last_error,
            worker: j.lease_owner,
            run_after: j.run_after,
            created_at: j.created_at,
            updated_at: j.updated_at,
            finished_at: j.finished_at,
        }
    }
}

/// Jobs, newest first, with the counts of the whole queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobOut>,
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub dead: i64,
    pub cancelled: i64,
}

/// One corpus change.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditOut {
    pub at: String,
    /// `user 'alice'`, `API key 'dms'`, `command line`, ...
    pub actor: String,
    /// `upload`, `replace`, `delete`, `reindex`, `retry_job`, `create_collection`,
    /// `update_collection`, `delete_collection`.
    pub action: String,
    pub collection: Option<String>,
    pub document_id: Option<String>,
    /// Particulars: file name, content hash, settings...
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<enclave_storage::AuditEntry> for AuditOut {
    fn from(e: enclave_storage::AuditEntry) -> Self {
        Self {
            at: e.at,
            actor: e.actor,
            action: e.action,
            collection: e.collection,
            document_id: e.document_id,
            detail: e.detail,
        }
    }
}

/// Audit entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditOut>,
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the entries of this document id.
    pub document: Option<String>,
    /// At most this many (1 to 1000, default 100).
    pub limit: Option<i64>,
    /// Entries to skip (default 0).
    pub offset: Option<i64>,
}

/// Filters of the question audit.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuestionQuery {
    /// Only the questions of this user (by name).
    pub user: Option<String>,
    /// Only the questions of this API key (by name, id or prefix).
    pub key: Option<String>,
    /// Only through this endpoint: `api.search`, `api.ask`, `openai.chat`, `ui.ask`,
    /// `ui.search`, `admin.retrieval`.
    pub endpoint: Option<String>,
    /// Only questions asked of this collection (by name).
    pub collection: Option<String>,
    /// From this time on (RFC 3339).
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    pub until: Option<String>,
    /// `json` (default) or `jsonl` (JSON Lines, one entry per line, for export).
    pub format: Option<String>,
    /// At most this many (1 to 10,000, default 100).
    pub limit: Option<i64>,
    /// Entries to skip (default 0).
    pub offset: Option<i64>,
}

/// One question or search, as the question audit keeps it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuestionOut {
    pub id: String,
    pub at: String,
    /// `user 'alice'`, `API key 'dms'`, ...
    pub actor: String,
    pub actor_id: Option<String>,
    pub endpoint: String,
    /// Collections named in the question (empty: every collection the caller reads).
    pub collections: Vec<String>,
    /// The text (when `audit.questions = "text"`).
    pub question: Option<String>,
    /// SHA-256 of the text (unless `audit.questions = "none"`).
    pub question_sha256: Option<String>,
    /// Chunk ids retrieved, best first.
    pub retrieved: Vec<String>,
    /// Chunk ids the answer cites.
    pub cited: Vec<String>,
    /// Whether the answer refused (absent for a search).
    pub refused: Option<bool>,
    pub took_ms: i64,
}

impl From<enclave_storage::QuestionEntry> for QuestionOut {
    fn from(e: enclave_storage::QuestionEntry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor,
            actor_id: e.actor_id,
            endpoint: e.endpoint,
            collections: e.collections,
            question: e.question,
            question_sha256: e.question_sha256,
            retrieved: e.retrieved,
            cited: e.cited,
            refused: e.refused,
            took_ms: e.took_ms,
        }
    }
}

/// Question audit entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuestionList {
    pub questions: Vec<QuestionOut>,
}

/// Filters of a job listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this status.
    pub status: Option<String>,
    /// Only the jobs of this document.
    pub document: Option<String>,
    /// At most this many (1 to 500, default 50).
    pub limit: Option<i64>,
    /// Jobs to skip (default 0).
    pub offset: Option<i64>,
}

/// One webhook event and its delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// The delivery id (`X-Enclave-Delivery`, the payload's `id`).
    pub id: String,
    /// `document.ingested`, `document.failed` or `document.deleted`.
    pub event: String,
    pub document_id: Option<String>,
    pub collection: Option<String>,
    /// `pending`, `delivered` or `failed` (gave up after its attempts).
    pub status: String,
    pub attempts: i64,
    /// Not tried before this time (while pending).
    pub next_attempt_at: String,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The HTTP status of the receiver's last answer.
    pub last_status_code: Option<i64>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    /// The JSON body sent: `{id, event, occurred_at, document}`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<enclave_storage::Delivery> for DeliveryOut {
    fn from(d: enclave_storage::Delivery) -> Self {
        Self {
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
            id: d.id,
            event: d.event,
            document_id: d.document_id,
            collection: d.collection,
            status: d.status.as_str().to_string(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error,
            last_status_code: d.last_status_code,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// Webhook deliveries, newest first, with the counts of the whole outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Whether webhooks are on (`webhooks.url` is set).
    pub enabled: bool,
    pub deliveries: Vec<DeliveryOut>,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// Filters of the webhook delivery listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries in this status (`pending`, `delivered`, `failed`).
    pub status: Option<String>,
    /// At most this many (1 to 500, default 50).
    pub limit: Option<i64>,
    /// Deliveries to skip (default 0).
    pub offset: Option<i64>,
}

/// A page of a document listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentList {
    pub documents: Vec<DocumentOut>,
    /// Documents matching the filters, all pages together.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// Filters and paging of the document listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DocumentQuery {
    /// Collection name.
    pub collection: Option<String>,
    /// `queued`, `indexing`, `ready`, `failed`, `no_text`, `interrupted`.
    pub status: Option<String>,
    /// MIME type, e.g. `application/pdf`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub mime_type: Option<String>,
    /// Documents carrying this tag.
    pub tag: Option<String>,
    /// Include e-mail attachments (default false).
    #[serde(default)]
    pub attachments: bool,
    /// Words in the title, source or external id (case-insensitive).
    pub q: Option<String>,
    /// Only documents left out of retrieval (`true`) or only searched ones (`false`).
    pub disabled: Option<bool>,
    /// `updated` (default), `created`, `title`, `status`, `pages`, `chunks` or `size`.
    pub sort: Option<String>,
    /// `desc` (default) or `asc`.
    pub order: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// Documents to skip (default 0).
    pub offset: Option<i64>,
}

/// The text of one page.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageOut {
    pub page_number: i64,
    /// Char offset of the page in the document text (pages joined by a blank line).
    pub char_start: i64,
    pub text: String,
}

/// The pages of a document's active version.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageList {
    pub document_id: String,
    pub version: i64,
    pub pages: Vec<PageOut>,
}

/// One chunk of a document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkOut {
    pub id: String,
    pub ordinal: i64,
    pub page_start: i64,
    pub page_end: i64,
    pub char_start: i64,
    pub char_end: i64,
    pub token_count: i64,
    pub section: Option<String>,
    /// Left out of retrieval by a curator.
    pub disabled: bool,
    pub text: String,
}

/// The chunks of a document's active version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkList {
    pub document_id: String,
    pub version: i64,
    pub chunks: Vec<ChunkOut>,
}

/// Per-channel scores of a passage.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoresOut {
    /// Cosine similarity to the query (dense channel), when that channel found it.
    pub dense: Option<f32>,
    /// BM25 score, when that channel found it.
    pub bm25: Option<f32>,
    /// Cosine similarity of the passage's sentence nearest to the query, when the sentence
    /// ranking (`retrieval.sentence_weight`) placed it.
    pub sentence: Option<f32>,
    /// The fused score that orders the results.
    pub fused: f32,
}

/// A retrieved passage.
#[derive(Debug, Serialize, ToSchema)]
pub struct PassageOut {
    /// 1-based rank; in answers, the source number that citations name.
    pub number: usize,
    pub chunk_id: String,
    pub document_id: String,
    pub version: i64,
    pub title: String,
    pub source_uri: String,
    pub page_start: i64,
    pub page_end: i64,
    /// Char offsets of the passage in the document text.
    pub char_start: i64,
    pub char_end: i64,
    pub section: Option<String>,
    /// Where the passage is, as a citation names it: "page 4", "slide 3", "sheet Budget,
    /// rows 2–40", "section Security".
    pub locator: String,
    pub text: String,
    pub scores: ScoresOut,
    /// Not found by the search but given with the passage after it: the chunk that opens that
    /// passage's section (`generation.section_lead_reach`); its scores are empty.
    pub section_lead: bool,
    /// The passage view in the web UI.
    pub url: String,
}

impl PassageOut {
    pub fn new(number: usize, p: &Passage) -> Self {
        let c = &p.chunk;
        Self {
            number,
            chunk_id: c.id.clone(),
            document_id: c.document_id.clone(),
            version: c.version,
            title: p.document_title.clone(),
            source_uri: p.source_uri.clone(),
            page_start: c.page_start,
            page_end: c.page_end,
            char_start: c.char_start,
            char_end: c.char_end,
            section: c.section.clone(),
            locator: p.locator.clone(),
            text: c.text.clone(),
            scores: ScoresOut {
                dense: p.scores.dense,
                bm25: p.scores.bm25,
                sentence: p.scores.sentence,
                fused: p.scores.fused,
            },
            section_lead: p.section_lead,
            url: passage_url(&c.document_id, c.version, c.char_start, c.char_end),
        }
    }

    pub fn list(passages: &[Passage]) -> Vec<Self> {
        passages
            .iter()
            .enumerate()
            .map(|(i, p)| Self::new(i + 1, p))
            .collect()
    }
}

/// Which documents the passages may come from; every filter runs inside the vector search.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ScopeBody {
    /// Only documents carrying one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only documents of these MIME types.
    #[serde(default)]
    pub types: Vec<String>,
    /// Only documents dated on or after this day (`YYYY-MM-DD`) or instant (RFC 3339). A
    /// document's date is an email's `Date` or a PDF's creation date; undated documents are
    /// left out when a bound is given.
    pub date_from: Option<String>,
    /// Only documents dated on or before this day (the whole day) or instant.
    pub date_to: Option<String>,
    /// Only documents by one of these authors or senders: an email address, a display name or
    /// a PDF's author, whole, in any case.
    #[serde(default)]
    pub authors: Vec<String>,
}

/// A search.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SearchBody {
    pub query: String,
    /// Collection names (default: all).
    #[serde(default)]
    pub collections: Vec<String>,
    /// `hybrid`, `dense` or `bm25` (default: the collection's `mode` setting, else `hybrid`).
    pub mode: Option<String>,
    /// Passages to return, 1 to 100 (default 10).
    pub limit: Option<usize>,
    #[serde(flatten)]
    pub scope: ScopeBody,
    /// Widen passages with their neighbouring chunks.
    #[serde(default)]
    pub expand_neighbours: bool,
}

/// Search results.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchOut {
    pub passages: Vec<PassageOut>,
    /// False when nothing reached the relevance threshold (the passages are then only the
    /// nearest ones).
    pub relevant: bool,
    /// Words of the query (stop words aside) that no passage the caller may read in the
    /// searched collections holds.
    pub unmatched_terms: Vec<String>,
    /// The query's names when no one document of the five best passages mentions them all
    /// (`retrieval.names_together`).
    pub names_apart: Vec<String>,
    pub mode: String,
    pub took_ms: f64,
}

/// A question.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AskBody {
    pub question: String,
    /// Collection names (default: all).
    #[serde(default)]
    pub collections: Vec<String>,
    /// `hybrid`, `dense` or `bm25` (default: the collection's `mode` setting, else `hybrid`).
    pub mode: Option<String>,
    #[serde(flatten)]
    pub scope: ScopeBody,
    /// Stream Server-Sent Events (`sources`, `token`..., then `done` with the answer, or
    /// `error`). Also chosen by `Accept: text/event-stream`.
    #[serde(default)]
    pub stream: bool,
    /// Keep the answer in a conversation of the caller's: its id (the answer is a follow-up
    /// to its turns), or `new` for a new one. Left out: the answer is not kept.
    pub conversation_id: Option<String>,
    /// Earlier turns, oldest first, for a conversation the caller keeps itself (not with
    /// `conversation_id`). A follow-up that does not stand alone is rewritten with them.
    #[serde(default)]
    pub history: Vec<TurnIn>,
}

/// An earlier turn of a conversation.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TurnIn {
    pub question: String,
    /// The answer given (its `[n]` markers are ignored).
    #[serde(default)]
    pub answer: String,
}

/// How a follow-up was made standalone.
#[derive(Debug, Serialize, ToSchema)]
pub struct RewriteOut {
    /// What was searched and answered.
    pub question: String,
    /// `model` (the local model rewrote it) or `context` (the model's rewrite lost the
    /// follow-up's words: the previous question and the follow-up were searched together).
    pub kind: String,
    pub took_ms: f64,
}

/// A conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationOut {
    pub id: String,
    pub title: String,
    pub created_at: String,
    /// When the last question was asked.
    pub updated_at: String,
    pub turns: i64,
}

impl From<&enclave_storage::ConversationRecord> for ConversationOut {
    fn from(c: &enclave_storage::ConversationRecord) -> Self {
        Self {
            id: c.id.clone(),
            title: c.title.clone(),
            created_at: c.created_at.clone(),
            updated_at: c.updated_at.clone(),
            turns: c.turns,
        }
    }
}

/// A new conversation.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ConversationIn {
    /// Default: the first question.
    pub title: Option<String>,
}

/// A conversation's new title.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConversationPatch {
    pub title: String,
}

/// Which conversations.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// Only those whose title, questions or answers contain this text (any case).
    pub q: Option<String>,
    /// At most this many (1 to 500, default 50).
    pub limit: Option<i64>,
    /// Conversations to skip (default 0).
    pub offset: Option<i64>,
}

/// One question of a conversation and its answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnOut {
    /// The answer's id (for feedback).
    pub id: String,
    /// 1 for the first question.
    pub position: i64,
    pub at: String,
    pub question: String,
    /// What was searched and answered, when the question was a follow-up.
    pub standalone_question: Option<String>,
    /// True when the answer was made from a document the caller may no longer read: it is
    /// not shown.
    pub withheld: bool,
    pub answer: Option<AnswerOut>,
    /// The caller's verdict on the answer.
    pub feedback: Option<FeedbackOut>,
}

impl From<&enclave_corpus::TurnView> for TurnOut {
    fn from(t: &enclave_corpus::TurnView) -> Self {
        Self {
            id: t.turn.id.clone(),
            position: t.turn.position,
            at: t.turn.at.clone(),
            question: t.turn.question.clone(),
            standalone_question: t.turn.standalone.clone(),
            withheld: t.withheld,
            answer: t.answer.as_ref().map(AnswerOut::from),
            feedback: t.feedback.as_ref().map(FeedbackOut::from),
        }
    }
}

/// A conversation with its turns.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadOut {
    #[serde(flatten)]
    pub conversation: ConversationOut,
    pub turns: Vec<TurnOut>,
}

impl From<&enclave_corpus::Thread> for ThreadOut {
    fn from(t: &enclave_corpus::Thread) -> Self {
        Self {
            conversation: ConversationOut::from(&t.conversation),
            turns: t.turns.iter().map(TurnOut::from).collect(),
        }
    }
}

/// A verdict on an answer.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FeedbackIn {
    /// Thumbs up (true) or down (false).
    pub helpful: bool,
    pub comment: Option<String>,
    /// The document (id or external id) that holds the right answer.
    pub right_document: Option<String>,
    /// Its page.
    pub right_page: Option<i64>,
}

/// A verdict on an answer, with what the answer was made of.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackOut {
    pub id: String,
    /// The answer judged.
    pub turn_id: String,
    pub at: String,
    /// Who judged it.
    pub actor: String,
    pub helpful: bool,
    pub comment: Option<String>,
    pub right_document_id: Option<String>,
    pub right_page: Option<i64>,
    pub question: String,
    pub answer: String,
    pub refused: bool,
    pub collections: Vec<String>,
    /// Chunk ids retrieved, best first, and cited.
    pub retrieved: Vec<String>,
    pub cited: Vec<String>,
    pub model: String,
    /// The settings the answer was made under: mode, dense_weight, bm25_weight,
    /// sentence_weight, passages, passage_margin, section_lead_reach, reading_order,
    /// model_refusal, expand_query, expand_neighbours, temperature, max_tokens,
    /// custom_system_prompt (`null` for verdicts recorded before they were kept).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

impl From<&enclave_storage::FeedbackRecord> for FeedbackOut {
    fn from(f: &enclave_storage::FeedbackRecord) -> Self {
        Self {
            id: f.id.clone(),
            turn_id: f.turn_id.clone(),
            at: f.at.clone(),
            actor: f.actor.clone(),
            helpful: f.helpful,
            comment: f.comment.clone(),
            right_document_id: f.right_document_id.clone(),
            right_page: f.right_page,
            question: f.question.clone(),
            answer: f.answer_text.clone(),
            refused: f.refused,
            collections: f.collections.clone(),
            retrieved: f.retrieved.clone(),
            cited: f.cited.clone(),
            model: f.model.clone(),
            settings: f.settings.clone(),
        }
    }
}

/// Which verdicts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedbackQuery {
    /// Only thumbs down.
    #[serde(default)]
    pub unhelpful: bool,
    /// At most this many (1 to 500, default 100).
    pub limit: Option<i64>,
    /// Verdicts to skip (default 0).
    pub offset: Option<i64>,
}

/// A citation that stands: a source that was given, with where its passage is.
#[derive(Debug, Serialize, ToSchema)]
pub struct CitationOut {
    /// The `[n]` marker in the answer text.
    pub number: usize,
    pub document_id: String,
    pub title: String,
    pub source_uri: String,
    pub page_start: i64,
    pub page_end: i64,
    pub char_start: i64,
    pub char_end: i64,
    /// The cited passage.
    pub quote: String,
    /// Where the passage is: "page 4", "slide 3", "sheet Budget, rows 2–40", "section
    /// Security".
    pub locator: String,
    /// The passage view in the web UI, with the span highlighted.
    pub url: String,
}

/// Timings of an answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimingsOut {
    /// Making a follow-up standalone (0 when it stood alone).
    pub rewrite_ms: f64,
    pub retrieval_ms: f64,
    /// From the question to the first answer token (retrieval and queueing included).
    pub time_to_first_token_ms: Option<f64>,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub tokens_per_s: Option<f64>,
    pub total_ms: f64,
}

/// A grounded answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnswerOut {
    pub question: String,
    /// The answer, with `[n]` markers naming its sources.
    pub text: String,
    /// True when the answer is a refusal: the documents do not contain the answer.
    pub refused: bool,
    /// Who refused: `retrieval` (nothing relevant found; the model was not asked) or `model`
    /// (the model read the passages and found no answer in them); `null` when answered.
    #[schema(value_type = Option<String>, example = "model")]
    pub refusal: Option<enclave_answer::Refusal>,
    pub citations: Vec<CitationOut>,
    /// Markers the model wrote that named no given source (removed from the text).
    pub removed_citations: Vec<String>,
    /// The sources given to the model (or, when refused, the nearest passages).
    pub passages: Vec<PassageOut>,
    pub timings: TimingsOut,
    pub model: String,
    /// The follow-up made standalone (`null` when the question stood alone).
    pub rewrite: Option<RewriteOut>,
    /// Words of the question (stop words aside) that no passage the caller may read in the
    /// searched collections holds: with `retrieval.refuse_unmatched`, why retrieval
    /// refused.
    pub unmatched_terms: Vec<String>,
    /// The question's names when no one document found mentions them all: with
    /// `retrieval.names_together`, why retrieval refused.
    pub names_apart: Vec<String>,
    /// Citation markers the model put after words copied from another source, moved to that
    /// source (the text and citations already name it).
    pub repointed_citations: usize,
    /// Citation markers added after sentences the model copied from a source without citing
    /// it (the text and citations already hold them).
    pub added_citations: usize,
    /// The model began repeating itself and was stopped; the text ends before the repeat.
    pub repetition_cut: bool,
    /// The conversation the answer was kept in.
    pub conversation_id: Option<String>,
    /// The answer's id in its conversation (for feedback).
    pub turn_id: Option<String>,
    /// The settings it was made under, the collections' own applied (as in `FeedbackOut`;
    /// `null` for answers kept before they were recorded).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

impl AnswerOut {
    /// The answer as kept by `answering` (its conversation and turn ids).
    pub fn kept(a: &Answer, answering: &enclave_corpus::Answering) -> Self {
        let mut out = Self::from(a);
        out.conversation_id = answering.conversation_id().map(str::to_string);
        out.turn_id = answering.kept().map(|t| t.id.clone());
        out
    }
}

impl CitationOut {
    pub fn new(c: &Citation, passages: &[Passage]) -> Self {
        let version = passages
            .get(c.number.saturating_sub(1))
            .map_or(0, |p| p.chunk.version);
        Self {
            number: c.number,
            document_id: c.document_id.clone(),
            title: c.title.clone(),
            source_uri: c.source_uri.clone(),
            page_start: c.page_start,
            page_end: c.page_end,
            char_start: c.char_start,
            char_end: c.char_end,
            quote: c.quote.clone(),
            locator: if c.locator.is_empty() {
                enclave_retrieval::locator("page", c.page_start, c.page_end, None)
            } else {
                c.locator.clone()
            },
            url: passage_url(&c.document_id, version, c.char_start, c.char_end),
        }
    }
}

impl From<&Answer> for AnswerOut {
    fn from(a: &Answer) -> Self {
        Self {
            question: a.question.clone(),
            text: a.text.clone(),
            refused: a.refused,
            refusal: a.refusal,
            citations: a
                .citations
                .iter()
                .map(|c| CitationOut::new(c, &a.passages))
                .collect(),
            removed_citations: a.removed_citations.clone(),
            passages: PassageOut::list(&a.passages),
            timings: TimingsOut {
                rewrite_ms: a.timings.rewrite_ms,
                retrieval_ms: a.timings.retrieval_ms,
                time_to_first_token_ms: a.timings.time_to_first_token_ms,
                prompt_tokens: a.timings.prompt_tokens,
                generated_tokens: a.timings.generated_tokens,
                tokens_per_s: a.timings.tokens_per_s,
                total_ms: a.timings.total_ms,
            },
            model: a.model.clone(),
            unmatched_terms: a.unmatched_terms.clone(),
            names_apart: a.names_apart.clone(),
            repointed_citations: a.repointed_citations.len(),
            added_citations: a.added_citations.len(),
            repetition_cut: a.repetition_cut,
            rewrite: a.rewrite.as_ref().map(|r| RewriteOut {
                question: r.question.clone(),
                kind: match r.kind {
                    enclave_answer::RewriteKind::Model => "model",
                    enclave_answer::RewriteKind::Context => "context",
                }
                .to_string(),
                took_ms: r.took_ms,
            }),
            conversation_id: None,
            turn_id: None,
            settings: a.settings.as_ref().and_then(enclave_corpus::settings_json),
        }
    }
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Readiness: which engine and model serve.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub engine: String,
    pub model: String,
    pub threads: usize,
    pub slots: usize,
    /// The metadata database that answered (engine and version).
    pub database: String,
    /// The vector store that answered (backend, version, place).
    pub vectors: String,
}

/// Changes to a document that need no re-processing. A field left out stays as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DocumentPatch {
    pub title: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Replaces the metadata (a JSON object); what is set here wins over what a re-index reads.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Leave the document (and its attachments) out of retrieval, or take it back in.
    pub disabled: Option<bool>,
    /// Move the document (and its attachments) to this collection.
    pub collection: Option<String>,
    /// Who may read the document (and its attachments): users, groups and API keys by name.
    /// All three empty: everyone who reads its collection.
    pub readers: Option<ReadersBody>,
}

/// A document's access list by name. Empty lists: everyone who reads the collection.
#[derive(Debug, Default, Clone, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
pub struct ReadersBody {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// API keys (by name) that act for no user, such as a DMS integration's own key.
    #[serde(default)]
    pub keys: Vec<String>,
}

impl From<ReadersBody> for enclave_corpus::Readers {
    fn from(r: ReadersBody) -> Self {
        Self {
            users: r.users,
            groups: r.groups,
            keys: r.keys,
        }
    }
}

impl From<enclave_corpus::Readers> for ReadersBody {
    fn from(r: enclave_corpus::Readers) -> Self {
        Self {
            users: r.users,
            groups: r.groups,
            keys: r.keys,
        }
    }
}

/// Changes to one chunk.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChunkPatch {
    /// Leave the chunk out of retrieval, or take it back in.
    pub disabled: bool,
}

/// Which documents a bulk action applies to, as in the listing (at least one criterion).
#[derive(Debug, Default, Clone, Deserialize, Serialize, ToSchema)]
pub struct BulkFilter {
    pub collection: Option<String>,
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub mime_type: Option<String>,
    pub tag: Option<String>,
    /// Words in the title, source or external id.
    pub q: Option<String>,
    pub disabled: Option<bool>,
}

impl BulkFilter {
    /// The application layer's criteria.
    pub fn criteria(&self) -> enclave_corpus::DocumentCriteria {
        enclave_corpus::DocumentCriteria {
            collection: self.collection.clone(),
            status: self.status.clone(),
            mime_type: self.mime_type.clone(),
            tag: self.tag.clone(),
            q: self.q.clone(),
            disabled: self.disabled,
        }
    }
}

/// A bulk action: on the listed documents, or on every document matching a filter.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkBody {
    /// `delete`, `reindex`, `disable`, `enable` or `move`.
    pub action: String,
    /// Document ids (or external ids).
    pub ids: Option<Vec<String>>,
    /// Every top-level document matching this (instead of `ids`).
    pub filter: Option<BulkFilter>,
    /// The target collection of `move`.
    pub collection: Option<String>,
}

/// A document a bulk action could not be applied to.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkFailure {
    pub id: String,
    pub error: String,
}

/// What a bulk action did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkOut {
    pub action: String,
    /// Documents the ids or the filter named.
    pub matched: usize,
    pub succeeded: usize,
    pub failed: Vec<BulkFailure>,
}

/// A case of a collection's evaluation set, as given.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EvalCaseIn {
    pub question: String,
    /// The document (id or external id) that answers it.
    pub document: Option<String>,
    /// 1-based pages where the answer is.
    #[serde(default)]
    pub pages: Vec<i64>,
    /// The collection does not answer it (then no document or pages).
    #[serde(default)]
    pub unanswerable: bool,
}

/// A case of a collection's evaluation set.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvalCaseOut {
    pub id: String,
    pub question: String,
    pub document_id: Option<String>,
    pub pages: Vec<i64>,
    pub unanswerable: bool,
    /// The reader's verdict it was made from.
    pub feedback_id: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

impl From<&enclave_storage::EvalCaseRecord> for EvalCaseOut {
    fn from(c: &enclave_storage::EvalCaseRecord) -> Self {
        Self {
            id: c.id.clone(),
            question: c.question.clone(),
            document_id: c.document_id.clone(),
            pages: c.pages.clone(),
            unanswerable: c.unanswerable,
            feedback_id: c.feedback_id.clone(),
            created_at: c.created_at.clone(),
            created_by: c.created_by.clone(),
        }
    }
}

/// One retrieval mode's figures in an evaluation run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModeFiguresOut {
    /// `dense`, `bm25` or `hybrid`.
    pub mode: String,
    pub answerable: usize,
    pub unanswerable: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub mrr: f64,
    pub ndcg_at_10: f64,
    /// Unanswerable questions refused, of all unanswerable ones.
    pub refusal_accuracy: f64,
    /// Answerable questions retrieval found nothing relevant for.
    pub false_refusals: usize,
    pub latency_p50_ms: f64,
}

/// A run of a collection's evaluation set.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvalRunOut {
    pub id: String,
    pub at: String,
    pub actor: String,
    pub cases: i64,
    /// The collection's settings and the retrieval settings it ran with.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    pub modes: Vec<ModeFiguresOut>,
    /// When the run asked the model too (`enclave eval --collection NAME --answers N`): model,
    /// answerable (asked), with_citation, cited_gold_page (answers citing an expected page),
    /// false_refusals, unanswerable, refused, ttft_p50_ms.
    #[schema(value_type = Option<Object>)]
    pub answers: Option<serde_json::Value>,
}

impl From<&enclave_corpus::EvalRun> for EvalRunOut {
    fn from(r: &enclave_corpus::EvalRun) -> Self {
        Self {
            id: r.record.id.clone(),
            at: r.record.at.clone(),
            actor: r.record.actor.clone(),
            cases: r.record.cases,
            settings: r.record.settings.clone(),
            answers: r.record.answers.clone(),
            modes: r
                .modes
                .iter()
                .map(|m| ModeFiguresOut {
                    mode: m.mode.to_string(),
                    answerable: m.answerable,
                    unanswerable: m.unanswerable,
                    recall_at_1: m.recall_at_1,
                    recall_at_5: m.recall_at_5,
                    recall_at_10: m.recall_at_10,
                    mrr: m.mrr,
                    ndcg_at_10: m.ndcg_at_10,
                    refusal_accuracy: m.refusal_accuracy,
                    false_refusals: m.false_refusals,
                    latency_p50_ms: m.latency_p50_ms,
                })
                .collect(),
        }
    }
}

/// A verdict made into an evaluation case.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FeedbackCaseIn {
    /// The collection whose set gets the case.
    pub collection: String,
    /// The collection does not answer the question (else the reader's pick of the right
    /// source is the expected one).
    #[serde(default)]
    pub unanswerable: bool,
}
