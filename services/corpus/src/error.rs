//! What a use case can refuse or fail with.

use enclave_answer::AnswerError;
use enclave_ingest::IngestError;
use enclave_retrieval::RetrievalError;
use enclave_storage::StorageError;

/// Errors of the application layer. The server maps each to a status once.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// No such thing, or one the caller may not see (never told apart: no existence leak).
    #[error("{0}")]
    NotFound(String),
    /// The caller sees the thing but their role does not allow this action on it.
    #[error("{0}")]
    Forbidden(String),
    /// A value given by the caller is not acceptable; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// A file of a type Enclave does not read.
    #[error("{0}")]
    Unsupported(String),
    /// Too much work is waiting (the ingest queue is full): retry later.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Retrieval(#[from] RetrievalError),
    #[error(transparent)]
    Answer(#[from] AnswerError),
    /// The upload store's files.
    #[error("file system: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

pub type Result<T, E = CorpusError> = std::result::Result<T, E>;
