//! Replicas benchmark: a program (not a timed test) that measures concurrent search load
//! through 1 and through 2 `enclave serve` replicas sharing PostgreSQL and a Qdrant server,
//! and prints a Markdown table: throughput, latency p50/p99, and every answer that was not
//! 200 by status (429/503 are the server saying "later"; anything else is an error).
//!
//! Set-up, all real: a fresh PostgreSQL database, a Qdrant node started from `shared/qdrant`,
//! a sample of Debian PDFs ingested by `enclave ingest`, an API key, then the servers (the
//! binary, `worker.in_server = false`). The load: `--clients` concurrent clients, each sending
//! FAQ questions to `/api/v1/search` one after the other for `--seconds`, spread round-robin
//! over the replicas (a load balancer's job).
//!
//! ```text
//! export CARGO_TARGET_DIR=$HOME/.cache/enclave/target
//! cargo bench --bench replicas                     # 16 clients, 60 s per run
//! cargo bench --bench replicas -- --seconds 20 --files 4
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use anyhow::{Context, bail};
use clap::Parser;
use common::corpus_dir;
use enclave_storage::local_qdrant::QdrantProcess;

const ENCLAVE: &str = env!("CARGO_BIN_EXE_enclave");

#[derive(Debug, Parser)]
#[command(name = "replicas-bench")]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Debian PDFs ingested (the FAQ, then every Nth of the corpus).
    #[arg(long, default_value_t = 8)]
    files: usize,
    /// PostgreSQL server (a database is created for the run).
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

/// The environment every Enclave process of the run shares.
struct Deployment {
    dir: tempfile::TempDir,
    database_url: String,
    qdrant_url: String,
}

impl Deployment {
    fn command(&self) -> Command {
        let mut cmd = Command::new(ENCLAVE);
        cmd.env("ENCLAVE_DATA_DIR", self.dir.path())
            .env("ENCLAVE_DATABASE__URL", &self.database_url)
            .env("ENCLAVE_VECTORS__BACKEND", "qdrant")
            .env("ENCLAVE_VECTORS__URL", &self.qdrant_url)
            .env("ENCLAVE_WORKER__IN_SERVER", "false")
            .env("ENCLAVE_EMBEDDING__THREADS", "1")
            .env("ENCLAVE_SERVER__WORKERS", "2")
            .env("ENCLAVE_GENERATION__SLOTS", "1")
            .env(
                "ENCLAVE_GENERATION__MODEL",
                common::settings()
                    .models_dir
                    .join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"),
            );
        cmd
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.command().args(args).output()?;
        if !out.status.success() {
            bail!(
                "enclave {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

/// A running `enclave serve`, stopped when dropped.
struct Replica {
    child: Child,
    url: String,
}

impl Replica {
    fn start(d: &Deployment) -> anyhow::Result<Self> {
        let mut child = d
            .command()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("Enclave is listening on ")
            .with_context(|| format!("unexpected first line {line:?}"))?
            .to_string();
        Ok(Self { child, url })
    }

    async fn ready(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!("{} never became ready", self.url);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Load {
    latencies_ms: Vec<f64>,
    statuses: std::collections::BTreeMap<u16, usize>,
    failures: usize,
    seconds: f64,
}

async fn load(
    urls: &[String],
    key: &str,
    questions: &[String],
    clients: usize,
    seconds: u64,
) -> Load {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(clients)
        .build()
        .expect("an HTTP client");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, key) = (client.clone(), key.to_string());
            let urls = urls.to_vec();
            let questions = questions.to_vec();
            tokio::spawn(async move {
                let mut mine = Load::default();
                let mut i = c;
                while Instant::now() < deadline {
                    let url = &urls[i % urls.len()];
                    let q = &questions[i % questions.len()];
                    i += clients;
                    let sent = Instant::now();
                    let r = client
                        .post(format!("{url}/api/v1/search"))
                        .bearer_auth(&key)
                        .json(&serde_json::json!({"query": q, "limit": 5}))
                        .send()
                        .await;
                    match r {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let _ = r.bytes().await;
                            mine.latencies_ms
                                .push(sent.elapsed().as_secs_f64() * 1000.0);
                            *mine.statuses.entry(status).or_default() += 1;
                        }
                        Err(_) => mine.failures += 1,
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = Load::default();
    for t in tasks {
        let mine = t.await.expect("a load task");
        all.latencies_ms.extend(mine.latencies_ms);
        for (s, n) in mine.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
        all.failures += mine.failures;
    }
    all.seconds = started.elapsed().as_secs_f64();
    all
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sample(files: usize) -> anyhow::Result<Vec<PathBuf>> {
    let corpus = corpus_dir();
    let faq = corpus.join("debian-faq__FAQ__debian-faq.en.pdf");
    let mut pdfs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .with_context(|| format!("reading {}", corpus.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pdf") && *p != faq)
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 4 * 1024 * 1024))
        .collect();
    pdfs.sort();
    let stride = pdfs.len().div_ceil(files.max(1)).max(1);
    let mut picked = vec![faq];
    picked.extend(
        pdfs.into_iter()
            .step_by(stride)
            .take(files.saturating_sub(1)),
    );
    Ok(picked)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use sqlx::Connection;
    let args = Args::parse();
    let name = format!("enclave_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&args.postgres)
        .await
        .with_context(|| format!("connecting to {}", args.postgres))?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let qdrant_dir = tempfile::tempdir()?;
    let node = QdrantProcess::standalone(&qdrant_dir.path().join("node"))
        .context("starting the Qdrant server (ENCLAVE_QDRANT_DIR)")?;
    let base = args.postgres.rsplit_once('/').map_or("", |(b, _)| b);
    let d = Deployment {
        dir: tempfile::tempdir()?,
        database_url: format!("{base}/{name}"),
        qdrant_url: node.grpc_url(),
    };
    let result = measure(&args, &d).await;
    drop(d);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

async fn measure(args: &Args, d: &Deployment) -> anyhow::Result<()> {
    let files = sample(args.files)?;
    let docs = d.dir.path().join("docs");
    std::fs::create_dir_all(&docs)?;
    for f in &files {
        std::fs::copy(f, docs.join(f.file_name().context("a file name")?))?;
    }
    eprintln!("ingesting {} PDFs", files.len());
    let summary = d.run(&["ingest", "--json", docs.to_str().context("a UTF-8 path")?])?;
    let summary: serde_json::Value = serde_json::from_str(summary.trim())?;
    let key = d.run(&["keys", "create", "bench", "--role", "reader"])?;
    let key = key.trim().to_string();
    let questions = common::faq_questions(usize::MAX)?;

    let client = reqwest::Client::new();
    let replicas = [Replica::start(d)?, Replica::start(d)?];
    for r in &replicas {
        r.ready(&client).await?;
    }
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut rows = Vec::new();
    for n in [1usize, 2] {
        eprintln!(
            "{} clients for {} s through {n} replica(s)",
            args.clients, args.seconds
        );
        // Warm both replicas' connections and caches first.
        let _ = load(&urls[..n], &key, &questions, 2, 2).await;
        let mut l = load(&urls[..n], &key, &questions, args.clients, args.seconds).await;
        l.latencies_ms.sort_by(f64::total_cmp);
        rows.push((n, l));
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!(
        "\n## Concurrent search through 1 and 2 replicas\n\n{} PDFs ({} pages, {} chunks) on \
         PostgreSQL + a Qdrant 1.18.1 server; {} clients sending FAQ questions to \
         `/api/v1/search` (hybrid, top 5, query embedding included) for {} s, round-robin over \
         the replicas; each replica `enclave serve` with 2 HTTP workers and 1 embedding \
         thread. {} CPUs.\n",
        files.len(),
        summary["pages"],
        summary["chunks"],
        args.clients,
        args.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| replicas | requests | requests/s | vs 1 replica | p50 ms | p99 ms | 200 | 429/503 | other statuses | connection errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = rows
        .first()
        .map(|(_, l)| l.latencies_ms.len() as f64 / l.seconds);
    for (n, l) in &rows {
        let rps = l.latencies_ms.len() as f64 / l.seconds;
        let ok = l.statuses.get(&200).copied().unwrap_or(0);
        let later =
            l.statuses.get(&429).copied().unwrap_or(0) + l.statuses.get(&503).copied().unwrap_or(0);
        let other: usize = l
            .statuses
            .iter()
            .filter(|(s, _)| !matches!(s, 200 | 429 | 503))
            .map(|(_, n)| n)
            .sum();
        println!(
            "| {n} | {} | {rps:.1} | {} | {:.1} | {:.1} | {ok} | {later} | {other} | {} |",
            l.latencies_ms.len(),
            base.map_or("-".into(), |b| format!("{:.2}x", rps / b)),
            percentile(&l.latencies_ms, 50.0),
            percentile(&l.latencies_ms, 99.0),
            l.failures
        );
    }
    println!(
        "\nLoad average (1 min) before {}, after {}.",
        load_before.split_whitespace().next().unwrap_or("?"),
        load_after.split_whitespace().next().unwrap_or("?")
    );
    drop(replicas);
    Ok(())
}
