//! The mistral.rs engine on the real SmolLM2-135M-Instruct model: the GGUF file, and the same
//! model as a safetensors directory quantized in place (ISQ), made from the GGUF by
//! `scripts/gguf-to-safetensors` (scripts/test runs it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use enclave_generation::{
    ChatMessage, EngineKind, GenerationError, GenerationEvent, GenerationRequest, GenerationStats,
    Generator, MistralRsConfig, MistralRsEngine, MistralRsSource, StopReason, auto_engine,
    parse_isq,
};
use tokio::sync::mpsc::Receiver;

fn models_dir() -> PathBuf {
    std::env::var_os("ENCLAVE_MODELS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/enclave/models"),
        PathBuf::from,
    )
}

fn gguf() -> PathBuf {
    let path = models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} missing: run scripts/fetch-models",
        path.display()
    );
    path
}

fn safetensors_dir() -> PathBuf {
    let dir = models_dir().join("smollm2-135m-instruct-safetensors");
    assert!(
        dir.join("config.json").is_file(),
        "{} missing: run scripts/gguf-to-safetensors {} {}",
        dir.display(),
        gguf().display(),
        dir.display()
    );
    dir
}

async fn start(slots: usize, queue: usize) -> MistralRsEngine {
    MistralRsEngine::start(MistralRsConfig {
        slots,
        queue_capacity: queue,
        ..MistralRsConfig::new(MistralRsSource::Gguf(gguf()))
    })
    .await
    .expect("engine starts")
}

fn chat(question: &str, max_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        messages: vec![
            ChatMessage::system("You are a helpful assistant. Answer briefly."),
            ChatMessage::user(question),
        ],
        max_tokens,
        ..GenerationRequest::default()
    }
}

async fn collect(mut events: Receiver<GenerationEvent>) -> (Vec<String>, GenerationStats) {
    let mut pieces = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(180), events.recv())
            .await
            .expect("the generation did not finish in time");
        match event {
            Some(GenerationEvent::Token(piece)) => pieces.push(piece),
            Some(GenerationEvent::Done(stats)) => return (pieces, stats),
            Some(GenerationEvent::Error(e)) => panic!("generation failed: {e}"),
            None => panic!("the stream ended without Done"),
        }
    }
}

#[tokio::test]
async fn gguf_streams_and_stops_at_max_tokens() {
    let engine = start(2, 4).await;
    let info = engine.info();
    assert_eq!(
        (info.engine.as_str(), info.model.as_str()),
        ("mistral.rs", "SmolLM2-135M-Instruct.Q4_1.gguf")
    );

    // Streaming, incremental, with stats.
    let (pieces, stats) = collect(
        engine
            .generate(chat("What is the capital of France?", 24))
            .unwrap(),
    )
    .await;
    assert!(pieces.len() > 1, "not streamed: {pieces:?}");
    assert!(stats.prompt_tokens > 10, "{stats:?}");
    assert!(
        stats.generated_tokens > 0 && stats.generated_tokens <= 24,
        "{stats:?}"
    );
    assert!(stats.time_to_first_token_ms > 0.0);

    // A grammar only in GBNF is refused with a message that says what this engine needs.
    let err = engine
        .generate(GenerationRequest {
            grammar: Some(r#"root ::= "x""#.into()),
            ..chat("Hi", 4)
        })
        .unwrap_err();
    assert!(matches!(err, GenerationError::InvalidGrammar(_)), "{err}");
    assert!(err.to_string().contains("Lark"), "{err}");

    // max_tokens stops a long answer.
    let (_, stats) = collect(
        engine
            .generate(chat("Write a long story about a lighthouse keeper.", 10))
            .unwrap(),
    )
    .await;
    assert_eq!(stats.stop_reason, StopReason::MaxTokens, "{stats:?}");
    assert_eq!(stats.generated_tokens, 10, "{stats:?}");
}

#[tokio::test]
async fn lark_grammars_constrain_the_output() {
    let engine = MistralRsEngine::start(MistralRsConfig {
        constrained: true,
        ..MistralRsConfig::new(MistralRsSource::Gguf(gguf()))
    })
    .await
    .unwrap();
    // The Lark grammar decides the shape; greedy and sampled alike.
    let lark = "start: \"The answer is [\" DIGIT \"].\"\nDIGIT: /[1-3]/\n";
    for temperature in [0.0, 1.0] {
        let request = GenerationRequest {
            lark: Some(lark.into()),
            grammar: Some(r#"root ::= "The answer is [" [1-3] "].""#.into()),
            temperature,
            ..chat(
                "[1] Paris is the capital of France.\n[2] Berlin is the capital of Germany.\n\
                 [3] Rome is the capital of Italy.\n\nWhich passage names the capital of Germany?",
                32,
            )
        };
        let (pieces, _) = collect(engine.generate(request).unwrap()).await;
        let text = pieces.concat();
        let digit = text
            .strip_prefix("The answer is [")
            .and_then(|rest| rest.strip_suffix("]."))
            .unwrap_or_else(|| panic!("not the grammar's shape: {text:?}"));
        assert!(["1", "2", "3"].contains(&digit), "{text:?}");
    }
}

#[tokio::test]
async fn a_full_queue_is_busy_and_a_dropped_stream_frees_its_place() {
    let engine = start(1, 0).await;
    let sing = |n| GenerationRequest {
        lark: Some("start: \"la \"+\n".into()),
        ..chat("Sing.", n)
    };
    let mut first = engine.generate(sing(100_000)).unwrap();
    let err = engine.generate(sing(8)).unwrap_err();
    assert!(matches!(err, GenerationError::Busy { .. }), "{err}");
    assert!(err.to_string().contains("retry later"));
    // Read a little, then leave: the sequence is cancelled and its place freed.
    for _ in 0..2 {
        assert!(matches!(
            first.recv().await,
            Some(GenerationEvent::Token(_))
        ));
    }
    drop(first);
    let started = Instant::now();
    let second = loop {
        match engine.generate(chat("Say hi.", 8)) {
            Ok(rx) => break rx,
            Err(GenerationError::Busy { .. }) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the place was not freed: {e}"),
        }
    };
    let (pieces, _) = collect(second).await;
    assert!(!pieces.concat().is_empty());
}

#[tokio::test]
async fn eight_concurrent_requests_all_complete() {
    let engine = std::sync::Arc::new(start(2, 8).await);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let rx = engine
                .generate(chat(&format!("Count to {}.", i + 2), 12))
                .unwrap();
            tokio::spawn(collect(rx))
        })
        .collect();
    for h in handles {
        let (pieces, stats) = h.await.unwrap();
        assert!(!pieces.is_empty() && stats.generated_tokens > 0);
    }
}

#[tokio::test]
async fn a_safetensors_model_is_quantized_in_place() {
    let dir = safetensors_dir();
    let engine = MistralRsEngine::start(MistralRsConfig {
        slots: 1,
        ..MistralRsConfig::new(MistralRsSource::Safetensors {
            dir: dir.clone(),
            isq: Some(parse_isq("Q4K").unwrap()),
        })
    })
    .await
    .expect("the ISQ model loads");
    assert!(engine.info().model.contains("Q4K"), "{:?}", engine.info());
    let (pieces, stats) = collect(
        engine
            .generate(chat("What is the capital of France? One word.", 16))
            .unwrap(),
    )
    .await;
    let text = pieces.concat();
    assert!(text.contains("Paris"), "{text:?}");
    assert!(stats.generated_tokens > 0);
}

#[tokio::test]
async fn missing_models_and_bad_settings_are_named() {
    let missing = PathBuf::from("/nonexistent/model.gguf");
    let err = MistralRsEngine::start(MistralRsConfig::new(MistralRsSource::Gguf(missing.clone())))
        .await
        .err()
        .expect("fails");
    assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");
    let err = MistralRsEngine::start(MistralRsConfig::new(MistralRsSource::Safetensors {
        dir: "/nonexistent/dir".into(),
        isq: None,
    }))
    .await
    .err()
    .expect("fails");
    assert!(
        err.to_string().contains("/nonexistent/dir/config.json"),
        "{err}"
    );
    let err = parse_isq("Q9X").unwrap_err();
    assert!(err.to_string().contains("Q9X"), "{err}");
}

#[test]
fn auto_picks_llama_cpp_for_gguf_on_a_cpu_only_machine() {
    assert_eq!(auto_engine(&gguf(), false, false), EngineKind::LlamaCpp);
    assert_eq!(auto_engine(&gguf(), false, true), EngineKind::MistralRs);
    assert_eq!(
        auto_engine(&models_dir(), false, false),
        EngineKind::MistralRs
    );
    assert_eq!(auto_engine(&gguf(), true, false), EngineKind::MistralRs);
    if !std::path::Path::new("/dev/nvidia0").exists() {
        assert!(!enclave_generation::gpu_available());
    }
}
