//! The real MiniLM ONNX model through the real ONNX Runtime library.

use std::path::PathBuf;

use enclave_embed::{EmbedError, Embedder, OnnxEmbedder, OnnxEmbedderConfig};

fn models_dir() -> PathBuf {
    std::env::var_os("ENCLAVE_MODELS_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/enclave/models"),
        PathBuf::from,
    )
}

fn config() -> OnnxEmbedderConfig {
    OnnxEmbedderConfig {
        model_dir: models_dir().join("all-minilm-l6-v2"),
        onnxruntime: models_dir().join("onnxruntime/libonnxruntime.so"),
        max_input_tokens: 256,
        batch_size: 8,
        threads: None,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn embeds_meaning_with_normalised_384_dimension_vectors() {
    let embedder = OnnxEmbedder::start(config()).await.unwrap();
    assert_eq!(embedder.dimension(), 384);
    let texts = vec![
        "How do I upgrade my Debian system to a new release?".to_string(),
        "Upgrading Debian: change sources.list, then run apt full-upgrade.".to_string(),
        "The recipe needs two eggs and a cup of flour.".to_string(),
    ];
    let v = embedder.embed(texts.clone()).await.unwrap();
    assert_eq!(v.len(), 3);
    for e in &v {
        assert_eq!(e.len(), 384);
        let norm = cosine(e, e).sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    }
    let related = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    assert!(
        related > unrelated + 0.2,
        "related {related}, unrelated {unrelated}"
    );

    // Same text, same vector, whatever the batch around it.
    let again = embedder.embed(vec![texts[1].clone()]).await.unwrap();
    assert!(cosine(&again[0], &v[1]) > 0.999);
    // Nothing in, nothing out; many concurrent callers share the one model thread.
    assert!(embedder.embed(Vec::new()).await.unwrap().is_empty());
    let calls = (0..8).map(|i| {
        let e = embedder.clone();
        tokio::spawn(async move { e.embed(vec![format!("request number {i}")]).await })
    });
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().len(), 1);
    }
    // Text longer than the model's input is truncated, not refused.
    let long = "word ".repeat(2000);
    assert_eq!(embedder.embed(vec![long]).await.unwrap()[0].len(), 384);
}

#[tokio::test]
async fn missing_model_files_are_named() {
    let mut c = config();
    c.model_dir = PathBuf::from("/nonexistent/model");
    let err = OnnxEmbedder::start(c).await.unwrap_err();
    assert!(matches!(err, EmbedError::ModelFile { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/nonexistent/model/tokenizer.json"),
        "{err}"
    );
    assert!(err.to_string().contains("scripts/fetch-models"), "{err}");
}
