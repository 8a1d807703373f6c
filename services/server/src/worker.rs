//! The in-process ingest worker: uploads and re-index requests are queued here and processed
//! one document at a time off the request path. The queue itself is the `queued` status in the
//! metadata store, so a restart picks up whatever was waiting.

use std::path::PathBuf;
use std::sync::Arc;

use enclave_ingest::{FileOutcome, StoredContent};
use enclave_storage::{Document, MetaStore};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::{Loading, SearchParts};
use crate::uploads::{UPLOAD_SCHEME, UploadStore};

/// One document to process.
#[derive(Debug, Clone)]
pub struct Job {
    pub document_id: String,
    pub content: StoredContent,
    /// Content hash the document had before, released once the new one is processed.
    pub previous_sha: Option<String>,
}

/// The sending side of the worker's queue.
#[derive(Clone)]
pub struct JobQueue {
    tx: mpsc::Sender<Job>,
    metrics: Metrics,
}

impl JobQueue {
    pub fn new(capacity: usize, metrics: Metrics) -> (Self, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, metrics }, rx)
    }

    /// Queues a job, or refuses with 429 when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::Busy(
                "the ingest queue is full: retry when the documents already sent are processed"
                    .into(),
            ),
            mpsc::error::TrySendError::Closed(_) => {
                ApiError::NotReady("the ingest worker has stopped".into())
            }
        })?;
        self.metrics.ingest_queue_depth.inc();
        Ok(())
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

/// Runs the worker until the queue closes.
pub async fn run(
    mut rx: mpsc::Receiver<Job>,
    mut search: tokio::sync::watch::Receiver<Loading<SearchParts>>,
    meta: MetaStore,
    uploads: Arc<UploadStore>,
    metrics: Metrics,
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
    while let Some(job) = rx.recv().await {
        metrics.ingest_queue_depth.dec();
        // A document deleted while it waited is not brought back.
        match meta.document(&job.document_id).await {
            Ok(Some(doc)) if doc.status == "queued" => {}
            Ok(_) => continue,
            Err(e) => {
                tracing::error!(error = %e, "ingest worker: metadata store unavailable");
                continue;
            }
        }
        let source = job.content.source_uri.clone();
        match ingestor.ingest_stored(&job.content).await {
            Ok(outcome) => {
                let label = match &outcome {
                    FileOutcome::Ingested { pages, .. } => {
                        metrics.ingest_pages.inc_by(*pages as u64);
                        "ingested"
                    }
                    FileOutcome::Unchanged => "unchanged",
                    FileOutcome::Failed { reason } => {
                        tracing::warn!(%source, %reason, "document failed");
                        "failed"
                    }
                };
                metrics.ingest_documents.with_label_values(&[label]).inc();
            }
            Err(e) => {
                metrics.ingest_documents.with_label_values(&["error"]).inc();
                tracing::error!(%source, error = %e, "ingest failed on a store; repairing");
                if let Err(e) = ingestor.recover().await {
                    tracing::error!(error = %e, "repair failed");
                }
            }
        }
        if let Some(sha) = &job.previous_sha {
            uploads.release(&meta, sha).await;
        }
    }
}
