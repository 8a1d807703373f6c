//! The sentence-embedding seam.
//!
//! [`Embedder`] is what the rest of Enclave sees: texts in, L2-normalised vectors out, async.
//! [`OnnxEmbedder`] runs a fastembed `UserDefinedEmbeddingModel` (ONNX Runtime loaded from a
//! local `libonnxruntime.so`) on a dedicated OS thread that owns the model and serves requests
//! from a channel, so inference never blocks the async runtime and the model is loaded once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use tokio::sync::oneshot;

/// Errors of the embedding seam.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is missing or unreadable.
    #[error("embedding model file {path}: {source} (run scripts/fetch-models)")]
    ModelFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// ONNX Runtime could not be loaded.
    #[error("ONNX Runtime library {path}: {message} (run scripts/fetch-models)")]
    Runtime { path: PathBuf, message: String },
    /// The model failed to load or to run.
    #[error("embedding model: {0}")]
    Model(String),
    /// The embedding thread is gone (it panicked or was shut down).
    #[error("the embedding worker has stopped")]
    WorkerStopped,
}

/// Texts in, vectors out. Implementations are cheap to clone and safe to share.
pub trait Embedder: Send + Sync {
    /// Dimension of the vectors.
    fn dimension(&self) -> usize;
    /// Embeds texts (documents or queries), one L2-normalised vector per text, in order.
    fn embed(
        &self,
        texts: Vec<String>,
    ) -> impl std::future::Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send;
}

/// Where the model lives and how to run it.
#[derive(Debug, Clone)]
pub struct OnnxEmbedderConfig {
    /// Directory with model.onnx, tokenizer.json, config.json, special_tokens_map.json,
    /// tokenizer_config.json.
    pub model_dir: PathBuf,
    /// `libonnxruntime.so`.
    pub onnxruntime: PathBuf,
    /// Longest input in word pieces; longer texts are truncated by the tokenizer.
    pub max_input_tokens: usize,
    /// Texts per inference call.
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads (None: all cores).
    pub threads: Option<usize>,
}

type Job = (
    Vec<String>,
    oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
);

/// fastembed/ONNX embedder on its own thread.
#[derive(Clone, Debug)]
pub struct OnnxEmbedder {
    jobs: mpsc::Sender<Job>,
    dimension: usize,
    tokenizer: Arc<tokenizers::Tokenizer>,
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| EmbedError::ModelFile {
        path: path.to_path_buf(),
        source,
    })
}

fn l2_normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

static ORT_ENV: std::sync::OnceLock<Result<ort::environment::Environment, String>> =
    std::sync::OnceLock::new();

/// Loads ONNX Runtime from `path` once per process and keeps its environment alive. Later
/// calls reuse the first result (ONNX Runtime allows one environment per process).
fn runtime(path: &Path) -> Result<ort::environment::Environment, EmbedError> {
    ORT_ENV
        .get_or_init(|| {
            if !path.is_file() {
                return Err("file not found".to_string());
            }
            ort::init_from(path)
                .map_err(|e| e.to_string())?
                .with_name("enclave")
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|message| EmbedError::Runtime {
            path: path.to_path_buf(),
            message,
        })
}

impl OnnxEmbedder {
    /// Loads the model on a new thread and returns once it is ready (or failed to load).
    pub async fn start(config: OnnxEmbedderConfig) -> Result<Self, EmbedError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let tokenizer = Arc::new(Self::tokenizer_from(&config.model_dir)?);
        std::thread::Builder::new()
            .name("enclave-embed".into())
            .spawn(move || match Self::load(&config) {
                Ok((mut model, dimension)) => {
                    let _ = ready_tx.send(Ok(dimension));
                    while let Ok((texts, reply)) = jobs_rx.recv() {
                        let result = model
                            .embed(&texts, Some(config.batch_size))
                            .map(|vs| vs.into_iter().map(l2_normalise).collect())
                            .map_err(|e| EmbedError::Model(e.to_string()));
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| EmbedError::Model(format!("cannot start the embedding thread: {e}")))?;
        let dimension = ready_rx.await.map_err(|_| EmbedError::WorkerStopped)??;
        Ok(Self {
            jobs: jobs_tx,
            dimension,
            tokenizer,
        })
    }

    /// The model's tokenizer, as the chunker needs it to size chunks in the model's tokens.
    pub fn tokenizer(&self) -> Arc<tokenizers::Tokenizer> {
        Arc::clone(&self.tokenizer)
    }

    /// Reads `tokenizer.json` from a model directory.
    pub fn tokenizer_from(model_dir: &Path) -> Result<tokenizers::Tokenizer, EmbedError> {
        let path = model_dir.join("tokenizer.json");
        let bytes = read(&path)?;
        let mut tok = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| EmbedError::Model(format!("{}: {e}", path.display())))?;
        // The chunker counts every word piece; no truncation or padding there.
        tok.with_truncation(None)
            .map_err(|e| EmbedError::Model(e.to_string()))?;
        tok.with_padding(None);
        Ok(tok)
    }

    fn load(config: &OnnxEmbedderConfig) -> Result<(TextEmbedding, usize), EmbedError> {
        let environment = runtime(&config.onnxruntime)?;
        let dir = &config.model_dir;
        let model = UserDefinedEmbeddingModel::new(
            read(&dir.join("model.onnx"))?,
            TokenizerFiles {
                tokenizer_file: read(&dir.join("tokenizer.json"))?,
                config_file: read(&dir.join("config.json"))?,
                special_tokens_map_file: read(&dir.join("special_tokens_map.json"))?,
                tokenizer_config_file: read(&dir.join("tokenizer_config.json"))?,
            },
        )
        .with_pooling(Pooling::Mean);
        let mut options = InitOptionsUserDefined::new()
            .with_environment(environment)
            .with_max_length(config.max_input_tokens);
        if let Some(t) = config.threads {
            options = options.with_intra_threads(t);
        }
        let mut embedding = TextEmbedding::try_new_from_user_defined(model, options)
            .map_err(|e| EmbedError::Model(e.to_string()))?;
        let probe = embedding
            .embed(["probe"], None)
            .map_err(|e| EmbedError::Model(e.to_string()))?;
        let dimension = probe.first().map_or(0, Vec::len);
        Ok((embedding, dimension))
    }
}

impl Embedder for OnnxEmbedder {
    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((texts, tx))
            .map_err(|_| EmbedError::WorkerStopped)?;
        rx.await.map_err(|_| EmbedError::WorkerStopped)?
    }
}
