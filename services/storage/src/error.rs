/// Errors of the metadata and vector stores.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed an operation.
    #[error("metadata database: {0}")]
    Database(sqlx::Error),
    /// A store cannot be reached or did not answer in time (down, restarting, overloaded):
    /// the operation may succeed when retried later.
    #[error("{store} unavailable: {reason}")]
    Unavailable {
        /// `metadata database` or `vector store`.
        store: &'static str,
        reason: String,
    },
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

impl StorageError {
    /// A vector store that cannot be reached or did not answer in time.
    pub fn vectors_unavailable(reason: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            store: "vector store",
            reason: reason.to_string(),
        }
    }

    /// Whether retrying later may succeed (a store down or slow), as opposed to a refusal.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// PostgreSQL error classes that mean "not now" rather than "no": connection exceptions
/// (08), insufficient resources (53), operator intervention (57: shutdown, statement time-out)
/// and serialization failures (40001, 40P01).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code == "40001"
        || code == "40P01"
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        let transient = match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(d) => d.code().is_some_and(|c| transient_sqlstate(&c)),
            _ => false,
        };
        if transient {
            let reason = match &e {
                sqlx::Error::PoolTimedOut => {
                    "no connection could be had in time (is the database up?)".to_string()
                }
                other => other.to_string(),
            };
            Self::Unavailable {
                store: "metadata database",
                reason,
            }
        } else {
            Self::Database(e)
        }
    }
}
