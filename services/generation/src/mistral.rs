//! The mistral.rs engine: GGUF files, and safetensors models quantized in place (ISQ), on the
//! CPU or (with the `cuda` feature) an NVIDIA GPU with paged attention.
//!
//! mistral.rs runs its own scheduler on its own threads and batches the sequences it holds
//! (up to `slots`); Enclave adds a bounded admission in front of it so that a burst beyond
//! `slots + queue_capacity` is refused at once with [`GenerationError::Busy`]. Constrained
//! decoding uses llguidance through the request's Lark grammar. Dropping the event receiver
//! cancels the sequence: mistral.rs stops a sequence whose response channel is closed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mistralrs::{
    Constraint, GgufModelBuilder, IsqType, Model, RequestBuilder, Response, TextMessageRole,
    TextModelBuilder,
};
use tokio::sync::{Semaphore, mpsc};

use crate::{
    EngineInfo, GenerationError, GenerationEvent, GenerationRequest, GenerationStats, Generator,
    Role, StopReason,
};

/// Where the model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MistralRsSource {
    /// A local GGUF file (its own chat template and tokenizer inside).
    Gguf(PathBuf),
    /// A local Hugging Face model directory (config.json, tokenizer.json, *.safetensors),
    /// quantized in place when loaded if `isq` is set.
    Safetensors { dir: PathBuf, isq: Option<IsqType> },
    /// A model id on the Hugging Face hub (needs network; never used in tests or defaults).
    Hub {
        model_id: String,
        isq: Option<IsqType>,
    },
}

/// How the mistral.rs engine runs.
#[derive(Debug, Clone)]
pub struct MistralRsConfig {
    pub source: MistralRsSource,
    /// Sequences generated at the same time (mistral.rs batches them).
    pub slots: usize,
    /// Requests waiting beyond `slots` before new ones get `Busy`.
    pub queue_capacity: usize,
    /// Stay on the CPU even when a GPU is available.
    pub force_cpu: bool,
    /// Apply requests' Lark grammars through llguidance (default). Off, answers are still
    /// checked afterwards: markers naming no given source are removed and reported.
    pub constrained: bool,
}

impl MistralRsConfig {
    pub fn new(source: MistralRsSource) -> Self {
        Self {
            source,
            slots: 2,
            queue_capacity: 16,
            force_cpu: !cfg!(feature = "cuda"),
            constrained: true,
        }
    }
}

/// Parses an ISQ level name (`Q4K`, `Q8_0`, ...).
pub fn parse_isq(name: &str) -> Result<IsqType, GenerationError> {
    Ok(match name.to_ascii_uppercase().replace('-', "_").as_str() {
        "Q4_0" => IsqType::Q4_0,
        "Q4_1" => IsqType::Q4_1,
        "Q5_0" => IsqType::Q5_0,
        "Q5_1" => IsqType::Q5_1,
        "Q8_0" => IsqType::Q8_0,
        "Q2K" | "Q2_K" => IsqType::Q2K,
        "Q3K" | "Q3_K" => IsqType::Q3K,
        "Q4K" | "Q4_K" => IsqType::Q4K,
        "Q5K" | "Q5_K" => IsqType::Q5K,
        "Q6K" | "Q6_K" => IsqType::Q6K,
        "Q8K" | "Q8_K" => IsqType::Q8K,
        "HQQ4" => IsqType::HQQ4,
        "HQQ8" => IsqType::HQQ8,
        other => {
            return Err(GenerationError::InvalidRequest(format!(
                "unknown ISQ level '{other}' (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K..Q8K, HQQ4, HQQ8)"
            )));
        }
    })
}

/// A model served by mistral.rs.
pub struct MistralRsEngine {
    model: Arc<Model>,
    admission: Arc<Semaphore>,
    capacity: usize,
    constrained: bool,
    info: EngineInfo,
}

fn load_error(path: &std::path::Path, e: impl std::fmt::Display) -> GenerationError {
    GenerationError::ModelLoad {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    }
}

impl MistralRsEngine {
    /// Loads the model (seconds; ISQ quantizes while loading).
    pub async fn start(config: MistralRsConfig) -> Result<Self, GenerationError> {
        let slots = config.slots.max(1);
        let (model, name, path) = match &config.source {
            MistralRsSource::Gguf(path) => {
                if !path.is_file() {
                    return Err(GenerationError::ModelMissing { path: path.clone() });
                }
                let dir = path.parent().unwrap_or(std::path::Path::new("."));
                let file = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut b = GgufModelBuilder::new(dir.display().to_string(), vec![file.clone()])
                    .with_max_num_seqs(slots)
                    .with_prefix_cache_n(Some(16));
                if config.force_cpu {
                    b = b.with_force_cpu();
                }
                b = with_paged(b, config.force_cpu)?;
                let model = b.build().await.map_err(|e| load_error(path, e))?;
                (model, file, path.clone())
            }
            MistralRsSource::Safetensors { dir, isq } => {
                if !dir.join("config.json").is_file() {
                    return Err(GenerationError::ModelMissing {
                        path: dir.join("config.json"),
                    });
                }
                let mut b = TextModelBuilder::new(dir.display().to_string())
                    .with_max_num_seqs(slots)
                    .with_prefix_cache_n(Some(16));
                if let Some(isq) = isq {
                    b = b.with_isq(*isq);
                }
                if config.force_cpu {
                    b = b.with_force_cpu();
                }
                let name = dir
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = match isq {
                    Some(q) => format!("{name} (ISQ {q:?})"),
                    None => name,
                };
                let model = b.build().await.map_err(|e| load_error(dir, e))?;
                (model, name, dir.clone())
            }
            MistralRsSource::Hub { model_id, isq } => {
                let mut b = TextModelBuilder::new(model_id).with_max_num_seqs(slots);
                if let Some(isq) = isq {
                    b = b.with_isq(*isq);
                }
                if config.force_cpu {
                    b = b.with_force_cpu();
                }
                let path = PathBuf::from(model_id);
                let model = b.build().await.map_err(|e| load_error(&path, e))?;
                (model, model_id.clone(), path)
            }
        };
        let context_size = model
            .max_sequence_length()
            .ok()
            .flatten()
            .unwrap_or(0)
            .min(u32::MAX as usize) as u32;
        tracing::info!(model = %path.display(), slots, "mistral.rs engine ready");
        let capacity = slots + config.queue_capacity;
        Ok(Self {
            model: Arc::new(model),
            admission: Arc::new(Semaphore::new(capacity)),
            capacity,
            constrained: config.constrained,
            info: EngineInfo {
                engine: "mistral.rs".into(),
                model: name,
                threads: std::thread::available_parallelism().map_or(1, usize::from),
                slots,
                context_size,
            },
        })
    }
}

#[cfg(feature = "cuda")]
fn with_paged(b: GgufModelBuilder, force_cpu: bool) -> Result<GgufModelBuilder, GenerationError> {
    if force_cpu {
        return Ok(b);
    }
    let cfg = mistralrs::PagedAttentionMetaBuilder::default()
        .build()
        .map_err(|e| GenerationError::Engine(format!("paged attention: {e}")))?;
    Ok(b.with_paged_attn(cfg))
}

#[cfg(not(feature = "cuda"))]
fn with_paged(b: GgufModelBuilder, _force_cpu: bool) -> Result<GgufModelBuilder, GenerationError> {
    // Paged attention serves CUDA devices; on the CPU the default KV cache is used.
    Ok(b)
}

fn request_of(r: &GenerationRequest, constrained: bool) -> Result<RequestBuilder, GenerationError> {
    if r.messages.is_empty() {
        return Err(GenerationError::InvalidRequest("no messages".into()));
    }
    if !(r.temperature >= 0.0 && r.temperature.is_finite()) {
        return Err(GenerationError::InvalidRequest(format!(
            "temperature {} must be a finite number >= 0",
            r.temperature
        )));
    }
    if r.max_tokens == 0 {
        return Err(GenerationError::InvalidRequest(
            "max_tokens must be at least 1".into(),
        ));
    }
    let mut b = RequestBuilder::new();
    for m in &r.messages {
        let role = match m.role {
            Role::System => TextMessageRole::System,
            Role::User => TextMessageRole::User,
            Role::Assistant => TextMessageRole::Assistant,
        };
        b = b.add_message(role, &m.content);
    }
    // The deterministic sampler replaces the sampling parameters: set the length after it.
    b = if r.temperature == 0.0 {
        b.set_deterministic_sampler()
    } else {
        b.set_sampler_temperature(f64::from(r.temperature))
    };
    b = b.set_sampler_max_len(r.max_tokens);
    match (&r.lark, &r.grammar) {
        (Some(_), _) if !constrained => {}
        (Some(lark), _) => b = b.set_constraint(Constraint::Lark(lark.clone())),
        (None, Some(_)) => {
            return Err(GenerationError::InvalidGrammar(
                "the mistral.rs engine takes grammars in Lark form (GenerationRequest::lark); \
                 only a GBNF grammar was given"
                    .into(),
            ));
        }
        (None, None) => {}
    }
    Ok(b)
}

fn stop_reason(finish: Option<&str>) -> StopReason {
    match finish {
        Some("length") => StopReason::MaxTokens,
        Some("canceled") | Some("cancelled") => StopReason::Cancelled,
        _ => StopReason::EndOfGeneration,
    }
}

impl Generator for MistralRsEngine {
    fn info(&self) -> EngineInfo {
        self.info.clone()
    }

    fn generate(
        &self,
        request: GenerationRequest,
    ) -> Result<mpsc::Receiver<GenerationEvent>, GenerationError> {
        let builder = request_of(&request, self.constrained)?;
        let permit =
            self.admission
                .clone()
                .try_acquire_owned()
                .map_err(|_| GenerationError::Busy {
                    waiting: self.capacity - self.info.slots,
                })?;
        let model = self.model.clone();
        let (tx, rx) = mpsc::channel(64);
        let submitted = Instant::now();
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = match model.stream_chat_request(builder).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx
                        .send(GenerationEvent::Error(GenerationError::Engine(
                            e.to_string(),
                        )))
                        .await;
                    return;
                }
            };
            let mut first: Option<Instant> = None;
            let mut generated = 0usize;
            let mut finish: Option<String> = None;
            let mut usage = None;
            while let Some(response) = stream.next().await {
                match response {
                    Response::Chunk(chunk) => {
                        if let Some(u) = chunk.usage {
                            usage = Some(u);
                        }
                        for choice in chunk.choices {
                            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                                first.get_or_insert_with(Instant::now);
                                generated += 1;
                                if tx.send(GenerationEvent::Token(text)).await.is_err() {
                                    // The caller left: dropping the stream cancels the sequence.
                                    return;
                                }
                            }
                            if choice.finish_reason.is_some() {
                                finish = choice.finish_reason;
                            }
                        }
                        if finish.is_some() {
                            break;
                        }
                    }
                    Response::Done(done) => {
                        usage = Some(done.usage);
                        break;
                    }
                    Response::ModelError(message, _) => {
                        let _ = tx
                            .send(GenerationEvent::Error(GenerationError::Engine(message)))
                            .await;
                        return;
                    }
                    Response::InternalError(e) | Response::ValidationError(e) => {
                        let _ = tx
                            .send(GenerationEvent::Error(GenerationError::Engine(
                                e.to_string(),
                            )))
                            .await;
                        return;
                    }
                    _ => {}
                }
            }
            let ttft = first.map_or(submitted.elapsed(), |f| f - submitted);
            let (prompt_tokens, completion, prompt_ms, decode) = match &usage {
                Some(u) => (
                    u.prompt_tokens,
                    u.completion_tokens,
                    f64::from(u.total_prompt_time_sec) * 1000.0,
                    f64::from(u.avg_compl_tok_per_sec),
                ),
                None => (0, generated, 0.0, 0.0),
            };
            let stats = GenerationStats {
                prompt_tokens,
                cached_prompt_tokens: 0,
                generated_tokens: completion.max(generated),
                queue_ms: 0.0,
                time_to_first_token_ms: ttft.as_secs_f64() * 1000.0,
                prompt_ms,
                decode_tokens_per_s: decode,
                stop_reason: stop_reason(finish.as_deref()),
            };
            let _ = tx.send(GenerationEvent::Done(stats)).await;
        });
        Ok(rx)
    }
}
