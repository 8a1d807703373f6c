//! `enclave`: the command line of the Enclave knowledge service.

mod access_cmd;
mod app;
mod ask_cmd;
mod calibrate_cmd;
mod delete_cmd;
mod display;
mod eval_cmd;
mod ingest_cmd;
mod migrate_cmd;
mod scope_args;
mod search_cmd;
mod serve_cmd;
mod status_cmd;
mod worker_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Enclave: grounded, cited answers from your own documents, on your own machines.
#[derive(Debug, Parser)]
#[command(name = "enclave", version, about)]
struct Cli {
    /// Configuration file (TOML). Default: $ENCLAVE_CONFIG, else ./enclave.toml if present.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest files and folders (recursively) into a collection.
    Ingest(ingest_cmd::IngestArgs),
    /// Documents per collection and every failure with its reason.
    Status(status_cmd::StatusArgs),
    /// A grounded answer written by the local model, citing the passages it comes from.
    Ask(ask_cmd::AskArgs),
    /// Passages that answer a query: hybrid dense + BM25 search, no model.
    Search(search_cmd::SearchArgs),
    /// Retrieval quality on a question set: recall@k, MRR, nDCG, refusals, latency.
    Eval(eval_cmd::EvalArgs),
    /// A collection's hybrid fusion weights, calibrated from its own passages: the local model
    /// writes questions from a sample of them, and the weights that find them best are kept.
    Calibrate(calibrate_cmd::CalibrateArgs),
    /// Delete documents (by id, path or source URI) with their chunks and vectors.
    Delete(delete_cmd::DeleteArgs),
    /// Serve the web UI, the REST API and the OpenAI-compatible API, with an ingest worker.
    Serve(serve_cmd::ServeArgs),
    /// Run ingest jobs (uploads, re-index requests) from the queue in the metadata database.
    Worker(worker_cmd::WorkerArgs),
    /// Copy this deployment's stores to PostgreSQL and a Qdrant server (scale-out), without
    /// re-embedding; verifies the copy and is safe to run again.
    Migrate(migrate_cmd::MigrateArgs),
    /// People who sign in to the web UI.
    Users(access_cmd::UsersArgs),
    /// API keys for the REST and OpenAI-compatible APIs.
    Keys(access_cmd::KeysArgs),
    /// Groups of users and API keys (grants and document access lists name them).
    Groups(access_cmd::GroupsArgs),
    /// Roles of users, groups and keys on one collection or on all.
    Grants(access_cmd::GrantsArgs),
    /// Reads a PDF on standard input and writes its pages as JSON (the isolated extractor
    /// the ingest pipeline starts for every PDF).
    #[command(hide = true)]
    ExtractPdf,
}

fn main() -> ExitCode {
    // Like other command-line tools, stop quietly when the reader of the output goes away
    // (`enclave status | head`) instead of panicking on a broken pipe.
    // SAFETY: called first thing, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Command::ExtractPdf = cli.command {
        // No runtime, no logging: the child only extracts.
        return ExitCode::from(u8::try_from(enclave_ingest::parse::pdf::child_main()).unwrap_or(1));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ENCLAVE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,qdrant_edge=error,llama-cpp-2=error")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let settings = enclave_settings::Settings::load(cli.config.as_deref())?;
        match cli.command {
            Command::Ingest(args) => ingest_cmd::run(&settings, args).await,
            Command::Status(args) => status_cmd::run(&settings, args).await,
            Command::Delete(args) => delete_cmd::run(&settings, args).await,
            Command::Search(args) => search_cmd::run(&settings, args).await,
            Command::Ask(args) => ask_cmd::run(&settings, args).await,
            Command::Eval(args) => eval_cmd::run(&settings, args).await,
            Command::Calibrate(args) => calibrate_cmd::run(&settings, args).await,
            Command::Serve(args) => serve_cmd::run(&settings, args).await,
            Command::Worker(args) => worker_cmd::run(&settings, args).await,
            Command::Migrate(args) => migrate_cmd::run(&settings, args).await,
            Command::Users(args) => access_cmd::users(&settings, args).await,
            Command::Keys(args) => access_cmd::keys(&settings, args).await,
            Command::Groups(args) => access_cmd::groups(&settings, args).await,
            Command::Grants(args) => access_cmd::grants(&settings, args).await,
            Command::ExtractPdf => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
