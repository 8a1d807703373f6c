//! Streams one answer to stdout.
//!
//! ```sh
//! cargo run --release --example chat -- MODEL.gguf "What is Debian?" ['GBNF grammar']
//! ```

use enclave_generation::{
    ChatMessage, GenerationEvent, GenerationRequest, Generator, LlamaCppConfig, LlamaCppEngine,
};
use std::io::Write;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .ok_or("usage: chat MODEL.gguf QUESTION [GRAMMAR]")?;
    let question = args
        .next()
        .ok_or("usage: chat MODEL.gguf QUESTION [GRAMMAR]")?;
    let grammar = args.next();
    // ENCLAVE_THREADS: compute threads (default: all cores).
    let threads = std::env::var("ENCLAVE_THREADS")
        .ok()
        .and_then(|t| t.parse().ok());
    let engine = tokio::task::spawn_blocking(move || {
        LlamaCppEngine::start(LlamaCppConfig {
            threads,
            ..LlamaCppConfig::new(model)
        })
    })
    .await??;
    eprintln!("{:?}", engine.info());
    let mut events = engine.generate(GenerationRequest {
        messages: vec![
            ChatMessage::system("You are a helpful assistant."),
            ChatMessage::user(question),
        ],
        max_tokens: 200,
        grammar,
        ..GenerationRequest::default()
    })?;
    while let Some(event) = events.recv().await {
        match event {
            GenerationEvent::Token(piece) => {
                print!("{piece}");
                std::io::stdout().flush()?;
            }
            GenerationEvent::Done(stats) => eprintln!("\n{stats:?}"),
            GenerationEvent::Error(e) => return Err(e.into()),
        }
    }
    Ok(())
}
