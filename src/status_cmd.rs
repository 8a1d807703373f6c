//! `enclave status`.

use std::process::ExitCode;

use enclave_ingest::parse::DocumentKind;
use enclave_settings::Settings;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// One store as `status` reports it: what answered, or why nothing did.
fn store_line(result: &Result<String, String>) -> String {
    match result {
        Ok(what) => format!("ok ({what})"),
        Err(why) => format!("UNAVAILABLE: {why}"),
    }
}

pub async fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<ExitCode> {
    // Both stores are checked and reported, whichever is down.
    let meta = crate::app::meta_store(settings).await;
    let database = match &meta {
        Ok(m) => m.check().await.map_err(|e| e.to_string()),
        Err(e) => Err(format!("{e:#}")),
    };
    let vectors = match crate::app::vector_store(settings) {
        Ok(v) => v.check().await.map_err(|e| e.to_string()),
        // The embedded store held by a running server is in service, not down.
        Err(e) if format!("{e:#}").contains("in use by another Enclave process") => Ok(format!(
            "qdrant-edge at {}, held by a running Enclave process",
            settings.vectors_path().display()
        )),
        Err(e) => Err(format!("{e:#}")),
    };
    let vectors_place = match settings.vectors.backend {
        enclave_settings::VectorBackend::Edge => settings.vectors_path().display().to_string(),
        enclave_settings::VectorBackend::Qdrant => format!(
            "{} (collection {})",
            settings.vectors.url.as_deref().unwrap_or_default(),
            settings.vectors.collection
        ),
    };
    let ready = database.is_ok() && vectors.is_ok();
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
    let (stats, formats, failures) = match (&meta, &database) {
        (Ok(m), Ok(_)) => (
            m.collection_stats(&[]).await?,
            m.format_stats().await?,
            m.failures().await?,
        ),
        _ => (Vec::new(), Vec::new(), Vec::new()),
    };
    let code = if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "ready": ready,
                "database": redact(&settings.database_url()),
                "database_status": store_json(&database),
                "vectors": vectors_place,
                "vectors_status": store_json(&vectors),
                "engine": engine,
                "model": model,
                "model_present": model.is_file(),
                "threads_per_slot": settings.generation_threads(),
                "slots": settings.generation_slots(),
                "collections": stats,
                "formats": formats
                    .iter()
                    .map(|f| {
                        let mut v = serde_json::to_value(f).unwrap_or_default();
                        v["format"] = format_label(f.mime_type.as_deref()).into();
                        v
                    })
                    .collect::<Vec<_>>(),
                "failures": failures,
            })
        );
        return Ok(code);
    }
    println!(
        "Database: {} {}",
        redact(&settings.database_url()),
        store_line(&database)
    );
    println!("Vectors:  {vectors_place} {}", store_line(&vectors));
    println!(
        "Answers:  {engine}, {} slot(s) x {} thread(s), model {} ({model_state})",
        settings.generation_slots(),
        settings.generation_threads(),
        model.display()
    );
    if !ready {
        return Ok(code);
    }
    if stats.is_empty() {
        println!("No collections yet: run `enclave ingest PATH...`.");
        return Ok(code);
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
    println!();
    println!(
        "{:<24} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "format", "documents", "ready", "failed", "no text", "pages", "chunks"
    );
    for f in &formats {
        println!(
            "{:<24} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
            format_label(f.mime_type.as_deref()),
            f.documents,
            f.ready,
            f.failed,
            f.no_text,
            f.pages,
            f.chunks
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
    Ok(code)
}

/// What a person calls a format: "PDF", "Excel", or the MIME type Enclave does not read.
fn format_label(mime: Option<&str>) -> String {
    match mime {
        Some(m) => {
            DocumentKind::of_mime_type(m).map_or_else(|| m.to_string(), |k| k.label().into())
        }
        None => "unrecognised".into(),
    }
}

fn store_json(result: &Result<String, String>) -> serde_json::Value {
    match result {
        Ok(what) => serde_json::json!({"ok": true, "answered": what}),
        Err(why) => serde_json::json!({"ok": false, "error": why}),
    }
}

/// A database URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
