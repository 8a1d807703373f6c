//! What the search and worker benches share: Enclave's default settings with the models from
//! `ENCLAVE_MODELS_DIR`, the embedding model they describe, the corpus folder and the FAQ
//! set's questions. Each bench uses a part of it.
#![allow(dead_code)]

pub mod synthetic;

use std::ffi::OsString;
use std::path::PathBuf;

use enclave_embed::{OnnxEmbedder, OnnxEmbedderConfig};
use enclave_settings::Settings;

/// Enclave's built-in defaults, models from `ENCLAVE_MODELS_DIR` when set.
pub fn settings() -> Settings {
    let mut s = Settings::default();
    if let Some(dir) = std::env::var_os("ENCLAVE_MODELS_DIR") {
        s.models_dir = PathBuf::from(dir);
    }
    s
}

/// The embedding model of `settings`, loaded as the binary loads it.
pub async fn embedder(settings: &Settings) -> anyhow::Result<OnnxEmbedder> {
    Ok(OnnxEmbedder::start(OnnxEmbedderConfig {
        model_dir: settings.embedding_model_dir(),
        onnxruntime: settings.onnxruntime_path(),
        max_input_tokens: settings.embedding.max_input_tokens,
        batch_size: settings.embedding.batch_size,
        threads: settings.embedding.threads,
    })
    .await?)
}

/// `$ENCLAVE_CORPUS_DIR`, else `~/.cache/enclave/corpus` (where scripts/test fetches it).
pub fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENCLAVE_CORPUS_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| OsString::from(".")))
        .join(".cache/enclave/corpus")
}

/// The answerable questions of the committed Debian FAQ set (`eval/debian-faq.jsonl`), the
/// first `limit`.
pub fn faq_questions(limit: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/eval/debian-faq.jsonl"
    ))?;
    Ok(enclave_retrieval::eval::parse_set(&text)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|i| !i.unanswerable)
        .map(|i| i.question)
        .take(limit)
        .collect())
}
