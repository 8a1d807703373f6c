//! Enclave over HTTP: the REST API (`/api/v1`, with its OpenAPI document), the
//! OpenAI-compatible API (`/v1`), the web UI, health and metrics, in one actix-web server.
//!
//! This is the only crate that knows HTTP or HTML. It receives the stores and the model
//! loaders from the binary, serves at once, and becomes ready (`/readyz`) when the models are
//! loaded. Uploads are stored and become jobs in the durable queue ([`worker`]), run by the
//! in-process worker (the embedded default) or by `enclave worker` processes; nothing is
//! parsed on the request path. With `webhooks.url` set, the server also delivers the document
//! events of the webhook outbox ([`webhooks`]).

pub mod admin;
pub mod api;
pub mod auth;
pub mod conversations;
pub mod dto;
pub mod error;
pub mod eval;
pub mod export;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod people;
pub mod state;
pub mod ui;
pub mod webhooks;
pub mod worker;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::ResponseError;
use actix_web::dev::Service;
use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use enclave_answer::{AnswerOptions, Asker, ModelCatalog};
use enclave_generation::Generator;
use enclave_settings::Settings;
use enclave_storage::{JobStatus, MetaStore, VectorStore};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tracing::Instrument;
use utoipa::OpenApi;

pub use auth::Role;
pub use error::ApiError;
pub use state::{AppState, Loading, SearchParts};

use crate::error::OpenAiError;
use crate::metrics::Metrics;
use enclave_ingest::uploads::UploadStore;

/// What the server runs on: the stores, opened by the caller, and the models, loading.
pub struct Backends {
    pub meta: MetaStore,
    pub vectors: Arc<dyn VectorStore>,
    /// Loads the embedding model: ingest and search work once it resolves.
    pub search: BoxFuture<'static, Result<SearchParts, String>>,
    /// Loads the generation model: answers work once it resolves.
    pub generator: BoxFuture<'static, Result<Arc<dyn Generator>, String>>,
    pub answer_options: AnswerOptions,
    /// Other models collections may choose (`generation.models`), loaded on first use.
    pub models: Option<Arc<ModelCatalog>>,
}

fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::TooLarge(format!("the JSON body is larger than {limit} bytes"))
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedType(
            "expected a JSON body (Content-Type: application/json)".into(),
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::Invalid(format!("invalid request body: {e}"))
        }
        other => ApiError::BadRequest(format!("malformed JSON: {other}")),
    }
}

fn query_error(err: QueryPayloadError) -> ApiError {
    ApiError::BadRequest(format!("invalid query string: {err}"))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(openapi::ApiDoc::openapi())
}

/// With authentication off, the `Host` a request names must be a loopback name (or the host
/// of `server.public_url`); anything else is refused, naming the host.
fn host_refusal(req: &actix_web::dev::ServiceRequest) -> Option<ApiError> {
    let state = req.app_data::<web::Data<AppState>>()?;
    if state.settings.auth.enabled {
        return None;
    }
    let host = req
        .headers()
        .get(actix_web::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default().to_string()
    } else {
        host.rsplit_once(':')
            .map_or(host.as_str(), |(h, _)| h)
            .to_string()
    };
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || state.settings.server.public_host().as_deref() == Some(host.as_str()) {
        return None;
    }
    Some(ApiError::Forbidden(format!(
        "authentication is off and the Host '{host}' is not this machine's loopback name: \
         refused (server.public_url names the one other host accepted)"
    )))
}

/// The routes of the application. Each scope's routes are in one function, and
/// `ARCHITECTURE.md` states every route's permission rule (a test checks the two agree).
pub fn routes(cfg: &mut web::ServiceConfig, max_json: usize) {
    cfg.route("/healthz", web::get().to(api::healthz))
        .route("/readyz", web::get().to(api::readyz))
        .route("/metrics", web::get().to(api::metrics))
        .service(
            web::scope("/api/v1")
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_json)
                        .error_handler(|e, _| json_error(e).into()),
                )
                .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(e).into()))
                .configure(api_routes)
                .default_service(web::to(not_found)),
        )
        .service(
            web::scope("/v1")
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_json)
                        .error_handler(|e, _| OpenAiError(json_error(e)).into()),
                )
                .configure(openai_routes),
        )
        .configure(page_routes)
        .default_service(web::to(not_found));
}

/// `/api/v1`.
fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json))
        .route("/collections", web::get().to(api::list_collections))
        .route("/collections", web::post().to(api::create_collection))
        .route("/collections/{name}", web::get().to(api::get_collection))
        .route(
            "/collections/{name}",
            web::patch().to(api::update_collection),
        )
        .route(
            "/collections/{name}",
            web::delete().to(api::delete_collection),
        )
        .route("/documents", web::get().to(api::list_documents))
        .route("/documents", web::post().to(api::upload_document))
        .route("/documents/bulk", web::post().to(api::bulk_documents))
        .route("/documents/{id}", web::get().to(api::get_document))
        .route("/documents/{id}", web::patch().to(api::patch_document))
        .route("/documents/{id}", web::put().to(api::put_document))
        .route("/documents/{id}", web::delete().to(api::delete_document))
        .route(
            "/documents/{id}/reindex",
            web::post().to(api::reindex_document),
        )
        .route("/documents/{id}/pages", web::get().to(api::document_pages))
        .route(
            "/documents/{id}/chunks",
            web::get().to(api::document_chunks),
        )
        .route(
            "/documents/{id}/chunks/{chunk}",
            web::patch().to(api::patch_chunk),
        )
        .route("/documents/{id}/file", web::get().to(api::document_file))
        .route("/audit", web::get().to(api::audit_log))
        .route("/audit/questions", web::get().to(api::question_audit))
        .route("/jobs", web::get().to(api::list_jobs))
        .route("/jobs/{id}", web::get().to(api::get_job))
        .route("/jobs/{id}/retry", web::post().to(api::retry_job))
        .route("/webhooks/deliveries", web::get().to(api::list_deliveries))
        .route(
            "/webhooks/deliveries/{id}/redeliver",
            web::post().to(api::redeliver),
        )
        .route("/search", web::post().to(api::search))
        .route("/ask", web::post().to(api::ask))
        .route(
            "/conversations",
            web::get().to(conversations::list_conversations),
        )
        .route(
            "/conversations",
            web::post().to(conversations::create_conversation),
        )
        .route(
            "/conversations/{id}",
            web::get().to(conversations::get_conversation),
        )
        .route(
            "/conversations/{id}",
            web::patch().to(conversations::rename_conversation),
        )
        .route(
            "/conversations/{id}",
            web::delete().to(conversations::delete_conversation),
        )
        .route(
            "/conversations/{id}/export",
            web::get().to(conversations::export_conversation),
        )
        .route(
            "/answers/{id}/feedback",
            web::post().to(conversations::give_feedback),
        )
        .route("/feedback", web::get().to(conversations::list_feedback))
        .route(
            "/feedback/{id}/eval-case",
            web::post().to(eval::case_from_feedback),
        )
        .route(
            "/collections/{name}/eval/cases",
            web::get().to(eval::list_cases),
        )
        .route(
            "/collections/{name}/eval/cases",
            web::post().to(eval::add_case),
        )
        .route(
            "/collections/{name}/eval/cases/{id}",
            web::delete().to(eval::delete_case),
        )
        .route(
            "/collections/{name}/eval/runs",
            web::get().to(eval::list_runs),
        )
        .route("/collections/{name}/eval/runs", web::post().to(eval::run));
}

/// `/v1`, the OpenAI-compatible API.
fn openai_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/models", web::get().to(openai::models)).route(
        "/chat/completions",
        web::post().to(openai::chat_completions),
    );
}

/// The web UI and the curators' pages.
fn page_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(ui::ask_page))
        .route("/login", web::get().to(ui::login_page))
        .route("/login", web::post().to(ui::login))
        .route("/logout", web::post().to(ui::logout))
        .route("/ui/ask/stream", web::get().to(ui::ask_stream))
        .route(
            "/conversations",
            web::get().to(conversations::conversations_page),
        )
        .route(
            "/conversations/{id}/rename",
            web::post().to(conversations::rename_form),
        )
        .route(
            "/conversations/{id}/delete",
            web::post().to(conversations::delete_form),
        )
        .route(
            "/conversations/{id}/export",
            web::get().to(conversations::export_page),
        )
        .route(
            "/answers/{id}/feedback",
            web::post().to(conversations::feedback_form),
        )
        .route(
            "/admin/feedback",
            web::get().to(conversations::feedback_page),
        )
        .route(
            "/admin/feedback/{id}/eval-case",
            web::post().to(eval::case_from_feedback_form),
        )
        .route(
            "/admin/collections/{name}/eval",
            web::post().to(eval::run_form),
        )
        .route(
            "/admin/collections/{name}/eval/cases",
            web::post().to(eval::add_case_form),
        )
        .route(
            "/admin/collections/{name}/eval/cases/{id}/delete",
            web::post().to(eval::delete_case_form),
        )
        .route("/documents/{id}/passage", web::get().to(ui::passage_page))
        .route("/documents/{id}/file", web::get().to(ui::file_page))
        .route("/admin/documents", web::get().to(admin::documents_page))
        .route(
            "/admin/documents/bulk",
            web::post().to(admin::documents_bulk),
        )
        .route("/admin/documents/{id}", web::get().to(admin::document_page))
        .route(
            "/admin/documents/{id}/edit",
            web::post().to(admin::document_edit),
        )
        .route(
            "/admin/documents/{id}/state",
            web::post().to(admin::document_state),
        )
        .route(
            "/admin/documents/{id}/reindex",
            web::post().to(admin::document_reindex),
        )
        .route(
            "/admin/documents/{id}/delete",
            web::post().to(admin::document_delete),
        )
        .route(
            "/admin/documents/{id}/chunks/{chunk}/state",
            web::post().to(admin::chunk_state),
        )
        .route("/admin/collections", web::get().to(admin::collections_page))
        .route(
            "/admin/collections",
            web::post().to(admin::collection_create),
        )
        .route(
            "/admin/collections/{name}",
            web::get().to(admin::collection_page),
        )
        .route(
            "/admin/collections/{name}",
            web::post().to(admin::collection_save),
        )
        .route(
            "/admin/collections/{name}/delete",
            web::post().to(admin::collection_delete),
        )
        .route("/admin/upload", web::get().to(admin::upload_page))
        .route("/admin/upload", web::post().to(admin::upload))
        .route("/admin/retrieval", web::get().to(admin::retrieval_page))
        .route("/admin/jobs/{id}/status", web::get().to(admin::job_json))
        .route("/admin/jobs", web::get().to(ui::jobs_page))
        .route("/admin/jobs/{id}/retry", web::post().to(ui::retry_job_form))
        .route("/admin/webhooks", web::get().to(ui::webhooks_page))
        .route(
            "/admin/webhooks/{id}/redeliver",
            web::post().to(ui::redeliver_form),
        )
        .route("/admin/people", web::get().to(people::people_page))
        .route("/admin/people", web::post().to(people::people_change))
        .route("/admin/questions", web::get().to(people::questions_page))
        .route(
            "/admin/questions/export",
            web::get().to(people::questions_export),
        )
        .route("/static/app.css", web::get().to(ui::app_css))
        .route("/static/app.js", web::get().to(ui::app_js))
        .route("/static/admin.js", web::get().to(ui::admin_js));
}

fn request_id(req: &actix_web::dev::ServiceRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string)
}

/// Loads the models in the background and publishes them as they become ready.
fn load_models(
    search: BoxFuture<'static, Result<SearchParts, String>>,
    generator: BoxFuture<'static, Result<Arc<dyn Generator>, String>>,
    options: AnswerOptions,
    models: Option<Arc<ModelCatalog>>,
    search_tx: watch::Sender<Loading<SearchParts>>,
    answers_tx: watch::Sender<Loading<Asker>>,
) {
    tokio::spawn(async move {
        let started = Instant::now();
        let parts = match search.await {
            Ok(parts) => {
                tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    "embedding model ready"
                );
                let _ = search_tx.send(Loading::Ready(parts.clone()));
                Some(parts)
            }
            Err(e) => {
                tracing::error!(error = %e, "the embedding model could not be loaded");
                let _ = search_tx.send(Loading::Failed(e.clone()));
                let _ = answers_tx.send(Loading::Failed(format!("embedding model: {e}")));
                None
            }
        };
        let Some(parts) = parts else { return };
        match generator.await {
            Ok(generator) => {
                let info = generator.info();
                tracing::info!(engine = %info.engine, model = %info.model,
                    ms = started.elapsed().as_millis() as u64, "generation model ready");
                let asker = Asker::new(parts.retriever, generator, options);
                let asker = match models {
                    Some(catalog) => asker.with_models(catalog),
                    None => asker,
                };
                let _ = answers_tx.send(Loading::Ready(asker));
            }
            Err(e) => {
                tracing::error!(error = %e, "the generation model could not be loaded");
                let _ = answers_tx.send(Loading::Failed(e));
            }
        }
    });
}

/// Repairs what dead writers left in stores other processes share, once per lease for as
/// long as the server runs (a writer counts as dead after a lease of silence), retrying
/// sooner while a store is unavailable.
async fn repair_shared_stores(
    meta: MetaStore,
    vectors: Arc<dyn VectorStore>,
    lease: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = std::time::Duration::from_secs(1);
    while !*stop.borrow() {
        let next = match enclave_ingest::recover(&meta, vectors.as_ref(), Some(lease)).await {
            Ok(_) => {
                wait = std::time::Duration::from_secs(1);
                lease
            }
            Err(enclave_ingest::IngestError::Storage(e)) if e.is_unavailable() => {
                tracing::warn!(error = %e, "cannot repair the stores yet; retrying");
                wait = (wait * 2).min(lease);
                wait
            }
            Err(e) => {
                tracing::error!(error = %e, "repairing the stores failed");
                lease
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
pub async fn run(
    settings: Settings,
    backends: Backends,
    listener: TcpListener,
) -> std::io::Result<()> {
    let other = |e: String| std::io::Error::other(e);
    let Backends {
        meta,
        vectors,
        search,
        generator,
        answer_options,
        models,
    } = backends;
    if !settings.auth.enabled {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "authentication is off (ENCLAVE_AUTH=off), so every request acts as an \
                     administrator: refusing to listen on {addr}, which other machines can \
                     reach; bind a loopback address (127.0.0.1) or turn authentication on"
                ),
            ));
        }
    }
    let uploads = UploadStore::new(settings.uploads_dir())?;
    let metrics = Metrics::new();
    let (stop_repairs, repairs_stopped) = watch::channel(false);
    if settings.exclusive_stores() {
        // The embedded vector store is held by this process alone: nothing else writes while
        // this server runs, so whatever a previous run left half-done is repaired now, before
        // the worker starts, and a job still marked running is one this server was running
        // when it stopped.
        enclave_ingest::recover(&meta, vectors.as_ref(), None)
            .await
            .map_err(|e| other(format!("repairing an interrupted ingest: {e}")))?;
        let released = meta
            .release_running_jobs()
            .await
            .map_err(|e| other(e.to_string()))?;
        if released > 0 {
            tracing::info!(
                jobs = released,
                "jobs interrupted by the last stop are queued again"
            );
        }
    } else {
        // Shared stores: other servers and workers are running. Jobs of a dead process come
        // back when their lease runs out; half-written versions are repaired only when their
        // writer has been silent for longer than the lease, in the background (a store may be
        // down while this server starts) and again every lease while it runs.
        tokio::spawn(repair_shared_stores(
            meta.clone(),
            vectors.clone(),
            std::time::Duration::from_secs(settings.worker.lease_secs),
            repairs_stopped,
        ));
    }
    let jobs = {
        let depth = metrics.ingest_queue_depth.clone();
        enclave_corpus::IngestQueue::new(
            meta.clone(),
            settings.server.ingest_queue_capacity,
            settings.worker.max_attempts,
        )
        .with_depth_gauge(std::sync::Arc::new(move |n| depth.set(n)))
    };
    let (search_tx, search_rx) = watch::channel(Loading::Pending);
    let (answers_tx, answers_rx) = watch::channel(Loading::Pending);
    load_models(
        search,
        generator,
        answer_options,
        models,
        search_tx,
        answers_tx,
    );

    // Documents queued before the job queue existed, or whose job was lost, get a job.
    let names: std::collections::HashMap<_, _> = meta
        .collections()
        .await
        .map_err(|e| other(e.to_string()))?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect();
    for doc in meta
        .queued_documents()
        .await
        .map_err(|e| other(e.to_string()))?
    {
        let pending = meta
            .jobs(None, Some(&doc.id), None, 20, 0)
            .await
            .map_err(|e| other(e.to_string()))?
            .iter()
            .any(|j| matches!(j.status, JobStatus::Queued | JobStatus::Running));
        if pending {
            continue;
        }
        let name = names.get(&doc.collection_id).cloned().unwrap_or_default();
        match enclave_corpus::queue::reindex_job(&doc, &uploads, &name) {
            Some(mut job) => {
                job.content.force = false;
                if let Err(e) = jobs.submit(job).await {
                    tracing::warn!(document = %doc.id, error = %e, "cannot requeue");
                }
            }
            None => tracing::warn!(document = %doc.id, "queued, but its original is gone"),
        }
    }
    let (stop_worker, worker_stopped) = watch::channel(false);
    let deliverer = webhooks::Deliverer::new(
        meta.clone(),
        &settings.webhooks,
        format!("{}/webhooks", worker::worker_name()),
    )
    .map_err(other)?
    .map(|d| tokio::spawn(d.run(worker_stopped.clone())));
    let worker = settings.worker.in_server.then(|| {
        tokio::spawn(worker::run(
            search_rx.clone(),
            uploads.clone(),
            settings.worker.clone(),
            jobs.wake_handle(),
            metrics.clone(),
            worker_stopped,
        ))
    });

    let max_json = settings.server.max_json_bytes;
    let workers = settings
        .server
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let shutdown = settings.server.shutdown_timeout_secs;
    let questions = enclave_corpus::QuestionRecorder::new(meta.clone(), settings.audit.clone());
    let corpus = enclave_corpus::Corpus::new(meta.clone(), vectors.clone())
        .with_uploads(uploads.clone())
        .with_queue(jobs.clone())
        .with_bounds(enclave_corpus::SettingsBounds::of(&settings))
        .with_questions(questions.clone());
    let purge = {
        let questions = questions.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
            loop {
                tick.tick().await;
                match questions.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(entries = n, "question audit: removed expired entries"),
                    Err(e) => {
                        tracing::warn!(error = %e, "question audit: cannot remove expired entries")
                    }
                }
                match questions.purge_expired_conversations().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(conversations = n, "removed expired conversations"),
                    Err(e) => tracing::warn!(error = %e, "cannot remove expired conversations"),
                }
            }
        })
    };
    let state = web::Data::new(AppState {
        corpus,
        questions,
        settings,
        meta,
        vectors,
        search: search_rx,
        answers: answers_rx,
        jobs,
        uploads,
        metrics,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "same-origin"))
                    .add(("X-Frame-Options", "DENY"))
                    .add((
                        "Content-Security-Policy",
                        "default-src 'self'; script-src 'self'; style-src 'self'; \
                         img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; \
                         base-uri 'none'",
                    )),
            )
            .wrap_fn(|req, srv| {
                // With authentication off, only requests for this machine's own names are
                // served: a DNS-rebinding page cannot reach the trusted mode through a name
                // it controls.
                if let Some(refusal) = host_refusal(&req) {
                    let res = req.into_response(refusal.error_response());
                    return Box::pin(async move { Ok(res) })
                        as std::pin::Pin<Box<dyn futures::Future<Output = _>>>;
                }
                let started = Instant::now();
                let id = request_id(&req);
                let method = req.method().to_string();
                let path = req.path().to_string();
                let metrics = req
                    .app_data::<web::Data<AppState>>()
                    .map(|s| s.metrics.clone());
                let span = tracing::info_span!("request", request_id = %id, %method, %path);
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await?;
                    if let Ok(v) = HeaderValue::from_str(&id) {
                        res.headers_mut()
                            .insert(HeaderName::from_static("x-request-id"), v);
                    }
                    let route = res
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".into());
                    let status = res.status().as_u16();
                    let secs = started.elapsed().as_secs_f64();
                    if let Some(m) = metrics {
                        m.requests
                            .with_label_values(&[&method, &route, &status.to_string()])
                            .inc();
                        m.request_seconds.with_label_values(&[&route]).observe(secs);
                    }
                    tracing::info!(status, ms = (secs * 1000.0) as u64, %route, "request");
                    Ok(res)
                }
                .instrument(span)
                .boxed_local()
            })
            .configure(|cfg| routes(cfg, max_json))
    })
    .workers(workers.max(1))
    .shutdown_timeout(shutdown)
    .listen(listener)?
    .run();
    let result = server.await;
    purge.abort();
    let _ = stop_repairs.send(true);
    // The worker finishes the job in hand (its lease would hand it to another worker anyway).
    let _ = stop_worker.send(true);
    let grace = std::time::Duration::from_secs(shutdown);
    if let Some(w) = worker
        && tokio::time::timeout(grace, w).await.is_err()
    {
        tracing::warn!(
            "the ingest worker did not stop in time; its job is queued again at the next start"
        );
    }
    // Deliveries in flight end within webhooks.timeout_secs; one cut short is sent again
    // when its lease has run out.
    if let Some(d) = deliverer
        && tokio::time::timeout(grace, d).await.is_err()
    {
        tracing::warn!("webhook deliveries did not stop in time");
    }
    result
}
