//! What the search and worker benches share: Enclave's default settings with the models from
//! `ENCLAVE_MODELS_DIR`, the embedding model they describe, and the corpus folder.

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
