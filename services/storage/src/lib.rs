//! Enclave's stores.
//!
//! - [`MetaStore`]: collections, documents, versions, pages, chunks and ingest runs, in SQLite
//!   (embedded default) or PostgreSQL (production) through one sqlx code path.
//! - Users, API keys and login sessions (hashed secrets only) in the same database.
//! - The durable job queue (leases, heartbeats, retries, dead letters) in the same database.
//! - Groups and grants (roles per collection), the audit log of corpus changes, the question
//!   audit and sign-in failures, in the same database.
//! - Conversations (threads of questions and answers per owner), readers' feedback on
//!   answers, and each collection's own evaluation set with its runs, in the same database.
//! - The webhook outbox: document events and their delivery status, in the same database.
//! - [`VectorStore`]: the seam for dense + BM25 vectors with filterable payloads;
//!   [`EdgeVectorStore`] is the in-process qdrant-edge backend, [`QdrantServerStore`] the
//!   Qdrant server (or cluster) backend of the scale-out mode.
//!
//! The metadata store is the source of truth. A chunk is visible to readers only when its
//! `(document, version)` is the document's active version there; vector hits of any other
//! version are dropped by the reader. That is what lets a new version replace an old one with
//! readers never seeing a mix, and what makes every interrupted operation repairable by
//! [`MetaStore::pending_purges`] + [`VectorStore::delete_version`].

mod access;
mod audit;
mod conversations;
mod copy;
mod curation;
mod error;
mod eval_sets;
mod jobs;
pub mod local_qdrant;
mod meta;
mod permissions;
mod qdrant_server;
mod vectors;
mod webhooks;

pub use access::{ApiKeyRecord, UserRecord};
pub use audit::AuditEntry;
pub use conversations::{ConversationRecord, FeedbackRecord, TurnRecord};
pub use copy::TABLES;
pub use error::StorageError;
pub use eval_sets::{EvalCaseRecord, EvalRunRecord};
pub use jobs::{JobCounts, JobRecord, JobStatus, NewJob, backoff};
pub use meta::{
    ChunkRecord, Collection, CollectionStats, ConnectOptions, Document, DocumentFailure,
    DocumentFilter, DocumentPage, DocumentSort, FormatStats, MetaStore, NewVersion, PageRecord,
    PurgeTask, RunCounts, Timestamp, VersionRecord, VersionState, now,
};
pub use permissions::{GrantRecord, GroupRecord, QuestionEntry, QuestionFilter, SubjectKind};
pub use qdrant_server::{QdrantServerConfig, QdrantServerStore, WriteOrdering};
pub use vectors::{
    Bm25Encoder, ChunkPoint, EdgeVectorStore, PayloadUpdate, PointPayload, VectorFilter, VectorHit,
    VectorQuery, VectorStore, chunk_point_id, copy_points,
};
pub use webhooks::{Delivery, DeliveryCounts, DeliveryStatus, NewEvent};

/// Result of storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
