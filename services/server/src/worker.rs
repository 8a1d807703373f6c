//! The server's side of the ingest queue: uploads, re-index requests and external-id upserts
//! become durable jobs in the metadata database (see `enclave_ingest::worker`), never work on
//! the request path; in the embedded default one worker also runs in this process.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use enclave_ingest::uploads::{UPLOAD_SCHEME, UploadStore};
use enclave_ingest::worker::{IngestJob, JobObserver, JobOutcome, Worker, WorkerOptions, enqueue};
use enclave_ingest::{FileOutcome, StoredContent};
use enclave_settings::WorkerSettings;
use enclave_storage::{Document, JobRecord, MetaStore};
use tokio::sync::{Notify, watch};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::{Loading, SearchParts};

/// One document to process.
#[derive(Debug, Clone)]
pub struct Job {
    pub document_id: String,
    pub content: StoredContent,
    /// Content hash the document had before, released once the new one is processed.
    pub previous_sha: Option<String>,
}

/// Queues jobs in the metadata database.
#[derive(Clone)]
pub struct JobQueue {
    meta: MetaStore,
    capacity: usize,
    max_attempts: i64,
    wake: Arc<Notify>,
    metrics: Metrics,
}

impl JobQueue {
    pub fn new(meta: MetaStore, capacity: usize, max_attempts: i64, metrics: Metrics) -> Self {
        Self {
            meta,
            capacity,
            max_attempts,
            wake: Arc::new(Notify::new()),
            metrics,
        }
    }

    /// Wakes this process's worker (a job became ready).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Wakes this process's worker when a job is queued.
    pub fn wake_handle(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Queues a job, or refuses with 429 when the queue already holds `capacity` jobs.
    pub async fn submit(&self, job: Job) -> Result<JobRecord, ApiError> {
        let waiting = self.meta.job_counts(None).await?.queued;
        if waiting >= self.capacity as i64 {
            return Err(ApiError::Busy(format!(
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
        self.metrics.ingest_queue_depth.set(waiting + 1);
        self.wake.notify_one();
        Ok(record)
    }
}

/// The file name the type of a stored original is detected from.
pub fn file_name_for(doc: &Document, path: &std::path::Path) -> String {
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

/// Counts what the worker does in the server's metrics.
struct MetricsObserver(Metrics);

impl JobObserver for MetricsObserver {
    fn started(&self, _job: &JobRecord) {
        let depth = &self.0.ingest_queue_depth;
        if depth.get() > 0 {
            depth.dec();
        }
    }

    fn finished(&self, _job: &JobRecord, outcome: &JobOutcome) {
        let label = match outcome {
            JobOutcome::Processed(FileOutcome::Ingested { pages, .. }) => {
                self.0.ingest_pages.inc_by(*pages as u64);
                "ingested"
            }
            JobOutcome::Processed(FileOutcome::Unchanged) => "unchanged",
            JobOutcome::Processed(FileOutcome::Failed { .. }) => "failed",
            JobOutcome::Skipped => "skipped",
            JobOutcome::Failed { .. } => "error",
            JobOutcome::LeaseLost => "lease_lost",
        };
        self.0.ingest_documents.with_label_values(&[label]).inc();
    }
}

/// This process's worker name: host and process id.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// The worker options of the settings.
pub fn worker_options(settings: &WorkerSettings) -> WorkerOptions {
    WorkerOptions {
        lease: Duration::from_secs(settings.lease_secs),
        poll: Duration::from_millis(settings.poll_ms.max(10)),
        retry_base: Duration::from_secs(settings.retry_base_secs),
    }
}

/// Runs the in-process worker, once the embedding model is loaded, until `shutdown`.
pub async fn run(
    mut search: watch::Receiver<Loading<SearchParts>>,
    uploads: UploadStore,
    settings: WorkerSettings,
    wake: Arc<Notify>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) {
    let ingestor = loop {
        let current = search.borrow().clone();
        match current {
            Loading::Ready(parts) => break parts.ingestor,
            Loading::Failed(e) => {
                tracing::error!(error = %e, "the ingest worker cannot start: uploads stay queued");
                return;
            }
            Loading::Pending => {
                if search.changed().await.is_err() {
                    return;
                }
            }
        }
    };
    let worker = Worker::new(
        ingestor,
        uploads,
        worker_options(&settings),
        Arc::new(MetricsObserver(metrics)),
    )
    .with_wake(wake);
    worker.run(&worker_name(), settings.slots, shutdown).await;
}
