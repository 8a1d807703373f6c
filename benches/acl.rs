//! Access-list bench: search latency when document access lists filter inside the vector
//! search, against the same searches without a filter, in the same run.
//!
//! The corpus is the search bench's (real chunks of the Debian PDFs, grown to `--size` with
//! noisy copies, documents of 100 chunks) in one collection, with access lists as an
//! organisation has them: `--users` people in `--groups` groups (each person in 1 to 5
//! groups), and each document public (`--public` share) or readable by 1 to 3 groups and 0 to
//! 2 people. The queries are the FAQ set's questions; each runs through `Retriever::search`
//! (hybrid, the default) as an administrator (no access filter: the baseline) and as a random
//! person (the filter of their access tokens: `public`, their user, their groups), and the
//! table shows p50/p99 and the ratio to the baseline, on the embedded store (as written, then
//! indexed) and on a Qdrant server (`--no-qdrant` skips it).
//!
//! ```text
//! cargo bench --bench acl                         # 100k chunks, 1,000 users, 200 groups
//! cargo bench --bench acl -- --size 20000 --base 2000
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

mod common;

use anyhow::Context;
use clap::Parser;
use common::synthetic::{Base, CHUNKS_PER_DOCUMENT};
use common::{corpus_dir, embedder, faq_questions, settings};
use enclave_retrieval::{RetrievalOptions, Retriever, SearchRequest};
use enclave_storage::local_qdrant::QdrantProcess;
use enclave_storage::{
    EdgeVectorStore, MetaStore, QdrantServerConfig, QdrantServerStore, VectorStore, WriteOrdering,
    copy_points,
};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

const ENCLAVE: &str = env!("CARGO_BIN_EXE_enclave");

#[derive(Debug, Parser)]
#[command(name = "acl-bench")]
struct Args {
    /// Folder of PDFs (default `$ENCLAVE_CORPUS_DIR`, else ~/.cache/enclave/corpus).
    #[arg(long, env = "ENCLAVE_BENCH_CORPUS")]
    corpus: Option<PathBuf>,
    /// Real chunks to embed; the size is reached with noisy copies of them.
    #[arg(long, default_value_t = 4000)]
    base: usize,
    /// Chunks in the corpus.
    #[arg(long, default_value_t = 100_000)]
    size: usize,
    /// People.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Groups.
    #[arg(long, default_value_t = 200)]
    groups: usize,
    /// Share of public documents.
    #[arg(long, default_value_t = 0.3)]
    public: f64,
    /// Standard deviation of the noise on copies' dense vectors.
    #[arg(long, default_value_t = 0.015)]
    noise: f32,
    /// Questions of the FAQ set to run (each as the baseline and as a person).
    #[arg(long, default_value_t = 100)]
    queries: usize,
    /// Skip the Qdrant server rows.
    #[arg(long)]
    no_qdrant: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A person's access tokens, as `Actor::access_tokens` makes them.
fn person_tokens(rng: &mut StdRng, user: usize, groups: usize) -> Vec<String> {
    let mut t = vec!["public".to_string(), format!("user:u{user}")];
    for _ in 0..rng.random_range(1..=5) {
        t.push(format!("group:g{}", rng.random_range(0..groups)));
    }
    t.sort();
    t.dedup();
    t
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

struct Row {
    store: &'static str,
    base: (f64, f64),
    filtered: (f64, f64),
    hits: (f64, f64),
}

async fn measure(
    retriever: &Retriever,
    questions: &[String],
    people: &[Vec<String>],
    rng: &mut StdRng,
) -> anyhow::Result<((f64, f64), (f64, f64), (f64, f64))> {
    let mut base = Vec::new();
    let mut filtered = Vec::new();
    let (mut base_hits, mut filtered_hits) = (0usize, 0usize);
    // One warm-up round.
    for q in questions.iter().take(5) {
        let _ = retriever.search(&request(q, Vec::new())).await?;
    }
    for q in questions {
        let started = Instant::now();
        base_hits += retriever
            .search(&request(q, Vec::new()))
            .await?
            .passages
            .len();
        base.push(started.elapsed().as_secs_f64() * 1000.0);
        let tokens = people.choose(rng).unwrap().clone();
        let started = Instant::now();
        filtered_hits += retriever.search(&request(q, tokens)).await?.passages.len();
        filtered.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    base.sort_by(f64::total_cmp);
    filtered.sort_by(f64::total_cmp);
    let n = questions.len().max(1) as f64;
    Ok((
        (percentile(&base, 0.5), percentile(&base, 0.99)),
        (percentile(&filtered, 0.5), percentile(&filtered, 0.99)),
        (base_hits as f64 / n, filtered_hits as f64 / n),
    ))
}

fn request(q: &str, access: Vec<String>) -> SearchRequest {
    SearchRequest {
        query: q.to_string(),
        collections: Vec::new(),
        mode: None,
        limit: 10,
        scope: Default::default(),
        access,
        expand_neighbours: false,
        fusion: None,
        expansion: None,
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = settings();
    let embedder = embedder(&settings).await?;
    let corpus = args.corpus.clone().unwrap_or_else(corpus_dir);
    let base = Base::build(&corpus, args.base, &settings, &embedder, ENCLAVE).await?;
    let questions = faq_questions(args.queries)?;
    let mut rng = StdRng::seed_from_u64(42);
    let people: Vec<Vec<String>> = (0..args.users)
        .map(|u| person_tokens(&mut rng, u, args.groups))
        .collect();
    let documents = args.size.div_ceil(CHUNKS_PER_DOCUMENT);
    let acl: Vec<Vec<String>> = (0..documents)
        .map(|_| {
            if rng.random_bool(args.public) {
                return vec!["public".to_string()];
            }
            let mut t = Vec::new();
            for _ in 0..rng.random_range(1..=3) {
                t.push(format!("group:g{}", rng.random_range(0..args.groups)));
            }
            for _ in 0..rng.random_range(0..=2) {
                t.push(format!("user:u{}", rng.random_range(0..args.users)));
            }
            t
        })
        .collect();

    let tmp = tempfile::tempdir()?;
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        tmp.path().join("enclave.db").display()
    );
    let meta = MetaStore::connect(&db_url, 4).await?;
    let collection = meta.ensure_collection("bench").await?;
    let edge: Arc<dyn VectorStore> = Arc::new(EdgeVectorStore::open(
        &tmp.path().join("vectors"),
        settings.embedding.dimension,
    )?);
    eprintln!("writing {} chunks in {documents} documents", args.size);
    let (mut all, mut ids) = (Vec::new(), Vec::new());
    base.write_chunks(
        &meta,
        edge.as_ref(),
        &collection.id,
        &mut all,
        &mut ids,
        args.noise,
        args.size,
        &|doc| acl[doc].clone(),
    )
    .await?;
    drop(all);
    let options = RetrievalOptions::from(&settings.retrieval);
    let mut rows = Vec::new();
    for state in ["as written", "indexed"] {
        if state == "indexed" {
            eprintln!("building the HNSW index");
            edge.optimize().await?;
        }
        let retriever = Retriever::new(
            meta.clone(),
            edge.clone(),
            embedder.clone(),
            options.clone(),
        )?;
        eprintln!("embedded store, {state}: measuring");
        let (b, f, hits) = measure(&retriever, &questions, &people, &mut rng).await?;
        rows.push(Row {
            store: if state == "indexed" {
                "qdrant-edge, indexed"
            } else {
                "qdrant-edge, as written"
            },
            base: b,
            filtered: f,
            hits,
        });
    }
    let _node = if args.no_qdrant {
        None
    } else {
        let node = QdrantProcess::standalone(&tmp.path().join("qdrant"))
            .context("starting the Qdrant server (ENCLAVE_QDRANT_DIR)")?;
        let server: Arc<dyn VectorStore> = Arc::new(QdrantServerStore::new(QdrantServerConfig {
            url: node.grpc_url(),
            api_key: None,
            collection: "bench_acl".into(),
            dimension: settings.embedding.dimension,
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            write_ordering: WriteOrdering::Medium,
            timeout: std::time::Duration::from_secs(60),
            connect_timeout: std::time::Duration::from_secs(5),
        })?);
        eprintln!("copying the points to a Qdrant server");
        copy_points(edge.as_ref(), server.as_ref(), 1000).await?;
        // Let the server index what it was given.
        tokio::time::sleep(std::time::Duration::from_secs(20)).await;
        let retriever = Retriever::new(
            meta.clone(),
            server.clone(),
            embedder.clone(),
            options.clone(),
        )?;
        eprintln!("Qdrant server: measuring");
        let (b, f, hits) = measure(&retriever, &questions, &people, &mut rng).await?;
        rows.push(Row {
            store: "Qdrant server",
            base: b,
            filtered: f,
            hits,
        });
        Some(node)
    };
    println!(
        "\n### Search with access-list filters: {} chunks, {} people, {} groups, {:.0}% public documents, {} queries\n",
        args.size,
        args.users,
        args.groups,
        args.public * 100.0,
        questions.len()
    );
    println!(
        "| store | no filter p50 / p99 (ms) | as a person p50 / p99 (ms) | ratio p50 | ratio p99 | passages per query (all / person) |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2}x | {:.2}x | {:.1} / {:.1} |",
            r.store,
            r.base.0,
            r.base.1,
            r.filtered.0,
            r.filtered.1,
            r.filtered.0 / r.base.0,
            r.filtered.1 / r.base.1,
            r.hits.0,
            r.hits.1
        );
    }
    println!(
        "\nThe goal is a p50 ratio under 1.2x. Both columns include embedding the query; the \
         filter runs inside the vector search (dense and BM25), never after it."
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}
