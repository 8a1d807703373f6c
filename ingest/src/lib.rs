//! Enclave's ingest engine: files become parsed documents, chunks, embeddings and stored
//! vectors + metadata. It knows nothing of HTTP; callers drive it through [`Ingestor`].
//!
//! - [`parse`]: bytes to text per page (PDF in an isolated child process), per format.
//! - [`chunk`]: structure-aware chunks sized in the embedding model's tokens, with exact offsets.
//! - [`source`]: walking files and folders.
//! - [`pipeline`]: the idempotent, crash-consistent ingest of files into the stores.
//! - [`provenance`]: a document's date and authors, stored with its points for filtering.
//! - [`uploads`]: the originals Enclave keeps (uploads), content-addressed.
//! - [`curation`]: curators' changes (details, disabling, moves) mirrored into both stores.
//! - [`worker`]: claims ingest jobs from the durable queue and runs them.
//! - [`events`]: document events recorded in the webhook outbox.

pub mod chunk;
pub mod curation;
pub mod events;
pub mod parse;
pub mod pipeline;
pub mod provenance;
pub mod source;
pub mod uploads;
pub mod worker;

pub use chunk::{Chunk, Chunker};
pub use pipeline::{
    FileOutcome, IngestObserver, IngestOptions, IngestRequest, IngestSummary, Ingestor, ProgressFn,
    StoredContent, chunk_sizes, delete_document, recover, recover_document,
};

/// Errors that stop an ingest as a whole (a single bad document never does: its failure is
/// recorded on that document).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A store failed.
    #[error(transparent)]
    Storage(#[from] enclave_storage::StorageError),
    /// The embedding model failed.
    #[error(transparent)]
    Embed(#[from] enclave_embed::EmbedError),
    /// Settings are inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A path given to ingest does not exist.
    #[error("{0}: no such file or directory")]
    MissingPath(String),
    /// A curator's change names something impossible (an empty title, metadata that is not
    /// an object, moving an attachment alone).
    #[error("{0}")]
    Invalid(String),
    /// The document is being processed; the change must wait for the end of its job.
    #[error("{0}")]
    Busy(String),
}
