//! The ingest worker: claims jobs from the durable queue in the metadata database (see
//! `enclave_storage`'s job queue) and runs them, in as many loops ("slots") as asked.
//!
//! Any number of workers, in any processes that reach the same stores, share one queue: a job
//! is claimed with a lease that the worker renews by heartbeat while it works; when a worker
//! dies, its job is claimed again once the lease has run out, and the half-written version it
//! left is repaired first ([`recover_document`]). One document never has two jobs at once: a
//! new job for a document withdraws its waiting ones, and a document whose job is running is
//! not claimed by a second worker.
//!
//! A document that cannot be parsed is an outcome, not a job failure: the job is done and the
//! document carries its error. A job fails when a store or the embedding model fails, or its
//! payload cannot be read; it comes back after a backoff until it is dead-lettered.
//!
//! A processed job records its document's `document.ingested` or `document.failed` event in
//! the webhook outbox together with its completion, when the store records those events.

use std::sync::Arc;
use std::time::Duration;

use enclave_storage::{JobRecord, JobStatus, MetaStore, NewEvent, NewJob};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::IngestError;
use crate::events::{DOCUMENT_FAILED, DOCUMENT_INGESTED, document_event};
use crate::pipeline::{FileOutcome, Ingestor, ProgressFn, StoredContent, recover_document};
use crate::uploads::UploadStore;

/// The kind of the jobs this worker runs.
pub const INGEST_JOB: &str = "ingest";

/// What an ingest job carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestJob {
    pub content: StoredContent,
    /// The stored original the document had before, released once the new one is processed.
    #[serde(default)]
    pub previous_sha: Option<String>,
}

/// Queues an ingest of `document_id`, withdrawing its jobs that have not started: the newest
/// content is the one that counts.
pub async fn enqueue(
    meta: &MetaStore,
    document_id: &str,
    job: &IngestJob,
    max_attempts: i64,
) -> Result<JobRecord, IngestError> {
    meta.cancel_document_jobs(document_id).await?;
    let payload = serde_json::to_value(job)
        .map_err(|e| IngestError::Config(format!("cannot encode an ingest job: {e}")))?;
    Ok(meta
        .enqueue_job(&NewJob {
            kind: INGEST_JOB.to_string(),
            document_id: Some(document_id.to_string()),
            payload,
            max_attempts,
        })
        .await?)
}

/// Timings of the worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How long a claim holds without a heartbeat; a dead worker's job waits this long before
    /// another worker takes it. Heartbeats come every third of it.
    pub lease: Duration,
    /// How often an idle worker looks for work (it is also woken by [`Worker::wake`]).
    pub poll: Duration,
    /// Delay before the second attempt of a failed job, doubled for each further one.
    pub retry_base: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            retry_base: Duration::from_secs(5),
        }
    }
}

/// How a claimed job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The document was processed: ingested, unchanged, or failed (its error is on it).
    Processed(FileOutcome),
    /// Its document was deleted while the job waited.
    Skipped,
    /// The attempt failed; the job is queued again, or dead when its attempts are used up.
    Failed { error: String, status: JobStatus },
    /// This worker lost the lease (it stalled past it) and stopped; another worker has it.
    LeaseLost,
}

/// Told about each job a worker runs (metrics, notifications).
pub trait JobObserver: Send + Sync {
    fn started(&self, _job: &JobRecord) {}
    fn finished(&self, _job: &JobRecord, _outcome: &JobOutcome) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl JobObserver for NoObserver {}

/// Claims and runs ingest jobs.
#[derive(Clone)]
pub struct Worker {
    ingestor: Ingestor,
    uploads: UploadStore,
    options: WorkerOptions,
    observer: Arc<dyn JobObserver>,
    wake: Arc<Notify>,
}

impl Worker {
    pub fn new(
        ingestor: Ingestor,
        uploads: UploadStore,
        options: WorkerOptions,
        observer: Arc<dyn JobObserver>,
    ) -> Self {
        Self {
            ingestor,
            uploads,
            options,
            observer,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Shares `wake` with whoever queues jobs in this process (see [`Worker::wake`]).
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Builds the vector index over what was written (see `VectorStore::optimize`).
    pub async fn optimize(&self) -> Result<bool, IngestError> {
        Ok(self.ingestor.vectors().optimize().await?)
    }

    /// Wakes an idle loop of this worker (after queueing a job in this process).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Claims one ready job for `worker_id` and runs it; `None` when no job is ready.
    pub async fn run_once(
        &self,
        worker_id: &str,
    ) -> Result<Option<(JobRecord, JobOutcome)>, IngestError> {
        let meta = self.ingestor.meta();
        let Some(job) = meta.claim_job(worker_id, self.options.lease).await? else {
            return Ok(None);
        };
        tracing::info!(job = %job.id, document = ?job.document_id, attempt = job.attempts, "job claimed");
        self.observer.started(&job);
        let outcome = self.process(&job, worker_id).await?;
        match &outcome {
            JobOutcome::Failed { error, status } => {
                tracing::warn!(job = %job.id, %error, status = status.as_str(), "job attempt failed")
            }
            JobOutcome::LeaseLost => {
                tracing::warn!(job = %job.id, "lease lost: another worker runs the job")
            }
            _ => tracing::info!(job = %job.id, "job done"),
        }
        self.observer.finished(&job, &outcome);
        Ok(Some((job, outcome)))
    }

    /// Runs `slots` loops named `NAME/1`, `NAME/2`, ... until `shutdown` turns true; a loop
    /// finishes the job in hand first. Store errors are logged and retried after a pause.
    pub async fn run(&self, name: &str, slots: usize, shutdown: watch::Receiver<bool>) {
        let loops = (1..=slots.max(1)).map(|i| {
            let me = self.clone();
            let id = format!("{name}/{i}");
            let mut shutdown = shutdown.clone();
            async move {
                let mut since_optimize = 0usize;
                while !*shutdown.borrow() {
                    match me.run_once(&id).await {
                        Ok(Some(_)) => {
                            since_optimize += 1;
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => tracing::error!(worker = %id, error = %e, "ingest worker"),
                    }
                    // The queue is empty: index what this loop wrote.
                    if since_optimize > 0 {
                        since_optimize = 0;
                        if let Err(e) = me.ingestor.vectors().optimize().await {
                            tracing::error!(worker = %id, error = %e, "optimizing the vector index");
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(me.options.poll) => {}
                        _ = me.wake.notified() => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        });
        futures::future::join_all(loops).await;
    }

    async fn fail(
        &self,
        job: &JobRecord,
        worker_id: &str,
        error: String,
    ) -> Result<JobOutcome, IngestError> {
        let meta = self.ingestor.meta();
        // Integrators hear of a document whose job gave up: the event goes out only if this
        // attempt was the last one.
        let if_dead = match &job.document_id {
            Some(id) if job.attempts >= job.max_attempts => match meta.document(id).await? {
                Some(mut doc) => {
                    doc.error = Some(error.clone());
                    document_event(meta, DOCUMENT_FAILED, &doc, Some("failed")).await?
                }
                None => None,
            },
            _ => None,
        };
        let status = meta
            .fail_job_with_event(
                &job.id,
                worker_id,
                &error,
                self.options.retry_base,
                if_dead.as_ref(),
            )
            .await?;
        Ok(match status {
            Some(status) => JobOutcome::Failed { error, status },
            None => JobOutcome::LeaseLost,
        })
    }

    /// The webhook event a processed job reports (recorded with its completion): its
    /// document ingested, or failed; none when the content was unchanged.
    async fn outcome_event(
        &self,
        job: &JobRecord,
        outcome: &FileOutcome,
    ) -> Result<Option<NewEvent>, IngestError> {
        let event = match outcome {
            FileOutcome::Ingested { .. } => DOCUMENT_INGESTED,
            FileOutcome::Failed { .. } => DOCUMENT_FAILED,
            FileOutcome::Unchanged => return Ok(None),
        };
        let meta = self.ingestor.meta();
        let Some(doc_id) = &job.document_id else {
            return Ok(None);
        };
        if !meta.records_event(event) {
            return Ok(None);
        }
        match meta.document(doc_id).await? {
            Some(doc) => document_event(meta, event, &doc, None).await,
            None => Ok(None),
        }
    }

    async fn process(&self, job: &JobRecord, worker_id: &str) -> Result<JobOutcome, IngestError> {
        let meta = self.ingestor.meta().clone();
        if job.kind != INGEST_JOB {
            return self
                .fail(job, worker_id, format!("unknown job kind '{}'", job.kind))
                .await;
        }
        if let Some(doc_id) = &job.document_id {
            match meta.document(doc_id).await? {
                Some(doc) if doc.status != "deleting" => {}
                _ => {
                    meta.complete_job(&job.id, worker_id, Some("the document was deleted"))
                        .await?;
                    return Ok(JobOutcome::Skipped);
                }
            }
            // A worker that died on this job left its version half-written.
            if job.attempts > 1 {
                recover_document(&meta, self.ingestor.vectors().as_ref(), doc_id).await?;
            }
        }
        let payload: IngestJob = match serde_json::from_value(job.payload.clone()) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .fail(job, worker_id, format!("unreadable job payload: {e}"))
                    .await;
            }
        };

        let (tx, rx) = watch::channel((0usize, 0usize));
        let progress: Arc<ProgressFn> = Arc::new(move |done, total| {
            let _ = tx.send((done, total));
        });
        let work = self
            .ingestor
            .ingest_stored_with_progress(&payload.content, Some(progress));
        let last = rx.clone();
        let beat = heartbeat(&meta, &job.id, worker_id, self.options.lease, rx);
        tokio::select! {
            result = work => match result {
                Ok(outcome) => {
                    let note = match &outcome {
                        FileOutcome::Failed { reason } => Some(reason.as_str()),
                        _ => None,
                    };
                    let (done, total) = *last.borrow();
                    meta.job_progress(&job.id, worker_id, done as i64, total as i64)
                        .await?;
                    let event = self.outcome_event(job, &outcome).await?;
                    if !meta
                        .complete_job_with_event(&job.id, worker_id, note, event.as_ref())
                        .await?
                    {
                        return Ok(JobOutcome::LeaseLost);
                    }
                    if let Some(sha) = &payload.previous_sha {
                        self.uploads.release(&meta, sha).await;
                    }
                    Ok(JobOutcome::Processed(outcome))
                }
                Err(e) => {
                    if let Some(doc_id) = &job.document_id
                        && let Err(r) =
                            recover_document(&meta, self.ingestor.vectors().as_ref(), doc_id).await
                    {
                        tracing::error!(error = %r, "repairing the document after a failed attempt");
                    }
                    self.fail(job, worker_id, e.to_string()).await
                }
            },
            () = beat => Ok(JobOutcome::LeaseLost),
        }
    }
}

/// Renews the lease every third of it, with the latest progress; returns only when the lease
/// is lost. A store error is logged and the next beat tries again.
async fn heartbeat(
    meta: &MetaStore,
    job_id: &str,
    worker_id: &str,
    lease: Duration,
    progress: watch::Receiver<(usize, usize)>,
) {
    let every = (lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let (done, total) = *progress.borrow();
        let beat = async {
            meta.job_progress(job_id, worker_id, done as i64, total as i64)
                .await?;
            meta.heartbeat_job(job_id, worker_id, lease).await
        };
        match beat.await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::error!(job = job_id, error = %e, "heartbeat failed; retrying"),
        }
    }
}
