//! The ingest queue as the use cases see it: uploads, re-index requests and external-id upserts
//! become durable jobs in the metadata database (run by `enclave_ingest::worker`), never work
//! on the caller's path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use enclave_ingest::StoredContent;
use enclave_ingest::uploads::{UPLOAD_SCHEME, UploadStore};
use enclave_ingest::worker::{IngestJob, enqueue};
use enclave_storage::{Document, JobRecord, MetaStore};
use tokio::sync::Notify;

use crate::error::{CorpusError, Result};

/// One document to process.
#[derive(Debug, Clone)]
pub struct Job {
    pub document_id: String,
    pub content: StoredContent,
    /// Content hash the document had before, released once the new one is processed.
    pub previous_sha: Option<String>,
}

/// Told how many jobs wait after each one queued (a server's queue-depth gauge).
pub type DepthGauge = Arc<dyn Fn(i64) + Send + Sync>;

/// Queues jobs in the metadata database, with a bound on how many may wait.
#[derive(Clone)]
pub struct IngestQueue {
    meta: MetaStore,
    capacity: usize,
    max_attempts: i64,
    wake: Arc<Notify>,
    depth: Option<DepthGauge>,
}

impl IngestQueue {
    /// A queue that refuses new jobs while `capacity` wait; each job is tried at most
    /// `max_attempts` times.
    pub fn new(meta: MetaStore, capacity: usize, max_attempts: i64) -> Self {
        Self {
            meta,
            capacity,
            max_attempts,
            wake: Arc::new(Notify::new()),
            depth: None,
        }
    }

    /// The same queue, telling `gauge` the number of waiting jobs after each submission.
    pub fn with_depth_gauge(mut self, gauge: DepthGauge) -> Self {
        self.depth = Some(gauge);
        self
    }

    /// Wakes this process's worker (a job became ready).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What this process's worker waits on to hear of a new job.
    pub fn wake_handle(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Queues a job, or refuses with [`CorpusError::Busy`] when the queue already holds
    /// `capacity` jobs.
    pub async fn submit(&self, job: Job) -> Result<JobRecord> {
        let waiting = self.meta.job_counts(None).await?.queued;
        if waiting >= self.capacity as i64 {
            return Err(CorpusError::Busy(format!(
                "the ingest queue is full ({waiting} jobs wait): retry when the documents already \
                 sent are processed"
            )));
        }
        let record = enqueue(
            &self.meta,
            &job.document_id,
            &IngestJob {
                content: job.content,
                previous_sha: job.previous_sha,
            },
            self.max_attempts,
        )
        .await?;
        if let Some(gauge) = &self.depth {
            gauge(waiting + 1);
        }
        self.wake.notify_one();
        Ok(record)
    }
}

/// The file name the type of a stored original is detected from.
pub fn file_name_for(doc: &Document, path: &Path) -> String {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    let title = doc.title.trim();
    if ext.is_empty() || title.to_ascii_lowercase().ends_with(&format!(".{ext}")) {
        title.to_string()
    } else {
        format!("{title}.{ext}")
    }
}

/// Where the original of a document is, if Enclave can read it.
pub fn original_path(doc: &Document, uploads: &UploadStore) -> Option<PathBuf> {
    if doc.source_uri.starts_with(UPLOAD_SCHEME) {
        uploads.find(&doc.sha256)
    } else if doc.source_uri.contains("#attachment/") {
        None
    } else {
        enclave_ingest::source::path_of_file_uri(&doc.source_uri).filter(|p| p.is_file())
    }
}

/// A job that processes `doc` again from its original.
pub fn reindex_job(doc: &Document, uploads: &UploadStore, collection: &str) -> Option<Job> {
    let path = original_path(doc, uploads)?;
    Some(Job {
        document_id: doc.id.clone(),
        content: StoredContent {
            collection: collection.to_string(),
            file_name: file_name_for(doc, &path),
            path,
            source_uri: doc.source_uri.clone(),
            external_id: doc.external_id.clone(),
            title: None,
            tags: doc.tags.clone(),
            access: doc.access.clone(),
            force: true,
        },
        previous_sha: None,
    })
}
