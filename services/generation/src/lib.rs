//! The text-generation seam.
//!
//! [`Generator`] is what the rest of Enclave sees: a chat in, a stream of text pieces and a
//! final [`GenerationStats`] out. [`LlamaCppEngine`] implements it on llama.cpp (through the
//! `llama-cpp-2` crate) on the CPU: the GGUF model is loaded once, and `slots` dedicated OS
//! threads, each owning its own llama.cpp context (KV cache), serve requests from one bounded
//! queue, so generation never runs on the async runtime and a full queue is refused at once
//! ([`GenerationError::Busy`]) instead of piling up.
//!
//! ```no_run
//! use enclave_generation::{
//!     ChatMessage, GenerationEvent, GenerationRequest, Generator, LlamaCppConfig, LlamaCppEngine,
//! };
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let model = "/root/.cache/enclave/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
//! // Loading reads the model: from async code, call it in `spawn_blocking`.
//! let engine = tokio::task::spawn_blocking(move || {
//!     LlamaCppEngine::start(LlamaCppConfig::new(model))
//! })
//! .await??;
//! let mut events = engine.generate(GenerationRequest {
//!     messages: vec![
//!         ChatMessage::system("Answer from the passages; cite them as [n]."),
//!         ChatMessage::user("[1] Debian is a free operating system.\n\nWhat is Debian?"),
//!     ],
//!     max_tokens: 64,
//!     // Only citation markers of the passages given, e.g. "... [1].":
//!     grammar: Some(r#"root ::= [^\[\]]+ "[1]." "#.into()),
//!     ..GenerationRequest::default()
//! })?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         GenerationEvent::Token(text) => print!("{text}"),
//!         GenerationEvent::Done(stats) => println!("\n{stats:?}"),
//!         GenerationEvent::Error(e) => eprintln!("generation failed: {e}"),
//!     }
//! }
//! // Dropping `events` early stops the generation and frees the slot.
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

mod llama;
mod mistral;
mod utf8;

pub use llama::{LlamaCppConfig, LlamaCppEngine};
pub use mistral::{MistralRsConfig, MistralRsEngine, MistralRsSource, parse_isq};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name in chat templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// The chat so far; the model's own chat template turns it into the prompt, ending with the
    /// opening of the assistant's turn.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy (deterministic).
    pub temperature: f32,
    /// Optional GBNF grammar (root rule `root`) the output must follow (llama.cpp).
    pub grammar: Option<String>,
    /// The same grammar in llguidance's Lark form (start rule `start`), for mistral.rs.
    pub lark: Option<String>,
    /// Seed of the sampler's random generator (unused when greedy).
    pub seed: u32,
}

impl Default for GenerationRequest {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            max_tokens: 256,
            temperature: 0.0,
            grammar: None,
            lark: None,
            seed: 0,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token (or the grammar was complete).
    EndOfGeneration,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The receiver was dropped (the client went away) or the engine shut down.
    Cancelled,
    /// The slot's context (KV cache) is full.
    ContextFull,
}

/// Figures of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Tokens of the templated prompt.
    pub prompt_tokens: usize,
    /// Of which were reused from the slot's KV cache (a prefix shared with its last request).
    pub cached_prompt_tokens: usize,
    /// Tokens generated (end-of-generation token not counted).
    pub generated_tokens: usize,
    /// Time spent waiting in the queue for a free slot.
    pub queue_ms: f64,
    /// From the `generate` call to the first generated token (queue and prompt included).
    pub time_to_first_token_ms: f64,
    /// Time to process (prefill) the prompt tokens not found in the cache.
    pub prompt_ms: f64,
    /// Generated tokens per second after the prompt.
    pub decode_tokens_per_s: f64,
    pub stop_reason: StopReason,
}

/// What a generation stream yields: text pieces, then exactly one `Done` (or `Error`).
#[derive(Debug)]
pub enum GenerationEvent {
    /// The next piece of text (always whole UTF-8 characters).
    Token(String),
    /// The generation ended; nothing follows.
    Done(GenerationStats),
    /// The generation failed midway (llama.cpp decode failure); nothing follows.
    Error(GenerationError),
}

/// What runs the generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// "llama.cpp".
    pub engine: String,
    /// The model's file name.
    pub model: String,
    /// Compute threads of each slot.
    pub threads: usize,
    /// Concurrent generations.
    pub slots: usize,
    /// Context (KV cache) size of each slot, in tokens.
    pub context_size: u32,
}

/// The engines built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// llama.cpp: GGUF on the CPU (tiled multi-threaded SIMD kernels).
    LlamaCpp,
    /// mistral.rs: NVIDIA GPUs (with the `cuda` feature) and safetensors models with ISQ.
    MistralRs,
}

/// Whether this build can use an NVIDIA GPU and one is visible.
pub fn gpu_available() -> bool {
    cfg!(feature = "cuda") && std::path::Path::new("/dev/nvidia0").exists()
}

/// The engine `auto` picks: mistral.rs for a model directory (safetensors, quantized in place)
/// or a hub model, or when a GPU can be used; llama.cpp for a GGUF file on the CPU.
pub fn auto_engine(model: &std::path::Path, hub_model: bool, gpu: bool) -> EngineKind {
    if hub_model || model.is_dir() || gpu {
        EngineKind::MistralRs
    } else {
        EngineKind::LlamaCpp
    }
}

/// Errors of the generation seam.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The model file does not exist.
    #[error("generation model file {path} not found (run scripts/fetch-models)")]
    ModelMissing { path: PathBuf },
    /// llama.cpp could not load the model file.
    #[error("generation model file {path} could not be loaded by llama.cpp: {reason}")]
    ModelLoad { path: PathBuf, reason: String },
    /// The queue is full.
    #[error("the generation queue is full ({waiting} waiting): retry later")]
    Busy { waiting: usize },
    /// The templated prompt does not fit in a slot's context.
    #[error(
        "the prompt is {prompt_tokens} tokens but the context holds {context_size} tokens: \
         shorten the prompt (fewer or shorter passages) or raise the context size"
    )]
    PromptTooLong {
        prompt_tokens: usize,
        context_size: usize,
    },
    /// The GBNF grammar does not parse (or admits no continuation).
    #[error("invalid grammar: {0}")]
    InvalidGrammar(String),
    /// The request itself is malformed (no messages, bad temperature, ...).
    #[error("invalid generation request: {0}")]
    InvalidRequest(String),
    /// The model's chat template could not be applied.
    #[error("chat template: {0}")]
    Template(String),
    /// llama.cpp failed (context creation, decoding).
    #[error("llama.cpp: {0}")]
    Engine(String),
    /// The workers are gone (shut down or panicked).
    #[error("the generation engine has stopped")]
    EngineStopped,
}

/// A chat in, a stream of text out. Implementations are safe to share between tasks.
///
/// `generate` does not wait for the generation: it queues it and returns the stream at once
/// (or [`GenerationError::Busy`] when the queue is full). Dropping the receiver cancels the
/// generation and frees its slot.
pub trait Generator: Send + Sync {
    /// What runs the generation.
    fn info(&self) -> EngineInfo;
    /// Queues a generation; returns its event stream.
    fn generate(
        &self,
        request: GenerationRequest,
    ) -> Result<mpsc::Receiver<GenerationEvent>, GenerationError>;
}
