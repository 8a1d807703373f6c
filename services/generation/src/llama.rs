//! The llama.cpp engine: one model, `slots` worker threads with a context each, one bounded
//! queue.

use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc as std_mpsc};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use tokio::sync::mpsc;

use crate::utf8::Utf8Stream;
use crate::{
    EngineInfo, GenerationError, GenerationEvent, GenerationRequest, GenerationStats, Generator,
    StopReason,
};

/// Tokens per prefill `llama_decode` call (llama.cpp's `n_batch`; also `n_ubatch`). Cancellation
/// is checked between such batches.
const PREFILL_BATCH: usize = 512;

/// How to run the llama.cpp engine.
#[derive(Debug, Clone)]
pub struct LlamaCppConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Compute threads of each slot (None: all cores).
    ///
    /// Keep `threads` x busy slots at or below the cores that are actually free: llama.cpp's
    /// threads spin at a barrier after every operation, so one descheduled thread stalls the
    /// others. On a 2-core machine with an ingest using one core, SmolLM2-135M decoded at
    /// 69 tokens/s with 1 thread and 22 tokens/s with 2.
    pub threads: Option<usize>,
    /// Context (KV cache) size of each slot, in tokens: prompt plus generated text.
    pub context_size: u32,
    /// Concurrent generations, each with its own thread and context.
    pub slots: usize,
    /// Requests that may wait for a free slot; beyond, `generate` answers `Busy`.
    pub queue_capacity: usize,
    /// Keep each slot's KV cache between requests and only process the part of the next prompt
    /// after the prefix it shares with the cached tokens (a shared system prompt, a follow-up
    /// question). Off: the cache is cleared before every request.
    pub prefix_cache: bool,
}

impl LlamaCppConfig {
    /// Defaults: all cores, 4096-token context, 2 slots, 16 waiting requests, prefix cache on.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            threads: None,
            context_size: 4096,
            slots: 2,
            queue_capacity: 16,
            prefix_cache: true,
        }
    }
}

/// A queued generation.
struct Job {
    prompt: Vec<LlamaToken>,
    max_tokens: usize,
    sampling: Sampling,
    events: mpsc::Sender<GenerationEvent>,
    enqueued: Instant,
}

struct Inner {
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    jobs: std_mpsc::SyncSender<Job>,
    queue_capacity: usize,
    context_size: usize,
    info: EngineInfo,
    stop: Arc<AtomicBool>,
    /// The slots' threads, joined when the engine goes.
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Workers finish the token they are on, free their context and exit once the queue's
        // sender is gone; they are waited for, so that no slot is still freeing llama.cpp
        // state while the process exits (llama.cpp's globals go at exit, and a context freed
        // after them crashes the process).
        self.stop.store(true, Ordering::SeqCst);
        let (closed, _) = std_mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.jobs, closed));
        for worker in self.workers.drain(..) {
            if worker.thread().id() != std::thread::current().id() {
                let _ = worker.join();
            }
        }
    }
}

/// llama.cpp on the CPU. Cheap to clone; the workers stop when the last clone is dropped.
#[derive(Clone)]
pub struct LlamaCppEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LlamaCppEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppEngine")
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

/// llama.cpp's backend is process-global and may be initialised only once.
static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend, GenerationError> {
    BACKEND
        .get_or_init(|| {
            // llama.cpp and ggml log to stderr by default; route them through `tracing`.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| GenerationError::Engine(format!("backend initialisation: {e}")))
}

impl LlamaCppEngine {
    /// Loads the model and starts the slot threads; returns once every slot is ready.
    ///
    /// Blocks while the model loads: from async code, call it in `spawn_blocking`.
    pub fn start(config: LlamaCppConfig) -> Result<Self, GenerationError> {
        if config.slots == 0 {
            return Err(GenerationError::InvalidRequest(
                "the engine needs at least one slot".into(),
            ));
        }
        let path = config.model_path.clone();
        if !path.is_file() {
            return Err(GenerationError::ModelMissing { path });
        }
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| GenerationError::ModelLoad {
                path: path.clone(),
                reason: format!("{e} (not a GGUF model llama.cpp supports?)"),
            })?;
        let model = Arc::new(model);
        let template = match model.chat_template(None) {
            Ok(template) => template,
            Err(e) => {
                tracing::warn!(model = %path.display(), error = %e, "no chat template in the model, using ChatML");
                LlamaChatTemplate::new("chatml").expect("no NUL")
            }
        };
        let threads = config.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let threads_i32 = i32::try_from(threads.max(1)).unwrap_or(i32::MAX);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.context_size.max(16)))
            .with_n_batch(PREFILL_BATCH as u32)
            .with_n_ubatch(PREFILL_BATCH as u32)
            .with_n_seq_max(1)
            .with_n_threads(threads_i32)
            .with_n_threads_batch(threads_i32)
            .with_no_perf(true);

        let (jobs_tx, jobs_rx) = std_mpsc::sync_channel::<Job>(config.queue_capacity);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let stop = Arc::new(AtomicBool::new(false));
        let mut context_size = 0;
        let mut workers = Vec::with_capacity(config.slots);
        // Contexts are created one after the other: llama.cpp's context creation mutates the
        // model, so it must not run concurrently.
        for slot in 0..config.slots {
            let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
            let worker = Worker {
                slot,
                model: Arc::clone(&model),
                jobs: Arc::clone(&jobs_rx),
                stop: Arc::clone(&stop),
                prefix_cache: config.prefix_cache,
            };
            let params = params.clone();
            let handle = std::thread::Builder::new()
                .name(format!("enclave-gen-{slot}"))
                .spawn(move || worker.run(params, ready_tx))
                .map_err(|e| GenerationError::Engine(format!("cannot start a slot thread: {e}")))?;
            workers.push(handle);
            let n_ctx = ready_rx
                .recv()
                .map_err(|_| GenerationError::EngineStopped)
                .and_then(|r| r)
                .inspect_err(|_| stop.store(true, Ordering::SeqCst))?;
            context_size = n_ctx;
        }
        let info = EngineInfo {
            engine: "llama.cpp".into(),
            model: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            threads,
            slots: config.slots,
            context_size,
        };
        tracing::info!(?info, "generation engine ready");
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                template,
                jobs: jobs_tx,
                queue_capacity: config.queue_capacity,
                context_size: context_size as usize,
                info,
                stop,
                workers,
            }),
        })
    }

    /// The templated prompt of `request`, as text.
    pub fn render_prompt(&self, request: &GenerationRequest) -> Result<String, GenerationError> {
        if request.messages.is_empty() {
            return Err(GenerationError::InvalidRequest("no messages".into()));
        }
        let messages = request
            .messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GenerationError::InvalidRequest(format!("message content: {e}")))?;
        self.inner
            .model
            .apply_chat_template(&self.inner.template, &messages, true)
            .map_err(|e| GenerationError::Template(e.to_string()))
    }

    /// Number of tokens of `text` in the model's vocabulary (special tokens parsed, BOS added
    /// when the model wants one), as the prompt is counted.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenize(text).len()
    }

    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        self.inner
            .model
            .vocab()
            .tokenize(text.as_bytes(), true, true)
    }

    fn sampling(&self, request: &GenerationRequest) -> Result<Sampling, GenerationError> {
        let t = request.temperature;
        if !t.is_finite() || t < 0.0 {
            return Err(GenerationError::InvalidRequest(format!(
                "temperature {t} (must be 0 for greedy, or positive)"
            )));
        }
        let chain = if t == 0.0 {
            LlamaSampler::chain([LlamaSampler::greedy()], true)
        } else {
            // llama.cpp's default truncation, then temperature and a seeded draw.
            LlamaSampler::chain(
                [
                    LlamaSampler::top_k(40),
                    LlamaSampler::top_p(0.95, 1),
                    LlamaSampler::min_p(0.05, 1),
                    LlamaSampler::temp(t),
                    LlamaSampler::dist(request.seed),
                ],
                true,
            )
        };
        let grammar = match &request.grammar {
            None => None,
            Some(gbnf) => {
                if !gbnf.contains("root") {
                    return Err(GenerationError::InvalidGrammar(
                        "no rule named `root` (the grammar's start rule)".into(),
                    ));
                }
                Some(
                    LlamaSampler::grammar(&self.inner.model, gbnf, "root").map_err(|e| {
                        GenerationError::InvalidGrammar(format!(
                            "llama.cpp could not parse the GBNF grammar ({e}; its log has the \
                             position)"
                        ))
                    })?,
                )
            }
        };
        Ok(Sampling { chain, grammar })
    }
}

impl Generator for LlamaCppEngine {
    fn info(&self) -> EngineInfo {
        self.inner.info.clone()
    }

    fn generate(
        &self,
        request: GenerationRequest,
    ) -> Result<mpsc::Receiver<GenerationEvent>, GenerationError> {
        let enqueued = Instant::now();
        let prompt = self.tokenize(&self.render_prompt(&request)?);
        if prompt.is_empty() {
            return Err(GenerationError::InvalidRequest(
                "the prompt is empty".into(),
            ));
        }
        let context_size = self.inner.context_size;
        if prompt.len() >= context_size {
            return Err(GenerationError::PromptTooLong {
                prompt_tokens: prompt.len(),
                context_size,
            });
        }
        let sampling = self.sampling(&request)?;
        // Room for every event, so that a worker never waits on a slow reader.
        let (events, receiver) = mpsc::channel(request.max_tokens.min(context_size) + 3);
        let job = Job {
            prompt,
            max_tokens: request.max_tokens,
            sampling,
            events,
            enqueued,
        };
        match self.inner.jobs.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(std_mpsc::TrySendError::Full(_)) => Err(GenerationError::Busy {
                waiting: self.inner.queue_capacity,
            }),
            Err(std_mpsc::TrySendError::Disconnected(_)) => Err(GenerationError::EngineStopped),
        }
    }
}

/// The request's samplers. The grammar is kept apart from the chain so that it is only run over
/// the whole vocabulary when the unconstrained choice breaks it (as llama.cpp's own `common`
/// sampler does): checking one token is far cheaper than masking 50-150k.
struct Sampling {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
}

fn fill(candidates: &mut LlamaTokenDataArray, logits: &[f32]) {
    candidates.data.clear();
    candidates.data.extend(
        (0_i32..)
            .zip(logits)
            .map(|(id, &logit)| LlamaTokenData::new(LlamaToken::new(id), logit, 0.0)),
    );
    candidates.selected = None;
    candidates.sorted = false;
}

impl Sampling {
    /// Picks the next token from the logits of batch entry `idx` and advances the samplers.
    fn sample(
        &mut self,
        ctx: &LlamaContext<'_>,
        idx: i32,
        candidates: &mut LlamaTokenDataArray,
    ) -> Result<LlamaToken, GenerationError> {
        let logits = ctx.get_logits_ith(idx);
        fill(candidates, logits);
        candidates.apply_sampler(&mut self.chain);
        let mut token = candidates
            .selected_token()
            .ok_or_else(|| GenerationError::Engine("the sampler selected no token".into()))?;
        if let Some(grammar) = &mut self.grammar {
            let logit = logits[token.0 as usize];
            let mut single =
                LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, logit, 0.0)], false);
            single.apply_sampler(grammar);
            if single.data[0].logit() == f32::NEG_INFINITY {
                // The free choice breaks the grammar: mask the vocabulary, then choose again.
                fill(candidates, logits);
                candidates.apply_sampler(grammar);
                candidates.apply_sampler(&mut self.chain);
                let selected = candidates.selected.and_then(|i| candidates.data.get(i));
                token = match selected {
                    Some(data) if data.logit().is_finite() => data.id(),
                    _ => {
                        return Err(GenerationError::InvalidGrammar(
                            "the grammar admits no token of this model's vocabulary here".into(),
                        ));
                    }
                };
            }
            // The token is allowed, so accepting it cannot hit llama.cpp's abort paths;
            // `try_accept` still turns a C++ exception into an error.
            grammar.try_accept(token).map_err(|e| {
                GenerationError::InvalidGrammar(format!("grammar rejected token: {e}"))
            })?;
        }
        self.chain.accept(token);
        Ok(token)
    }
}

struct Worker {
    slot: usize,
    model: Arc<LlamaModel>,
    jobs: Arc<Mutex<std_mpsc::Receiver<Job>>>,
    stop: Arc<AtomicBool>,
    prefix_cache: bool,
}

/// A slot's llama.cpp state.
struct Slot<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    /// The tokens whose keys and values are in the KV cache, at positions 0.. (sequence 0).
    cached: Vec<LlamaToken>,
    candidates: LlamaTokenDataArray,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

impl Worker {
    fn run(
        self,
        params: LlamaContextParams,
        ready: std_mpsc::SyncSender<Result<u32, GenerationError>>,
    ) {
        let backend = match backend() {
            Ok(backend) => backend,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let model: &LlamaModel = &self.model;
        let ctx = match model.new_context(backend, params) {
            Ok(ctx) => ctx,
            Err(e) => {
                let _ = ready.send(Err(GenerationError::Engine(format!(
                    "cannot create a context for slot {}: {e} (out of memory for the context size?)",
                    self.slot
                ))));
                return;
            }
        };
        let _ = ready.send(Ok(ctx.n_ctx()));
        let n_vocab = usize::try_from(model.n_vocab()).unwrap_or(0);
        let mut slot = Slot {
            model,
            ctx,
            batch: LlamaBatch::new(PREFILL_BATCH, 1),
            cached: Vec::new(),
            candidates: LlamaTokenDataArray::new(Vec::with_capacity(n_vocab), false),
        };
        loop {
            let job = {
                let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
                jobs.recv()
            };
            let Ok(job) = job else {
                break; // the engine is gone
            };
            if self.stop.load(Ordering::SeqCst) {
                let _ = job
                    .events
                    .try_send(GenerationEvent::Error(GenerationError::EngineStopped));
                continue;
            }
            if job.events.is_closed() {
                continue; // the client left while queued
            }
            let events = job.events.clone();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| slot.serve(job, &self)));
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(GenerationError::Engine(format!(
                    "slot {} panicked during generation",
                    self.slot
                ))),
            };
            if let Some(e) = error {
                tracing::warn!(slot = self.slot, error = %e, "generation failed");
                slot.reset();
                let _ = events.try_send(GenerationEvent::Error(e));
            }
        }
        tracing::debug!(slot = self.slot, "generation slot stopped");
    }
}

impl Slot<'_> {
    fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    /// Sends an event; false when the receiver is gone.
    fn send(events: &mpsc::Sender<GenerationEvent>, event: GenerationEvent) -> bool {
        match events.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            // Cannot happen (the channel has room for every event), but never drop one.
            Err(mpsc::error::TrySendError::Full(event)) => events.blocking_send(event).is_ok(),
        }
    }

    fn decode(&mut self) -> Result<(), GenerationError> {
        self.ctx.decode(&mut self.batch).map_err(|e| {
            self.reset();
            GenerationError::Engine(format!("decode: {e}"))
        })
    }

    fn serve(&mut self, mut job: Job, worker: &Worker) -> Result<(), GenerationError> {
        let started = Instant::now();
        let queue_ms = (started - job.enqueued).as_secs_f64() * 1e3;
        let prompt = &job.prompt;
        let n_ctx = self.ctx.n_ctx() as usize;

        // Reuse the cached prefix (at least the last prompt token is processed again, for its
        // logits), or start from an empty cache.
        let mut reused = 0;
        if worker.prefix_cache {
            let common = self
                .cached
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count()
                .min(prompt.len() - 1);
            if common > 0
                && self
                    .ctx
                    .kv_cache_seq_rm(0, Some(common as u32), None)
                    .is_ok()
            {
                self.cached.truncate(common);
                reused = common;
            }
        }
        if reused == 0 {
            self.reset();
        }

        // Prefill, in batches of PREFILL_BATCH, checking for cancellation between them.
        let cancelled = |events: &mpsc::Sender<GenerationEvent>| {
            events.is_closed() || worker.stop.load(Ordering::SeqCst)
        };
        let mut stop = None;
        let mut last_idx = 0;
        for chunk in prompt[reused..].chunks(PREFILL_BATCH) {
            if cancelled(&job.events) {
                stop = Some(StopReason::Cancelled);
                break;
            }
            self.batch.clear();
            let start = self.cached.len();
            for (i, &token) in chunk.iter().enumerate() {
                let pos = start + i;
                let last = pos + 1 == prompt.len();
                self.batch
                    .add(token, pos as i32, &[0], last)
                    .map_err(|e| GenerationError::Engine(format!("batch: {e}")))?;
            }
            self.decode()?;
            self.cached.extend_from_slice(chunk);
            last_idx = self.batch.n_tokens() - 1;
        }
        let prefilled = Instant::now();
        let prompt_ms = (prefilled - started).as_secs_f64() * 1e3;

        // Decode: sample from the last logits, stream the piece, feed the token back.
        let vocab = self.model.vocab();
        let mut text = Utf8Stream::default();
        let mut piece = Vec::with_capacity(32);
        let mut generated = 0usize;
        let mut first_token_ms = None;
        let stop_reason = match stop {
            Some(reason) => reason,
            None => loop {
                if generated >= job.max_tokens {
                    break StopReason::MaxTokens;
                }
                if cancelled(&job.events) {
                    break StopReason::Cancelled;
                }
                let token = job
                    .sampling
                    .sample(&self.ctx, last_idx, &mut self.candidates)?;
                if vocab.is_eog(token) {
                    break StopReason::EndOfGeneration;
                }
                generated += 1;
                if first_token_ms.is_none() {
                    first_token_ms = Some(ms(job.enqueued));
                }
                piece.clear();
                vocab.token_to_piece_into(token, &mut piece, false, None);
                let chunk = text.push(&piece);
                if !chunk.is_empty() && !Self::send(&job.events, GenerationEvent::Token(chunk)) {
                    break StopReason::Cancelled;
                }
                if generated >= job.max_tokens {
                    break StopReason::MaxTokens;
                }
                if self.cached.len() >= n_ctx {
                    break StopReason::ContextFull;
                }
                self.batch.clear();
                self.batch
                    .add(token, self.cached.len() as i32, &[0], true)
                    .map_err(|e| GenerationError::Engine(format!("batch: {e}")))?;
                self.decode()?;
                self.cached.push(token);
                last_idx = 0;
            },
        };
        let rest = text.finish();
        if !rest.is_empty() {
            Self::send(&job.events, GenerationEvent::Token(rest));
        }
        let decode_s = prefilled.elapsed().as_secs_f64();
        let stats = GenerationStats {
            prompt_tokens: prompt.len(),
            cached_prompt_tokens: reused,
            generated_tokens: generated,
            queue_ms,
            time_to_first_token_ms: first_token_ms.unwrap_or_else(|| ms(job.enqueued)),
            prompt_ms,
            decode_tokens_per_s: if generated > 0 && decode_s > 0.0 {
                generated as f64 / decode_s
            } else {
                0.0
            },
            stop_reason,
        };
        tracing::debug!(slot = worker.slot, ?stats, "generation finished");
        // When the client left there is nobody to tell; when the engine stops, the receiver
        // still gets its Cancelled.
        Self::send(&job.events, GenerationEvent::Done(stats));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn engine_is_shareable() {
        fn check<T: Send + Sync + Clone>() {}
        check::<super::LlamaCppEngine>();
    }
}
