//! Wiring: settings to stores, models and the ingest pipeline.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use enclave_embed::{OnnxEmbedder, OnnxEmbedderConfig};
use enclave_ingest::parse::ocr::OcrOptions;
use enclave_ingest::parse::pdf::PdfIsolation;
use enclave_ingest::{Chunker, IngestOptions, Ingestor};
use enclave_settings::{Settings, VectorBackend};
use enclave_storage::{
    ConnectOptions, EdgeVectorStore, MetaStore, QdrantServerConfig, QdrantServerStore, VectorStore,
    WriteOrdering,
};

/// Connects to the metadata store named by the settings; it records the webhook events the
/// settings ask for, whichever command changes the documents.
pub async fn meta_store(settings: &Settings) -> anyhow::Result<MetaStore> {
    let url = settings.database_url();
    let db = &settings.database;
    let options = ConnectOptions {
        max_connections: db.max_connections,
        acquire_timeout: Duration::from_secs(db.connect_timeout_secs),
        statement_timeout: (db.statement_timeout_secs > 0)
            .then(|| Duration::from_secs(db.statement_timeout_secs)),
    };
    let meta = MetaStore::connect_with(&url, &options)
        .await
        .with_context(|| format!("opening the metadata database {url}"))?;
    Ok(meta.with_webhook_events(&settings.webhooks.recorded_events()))
}

/// Opens the vector store named by the settings.
pub fn vector_store(settings: &Settings) -> anyhow::Result<Arc<dyn VectorStore>> {
    match settings.vectors.backend {
        VectorBackend::Edge => {
            let path = settings.vectors_path();
            let store = EdgeVectorStore::open(&path, settings.embedding.dimension)
                .with_context(|| format!("opening the vector store {}", path.display()))?;
            Ok(Arc::new(store))
        }
        VectorBackend::Qdrant => {
            let v = &settings.vectors;
            let config = QdrantServerConfig {
                url: v.url.clone().context("vectors.url is not set")?,
                api_key: v.api_key.clone(),
                collection: v.collection.clone(),
                dimension: settings.embedding.dimension,
                shard_number: v.shard_number,
                replication_factor: v.replication_factor,
                write_consistency_factor: v.write_consistency_factor,
                write_ordering: match v.write_ordering {
                    enclave_settings::WriteOrdering::Weak => WriteOrdering::Weak,
                    enclave_settings::WriteOrdering::Medium => WriteOrdering::Medium,
                    enclave_settings::WriteOrdering::Strong => WriteOrdering::Strong,
                },
                timeout: Duration::from_secs(v.timeout_secs),
                connect_timeout: Duration::from_secs(v.connect_timeout_secs),
            };
            Ok(Arc::new(QdrantServerStore::new(config)?))
        }
    }
}

/// How long a writer of the shared stores may stay silent before a repair takes its
/// half-written version for interrupted; `None` in the embedded mode, where this process
/// holds the stores alone.
pub fn writer_lease(settings: &Settings) -> Option<Duration> {
    (!settings.exclusive_stores()).then(|| Duration::from_secs(settings.worker.lease_secs))
}

/// Loads the embedding model.
pub async fn embedder(settings: &Settings) -> anyhow::Result<OnnxEmbedder> {
    let config = OnnxEmbedderConfig {
        model_dir: settings.embedding_model_dir(),
        onnxruntime: settings.onnxruntime_path(),
        max_input_tokens: settings.embedding.max_input_tokens,
        batch_size: settings.embedding.batch_size,
        threads: settings.embedding.threads,
    };
    Ok(OnnxEmbedder::start(config).await?)
}

/// The whole ingest pipeline.
pub async fn ingestor(settings: &Settings) -> anyhow::Result<Ingestor> {
    let meta = meta_store(settings).await?;
    let vectors = vector_store(settings)?;
    let embedder = embedder(settings).await?;
    ingestor_with(settings, meta, vectors, embedder)
}

/// The ingest pipeline over stores and an embedder the caller opened.
pub fn ingestor_with(
    settings: &Settings,
    meta: MetaStore,
    vectors: Arc<dyn VectorStore>,
    embedder: OnnxEmbedder,
) -> anyhow::Result<Ingestor> {
    let chunker = Chunker::new(
        embedder.tokenizer(),
        settings.chunking.max_tokens,
        settings.chunking.overlap_tokens,
    )?
    .with_headings(settings.chunking.headings)
    .with_input_limit(settings.embedding.max_input_tokens.saturating_sub(2));
    let program = std::env::current_exe().context("locating the enclave executable")?;
    let options = IngestOptions {
        pdf: PdfIsolation {
            program,
            args: vec!["extract-pdf".into()],
            timeout: Duration::from_secs(settings.ingest.pdf_timeout_secs),
            memory_mb: settings.ingest.pdf_memory_mb,
        },
        ocr: ocr_options(settings),
        max_file_bytes: settings.ingest.max_file_bytes,
        max_text_chars: settings.ingest.max_text_chars,
        parallel_documents: settings.parallel_documents(),
        embed_batch: settings.embedding.batch_size,
        writer_lease: writer_lease(settings),
    };
    Ok(Ingestor::new(meta, vectors, embedder, chunker, options)?)
}

/// OCR and PDF recovery as the settings say.
pub fn ocr_options(settings: &Settings) -> OcrOptions {
    let o = &settings.ocr;
    OcrOptions {
        enabled: o.enabled,
        languages: o.languages.clone(),
        dpi: o.dpi,
        page_timeout: Duration::from_secs(o.page_timeout_secs),
        page_workers: match o.page_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        },
        recover_pdfs: o.recover_pdfs,
        tools_dir: o.tools_dir.clone(),
    }
}

/// The retriever over the configured stores and embedding model.
pub async fn retriever(settings: &Settings) -> anyhow::Result<enclave_retrieval::Retriever> {
    let meta = meta_store(settings).await?;
    let vectors = vector_store(settings)?;
    let embedder = embedder(settings).await?;
    Ok(enclave_retrieval::Retriever::new(
        meta,
        vectors,
        embedder,
        enclave_retrieval::RetrievalOptions::from(&settings.retrieval),
    )?)
}

/// Which engine the settings ask for (`auto` decided for this model and machine).
pub fn engine_kind(settings: &Settings) -> enclave_generation::EngineKind {
    use enclave_generation::EngineKind;
    match settings.generation.engine {
        enclave_settings::Engine::LlamaCpp => EngineKind::LlamaCpp,
        enclave_settings::Engine::MistralRs => EngineKind::MistralRs,
        enclave_settings::Engine::Auto => enclave_generation::auto_engine(
            &settings.generation_model(),
            settings.generation.hub_model.is_some(),
            enclave_generation::gpu_available(),
        ),
    }
}

/// The generation engine chosen by the settings, with its model loaded.
pub async fn generator(
    settings: &Settings,
) -> anyhow::Result<Arc<dyn enclave_generation::Generator>> {
    use enclave_generation::{
        EngineKind, LlamaCppConfig, LlamaCppEngine, MistralRsConfig, MistralRsEngine,
        MistralRsSource,
    };
    let g = &settings.generation;
    match engine_kind(settings) {
        EngineKind::LlamaCpp => {
            if g.hub_model.is_some() {
                anyhow::bail!("generation.hub_model needs the mistral.rs engine");
            }
            let config = LlamaCppConfig {
                model_path: settings.generation_model(),
                threads: Some(settings.generation_threads()),
                context_size: g.context_size,
                slots: settings.generation_slots(),
                queue_capacity: g.queue_capacity,
                prefix_cache: true,
            };
            let engine = tokio::task::spawn_blocking(move || LlamaCppEngine::start(config))
                .await
                .context("the model loading task failed")??;
            Ok(Arc::new(engine))
        }
        EngineKind::MistralRs => {
            let isq = g
                .isq
                .as_deref()
                .map(enclave_generation::parse_isq)
                .transpose()?;
            let model = settings.generation_model();
            let source = match &g.hub_model {
                Some(id) => MistralRsSource::Hub {
                    model_id: id.clone(),
                    isq,
                },
                None if model.is_dir() => MistralRsSource::Safetensors { dir: model, isq },
                None => {
                    if isq.is_some() {
                        anyhow::bail!(
                            "generation.isq applies to safetensors model directories, and {} is \
                             a GGUF file (already quantized)",
                            model.display()
                        );
                    }
                    MistralRsSource::Gguf(model)
                }
            };
            let config = MistralRsConfig {
                slots: settings.generation_slots(),
                queue_capacity: g.queue_capacity,
                ..MistralRsConfig::new(source)
            };
            Ok(Arc::new(MistralRsEngine::start(config).await?))
        }
    }
}

/// The other models collections may choose (`generation.models`), each loaded by the engine
/// its file calls for when a question first needs it.
pub fn model_catalog(settings: &Settings) -> Option<Arc<enclave_answer::ModelCatalog>> {
    if settings.generation.models.is_empty() {
        return None;
    }
    let names = settings.generation.models.keys().cloned().collect();
    let base = settings.clone();
    let load: enclave_answer::LoadModel = Box::new(move |name: &str| {
        let mut s = base.clone();
        s.generation.model = base.named_model(name);
        s.generation.hub_model = None;
        s.generation.isq = None;
        Box::pin(async move { generator(&s).await.map_err(|e| format!("{e:#}")) })
    });
    Some(Arc::new(enclave_answer::ModelCatalog::new(names, load)))
}

/// How answers are written, from the `[generation]` settings.
pub fn answer_options(settings: &Settings) -> enclave_answer::AnswerOptions {
    let g = &settings.generation;
    enclave_answer::AnswerOptions {
        passages: g.passages,
        passage_margin: g.passage_margin,
        section_lead_reach: g.section_lead_reach,
        reading_order: g.reading_order,
        max_tokens: g.max_tokens,
        temperature: g.temperature,
        system_prompt: g.system_prompt.clone(),
        expand_neighbours: false,
        max_chars_between_citations: g.max_chars_between_citations,
        model_refusal: g.model_refusal,
        expand_query: g.expand_query,
    }
}

/// Retrieval and generation, for grounded answers.
/// The answer path of a command that asks one question at a time (`ask`, `eval`): one slot
/// with every core, since a second slot would only halve the threads of the one question.
pub async fn asker(settings: &Settings) -> anyhow::Result<enclave_answer::Asker> {
    let mut settings = settings.clone();
    settings.generation.slots = Some(1);
    let settings = &settings;
    let retriever = retriever(settings).await?;
    let generator = generator(settings).await?;
    let asker = enclave_answer::Asker::new(retriever, generator, answer_options(settings));
    Ok(match model_catalog(settings) {
        Some(catalog) => asker.with_models(catalog),
        None => asker,
    })
}

/// The application layer over the stores a command opened, recording searches and questions
/// in the question audit as the settings say.
pub fn corpus_of(
    settings: &Settings,
    meta: MetaStore,
    vectors: Arc<dyn VectorStore>,
) -> enclave_corpus::Corpus {
    let questions = enclave_corpus::QuestionRecorder::new(meta.clone(), settings.audit.clone());
    enclave_corpus::Corpus::new(meta, vectors)
        .with_bounds(enclave_corpus::SettingsBounds::of(settings))
        .with_questions(questions)
}

/// Who a command acts as: the named user (what they may read, nothing more), else the
/// command line itself (every document).
pub async fn actor(
    corpus: &enclave_corpus::Corpus,
    user: Option<&str>,
) -> anyhow::Result<enclave_corpus::Actor> {
    let Some(name) = user else {
        return Ok(enclave_corpus::Actor::command_line());
    };
    let user = corpus
        .meta
        .user_by_name(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("user '{name}' does not exist (enclave users list)"))?;
    if user.disabled_at.is_some() {
        anyhow::bail!("user '{name}' is disabled");
    }
    Ok(enclave_corpus::Actor::for_user(&corpus.meta, &user).await?)
}
