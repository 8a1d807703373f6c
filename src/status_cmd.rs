//! `enclave status`.

use std::process::ExitCode;

use enclave_settings::Settings;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let meta = crate::app::meta_store(settings).await?;
    let model = settings.generation_model();
    let kind = match crate::app::engine_kind(settings) {
        enclave_generation::EngineKind::LlamaCpp => "llama.cpp",
        enclave_generation::EngineKind::MistralRs => "mistral.rs",
    };
    let engine = match settings.generation.engine {
        enclave_settings::Engine::Auto => format!("{kind} (auto)"),
        _ => kind.to_string(),
    };
    let model_state = if settings.generation.hub_model.is_some() {
        "from the hub"
    } else if model.is_file() || model.join("config.json").is_file() {
        "present"
    } else {
        "missing: run scripts/fetch-models llm"
    };
    let stats = meta.collection_stats().await?;
    let failures = meta.failures().await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "database": settings.database_url(),
                "vectors": settings.vectors_path(),
                "engine": engine,
                "model": model,
                "model_present": model.is_file(),
                "threads_per_slot": settings.generation_threads(),
                "slots": settings.generation.slots,
                "collections": stats,
                "failures": failures,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("Database: {}", settings.database_url());
    println!("Vectors:  {}", settings.vectors_path().display());
    println!(
        "Answers:  {engine}, {} slot(s) x {} thread(s), model {} ({model_state})",
        settings.generation.slots,
        settings.generation_threads(),
        model.display()
    );
    if stats.is_empty() {
        println!("No collections yet: run `enclave ingest PATH...`.");
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "collection", "ready", "failed", "no text", "other", "pages", "chunks"
    );
    for s in &stats {
        println!(
            "{:<24} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
            s.collection, s.ready, s.failed, s.no_text, s.other, s.pages, s.chunks
        );
    }
    if !failures.is_empty() {
        println!();
        println!("Failures ({}):", failures.len());
        for f in &failures {
            println!(
                "  [{}] {} ({}): {}",
                f.collection, f.source_uri, f.status, f.error
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
