//! Worker-scaling benchmark: a program (not a timed test) that queues the same sample of real
//! Debian PDFs as ingest jobs in a fresh embedded store and lets one worker drain the queue
//! with 1, 2 and 4 slots (jobs at once), printing pages/s and the ratio to one slot.
//!
//! Each run is the product path: jobs in the SQLite queue, `enclave_ingest::worker::Worker`
//! claiming them with leases and heartbeats, PDFs extracted in `enclave extract-pdf` children,
//! one embedding model shared by the slots, points in qdrant-edge, and the index built when
//! the queue is empty (included in the time).
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/enclave/target
//! cargo bench --bench workers                      # 24 PDFs, slots 1,2,4: about 10 min on 2 cores
//! cargo bench --bench workers -- --files 8 --slots 1,2
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
        },
        max_file_bytes: settings.ingest.max_file_bytes,
        max_text_chars: settings.ingest.max_text_chars,
        parallel_documents: 1,
        embed_batch: settings.embedding.batch_size,
    };
    let ingestor = Ingestor::new(meta.clone(), vectors, embedder.clone(), chunker, options)?;
    let collection = meta.ensure_collection("bench").await?;
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
                collection_id: collection.id.clone(),
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
        enqueue(&meta, &doc, &job, 3).await?;
        documents.push(doc);
    }
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
        let c = meta.job_counts().await?;
        if c.queued == 0 && c.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(true);
    running.await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut pages = 0;
    let mut failed = 0;
    for id in &documents {
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
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
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
    println!(
        "\nLoad average (1 min) before {}, after {}.",
        load_before.split_whitespace().next().unwrap_or("?"),
        load_after.split_whitespace().next().unwrap_or("?")
    );
    Ok(())
}
