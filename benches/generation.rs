//! Generation speed of both engines on both packaged models, beside raw llama.cpp
//! (llama-cpp-python from PyPI, `benches/setup-llama-cpp-python`) on the same GGUF files and the
//! same chats, measured the same way: wall time from the request to the first streamed piece on
//! a ~2,000-token RAG prompt (five passages of the Debian FAQ and a question), and streamed
//! pieces per second on a short prompt (128 tokens, greedy). Not a test: numbers depend on the
//! machine; ratios are against raw llama.cpp measured in the same run.
//!
//! ```sh
//! benches/setup-llama-cpp-python          # once: builds the baseline (a few minutes)
//! cargo bench --bench generation
//! ```
//! `ENCLAVE_BENCH_THREADS` (default: all cores) sets llama.cpp's threads for both llama.cpp
//! runs; mistral.rs uses all cores. `ENCLAVE_BENCH_REPEAT` (default 3): the llama.cpp rows are
//! the median of that many measurements (mistral.rs, a minute per prompt here, is measured
//! once; `ENCLAVE_BENCH_MISTRALRS=0` leaves it out). The raw baseline is built for Enclave's own
//! instruction set (x86-64-v3); when `benches/setup-llama-cpp-python --native` has built a
//! second one for this CPU, it gets a row too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use enclave_generation::{
    ChatMessage, GenerationEvent, GenerationRequest, Generator, LlamaCppConfig, LlamaCppEngine,
    MistralRsConfig, MistralRsEngine, MistralRsSource, Role,
};

const MODELS: [&str; 2] = [
    "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
];

fn cache() -> PathBuf {
    std::env::var_os("ENCLAVE_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/enclave"),
        PathBuf::from,
    )
}

fn models() -> PathBuf {
    std::env::var_os("ENCLAVE_MODELS_DIR").map_or_else(|| cache().join("models"), PathBuf::from)
}

/// Time to the first piece (ms) and pieces per second after it.
struct Measure {
    ttft_ms: f64,
    decode_tps: f64,
}

async fn timed(engine: &dyn Generator, request: GenerationRequest) -> (f64, f64, usize) {
    let started = Instant::now();
    let mut rx = engine.generate(request).expect("generation starts");
    let mut stamps = Vec::new();
    while let Some(e) = rx.recv().await {
        match e {
            GenerationEvent::Token(_) => stamps.push(started.elapsed().as_secs_f64()),
            GenerationEvent::Done(_) => break,
            GenerationEvent::Error(e) => panic!("generation failed: {e}"),
        }
    }
    let ttft = stamps.first().map_or(f64::NAN, |t| t * 1000.0);
    let decode = if stamps.len() > 1 {
        (stamps.len() - 1) as f64 / (stamps[stamps.len() - 1] - stamps[0])
    } else {
        f64::NAN
    };
    (ttft, decode, stamps.len())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn measure(
    engine: &dyn Generator,
    rag: &GenerationRequest,
    short: &GenerationRequest,
    repeat: usize,
) -> Measure {
    // Warm-up: pages the weights in.
    timed(
        engine,
        GenerationRequest {
            messages: vec![ChatMessage::user("Hi")],
            max_tokens: 4,
            ..GenerationRequest::default()
        },
    )
    .await;
    let mut ttft = Vec::new();
    let mut decode = Vec::new();
    for _ in 0..repeat.max(1) {
        ttft.push(timed(engine, rag.clone()).await.0);
        decode.push(timed(engine, short.clone()).await.1);
    }
    Measure {
        ttft_ms: median(ttft),
        decode_tps: median(decode),
    }
}

/// Five consecutive passages of the FAQ, sized so that the prompt is about `target` tokens.
fn rag_request(engine: &LlamaCppEngine, corpus: &str, target: usize) -> (GenerationRequest, usize) {
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
                ChatMessage::user(format!(
                    "{passages}\n\nQuestion: How do I upgrade Debian to a new release?"
                )),
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
            return (request, tokens);
        }
        chars += 100;
    }
}

fn messages_json(request: &GenerationRequest) -> String {
    let list: Vec<_> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            serde_json::json!({"role": role, "content": m.content})
        })
        .collect();
    serde_json::to_string(&list).unwrap()
}

fn baseline(
    venv: &str,
    model: &Path,
    rag: &GenerationRequest,
    short: &GenerationRequest,
    threads: usize,
    repeat: usize,
) -> Option<Measure> {
    let python = cache().join(venv).join("bin/python");
    if !python.is_file() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (r, s) = (dir.path().join("rag.json"), dir.path().join("short.json"));
    std::fs::write(&r, messages_json(rag)).unwrap();
    std::fs::write(&s, messages_json(short)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/llama_cpp_baseline.py");
    let out = Command::new(python)
        .arg(script)
        .arg(model)
        .arg(&r)
        .arg(&s)
        .arg(threads.to_string())
        .arg(repeat.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "llama-cpp-python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Measure {
        ttft_ms: v["ttft_ms"].as_f64()?,
        decode_tps: v["decode_tps"].as_f64()?,
    })
}

fn ratio(a: f64, b: Option<f64>) -> String {
    b.map_or("–".into(), |b| format!("{:.2}x", a / b))
}

#[tokio::main]
async fn main() {
    let threads: usize = std::env::var("ENCLAVE_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let corpus_path = std::env::var_os("ENCLAVE_CORPUS_DIR")
        .map_or_else(|| cache().join("corpus"), PathBuf::from)
        .join("debian-faq__debian-faq.en.txt");
    let corpus = std::fs::read_to_string(&corpus_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/test fetches the corpus)",
            corpus_path.display()
        )
    });
    let repeat: usize = std::env::var("ENCLAVE_BENCH_REPEAT")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(3);
    let with_mistralrs = std::env::var("ENCLAVE_BENCH_MISTRALRS").as_deref() != Ok("0");
    let short = GenerationRequest {
        messages: vec![ChatMessage::user(
            "Write a long story about a lighthouse keeper and a storm.",
        )],
        max_tokens: 128,
        ..GenerationRequest::default()
    };
    println!(
        "llama.cpp threads: {threads}; time to first token on the RAG prompt; decode = streamed pieces/s after the first (128 max, greedy); llama.cpp rows: median of {repeat}\n"
    );
    println!(
        "| model | engine | prompt tokens | first token (ms) | decode (tokens/s) | first token vs raw llama.cpp (lower is better) | decode vs raw llama.cpp |"
    );
    println!("|---|---|---|---|---|---|---|");
    for model in MODELS {
        let path = models().join(model);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let llama = LlamaCppEngine::start(LlamaCppConfig {
            threads: Some(threads),
            slots: 1,
            prefix_cache: false,
            ..LlamaCppConfig::new(&path)
        })
        .expect("llama.cpp engine");
        let (rag, tokens) = rag_request(&llama, &corpus, 2000);
        let raw = baseline("bench-venv", &path, &rag, &short, threads, repeat);
        let native = baseline("bench-venv-native", &path, &rag, &short, threads, repeat);
        let ours = measure(&llama, &rag, &short, repeat).await;
        drop(llama);
        let theirs = if with_mistralrs {
            let mistral: Arc<dyn Generator> = Arc::new(
                MistralRsEngine::start(MistralRsConfig {
                    slots: 1,
                    ..MistralRsConfig::new(MistralRsSource::Gguf(path.clone()))
                })
                .await
                .expect("mistral.rs engine"),
            );
            let m = measure(mistral.as_ref(), &rag, &short, 1).await;
            drop(mistral);
            Some(m)
        } else {
            None
        };
        match &raw {
            Some(r) => println!(
                "| {name} | raw llama.cpp (llama-cpp-python, x86-64-v3 build) | {tokens} | {:.0} | {:.1} | 1.00x | 1.00x |",
                r.ttft_ms, r.decode_tps
            ),
            None => println!(
                "| {name} | raw llama.cpp | {tokens} | not measured: run benches/setup-llama-cpp-python | | | |"
            ),
        }
        let mut rows = vec![("Enclave llama.cpp (x86-64-v3 build)", &ours)];
        if let Some(m) = &theirs {
            rows.push(("Enclave mistral.rs (x86-64-v3 build)", m));
        }
        if let Some(m) = &native {
            rows.push(("raw llama.cpp built for this CPU (-march=native)", m));
        }
        for (engine, m) in rows {
            println!(
                "| {name} | {engine} | {tokens} | {:.0} | {:.1} | {} | {} |",
                m.ttft_ms,
                m.decode_tps,
                ratio(m.ttft_ms, raw.as_ref().map(|r| r.ttft_ms)),
                ratio(m.decode_tps, raw.as_ref().map(|r| r.decode_tps)),
            );
        }
    }
}
