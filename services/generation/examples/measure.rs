//! Measures the llama.cpp engine on the packaged models: time to first token on a ~2,000-token
//! RAG-style prompt (5 passages of the Debian FAQ + a question), cold and with the slot's prefix
//! cache warm (same passages, another question), and decode speed on a short prompt.
//!
//! ```sh
//! cargo run --release --example measure -- [threads] [corpus.txt]
//! ```
//! Models come from `ENCLAVE_MODELS_DIR` (default `~/.cache/enclave/models`).

use std::path::PathBuf;
use std::time::Instant;

use enclave_generation::{
    ChatMessage, GenerationEvent, GenerationRequest, GenerationStats, Generator, LlamaCppConfig,
    LlamaCppEngine,
};
use tokio::sync::mpsc::Receiver;

const MODELS: [&str; 2] = [
    "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
];

async fn run(events: Receiver<GenerationEvent>) -> (String, GenerationStats) {
    let mut events = events;
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            GenerationEvent::Token(piece) => text.push_str(&piece),
            GenerationEvent::Done(stats) => return (text, stats),
            GenerationEvent::Error(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("no Done")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Five consecutive passages of the FAQ body, sized so that the whole prompt is about
/// `target` tokens.
fn rag_request(
    engine: &LlamaCppEngine,
    corpus: &str,
    question: &str,
    target: usize,
) -> GenerationRequest {
    let body = &corpus[corpus.len() / 5..];
    let build = |chars: usize| {
        let passages = (0..5)
            .map(|i| {
                let start = body.char_indices().nth(i * chars).map_or(0, |(b, _)| b);
                let text: String = body[start..].chars().take(chars).collect();
                format!("[{}] {}", i + 1, text.trim())
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        GenerationRequest {
            messages: vec![
                ChatMessage::system(
                    "Answer the question using only the numbered passages. Cite them as [n].",
                ),
                ChatMessage::user(format!("{passages}\n\nQuestion: {question}")),
            ],
            max_tokens: 1,
            ..GenerationRequest::default()
        }
    };
    let mut chars = 1200;
    loop {
        let request = build(chars);
        let tokens = engine.count_tokens(&engine.render_prompt(&request).unwrap());
        if tokens >= target {
            return request;
        }
        chars += 100;
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(2, |t| t.parse().expect("threads"));
    let corpus = args.next().map_or_else(
        || PathBuf::from("/root/.cache/enclave/corpus/debian-faq__debian-faq.en.txt"),
        PathBuf::from,
    );
    let corpus = std::fs::read_to_string(&corpus).expect("corpus file");
    let models = std::env::var_os("ENCLAVE_MODELS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/enclave/models"),
        PathBuf::from,
    );
    println!("threads = {threads}, load average before: {}", loadavg());
    println!(
        "| model | prompt tokens | TTFT cold (ms) | prefill tok/s | TTFT warm prefix (ms) | reused tokens | decode tok/s (1 stream) | decode tok/s (2 streams, 2 slots, total) | load avg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for model in MODELS {
        let path = models.join(model);
        let engine = LlamaCppEngine::start(LlamaCppConfig {
            threads: Some(threads),
            slots: 1,
            ..LlamaCppConfig::new(&path)
        })
        .expect("engine");

        // Warm-up (page the weights in).
        run(engine
            .generate(GenerationRequest {
                messages: vec![ChatMessage::user("Hi")],
                max_tokens: 4,
                ..GenerationRequest::default()
            })
            .unwrap())
        .await;

        let cold = rag_request(
            &engine,
            &corpus,
            "How do I upgrade Debian to a new release?",
            2000,
        );
        let (_, cold_stats) = run(engine.generate(cold).unwrap()).await;
        let warm = rag_request(
            &engine,
            &corpus,
            "Which package manager should I use?",
            2000,
        );
        let (_, warm_stats) = run(engine.generate(warm).unwrap()).await;

        let short = GenerationRequest {
            messages: vec![ChatMessage::user(
                "Write a long story about a lighthouse keeper and a storm.",
            )],
            max_tokens: 128,
            ..GenerationRequest::default()
        };
        let (_, decode_stats) = run(engine.generate(short.clone()).unwrap()).await;
        drop(engine);

        // Two streams at once on two slots (each slot with `threads` threads).
        let engine = LlamaCppEngine::start(LlamaCppConfig {
            threads: Some(threads),
            slots: 2,
            ..LlamaCppConfig::new(&path)
        })
        .expect("engine");
        let started = Instant::now();
        let a = engine.generate(short.clone()).unwrap();
        let b = engine
            .generate(GenerationRequest { seed: 1, ..short })
            .unwrap();
        let ((_, sa), (_, sb)) = tokio::join!(run(a), run(b));
        let total =
            (sa.generated_tokens + sb.generated_tokens) as f64 / started.elapsed().as_secs_f64();
        drop(engine);

        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.1} ({} tokens) | {:.1} | {} |",
            path.file_name().unwrap().to_string_lossy(),
            cold_stats.prompt_tokens,
            cold_stats.time_to_first_token_ms,
            cold_stats.prompt_tokens as f64 / (cold_stats.prompt_ms / 1e3),
            warm_stats.time_to_first_token_ms,
            warm_stats.cached_prompt_tokens,
            decode_stats.decode_tokens_per_s,
            decode_stats.generated_tokens,
            total,
            loadavg(),
        );
    }
}
