//! What every request shares: settings, stores, the models (loaded in the background), the
//! ingest worker's queue and the metrics.

use std::sync::Arc;

use enclave_answer::Asker;
use enclave_ingest::Ingestor;
use enclave_retrieval::Retriever;
use enclave_settings::Settings;
use enclave_storage::{MetaStore, VectorStore};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// A part of the service that becomes available once its model is loaded.
#[derive(Clone)]
pub enum Loading<T> {
    Pending,
    Ready(T),
    Failed(String),
}

/// Ingest and search: ready once the embedding model is loaded.
#[derive(Clone)]
pub struct SearchParts {
    pub ingestor: Ingestor,
    pub retriever: Retriever,
}

/// Shared state of the server.
pub struct AppState {
    pub settings: Settings,
    pub meta: MetaStore,
    pub vectors: Arc<dyn VectorStore>,
    pub search: watch::Receiver<Loading<SearchParts>>,
    pub answers: watch::Receiver<Loading<Asker>>,
    /// The ingest queue (also held by `corpus`): this process's worker is woken through it.
    pub jobs: enclave_corpus::IngestQueue,
    pub uploads: enclave_ingest::uploads::UploadStore,
    pub metrics: Metrics,
    /// The application layer: permissions and use cases over the same stores.
    pub corpus: enclave_corpus::Corpus,
    /// The question audit.
    pub questions: enclave_corpus::QuestionRecorder,
}

/// A store's failure as seen by a readiness check: whatever the cause, it is not ready.
fn unavailable(e: enclave_storage::StorageError) -> ApiError {
    match e {
        e @ enclave_storage::StorageError::Unavailable { .. } => {
            ApiError::Unavailable(e.to_string())
        }
        other => ApiError::Unavailable(format!("store check failed: {other}")),
    }
}

fn ready<T: Clone>(rx: &watch::Receiver<Loading<T>>, what: &str) -> Result<T, ApiError> {
    match &*rx.borrow() {
        Loading::Ready(t) => Ok(t.clone()),
        Loading::Pending => Err(ApiError::NotReady(format!(
            "the {what} model is still loading: retry in a few seconds"
        ))),
        Loading::Failed(e) => Err(ApiError::NotReady(format!(
            "the {what} model could not be loaded: {e}"
        ))),
    }
}

impl AppState {
    /// The retriever, once the embedding model is loaded.
    pub fn retriever(&self) -> Result<Retriever, ApiError> {
        ready(&self.search, "embedding").map(|p| p.retriever)
    }

    /// The answer path, once both models are loaded.
    pub fn asker(&self) -> Result<Asker, ApiError> {
        ready(&self.search, "embedding")?;
        ready(&self.answers, "generation")
    }

    /// Checks that both stores answer, each within the vector store's time-out; returns what
    /// answered (database, vectors) or the first store that did not, named.
    pub async fn check_stores(&self) -> Result<(String, String), ApiError> {
        let limit = std::time::Duration::from_secs(self.settings.vectors.timeout_secs.max(1) + 1);
        let timed_out = |store: &str| {
            ApiError::Unavailable(format!(
                "{store} unavailable: no answer within {} s",
                limit.as_secs()
            ))
        };
        let (database, vectors) = tokio::join!(
            tokio::time::timeout(limit, self.meta.check()),
            tokio::time::timeout(limit, self.vectors.check())
        );
        let database = database
            .map_err(|_| timed_out("metadata database"))?
            .map_err(unavailable)?;
        let vectors = vectors
            .map_err(|_| timed_out("vector store"))?
            .map_err(unavailable)?;
        Ok((database, vectors))
    }

    /// Why the service is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<ApiError> {
        self.asker().err()
    }
}
