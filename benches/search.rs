//! Search benchmark: a program (not a timed test) that measures search latency and memory at
//! growing corpus sizes and prints Markdown tables.
//!
//! The corpus: real chunks from a sample of the Debian PDFs (extracted by the product's
//! isolated PDF path, chunked by the default `Chunker`, embedded by the default embedding model
//! with the title prefix the pipeline uses), then grown to each size with synthetic copies:
//! copy *k* of a real chunk keeps its text and BM25 vector and moves its dense vector by
//! Gaussian noise (`--noise`, about 0.93 cosine to the original by default), so that every size
//! has the distribution of real text without embedding 100,000 chunks. Documents of 100 chunks
//! each are written to a fresh embedded store (SQLite + qdrant-edge), rows and points, exactly
//! as ingest writes them.
//!
//! At each size, twice (as written, then after `VectorStore::optimize`, which builds the HNSW
//! index), a fresh child process opens the stores and the embedding model and runs every
//! query through `Retriever::search` in each mode: latency p50/p99 with the query embedding
//! included, then the dense vector search alone. The child's resident memory after the queries
//! and its peak are the memory columns; a child over empty stores is the baseline row. Recall@10
//! of the store's dense search against an exact scan over the same vectors (computed here, in
//! plain Rust) shows what the index costs in accuracy, and the exact scan's own latency is the
//! baseline of the dense column.
//!
//! The same points are then copied into a Qdrant server (a local node started from
//! `shared/qdrant`, `ENCLAVE_QDRANT_DIR`), and once the server has indexed them the same
//! queries run through the same `Retriever` on the Qdrant server backend: the "qdrant server"
//! rows, with the server process's own memory in a note (`--no-qdrant` skips them).
//!
//! The queries are the answerable questions of the committed Debian FAQ set
//! (`eval/debian-faq.jsonl`).
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/enclave/target
//! cargo bench --bench search                                  # 10k and 100k: about 10 min
//! cargo bench --bench search -- --sizes 2000,10000 --base 1000 # a quick run
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::synthetic;

use anyhow::{Context, bail};
use clap::Parser;
use common::{corpus_dir, embedder, faq_questions, settings};
use enclave_embed::Embedder;
use enclave_retrieval::{RetrievalOptions, Retriever, SearchMode, SearchRequest};
use enclave_storage::local_qdrant::QdrantProcess;
use enclave_storage::{
    EdgeVectorStore, MetaStore, QdrantServerConfig, QdrantServerStore, VectorFilter, VectorQuery,
    VectorStore, WriteOrdering,
};
use serde::{Deserialize, Serialize};

/// The Enclave binary built with this bench; `enclave extract-pdf` is its PDF child.
const ENCLAVE: &str = env!("CARGO_BIN_EXE_enclave");
const CHILD_ARG: &str = "__search-child";
const TOP: usize = 10;

/// Search benchmark: latency and memory of hybrid, dense and BM25 search at growing sizes.
#[derive(Debug, Parser)]
#[command(name = "search-bench")]
struct Args {
    /// Folder of PDFs (default `$ENCLAVE_CORPUS_DIR`, else ~/.cache/enclave/corpus).
    #[arg(long, env = "ENCLAVE_BENCH_CORPUS")]
    corpus: Option<PathBuf>,
    /// Real chunks to embed; the sizes are reached with noisy copies of them.
    #[arg(long, env = "ENCLAVE_BENCH_BASE", default_value_t = 4000)]
    base: usize,
    /// Corpus sizes in chunks, ascending, comma-separated.
    #[arg(
        long,
        env = "ENCLAVE_BENCH_SIZES",
        value_delimiter = ',',
        default_value = "10000,100000"
    )]
    sizes: Vec<usize>,
    /// Questions asked at each size (the first N answerable ones of the FAQ set).
    #[arg(long, env = "ENCLAVE_BENCH_QUERIES", default_value_t = 100)]
    queries: usize,
    /// Standard deviation of the noise added to each dense component of a copy.
    #[arg(long, env = "ENCLAVE_BENCH_NOISE", default_value_t = 0.02)]
    noise: f32,
    /// Skip the Qdrant server rows.
    #[arg(long)]
    no_qdrant: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What a child measured.
#[derive(Debug, Serialize, Deserialize)]
struct ChildReport {
    /// Per mode (dense, bm25, hybrid): latencies of `Retriever::search`, ms.
    modes: Vec<(String, Vec<f64>)>,
    /// Latencies of the dense vector search alone (no embedding), ms.
    vector_only: Vec<f64>,
    rss_kib: u64,
    peak_kib: u64,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if argv.get(1).is_some_and(|a| a == CHILD_ARG) {
        let dir = PathBuf::from(argv.get(2).context("child: data folder")?);
        let queries = argv.get(3).context("child: queries")?.to_string_lossy();
        let backend = argv.get(4).context("child: backend")?.to_string_lossy();
        let report = runtime.block_on(child(&dir, &queries, &backend))?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    runtime.block_on(run(Args::parse()))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn p50_p99(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (percentile(&s, 0.5), percentile(&s, 0.99))
}

fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes allocated on disk under `path`.
fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0)
    } else {
        // Allocated blocks: sparse memory-mapped files count what they hold.
        std::os::unix::fs::MetadataExt::blocks(&meta) * 512
    }
}

/// Exact top-k by cosine (vectors are unit length): indexes into `all`.
fn exact_top(all: &[Vec<f32>], q: &[f32], k: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = all
        .iter()
        .enumerate()
        .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().map(|(_, i)| i).collect()
}

struct Accuracy {
    recall: f64,
    exact_ms: Vec<f64>,
}

/// Recall@10 of the store's dense search against the exact scan, and the scan's latency.
async fn accuracy(
    vectors: &dyn VectorStore,
    all_dense: &[Vec<f32>],
    ids: &[String],
    query_vectors: &[Vec<f32>],
) -> anyhow::Result<Accuracy> {
    let mut found = 0usize;
    let mut wanted = 0usize;
    let mut exact_ms = Vec::new();
    for q in query_vectors {
        let started = Instant::now();
        let exact = exact_top(all_dense, q, TOP);
        exact_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let hits = vectors
            .search(VectorQuery::Dense(q.clone()), &VectorFilter::default(), TOP)
            .await?;
        wanted += exact.len();
        found += exact
            .iter()
            .filter(|&&i| hits.iter().any(|h| h.id == ids[i]))
            .count();
    }
    Ok(Accuracy {
        recall: found as f64 / wanted.max(1) as f64,
        exact_ms,
    })
}

/// The vector store a child measures: `edge`, or `qdrant URL COLLECTION`.
fn open_vectors(dir: &Path, backend: &str) -> anyhow::Result<Arc<dyn VectorStore>> {
    let dimension = settings().embedding.dimension;
    match backend.split(' ').collect::<Vec<_>>().as_slice() {
        ["edge"] => Ok(Arc::new(EdgeVectorStore::open(
            &dir.join("vectors"),
            dimension,
        )?)),
        ["qdrant", url, collection] => Ok(Arc::new(QdrantServerStore::new(server_config(
            url, collection, dimension,
        ))?)),
        _ => bail!("unknown backend '{backend}'"),
    }
}

fn server_config(url: &str, collection: &str, dimension: usize) -> QdrantServerConfig {
    QdrantServerConfig {
        url: url.to_string(),
        api_key: None,
        collection: collection.to_string(),
        dimension,
        shard_number: 1,
        replication_factor: 1,
        write_consistency_factor: 1,
        write_ordering: WriteOrdering::Medium,
        timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
    }
}

/// Waits until the Qdrant server has indexed the collection (status green).
async fn server_indexed(http_url: &str, collection: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let info: serde_json::Value = client
            .get(format!("{http_url}/collections/{collection}"))
            .send()
            .await?
            .json()
            .await?;
        if info["result"]["status"] == "green" {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the Qdrant server did not finish indexing: {info}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn process_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn child(dir: &Path, queries: &str, backend: &str) -> anyhow::Result<ChildReport> {
    let settings = settings();
    let meta = MetaStore::connect(
        &format!("sqlite://{}?mode=rwc", dir.join("enclave.db").display()),
        4,
    )
    .await?;
    let vectors = open_vectors(dir, backend)?;
    let embedder = embedder(&settings).await?;
    let retriever = Retriever::new(
        meta,
        Arc::clone(&vectors),
        embedder.clone(),
        RetrievalOptions::default(),
    )?;
    let questions = faq_questions(queries.parse()?)?;
    // One warm-up query per mode: the first search maps the store's files.
    let mut modes = Vec::new();
    for mode in [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid] {
        let mut times = Vec::new();
        for (i, q) in questions.iter().enumerate() {
            let request = SearchRequest {
                query: q.clone(),
                mode: Some(mode),
                limit: TOP,
                ..Default::default()
            };
            let started = Instant::now();
            retriever.search(&request).await?;
            if i > 0 || questions.len() == 1 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        modes.push((mode.to_string(), times));
    }
    let query_vectors = embedder.embed(questions.clone()).await?;
    let mut vector_only = Vec::new();
    for q in &query_vectors {
        let started = Instant::now();
        vectors
            .search(
                VectorQuery::Dense(q.clone()),
                &VectorFilter::default(),
                TOP * RetrievalOptions::default().candidates_factor,
            )
            .await?;
        vector_only.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(ChildReport {
        modes,
        vector_only,
        rss_kib: memory_kib("VmRSS:"),
        peak_kib: memory_kib("VmHWM:"),
    })
}

fn run_child(dir: &Path, queries: usize, backend: &str) -> anyhow::Result<ChildReport> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg(CHILD_ARG)
        .arg(dir)
        .arg(queries.to_string())
        .arg(backend)
        .output()
        .context("starting the measuring child")?;
    if !out.status.success() {
        bail!(
            "measuring child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("no report from the child")?;
    Ok(serde_json::from_str(line)?)
}

struct Row {
    size: usize,
    state: &'static str,
    report: ChildReport,
    recall: Option<f64>,
    exact_ms: Vec<f64>,
    disk: u64,
    optimize_s: Option<f64>,
    /// The Qdrant server process's resident memory (server rows).
    server_rss_kib: Option<u64>,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = settings();
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let embedder = embedder(&settings).await?;
    let corpus = args.corpus.clone().unwrap_or_else(corpus_dir);
    let base = synthetic::Base::build(&corpus, args.base, &settings, &embedder, ENCLAVE).await?;
    let questions = faq_questions(args.queries)?;
    let query_vectors = embedder.embed(questions.clone()).await?;
    drop(embedder);

    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    let db_url = format!("sqlite://{}?mode=rwc", dir.join("enclave.db").display());
    let mut rows = Vec::new();

    eprintln!("baseline: empty stores");
    {
        let meta = MetaStore::connect(&db_url, 4).await?;
        let vectors = EdgeVectorStore::open(&dir.join("vectors"), settings.embedding.dimension)?;
        meta.ensure_collection("bench").await?;
        drop(vectors);
        meta.close().await;
    }
    rows.push(Row {
        size: 0,
        state: "empty",
        report: run_child(&dir, args.queries, "edge")?,
        recall: None,
        exact_ms: Vec::new(),
        disk: dir_size(&dir),
        optimize_s: None,
        server_rss_kib: None,
    });
    let qdrant = if args.no_qdrant {
        None
    } else {
        Some(
            QdrantProcess::standalone(&tmp.path().join("qdrant-server"))
                .context("starting the Qdrant server (ENCLAVE_QDRANT_DIR)")?,
        )
    };
    let server_collection = "bench_chunks";

    let mut all_dense: Vec<Vec<f32>> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for &size in &sizes {
        eprintln!("size {size}: writing");
        let meta = MetaStore::connect(&db_url, 4).await?;
        let collection = meta.ensure_collection("bench").await?;
        let vectors = EdgeVectorStore::open(&dir.join("vectors"), settings.embedding.dimension)?;
        base.write_chunks(
            &meta,
            &vectors,
            &collection.id,
            &mut all_dense,
            &mut ids,
            args.noise,
            size,
            &|_| Vec::new(),
        )
        .await?;
        let acc = accuracy(&vectors, &all_dense, &ids, &query_vectors).await?;
        drop(vectors);
        meta.close().await;
        eprintln!("size {size}: measuring as written");
        rows.push(Row {
            size,
            state: "as written",
            report: run_child(&dir, args.queries, "edge")?,
            recall: Some(acc.recall),
            exact_ms: acc.exact_ms,
            disk: dir_size(&dir),
            optimize_s: None,
            server_rss_kib: None,
        });

        eprintln!("size {size}: optimizing");
        let vectors = EdgeVectorStore::open(&dir.join("vectors"), settings.embedding.dimension)?;
        let started = Instant::now();
        vectors.optimize().await?;
        let optimize_s = started.elapsed().as_secs_f64();
        let acc = accuracy(&vectors, &all_dense, &ids, &query_vectors).await?;
        eprintln!("size {size}: measuring optimized ({optimize_s:.0} s to optimize)");
        let edge_disk = dir_size(&dir.join("vectors")) + dir_size(&dir.join("enclave.db"));
        // The same points on the Qdrant server, indexed by the server itself.
        let server = match &qdrant {
            Some(node) => {
                let server = QdrantServerStore::new(server_config(
                    &node.grpc_url(),
                    server_collection,
                    settings.embedding.dimension,
                ))?;
                let started = Instant::now();
                let copied = enclave_storage::copy_points(&vectors, &server, 512).await?;
                server_indexed(&node.http_url(), server_collection).await?;
                let index_s = started.elapsed().as_secs_f64();
                eprintln!(
                    "size {size}: {copied} points on the Qdrant server, indexed in {index_s:.0} s"
                );
                Some((node, server, index_s))
            }
            None => None,
        };
        drop(vectors);
        rows.push(Row {
            size,
            state: "optimized",
            report: run_child(&dir, args.queries, "edge")?,
            recall: Some(acc.recall),
            exact_ms: acc.exact_ms,
            disk: edge_disk,
            optimize_s: Some(optimize_s),
            server_rss_kib: None,
        });
        let Some((node, server, index_s)) = server else {
            continue;
        };
        eprintln!("size {size}: measuring the Qdrant server");
        let server_acc = accuracy(&server, &all_dense, &ids, &query_vectors).await?;
        let backend = format!("qdrant {} {server_collection}", node.grpc_url());
        rows.push(Row {
            size,
            state: "qdrant server",
            report: run_child(&dir, args.queries, &backend)?,
            recall: Some(server_acc.recall),
            exact_ms: server_acc.exact_ms,
            disk: dir_size(&tmp.path().join("qdrant-server")) + dir_size(&dir.join("enclave.db")),
            optimize_s: Some(index_s),
            server_rss_kib: node.pid().map(process_rss_kib),
        });
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    print_report(&args, base.len(), questions.len(), &rows);
    println!(
        "\nLoad average (1 min) before {}, after {}; {} CPUs.",
        load_before.split_whitespace().next().unwrap_or("?"),
        load_after.split_whitespace().next().unwrap_or("?"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}

fn print_report(args: &Args, base: usize, queries: usize, rows: &[Row]) {
    println!("\n## Search latency and memory\n");
    println!(
        "{base} real chunks from the Debian PDFs, grown with noisy copies (noise {}); {queries} \
         questions of the Debian FAQ set per mode; top {TOP}. Latency of `Retriever::search` \
         in ms, query embedding included (p50 / p99). Memory: resident set of a process that \
         opened the stores and the embedding model and ran every query, and its peak.\n",
        args.noise
    );
    println!(
        "| chunks | store | dense p50 / p99 | bm25 p50 / p99 | hybrid p50 / p99 | RSS MiB | peak MiB | on disk MiB |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let mode = |name: &str| {
            r.report
                .modes
                .iter()
                .find(|(m, _)| m == name)
                .map(|(_, t)| p50_p99(t))
                .map_or("-".to_string(), |(a, b)| format!("{a:.1} / {b:.1}"))
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            r.size,
            r.state,
            mode("dense"),
            mode("bm25"),
            mode("hybrid"),
            r.report.rss_kib as f64 / 1024.0,
            r.report.peak_kib as f64 / 1024.0,
            r.disk as f64 / 1024.0 / 1024.0
        );
    }
    println!("\n## Dense vector search alone against an exact scan\n");
    println!(
        "The store's dense search (top {}, the candidates a search asks for; no embedding) \
         beside an exact scan over the same vectors in plain Rust (one thread, top {TOP}). \
         Recall@{TOP}: share of the exact top {TOP} that the store returns.\n",
        TOP * RetrievalOptions::default().candidates_factor
    );
    println!(
        "| chunks | store | store p50 / p99 ms | exact scan p50 / p99 ms | store ÷ scan (p50) | recall@{TOP} | optimize / index s |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for r in rows.iter().filter(|r| r.size > 0) {
        let (s50, s99) = p50_p99(&r.report.vector_only);
        let (e50, e99) = p50_p99(&r.exact_ms);
        println!(
            "| {} | {} | {s50:.2} / {s99:.2} | {e50:.2} / {e99:.2} | {:.2} | {} | {} |",
            r.size,
            r.state,
            s50 / e50,
            r.recall.map_or("-".into(), |v| format!("{v:.3}")),
            r.optimize_s.map_or("-".into(), |v| format!("{v:.1}"))
        );
    }
    let servers: Vec<&Row> = rows.iter().filter(|r| r.server_rss_kib.is_some()).collect();
    if !servers.is_empty() {
        println!(
            "\n\"qdrant server\" rows: the same points on a local Qdrant 1.18.1 node (gRPC on \
             loopback), indexed by the server; \"on disk\" is its storage plus the SQLite file. \
             Hybrid ÷ edge (optimized), p50:"
        );
        for r in servers {
            let hybrid = |row: &Row| {
                row.report
                    .modes
                    .iter()
                    .find(|(m, _)| m == "hybrid")
                    .map_or(0.0, |(_, t)| p50_p99(t).0)
            };
            let edge = rows
                .iter()
                .find(|e| e.size == r.size && e.state == "optimized")
                .map_or(0.0, hybrid);
            println!(
                "- {} chunks: {:.2}x; the server process's resident memory {:.0} MiB",
                r.size,
                hybrid(r) / edge.max(1e-9),
                r.server_rss_kib.unwrap_or(0) as f64 / 1024.0
            );
        }
    }
}
