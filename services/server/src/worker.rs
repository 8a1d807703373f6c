//! The server's own ingest worker: in the embedded default (and wherever
//! `worker.in_server` is set) one worker runs in this process, taking the jobs that the
//! application layer queues (`enclave_corpus::queue`), and counts what it does in the metrics.

use std::sync::Arc;
use std::time::Duration;

use enclave_ingest::FileOutcome;
use enclave_ingest::uploads::UploadStore;
use enclave_ingest::worker::{JobObserver, JobOutcome, Worker, WorkerOptions};
use enclave_settings::WorkerSettings;
use enclave_storage::JobRecord;
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;
use crate::state::{Loading, SearchParts};

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
