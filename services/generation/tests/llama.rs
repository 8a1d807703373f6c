//! The llama.cpp engine on the real SmolLM2-135M-Instruct model (no mocks).
//!
//! The model comes from `ENCLAVE_MODELS_DIR` (default `~/.cache/enclave/models`, filled by
//! scripts/fetch-models); the tests fail when it is missing.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use enclave_generation::{
    ChatMessage, GenerationError, GenerationEvent, GenerationRequest, GenerationStats, Generator,
    LlamaCppConfig, LlamaCppEngine, StopReason,
};
use tokio::sync::mpsc::Receiver;

fn model_path() -> PathBuf {
    let dir = std::env::var_os("ENCLAVE_MODELS_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/enclave/models")
        },
        PathBuf::from,
    );
    let path = dir.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-models (or set ENCLAVE_MODELS_DIR)",
        path.display()
    );
    path
}

fn start(configure: impl FnOnce(&mut LlamaCppConfig)) -> LlamaCppEngine {
    let mut config = LlamaCppConfig::new(model_path());
    configure(&mut config);
    LlamaCppEngine::start(config).expect("engine starts")
}

/// One engine with the default settings, shared by the tests that need nothing special.
fn shared() -> &'static LlamaCppEngine {
    static ENGINE: OnceLock<LlamaCppEngine> = OnceLock::new();
    ENGINE.get_or_init(|| start(|_| {}))
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

/// Every event of a stream, in order; fails on `Error` and on a stream without `Done`.
async fn collect(mut events: Receiver<GenerationEvent>) -> (Vec<String>, GenerationStats) {
    let mut pieces = Vec::new();
    let deadline = Duration::from_secs(120);
    loop {
        let event = tokio::time::timeout(deadline, events.recv())
            .await
            .expect("the generation did not finish in time");
        match event {
            Some(GenerationEvent::Token(piece)) => pieces.push(piece),
            Some(GenerationEvent::Done(stats)) => {
                assert!(events.recv().await.is_none(), "nothing follows Done");
                return (pieces, stats);
            }
            Some(GenerationEvent::Error(e)) => panic!("generation failed: {e}"),
            None => panic!("the stream ended without Done"),
        }
    }
}

#[tokio::test]
async fn a_short_chat_produces_text_and_stats() {
    let engine = shared();
    let (pieces, stats) = collect(
        engine
            .generate(chat("What is the capital of France?", 24))
            .unwrap(),
    )
    .await;
    let text = pieces.concat();
    assert!(!text.trim().is_empty(), "no text: {stats:?}");
    assert!(stats.prompt_tokens > 10, "{stats:?}");
    assert!(stats.generated_tokens > 0, "{stats:?}");
    assert!(stats.generated_tokens <= 24, "{stats:?}");
    assert!(stats.decode_tokens_per_s > 0.0, "{stats:?}");
    assert!(stats.time_to_first_token_ms > 0.0, "{stats:?}");
    assert!(
        matches!(
            stats.stop_reason,
            StopReason::EndOfGeneration | StopReason::MaxTokens
        ),
        "{stats:?}"
    );
    assert!(
        !text.contains("<|im_end|>"),
        "control tokens leak: {text:?}"
    );
}

#[tokio::test]
async fn streaming_is_incremental() {
    let engine = shared();
    let mut events = engine
        .generate(chat("Count from one to ten in words.", 24))
        .unwrap();
    let mut tokens = 0;
    let mut first_token_at = None;
    let done_at;
    loop {
        match events.recv().await.expect("stream ends with Done") {
            GenerationEvent::Token(_) => {
                tokens += 1;
                first_token_at.get_or_insert_with(Instant::now);
            }
            GenerationEvent::Done(stats) => {
                done_at = Instant::now();
                assert!(stats.generated_tokens > 1, "{stats:?}");
                break;
            }
            GenerationEvent::Error(e) => panic!("{e}"),
        }
    }
    assert!(tokens > 1, "one Token event for the whole answer");
    assert!(first_token_at.expect("a token came") < done_at);
}

#[tokio::test]
async fn greedy_is_deterministic() {
    let engine = shared();
    let request = chat("Name three colours of the rainbow.", 24);
    let mut texts = Vec::new();
    // With two slots and the prefix cache, the runs land on cold and warm slots alike.
    for _ in 0..3 {
        let (pieces, _) = collect(engine.generate(request.clone()).unwrap()).await;
        texts.push(pieces.concat());
    }
    assert!(!texts[0].is_empty());
    assert_eq!(texts[0], texts[1]);
    assert_eq!(texts[0], texts[2]);

    // And the same without the prefix cache (every prompt processed from scratch).
    let cold = start(|c| {
        c.slots = 1;
        c.prefix_cache = false;
    });
    let (pieces, _) = collect(cold.generate(request).unwrap()).await;
    assert_eq!(texts[0], pieces.concat());
}

#[tokio::test]
async fn the_grammar_is_obeyed() {
    let engine = shared();
    let grammar = r#"root ::= "The answer is [" [1-3] "].""#;
    for (temperature, seed) in [(0.0, 0), (1.0, 7), (1.5, 42)] {
        let request = GenerationRequest {
            grammar: Some(grammar.into()),
            temperature,
            seed,
            ..chat(
                "[1] Paris is the capital of France.\n[2] Berlin is the capital of Germany.\n\
                 [3] Rome is the capital of Italy.\n\nWhich passage names the capital of Germany?",
                32,
            )
        };
        let (pieces, stats) = collect(engine.generate(request).unwrap()).await;
        let text = pieces.concat();
        let digit = text
            .strip_prefix("The answer is [")
            .and_then(|rest| rest.strip_suffix("]."))
            .unwrap_or_else(|| panic!("not the grammar's shape: {text:?}"));
        assert!(["1", "2", "3"].contains(&digit), "{text:?}");
        assert_eq!(stats.stop_reason, StopReason::EndOfGeneration, "{stats:?}");
    }
}

#[tokio::test]
async fn an_invalid_grammar_is_refused() {
    let engine = shared();
    for grammar in [
        "root ::= <<<",
        r#"answer ::= "yes""#,
        r#"root ::= undefined"#,
    ] {
        let request = GenerationRequest {
            grammar: Some(grammar.into()),
            ..chat("Hello", 8)
        };
        let err = engine.generate(request).unwrap_err();
        assert!(
            matches!(err, GenerationError::InvalidGrammar(_)),
            "{grammar}: {err}"
        );
    }
}

#[tokio::test]
async fn eight_concurrent_requests_on_two_slots_all_complete() {
    let engine = start(|c| {
        c.slots = 2;
        c.queue_capacity = 8;
    });
    let streams = (0..8)
        .map(|i| {
            engine
                .generate(chat(
                    &format!("Say a word that rhymes with number {i}."),
                    12,
                ))
                .expect("8 requests fit 2 slots + a queue of 8")
        })
        .collect::<Vec<_>>();
    let results = futures_join(streams.into_iter().map(collect)).await;
    assert_eq!(results.len(), 8);
    for (_, stats) in &results {
        assert!(stats.generated_tokens > 0, "{stats:?}");
    }
    // At most two ran at once: the later ones waited in the queue.
    assert!(
        results.iter().filter(|(_, s)| s.queue_ms > 1.0).count() >= 5,
        "{:?}",
        results.iter().map(|(_, s)| s.queue_ms).collect::<Vec<_>>()
    );
}

/// Awaits futures concurrently (each on its own task).
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles = futures.map(tokio::spawn).collect::<Vec<_>>();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

/// A grammar that never completes, so the generation runs until stopped.
fn endless(max_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        grammar: Some(r#"root ::= "la " root"#.into()),
        ..chat("Sing.", max_tokens)
    }
}

#[tokio::test]
async fn a_full_queue_answers_busy() {
    let engine = start(|c| {
        c.slots = 1;
        c.queue_capacity = 1;
    });
    let mut accepted = Vec::new();
    let mut busy = Vec::new();
    for _ in 0..4 {
        match engine.generate(endless(1000)) {
            Ok(events) => accepted.push(events),
            Err(e) => busy.push(e),
        }
    }
    // One running (or about to), one waiting; the rest refused at once.
    assert!(accepted.len() <= 2, "{} accepted", accepted.len());
    assert!(busy.len() >= 2, "{} refused", busy.len());
    for e in &busy {
        assert!(matches!(e, GenerationError::Busy { waiting: 1 }), "{e}");
        assert_eq!(
            e.to_string(),
            "the generation queue is full (1 waiting): retry later"
        );
    }
    drop(accepted); // cancels them
}

#[tokio::test]
async fn dropping_the_receiver_frees_the_slot() {
    let engine = start(|c| {
        c.slots = 1;
        c.context_size = 2048;
    });
    // Would run to the end of the context (~2000 tokens) if not cancelled.
    let mut long = engine.generate(endless(100_000)).unwrap();
    for _ in 0..3 {
        match long.recv().await.unwrap() {
            GenerationEvent::Token(_) => {}
            other => panic!("{other:?}"),
        }
    }
    drop(long);
    let started = Instant::now();
    let (pieces, stats) = collect(engine.generate(chat("Say hi.", 8)).unwrap()).await;
    assert!(!pieces.concat().is_empty());
    assert!(
        stats.queue_ms < 2000.0,
        "the next request waited {} ms for the slot",
        stats.queue_ms
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn dropping_the_engine_cancels_running_generations() {
    let engine = start(|c| c.slots = 1);
    let mut events = engine.generate(endless(100_000)).unwrap();
    assert!(matches!(
        events.recv().await,
        Some(GenerationEvent::Token(_))
    ));
    drop(engine);
    // The drop waits for the slot to stop: its last event is already sent.
    let mut last = None;
    while let Ok(event) = events.try_recv() {
        last = Some(event);
    }
    match last {
        Some(GenerationEvent::Done(stats)) => {
            assert_eq!(stats.stop_reason, StopReason::Cancelled, "{stats:?}")
        }
        other => panic!("the slot was still running after the drop: {other:?}"),
    }
}

#[tokio::test]
async fn max_tokens_stops_the_generation() {
    let (_, stats) = collect(shared().generate(endless(5)).unwrap()).await;
    assert_eq!(stats.generated_tokens, 5);
    assert_eq!(stats.stop_reason, StopReason::MaxTokens);
}

#[tokio::test]
async fn the_context_size_stops_the_generation() {
    let engine = start(|c| {
        c.slots = 1;
        c.context_size = 256;
    });
    let (_, stats) = collect(engine.generate(endless(100_000)).unwrap()).await;
    assert_eq!(stats.stop_reason, StopReason::ContextFull, "{stats:?}");
    assert_eq!(
        stats.prompt_tokens + stats.generated_tokens,
        engine.info().context_size as usize + 1,
        "{stats:?}"
    );
}

#[tokio::test]
async fn an_over_long_prompt_gets_a_clear_error() {
    let engine = shared();
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(600);
    let err = engine.generate(chat(&long, 8)).unwrap_err();
    let GenerationError::PromptTooLong {
        prompt_tokens,
        context_size,
    } = err
    else {
        panic!("{err}");
    };
    assert_eq!(context_size, 4096);
    assert!(prompt_tokens > context_size);
    let message = err.to_string();
    assert!(message.contains(&prompt_tokens.to_string()), "{message}");
    assert!(message.contains("4096"), "{message}");
}

#[tokio::test]
async fn the_prefix_cache_reuses_a_shared_prompt_and_changes_nothing() {
    let passages = "[1] Debian is a free operating system developed by volunteers.\n\
                    [2] Packages are installed with apt.\n[3] Stable releases come every two years.";
    let ask = |question: &str| GenerationRequest {
        messages: vec![
            ChatMessage::system(format!("Answer from the passages.\n{passages}")),
            ChatMessage::user(question),
        ],
        max_tokens: 16,
        ..GenerationRequest::default()
    };
    let warm = start(|c| c.slots = 1);
    let (_, first) = collect(warm.generate(ask("Who develops Debian?")).unwrap()).await;
    assert_eq!(first.cached_prompt_tokens, 0);
    let (pieces, second) =
        collect(warm.generate(ask("How are packages installed?")).unwrap()).await;
    assert!(
        second.cached_prompt_tokens > 40,
        "the system prompt was not reused: {second:?}"
    );
    let cold = start(|c| {
        c.slots = 1;
        c.prefix_cache = false;
    });
    let (cold_pieces, cold_stats) =
        collect(cold.generate(ask("How are packages installed?")).unwrap()).await;
    assert_eq!(cold_stats.cached_prompt_tokens, 0);
    assert_eq!(pieces.concat(), cold_pieces.concat());
}

#[tokio::test]
async fn info_describes_the_engine() {
    let info = shared().info();
    assert_eq!(info.engine, "llama.cpp");
    assert_eq!(info.model, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(info.slots, 2);
    assert_eq!(info.context_size, 4096);
    assert!(info.threads >= 1);
}

#[test]
fn a_missing_model_file_is_named() {
    let path = PathBuf::from("/nonexistent/models/nothing-here.gguf");
    let err = LlamaCppEngine::start(LlamaCppConfig::new(&path)).unwrap_err();
    assert!(matches!(err, GenerationError::ModelMissing { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/nonexistent/models/nothing-here.gguf"),
        "{err}"
    );
}

#[test]
fn an_unloadable_model_file_is_named() {
    let path =
        std::env::temp_dir().join(format!("enclave-not-a-model-{}.gguf", std::process::id()));
    std::fs::write(&path, b"this is not a GGUF file").unwrap();
    let err = LlamaCppEngine::start(LlamaCppConfig::new(&path)).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(err, GenerationError::ModelLoad { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_request_without_messages_is_refused() {
    let err = shared().generate(GenerationRequest::default()).unwrap_err();
    assert!(matches!(err, GenerationError::InvalidRequest(_)), "{err}");
}
