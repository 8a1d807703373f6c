/// Errors of the metadata and vector stores.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed an operation.
    #[error("metadata database: {0}")]
    Database(#[from] sqlx::Error),
    /// Schema migrations could not be applied.
    #[error("metadata database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database URL names a backend Enclave does not support.
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://...")]
    UnsupportedDatabase(String),
    /// The vector store failed.
    #[error("vector store: {0}")]
    Vector(String),
    /// A vector does not have the dimension the store was created with.
    #[error("vector has dimension {got}, the store holds {want}-dimensional vectors")]
    Dimension { got: usize, want: usize },
    /// A lookup found nothing.
    #[error("{0} not found")]
    NotFound(String),
    /// The record already exists (a collection or user name taken).
    #[error("{0} already exists")]
    Conflict(String),
    /// Stored data could not be decoded (corrupt JSON column, unknown state).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Filesystem error around the stores' directories.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
