//! `enclave ingest`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use enclave_ingest::{FileOutcome, IngestObserver, IngestRequest};
use enclave_settings::Settings;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Files and folders to ingest (folders recursively).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Collection to ingest into (created if missing).
    #[arg(long, default_value = "default")]
    collection: String,
    /// Tag stored on every document of this run (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only this user may read the documents of this run, besides those the other
    /// `--allow-*` options name and the administrators of every collection (repeatable;
    /// without any `--allow-*`, everyone who reads the collection may read them).
    #[arg(long = "allow-user", value_name = "USER")]
    allow_users: Vec<String>,
    /// Members of this group may read the documents of this run (repeatable).
    #[arg(long = "allow-group", value_name = "GROUP")]
    allow_groups: Vec<String>,
    /// This API key (one that acts for no user) may read the documents of this run
    /// (repeatable).
    #[arg(long = "allow-key", value_name = "KEY")]
    allow_keys: Vec<String>,
    /// Process again documents whose last attempt failed, even if unchanged.
    #[arg(long)]
    retry_failed: bool,
    /// Make a new version of every document, even unchanged ones (re-index).
    #[arg(long)]
    force: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

struct Progress {
    bar: ProgressBar,
}

impl IngestObserver for Progress {
    fn discovered(&self, files: usize) {
        self.bar.set_length(files as u64);
    }

    fn finished(&self, source: &str, outcome: &FileOutcome) {
        let name = source.rsplit('/').next().unwrap_or(source);
        self.bar.set_message(name.to_string());
        if let FileOutcome::Failed { reason } = outcome {
            self.bar.println(format!("failed: {name}: {reason}"));
        }
        self.bar.inc(1);
    }
}

pub async fn run(settings: &Settings, args: IngestArgs) -> anyhow::Result<ExitCode> {
    // Readers by name become the same access tokens an upload's `allowed_*` fields do
    // (unknown names are refused before anything is read).
    let access = {
        let corpus = enclave_corpus::Corpus::metadata_only(crate::app::meta_store(settings).await?);
        let readers = enclave_corpus::Readers {
            users: args.allow_users.clone(),
            groups: args.allow_groups.clone(),
            keys: args.allow_keys.clone(),
        };
        let tokens = corpus.access_tokens(&readers).await;
        corpus.meta.close().await;
        tokens?
    };
    let ingestor = crate::app::ingestor(settings).await?;
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files ({per_sec}, eta {eta}) {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = Progress { bar };
    let request = IngestRequest {
        paths: args.paths,
        collection: args.collection.clone(),
        access,
        tags: args.tags,
        retry_failed: args.retry_failed,
        force: args.force,
    };
    let summary = ingestor.ingest(&request, &progress).await;
    progress.bar.finish_and_clear();
    let summary = summary?;
    let c = &summary.counts;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "collection": args.collection,
                "files": c.files,
                "ingested": c.ingested,
                "unchanged": c.unchanged,
                "failed": c.failed,
                "pages": c.pages,
                "chunks": c.chunks,
                "elapsed_s": summary.elapsed.as_secs_f64(),
                "pages_per_s": summary.pages_per_second(),
                "failures": summary.failures.iter().map(|(s, r)| serde_json::json!({"source": s, "reason": r})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!("Ingested into collection '{}':", args.collection);
        println!("  files      {:>8}", c.files);
        println!("  ingested   {:>8}", c.ingested);
        println!("  unchanged  {:>8}", c.unchanged);
        println!("  failed     {:>8}", c.failed);
        println!("  pages      {:>8}", c.pages);
        println!("  chunks     {:>8}", c.chunks);
        println!("  elapsed    {:>8.1} s", summary.elapsed.as_secs_f64());
        println!("  pages/s    {:>8.1}", summary.pages_per_second());
        if !summary.failures.is_empty() {
            println!("Failures:");
            for (source, reason) in &summary.failures {
                println!("  {source}: {reason}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
