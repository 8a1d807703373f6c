//! Worker-scaling benchmark: a program (not a timed test) that queues the same sample of real
//! Debian PDFs as ingest jobs in a fresh embedded store and lets one worker drain the queue
//! with 1, 2 and 4 slots (jobs at once), printing pages/s and the ratio to one slot.
//!
//! Each run is the product path: jobs in the SQLite queue, `enclave_ingest::worker::Worker`
//! claiming them with leases and heartbeats, PDFs extracted in `enclave extract-pdf` children,
//! one embedding model shared by the slots, points in qdrant-edge, and the index built when
//! the queue is empty (included in the time).
//!
//! Then the scale-out path: the same PDFs queued in a fresh PostgreSQL database, drained by 1
//! and by 2 `enclave worker --drain` processes (the real binary) on a Qdrant server started
//! from `shared/qdrant`, beside one process on the embedded stores (SQLite + qdrant-edge): the
//! per-document overhead of the server backend, and how the queue spreads the jobs over the
//! processes (`jobs.last_worker`).
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/enclave/target
//! cargo bench --bench workers                      # 24 PDFs, slots 1,2,4: about 10 min on 2 cores
//! cargo bench --bench workers -- --files 16 --slots 1 --processes 1,2
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use anyhow::{Context, bail};
use clap::Parser;
use common::{corpus_dir, embedder, settings};
use enclave_embed::OnnxEmbedder;
use enclave_ingest::parse::pdf::PdfIsolation;
use enclave_ingest::uploads::UploadStore;
use enclave_ingest::worker::{IngestJob, NoObserver, Worker, WorkerOptions, enqueue};
use enclave_ingest::{Chunker, IngestOptions, Ingestor, StoredContent};
use enclave_settings::Settings;
use enclave_storage::local_qdrant::QdrantProcess;
use enclave_storage::{EdgeVectorStore, MetaStore, NewVersion, VectorStore};
use tokio::sync::watch;

const ENCLAVE: &str = env!("CARGO_BIN_EXE_enclave");

/// Worker-scaling benchmark: ingest throughput with 1, 2 and 4 slots.
#[derive(Debug, Parser)]
#[command(name = "workers-bench")]
struct Args {
    /// Folder of PDFs (default `$ENCLAVE_CORPUS_DIR`, else ~/.cache/enclave/corpus).
    #[arg(long, env = "ENCLAVE_BENCH_CORPUS")]
    corpus: Option<PathBuf>,
    /// PDFs in the sample (every Nth of the corpus, in file-name order).
    #[arg(long, env = "ENCLAVE_BENCH_FILES", default_value_t = 24)]
    files: usize,
    /// Slot counts to compare, comma-separated.
    #[arg(
        long,
        env = "ENCLAVE_BENCH_SLOTS",
        value_delimiter = ',',
        default_value = "1,2,4"
    )]
    slots: Vec<usize>,
    /// Worker process counts to compare on PostgreSQL + a Qdrant server (empty: skip).
    #[arg(
        long,
        env = "ENCLAVE_BENCH_PROCESSES",
        value_delimiter = ',',
        default_value = "1,2"
    )]
    processes: Vec<usize>,
    /// PostgreSQL server for the process runs (a database is created per run).
    #[arg(
        long,
        env = "ENCLAVE_TEST_PG",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn sample(args: &Args) -> anyhow::Result<Vec<PathBuf>> {
    let corpus = args.corpus.clone().unwrap_or_else(corpus_dir);
    let mut pdfs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .with_context(|| format!("reading {}", corpus.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("pdf")))
        // The two 2,415-page R manuals would be most of any sample holding one.
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 8 * 1024 * 1024))
        .collect();
    pdfs.sort();
    if pdfs.is_empty() {
        bail!(
            "no PDF in {} (scripts/test fetches the corpus)",
            corpus.display()
        );
    }
    let stride = pdfs.len().div_ceil(args.files.max(1)).max(1);
    Ok(pdfs.into_iter().step_by(stride).take(args.files).collect())
}

struct Run {
    slots: usize,
    seconds: f64,
    pages: i64,
    documents: usize,
    failed: usize,
}

/// Queues one ingest job per file, as uploads are queued; returns the document ids.
async fn queue_files(
    meta: &MetaStore,
    collection_id: &str,
    files: &[PathBuf],
) -> anyhow::Result<Vec<String>> {
    let mut documents = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let source_uri = format!("upload://bench/{name}");
        let doc = meta
            .queue_document(&NewVersion {
                collection_id: collection_id.to_string(),
                source_uri: source_uri.clone(),
                external_id: None,
                parent_id: None,
                title: name.clone(),
                mime_type: Some("application/pdf".into()),
                sha256: String::new(),
                byte_size: 0,
                metadata: serde_json::json!({}),
                tags: Vec::new(),
                access: Vec::new(),
            })
            .await?;
        let content = StoredContent {
            collection: "bench".into(),
            path: path.clone(),
            file_name: name,
            source_uri,
            external_id: None,
            title: None,
            tags: Vec::new(),
            access: Vec::new(),
            force: false,
        };
        let job = IngestJob {
            content,
            previous_sha: None,
        };
        enqueue(meta, &doc, &job, 3).await?;
        documents.push(doc);
    }
    Ok(documents)
}

/// Pages of the documents that are ready, and how many are not.
async fn outcome(meta: &MetaStore, documents: &[String]) -> anyhow::Result<(i64, usize)> {
    let (mut pages, mut failed) = (0, 0);
    for id in documents {
        let d = meta
            .document(id)
            .await?
            .context("a queued document vanished")?;
        if d.status == "ready" {
            pages += d.page_count;
        } else {
            failed += 1;
        }
    }
    Ok((pages, failed))
}

/// Where the process runs keep their stores.
enum Stores {
    Embedded,
    Server {
        database_url: String,
        qdrant_url: String,
        collection: String,
    },
}

struct ProcessRun {
    label: &'static str,
    processes: usize,
    seconds: f64,
    pages: i64,
    documents: usize,
    failed: usize,
    /// Jobs and pages per worker process.
    jobs_per_process: Vec<(usize, i64)>,
}

/// Drains the same queued PDFs with `processes` `enclave worker --drain` processes.
async fn run_processes(
    files: &[PathBuf],
    stores: &Stores,
    processes: usize,
    label: &'static str,
) -> anyhow::Result<ProcessRun> {
    let dir = tempfile::tempdir()?;
    let database_url = match stores {
        Stores::Embedded => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("enclave.db").display()
        ),
        Stores::Server { database_url, .. } => database_url.clone(),
    };
    let meta = MetaStore::connect(&database_url, 4).await?;
    let collection = meta.ensure_collection("bench").await?;
    let documents = queue_files(&meta, &collection.id, files).await?;
    let started = Instant::now();
    let mut children = Vec::new();
    // Processes on one machine share its cores: each embeds with its share of them.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = (cores / processes).max(1);
    for _ in 0..processes {
        let mut cmd = std::process::Command::new(ENCLAVE);
        cmd.args(["worker", "--drain"])
            .env("ENCLAVE_EMBEDDING__THREADS", threads.to_string())
            .env("ENCLAVE_DATA_DIR", dir.path())
            .env("ENCLAVE_DATABASE__URL", &database_url)
            .env("ENCLAVE_WORKER__POLL_MS", "50")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        if let Stores::Server {
            qdrant_url,
            collection,
            ..
        } = stores
        {
            cmd.env("ENCLAVE_VECTORS__BACKEND", "qdrant")
                .env("ENCLAVE_VECTORS__URL", qdrant_url)
                .env("ENCLAVE_VECTORS__COLLECTION", collection);
        }
        children.push(cmd.spawn().context("starting enclave worker")?);
    }
    for mut c in children {
        let status = tokio::task::spawn_blocking(move || c.wait()).await??;
        if !status.success() {
            bail!("a worker process failed: {status}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (pages, failed) = outcome(&meta, &documents).await?;
    // Jobs and pages per process (the process that ran each job last).
    let mut per_process: std::collections::BTreeMap<String, (usize, i64)> = Default::default();
    for j in meta.jobs(None, None, None, 1000, 0).await? {
        if let Some(w) = j.last_worker {
            let pages = match &j.document_id {
                Some(id) => meta.document(id).await?.map_or(0, |d| d.page_count),
                None => 0,
            };
            let e = per_process
                .entry(w.split('/').next().unwrap_or_default().to_string())
                .or_default();
            e.0 += 1;
            e.1 += pages;
        }
    }
    meta.close().await;
    Ok(ProcessRun {
        label,
        processes,
        seconds,
        pages,
        documents: documents.len(),
        failed,
        jobs_per_process: per_process.into_values().collect(),
    })
}

/// A fresh PostgreSQL database for one run, dropped afterwards by [`drop_database`].
async fn create_database(admin: &str) -> anyhow::Result<(String, String)> {
    use sqlx::Connection;
    let name = format!("enclave_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .with_context(|| format!("connecting to {admin} (--postgres)"))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    Ok((format!("{base}/{name}"), name))
}

async fn drop_database(admin: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// The process runs: one on the embedded stores, then each count on PostgreSQL + Qdrant.
async fn process_runs(args: &Args, files: &[PathBuf]) -> anyhow::Result<Vec<ProcessRun>> {
    let mut runs = Vec::new();
    eprintln!(
        "{} PDFs, 1 worker process on the embedded stores...",
        files.len()
    );
    runs.push(run_processes(files, &Stores::Embedded, 1, "SQLite + qdrant-edge").await?);
    let qdrant_dir = tempfile::tempdir()?;
    let node = QdrantProcess::standalone(&qdrant_dir.path().join("node"))
        .context("starting the Qdrant server (ENCLAVE_QDRANT_DIR)")?;
    for &n in &args.processes {
        eprintln!(
            "{} PDFs, {n} worker process(es) on PostgreSQL + Qdrant...",
            files.len()
        );
        let (url, name) = create_database(&args.postgres).await?;
        let stores = Stores::Server {
            database_url: url,
            qdrant_url: node.grpc_url(),
            collection: format!("bench_{}", uuid::Uuid::new_v4().simple()),
        };
        let run = run_processes(files, &stores, n, "PostgreSQL + Qdrant server").await;
        drop_database(&args.postgres, &name).await?;
        runs.push(run?);
    }
    Ok(runs)
}

fn print_process_runs(runs: &[ProcessRun]) {
    println!(
        "\n## Worker processes on the scale-out stores\n\nThe same PDFs queued in a fresh \
         database each time and drained by `enclave worker --drain` processes (the binary: each \
         loads its own embedding model and embeds with the cores divided among the processes); the time runs from starting the processes to the last \
         one exiting. Overhead per document: the difference to the embedded run, divided by \
         the documents.\n"
    );
    println!(
        "| stores | processes | documents | failed | pages | seconds | pages/s | vs embedded | overhead per document | jobs (pages) per process |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let base = runs
        .first()
        .map(|r| (r.pages as f64 / r.seconds, r.seconds));
    for r in runs {
        let pps = r.pages as f64 / r.seconds;
        let (ratio, overhead) = match base {
            Some((b, secs)) => (
                format!("{:.2}x", pps / b),
                format!("{:+.2} s", (r.seconds - secs) / r.documents.max(1) as f64),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.2} | {ratio} | {overhead} | {} |",
            r.label,
            r.processes,
            r.documents,
            r.failed,
            r.pages,
            r.seconds,
            pps,
            r.jobs_per_process
                .iter()
                .map(|(jobs, pages)| format!("{jobs} ({pages} p.)"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
}

async fn run_once(
    settings: &Settings,
    embedder: &OnnxEmbedder,
    files: &[PathBuf],
    slots: usize,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let meta = MetaStore::connect(
        &format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("enclave.db").display()
        ),
        4,
    )
    .await?;
    let vectors: Arc<dyn VectorStore> = Arc::new(EdgeVectorStore::open(
        &dir.path().join("vectors"),
        settings.embedding.dimension,
    )?);
    let chunker = Chunker::new(
        embedder.tokenizer(),
        settings.chunking.max_tokens,
        settings.chunking.overlap_tokens,
    )?;
    let options = IngestOptions {
        pdf: PdfIsolation {
            program: PathBuf::from(ENCLAVE),
            args: vec!["extract-pdf".into()],
            timeout: Duration::from_secs(settings.ingest.pdf_timeout_secs),
            memory_mb: 0,
        },
        ocr: enclave_ingest::parse::ocr::OcrOptions::default(),
        max_file_bytes: settings.ingest.max_file_bytes,
        max_text_chars: settings.ingest.max_text_chars,
        parallel_documents: 1,
        embed_batch: settings.embedding.batch_size,
        writer_lease: None,
    };
    let ingestor = Ingestor::new(meta.clone(), vectors, embedder.clone(), chunker, options)?;
    let collection = meta.ensure_collection("bench").await?;
    let documents = queue_files(&meta, &collection.id, files).await?;
    let worker = Worker::new(
        ingestor,
        UploadStore::new(dir.path().join("uploads"))?,
        WorkerOptions {
            poll: Duration::from_millis(50),
            ..WorkerOptions::default()
        },
        Arc::new(NoObserver),
    );
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let running = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.run("bench", slots, stopped).await })
    };
    loop {
        let c = meta.job_counts(None).await?;
        if c.queued == 0 && c.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    running.await?;
    let seconds = started.elapsed().as_secs_f64();
    let (pages, failed) = outcome(&meta, &documents).await?;
    meta.close().await;
    Ok(Run {
        slots,
        seconds,
        pages,
        documents: documents.len(),
        failed,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = settings();
    let files = sample(&args)?;
    let embedder = embedder(&settings).await?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut runs = Vec::new();
    for &slots in &args.slots {
        eprintln!("{} PDFs with {slots} slot(s)...", files.len());
        let r = run_once(&settings, &embedder, &files, slots).await?;
        eprintln!("  {:.1} s", r.seconds);
        runs.push(r);
    }
    println!(
        "\n## Ingest throughput by worker slots\n\n{} Debian PDFs queued as jobs in a fresh \
         embedded store each time, one worker process; the time runs from the first claim to \
         the empty queue (vector index built). {} CPUs.\n",
        files.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| slots | documents | failed | pages | seconds | pages/s | vs 1 slot |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let base = runs
        .iter()
        .find(|r| r.slots == 1)
        .map(|r| r.pages as f64 / r.seconds);
    for r in &runs {
        let pps = r.pages as f64 / r.seconds;
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.2} | {} |",
            r.slots,
            r.documents,
            r.failed,
            r.pages,
            r.seconds,
            pps,
            base.map_or("-".into(), |b| format!("{:.2}x", pps / b))
        );
    }
    if !args.processes.is_empty() {
        let process_runs = process_runs(&args, &files).await?;
        print_process_runs(&process_runs);
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nLoad average (1 min) before {}, after {}.",
        load_before.split_whitespace().next().unwrap_or("?"),
        load_after.split_whitespace().next().unwrap_or("?")
    );
    Ok(())
}
