//! Enclave's integration tests: the real `enclave` binary over real documents, with the real
//! stores (SQLite + qdrant-edge, and PostgreSQL) and the real embedding model.

mod ask;
mod bad_inputs;
mod chunks;
mod common;
mod conversations;
mod crash;
mod curation;
mod formats;
mod http;
mod lifecycle;
mod outlook;
mod permissions;
mod queue;
mod scale;
mod scans;
mod search;
mod webhooks;
