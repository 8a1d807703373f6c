//! `enclave worker`: runs ingest jobs from the durable queue.

use std::process::ExitCode;
use std::sync::Arc;

use enclave_ingest::uploads::UploadStore;
use enclave_ingest::worker::{JobObserver, JobOutcome, NoObserver, Worker};
use enclave_server::worker::{worker_name, worker_options};
use enclave_settings::Settings;
use enclave_storage::JobRecord;
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Jobs run at once (default: worker.slots).
    #[arg(long)]
    slots: Option<usize>,
    /// Stop when the queue has no job ready instead of waiting for more.
    #[arg(long)]
    drain: bool,
}

/// Prints one line per finished job.
struct Printer;

impl JobObserver for Printer {
    fn finished(&self, job: &JobRecord, outcome: &JobOutcome) {
        let doc = job.document_id.as_deref().unwrap_or("-");
        match outcome {
            JobOutcome::Processed(o) => println!("job {} document {doc}: {o:?}", job.id),
            JobOutcome::Skipped => println!("job {} document {doc}: document deleted", job.id),
            JobOutcome::Failed { error, status } => println!(
                "job {} document {doc}: attempt {} failed ({}): {error}",
                job.id,
                job.attempts,
                status.as_str()
            ),
            JobOutcome::LeaseLost => println!("job {} document {doc}: lease lost", job.id),
        }
    }
}

pub async fn run(settings: &Settings, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let ingestor = crate::app::ingestor(settings).await?;
    let uploads = UploadStore::new(settings.uploads_dir())?;
    let observer: Arc<dyn JobObserver> = if args.drain {
        Arc::new(Printer)
    } else {
        Arc::new(NoObserver)
    };
    let worker = Worker::new(
        ingestor,
        uploads,
        worker_options(&settings.worker),
        observer,
    );
    let name = worker_name();
    if args.drain {
        let mut n = 0usize;
        while worker.run_once(&format!("{name}/1")).await?.is_some() {
            n += 1;
        }
        if n > 0 {
            worker.optimize().await?;
        }
        println!("{n} jobs run; none is ready");
        return Ok(ExitCode::SUCCESS);
    }
    let slots = args.slots.unwrap_or(settings.worker.slots).max(1);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
        eprintln!("stopping after the jobs in hand");
        let _ = stop.send(true);
    });
    eprintln!("worker {name}: {slots} slots, waiting for jobs");
    worker.run(&name, slots, stopped).await;
    Ok(ExitCode::SUCCESS)
}
