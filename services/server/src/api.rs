//! `/api/v1`: collections, documents, search and ask, as JSON (and Server-Sent Events for
//! streamed answers).

use std::collections::HashMap;
use std::path::Path;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use enclave_answer::AskEvent;
use enclave_retrieval::{Scope, parse_date_bound};
use enclave_storage::{
    Collection, DeliveryStatus, Document, DocumentFilter, DocumentSort, JobStatus,
};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use crate::auth::{Action, ApiCaller, Principal};
use crate::dto::*;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use enclave_corpus::queue::{file_name_for, original_path};
use enclave_corpus::{ReceivedFile, UploadFields};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Checks a collection name (also used as part of model names on `/v1`).
pub fn check_collection_name(name: &str) -> Result<()> {
    Ok(enclave_corpus::check_collection_name(name)?)
}

/// The collection with this name, if the caller may do `action` there (else not found, or
/// forbidden when the caller reads it).
pub async fn collection(
    state: &AppState,
    caller: &Principal,
    name: &str,
    action: Action,
) -> Result<Collection> {
    Ok(state.corpus.collection(caller, name, action).await?)
}

pub async fn collection_names(state: &AppState) -> Result<HashMap<String, String>> {
    Ok(state
        .meta
        .collections()
        .await?
        .into_iter()
        .map(|c| (c.id, c.name))
        .collect())
}

/// The document with this id, or else the one with this external id, if the caller may do
/// `action` on it (one it may not read is not found).
pub async fn find_document(
    state: &AppState,
    caller: &Principal,
    id: &str,
    action: Action,
) -> Result<Document> {
    Ok(state.corpus.document(caller, id, action).await?)
}

async fn document_out(state: &AppState, d: Document) -> Result<DocumentOut> {
    let names = collection_names(state).await?;
    let name = names.get(&d.collection_id).cloned().unwrap_or_default();
    Ok(DocumentOut::new(d, &name))
}

// ---------------------------------------------------------------- collections

/// List collections with their document counts.
#[utoipa::path(get, path = "/api/v1/collections", tag = "collections",
    responses((status = 200, body = CollectionList), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_collections(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
) -> Result<HttpResponse> {
    let stats = state.corpus.collection_stats(&caller).await?;
    let collections = state
        .corpus
        .collections(&caller, Action::Read)
        .await?
        .into_iter()
        .map(|c| {
            let s = stats.iter().find(|s| s.collection == c.name);
            CollectionOut::new(c, s)
        })
        .collect();
    Ok(HttpResponse::Ok().json(CollectionList { collections }))
}

/// Create a collection.
#[utoipa::path(post, path = "/api/v1/collections", tag = "collections",
    request_body = NewCollection,
    responses((status = 201, body = CollectionOut), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_collection(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    body: web::Json<NewCollection>,
) -> Result<HttpResponse> {
    let c = state.corpus.create_collection(&caller, &body.name).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/collections/{}", c.name)))
        .json(CollectionOut::new(c, None)))
}

/// Get a collection.
#[utoipa::path(get, path = "/api/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, body = CollectionOut), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_collection(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    let c = collection(&state, &caller, &name, Action::Read).await?;
    let stats = state.corpus.collection_stats(&caller).await?;
    let s = stats.iter().find(|s| s.collection == c.name);
    Ok(HttpResponse::Ok().json(CollectionOut::new(c, s)))
}

/// Change a collection's settings (its default retrieval mode).
#[utoipa::path(patch, path = "/api/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    request_body = CollectionSettingsBody,
    responses((status = 200, body = CollectionOut), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update_collection(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    name: web::Path<String>,
    body: web::Json<CollectionSettingsBody>,
) -> Result<HttpResponse> {
    let c = change_collection(&state, &caller, &name, &body).await?;
    let stats = state.corpus.collection_stats(&caller).await?;
    let s = stats.iter().find(|s| s.collection == c.name);
    Ok(HttpResponse::Ok().json(CollectionOut::new(c, s)))
}

/// Renames a collection and changes its settings, after checking every value; returns it.
pub async fn change_collection(
    state: &AppState,
    caller: &Principal,
    name: &str,
    body: &CollectionSettingsBody,
) -> Result<Collection> {
    let change = enclave_corpus::CollectionChange {
        name: body.name.clone(),
        mode: body.mode.clone(),
        chunk_tokens: body.chunk_tokens,
        chunk_overlap: body.chunk_overlap,
        passages: body.passages,
        passage_margin: body.passage_margin,
        reading_order: body.reading_order,
        system_prompt: body.system_prompt.clone(),
        model: body.model.clone(),
        dense_weight: body.dense_weight,
        bm25_weight: body.bm25_weight,
    };
    Ok(state
        .corpus
        .change_collection(caller, name, &change)
        .await?)
}

/// Delete a collection with all its documents, chunks and vectors.
#[utoipa::path(delete, path = "/api/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_collection(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    state.corpus.remove_collection(&caller, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------- documents

/// The multipart form of an upload (`file` is required; `collection` too, except where the
/// path names it).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The document, of any kind Enclave reads: PDF, text, Markdown, HTML, e-mail (.eml, .msg),
    /// office documents, spreadsheets, RTF or images (by OCR).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Collection name.
    collection: String,
    /// Overrides the title found in the document.
    title: Option<String>,
    /// Comma-separated tags (the field may also repeat).
    tags: Option<String>,
    /// The caller's own id (on `POST`; on `PUT` it is in the path).
    external_id: Option<String>,
    /// Who may read the document: user names, comma-separated (the field may repeat). With
    /// none of the `allowed_*` fields the document is readable by everyone who reads the
    /// collection (a replacement keeps its access list).
    allowed_users: Option<String>,
    /// Who may read the document: group names, comma-separated.
    allowed_groups: Option<String>,
    /// Who may read the document: API key names (keys that act for no user).
    allowed_keys: Option<String>,
}

/// A received multipart form.
pub(crate) struct Form {
    fields: HashMap<String, Vec<String>>,
    file: Option<ReceivedFile>,
}

impl Form {
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .and_then(|v| v.first())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Names listed in the fields `keys` (comma-separated; the fields may repeat), and whether
    /// any of those fields was given at all.
    fn names(&self, keys: &[&str]) -> (Vec<String>, bool) {
        let mut out: Vec<String> = Vec::new();
        let mut given = false;
        for key in keys {
            for value in self.fields.get(*key).into_iter().flatten() {
                given = true;
                for n in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if !out.iter().any(|x| x == n) {
                        out.push(n.to_string());
                    }
                }
            }
        }
        (out, given)
    }

    /// The access list the form gives (`allowed_users`, `allowed_groups`, `allowed_keys`), or
    /// `None` when it names none of those fields.
    pub(crate) fn readers(&self) -> Option<enclave_corpus::Readers> {
        let (users, u) = self.names(&["allowed_users"]);
        let (groups, g) = self.names(&["allowed_groups"]);
        let (keys, k) = self.names(&["allowed_keys"]);
        (u || g || k).then_some(enclave_corpus::Readers {
            users,
            groups,
            keys,
        })
    }

    /// The upload's fields besides its file.
    fn upload_fields(&self, external_id: Option<String>) -> UploadFields {
        UploadFields {
            title: self.text("title"),
            tags: self.names(&["tags", "tag"]).0,
            external_id,
            readers: self.readers(),
        }
    }

    pub(crate) async fn discard(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = tokio::fs::remove_file(&f.temp).await;
        }
    }
}

fn multipart_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!(
        "expected a multipart/form-data body with a 'file' field: {e}"
    ))
}

/// The most text fields one multipart form may have (each at most 64 KiB).
const MAX_FORM_FIELDS: usize = 64;

/// Reads a multipart upload, streaming the file to a temporary file with its hash.
pub(crate) async fn read_form(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Form> {
    let mut multipart = actix_multipart::Multipart::new(req.headers(), payload);
    let mut form = Form {
        fields: HashMap::new(),
        file: None,
    };
    let limit = state.settings.server.max_upload_bytes;
    let result: Result<()> = async {
        while let Some(mut field) = multipart.try_next().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_string();
            if name == "file" {
                if form.file.is_some() {
                    return Err(ApiError::BadRequest("only one 'file' per request".into()));
                }
                let file_name = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .map(|n| {
                        Path::new(n)
                            .file_name()
                            .map_or_else(|| n.to_string(), |f| f.to_string_lossy().into_owned())
                    })
                    .filter(|n| !n.trim().is_empty())
                    .ok_or_else(|| {
                        ApiError::BadRequest("the 'file' field has no file name".into())
                    })?;
                let temp = state.uploads.temp_path();
                let mut out = tokio::fs::File::create(&temp).await?;
                form.file = Some(ReceivedFile {
                    temp: temp.clone(),
                    name: file_name,
                    sha256: String::new(),
                    size: 0,
                    head: Vec::new(),
                });
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let mut head = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(multipart_error)?;
                    size += chunk.len() as u64;
                    if size > limit {
                        return Err(ApiError::TooLarge(format!(
                            "the file is larger than the upload limit of {limit} bytes \
                             (server.max_upload_bytes)"
                        )));
                    }
                    if head.len() < 8 {
                        head.extend_from_slice(&chunk[..chunk.len().min(8 - head.len())]);
                    }
                    hasher.update(&chunk);
                    out.write_all(&chunk).await?;
                }
                out.flush().await?;
                if let Some(f) = form.file.as_mut() {
                    f.sha256 = hex::encode(hasher.finalize());
                    f.size = size;
                    f.head = head;
                }
            } else {
                let fields: usize = form.fields.values().map(Vec::len).sum();
                if fields >= MAX_FORM_FIELDS {
                    return Err(ApiError::TooLarge(format!(
                        "the form has more than {MAX_FORM_FIELDS} fields"
                    )));
                }
                let mut value = Vec::new();
                while let Some(chunk) = field.next().await {
                    value.extend_from_slice(&chunk.map_err(multipart_error)?);
                    if value.len() > 64 * 1024 {
                        return Err(ApiError::TooLarge(format!(
                            "form field '{name}' is too long"
                        )));
                    }
                }
                let value = String::from_utf8(value).map_err(|_| {
                    ApiError::BadRequest(format!("form field '{name}' is not UTF-8"))
                })?;
                form.fields.entry(name).or_default().push(value);
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        form.discard().await;
        return Err(e);
    }
    Ok(form)
}

/// Adds a corpus change to the audit log.
pub async fn audit(
    state: &AppState,
    caller: &Principal,
    action: &str,
    collection: Option<&str>,
    document_id: Option<&str>,
    detail: serde_json::Value,
) -> Result<()> {
    Ok(state
        .corpus
        .audit(caller, action, collection, document_id, detail)
        .await?)
}

/// Stores a received upload and queues it; `external_id` makes it a create-or-replace.
pub(crate) async fn accept_upload(
    state: &AppState,
    caller: &Principal,
    form: &Form,
    collection: &str,
    external_id: Option<String>,
) -> Result<HttpResponse> {
    let Some(file) = form.file.as_ref() else {
        return Err(ApiError::BadRequest(
            "the form has no 'file' field (multipart/form-data)".into(),
        ));
    };
    let fields = form.upload_fields(external_id);
    let up = state
        .corpus
        .upload(caller, collection, file, &fields)
        .await?;
    let out = UploadOut {
        document: DocumentOut::new(up.document, &up.collection),
        unchanged: up.unchanged,
        job_id: up.job_id,
    };
    if up.unchanged {
        return Ok(HttpResponse::Ok().json(out));
    }
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/documents/{}", out.document.id),
        ))
        .json(out))
}

/// Upload a document. It is stored and queued at once (`202`, status `queued`); poll the
/// document until its status is `ready` (or `failed`, with the reason in `error`).
#[utoipa::path(post, path = "/api/v1/documents", tag = "documents",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 202, body = UploadOut), (status = 200, body = UploadOut,
        description = "Same content as the document with this external id: nothing queued"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn upload_document(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    caller.require_somewhere(Action::Write)?;
    let mut form = read_form(&state, &req, payload).await?;
    let result = async {
        let name = form
            .text("collection")
            .ok_or_else(|| ApiError::BadRequest("the form has no 'collection' field".into()))?;
        let external_id = form.text("external_id");
        accept_upload(&state, &caller, &form, &name, external_id).await
    }
    .await;
    form.discard().await;
    result
}

/// Create or replace the document with this external id (the caller's own id), in the
/// collection named by the form. Same content: `200`, nothing changes. New content: `202`, a
/// new version replaces the old one atomically for readers once processed.
#[utoipa::path(put, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "The caller's own (external) document id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 202, body = UploadOut), (status = 200, body = UploadOut),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn put_document(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    external_id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    caller.require_somewhere(Action::Write)?;
    let mut form = read_form(&state, &req, payload).await?;
    let result = async {
        let name = form
            .text("collection")
            .ok_or_else(|| ApiError::BadRequest("the form has no 'collection' field".into()))?;
        accept_upload(
            &state,
            &caller,
            &form,
            &name,
            Some(external_id.into_inner()),
        )
        .await
    }
    .await;
    form.discard().await;
    result
}

/// A listing's paging: `limit` from 1 to `max` (`default` when absent), `offset` at least 0.
pub(crate) fn paging(
    limit: Option<i64>,
    offset: Option<i64>,
    default: i64,
    max: i64,
) -> Result<(i64, i64)> {
    let (limit, offset) = (limit.unwrap_or(default), offset.unwrap_or(0));
    if !(1..=max).contains(&limit) || offset < 0 {
        return Err(ApiError::Invalid(format!(
            "limit must be between 1 and {max} and offset at least 0"
        )));
    }
    Ok((limit, offset))
}

/// A job status named in a request.
pub fn job_status(s: &str) -> Result<JobStatus> {
    s.parse().map_err(|_| {
        ApiError::Invalid(format!(
            "unknown job status '{s}' (queued, running, done, dead, cancelled)"
        ))
    })
}

/// The ingest queue: jobs, newest first, and how many are in each status.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = JobList), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_jobs(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    query: web::Query<JobQuery>,
) -> Result<HttpResponse> {
    caller.require_somewhere(Action::Write)?;
    let (limit, offset) = paging(query.limit, query.offset, 50, 500)?;
    let status = query.status.as_deref().map(job_status).transpose()?;
    let document = match &query.document {
        Some(d) => Some(find_document(&state, &caller, d, Action::Write).await?.id),
        None => None,
    };
    let scope = job_scope(&state, &caller).await?;
    let jobs = state
        .meta
        .jobs(status, document.as_deref(), scope.as_ref(), limit, offset)
        .await?;
    let c = state.meta.job_counts(scope.as_ref()).await?;
    Ok(HttpResponse::Ok().json(JobList {
        jobs: jobs.into_iter().map(JobOut::from).collect(),
        queued: c.queued,
        running: c.running,
        done: c.done,
        dead: c.dead,
        cancelled: c.cancelled,
    }))
}

/// The documents whose jobs the caller sees: those it may change (`None`: all of them).
pub async fn job_scope(state: &AppState, caller: &Principal) -> Result<Option<DocumentFilter>> {
    if caller.reads_every_document() {
        return Ok(None);
    }
    Ok(Some(
        state
            .corpus
            .narrow(caller, DocumentFilter::default(), Action::Write)
            .await?,
    ))
}

/// A job of a document the caller may change (any other is not found).
pub async fn find_job(
    state: &AppState,
    caller: &Principal,
    id: &str,
) -> Result<enclave_storage::JobRecord> {
    Ok(state.corpus.job(caller, id).await?)
}

/// One job, with its progress and last error.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobOut), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_job(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    caller.require_somewhere(Action::Write)?;
    Ok(HttpResponse::Ok().json(JobOut::from(find_job(&state, &caller, &id).await?)))
}

/// Queue a dead (or cancelled) job again, with its attempts reset.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobOut), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn retry_job(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let job = retry(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(JobOut::from(job)))
}

/// Queues a dead or cancelled job again and records who did; returns the job as it is now.
pub async fn retry(
    state: &AppState,
    caller: &Principal,
    id: &str,
) -> Result<enclave_storage::JobRecord> {
    let job = state.corpus.retry_job(caller, id).await?;
    state.jobs.wake();
    Ok(job)
}

/// A delivery status named in a request.
pub fn delivery_status(s: &str) -> Result<DeliveryStatus> {
    s.parse().map_err(|_| {
        ApiError::Invalid(format!(
            "unknown delivery status '{s}' (pending, delivered, failed)"
        ))
    })
}

/// Webhook deliveries, newest first, and how many are in each status (administrators).
#[utoipa::path(get, path = "/api/v1/webhooks/deliveries", tag = "webhooks", params(DeliveryQuery),
    responses((status = 200, body = DeliveryList), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse> {
    caller.require_everywhere(Action::Administer)?;
    let (limit, offset) = paging(query.limit, query.offset, 50, 500)?;
    let status = query.status.as_deref().map(delivery_status).transpose()?;
    let deliveries = state.meta.deliveries(status, limit, offset).await?;
    let c = state.meta.delivery_counts().await?;
    Ok(HttpResponse::Ok().json(DeliveryList {
        enabled: state.settings.webhooks.enabled(),
        deliveries: deliveries.into_iter().map(DeliveryOut::from).collect(),
        pending: c.pending,
        delivered: c.delivered,
        failed: c.failed,
    }))
}

/// Send a failed (or delivered) webhook delivery again, with its attempts reset
/// (administrators).
#[utoipa::path(post, path = "/api/v1/webhooks/deliveries/{id}/redeliver", tag = "webhooks",
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryOut), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn redeliver(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let d = redeliver_delivery(&state, &caller, &id).await?;
    Ok(HttpResponse::Ok().json(DeliveryOut::from(d)))
}

/// Puts a delivery back in the outbox and records who did; returns it as it is now.
pub async fn redeliver_delivery(
    state: &AppState,
    caller: &Principal,
    id: &str,
) -> Result<enclave_storage::Delivery> {
    Ok(state.corpus.redeliver(caller, id).await?)
}

/// The audit log of corpus changes, newest first (administrators).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn audit_log(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse> {
    caller.require_somewhere(Action::Administer)?;
    let (limit, offset) = paging(query.limit, query.offset, 100, 1000)?;
    let entries = state
        .meta
        .audit_entries(query.document.as_deref(), limit, offset)
        .await?;
    let administered: Vec<String> = state
        .corpus
        .collections(&caller, Action::Administer)
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let mut shown = Vec::with_capacity(entries.len());
    for e in entries {
        if state
            .corpus
            .may_see_audit_entry(
                &caller,
                e.collection.as_deref(),
                e.document_id.as_deref(),
                &administered,
            )
            .await?
        {
            shown.push(AuditOut::from(e));
        }
    }
    Ok(HttpResponse::Ok().json(AuditList { entries: shown }))
}

/// The question audit: who asked or searched what, through which endpoint, what was
/// retrieved and cited (administrators of every collection). `format=jsonl` exports JSON Lines.
#[utoipa::path(get, path = "/api/v1/audit/questions", tag = "audit", params(QuestionQuery),
    responses((status = 200, body = QuestionList), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn question_audit(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    query: web::Query<QuestionQuery>,
) -> Result<HttpResponse> {
    caller.require_everywhere(Action::Administer)?;
    let (limit, offset) = paging(query.limit, query.offset, 100, 10_000)?;
    let actor_id = match (&query.user, &query.key) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Invalid(
                "give either 'user' or 'key', not both".into(),
            ));
        }
        (Some(u), None) => Some(
            state
                .corpus
                .subject_id(enclave_storage::SubjectKind::User, u)
                .await?,
        ),
        (None, Some(k)) => Some(
            state
                .corpus
                .subject_id(enclave_storage::SubjectKind::Key, k)
                .await?,
        ),
        (None, None) => None,
    };
    let filter = enclave_storage::QuestionFilter {
        actor_id,
        endpoint: query.endpoint.clone().filter(|e| !e.is_empty()),
        since: query.since.clone().filter(|e| !e.is_empty()),
        until: query.until.clone().filter(|e| !e.is_empty()),
        collection: query.collection.clone().filter(|e| !e.is_empty()),
    };
    let entries = state
        .questions
        .list(&caller, &filter, limit, offset)
        .await?;
    match query.format.as_deref().unwrap_or("json") {
        "json" => Ok(HttpResponse::Ok().json(QuestionList {
            questions: entries.into_iter().map(QuestionOut::from).collect(),
        })),
        "jsonl" => questions_jsonl(entries),
        other => Err(ApiError::Invalid(format!(
            "unknown format '{other}': json or jsonl"
        ))),
    }
}

/// Question audit entries as a JSON Lines download, one entry per line.
pub fn questions_jsonl(entries: Vec<enclave_storage::QuestionEntry>) -> Result<HttpResponse> {
    let mut body = String::new();
    for e in entries {
        body.push_str(
            &serde_json::to_string(&QuestionOut::from(e))
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        );
        body.push('\n');
    }
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"enclave-questions.jsonl\"",
        ))
        .body(body))
}

/// The storage filter of a listing, narrowed to the documents the caller may do `action` on.
pub async fn document_filter(
    state: &AppState,
    caller: &Principal,
    f: &BulkFilter,
    top_level_only: bool,
    action: Action,
) -> Result<DocumentFilter> {
    Ok(state
        .corpus
        .document_filter(caller, &f.criteria(), top_level_only, action)
        .await?)
}

/// A listing's order: `sort` (default `updated`) and `order` (`desc`, default, or `asc`).
pub fn document_sort(sort: Option<&str>, order: Option<&str>) -> Result<(DocumentSort, bool)> {
    let sort = match sort.filter(|s| !s.is_empty()) {
        None => DocumentSort::default(),
        Some(s) => DocumentSort::parse(s).ok_or_else(|| {
            ApiError::Invalid(format!(
                "unknown sort '{s}': updated, created, title, status, pages, chunks or size"
            ))
        })?,
    };
    let descending = match order.filter(|s| !s.is_empty()) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(o) => {
            return Err(ApiError::Invalid(format!(
                "unknown order '{o}': asc or desc"
            )));
        }
    };
    Ok((sort, descending))
}

/// List documents, most recently changed first (or in the order asked).
#[utoipa::path(get, path = "/api/v1/documents", tag = "documents", params(DocumentQuery),
    responses((status = 200, body = DocumentList), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_documents(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    query: web::Query<DocumentQuery>,
) -> Result<HttpResponse> {
    let (limit, offset) = paging(query.limit, query.offset, 50, 500)?;
    let filter = document_filter(
        &state,
        &caller,
        &BulkFilter {
            collection: query.collection.clone(),
            status: query.status.clone(),
            mime_type: query.mime_type.clone(),
            tag: query.tag.clone(),
            q: query.q.clone(),
            disabled: query.disabled,
        },
        !query.attachments,
        Action::Read,
    )
    .await?;
    let (sort, descending) = document_sort(query.sort.as_deref(), query.order.as_deref())?;
    let page = state
        .meta
        .list_documents(&filter, sort, descending, limit, offset)
        .await?;
    let names = collection_names(&state).await?;
    let documents = page
        .documents
        .into_iter()
        .map(|d| {
            let name = names.get(&d.collection_id).cloned().unwrap_or_default();
            DocumentOut::new(d, &name)
        })
        .collect();
    Ok(HttpResponse::Ok().json(DocumentList {
        documents,
        total: page.total,
        limit,
        offset,
    }))
}

/// Get a document (by id, or by external id) with its versions.
#[utoipa::path(get, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id or external id")),
    responses((status = 200, body = DocumentDetail), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_document(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let d = find_document(&state, &caller, &id, Action::Read).await?;
    let versions = state.meta.version_records(&d.id).await?;
    let attachments = state
        .corpus
        .children(&caller, &d)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    let readers = state.corpus.readers(&d.access).await?.into();
    let document = document_out(&state, d).await?;
    Ok(HttpResponse::Ok().json(DocumentDetail {
        document,
        versions: versions.into_iter().map(VersionOut::from).collect(),
        attachments,
        readers,
    }))
}

/// Delete a document (and its attachments) with its chunks and vectors.
#[utoipa::path(delete, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id or external id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_document(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let d = find_document(&state, &caller, &id, Action::Write).await?;
    remove_document(&state, &caller, &d).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a document from both stores, releases its original, records who did it.
pub async fn remove_document(state: &AppState, caller: &Principal, d: &Document) -> Result<()> {
    Ok(state.corpus.remove_document(caller, d).await?)
}

/// Process a document again from its original (after a settings or model change).
#[utoipa::path(post, path = "/api/v1/documents/{id}/reindex", tag = "documents",
    params(("id" = String, Path, description = "Document id or external id")),
    responses((status = 202, body = DocumentOut), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The original is not available"),
        (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn reindex_document(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let d = find_document(&state, &caller, &id, Action::Write).await?;
    let name = queue_reindex(&state, &caller, &d).await?;
    let d = find_document(&state, &caller, &d.id, Action::Read).await?;
    Ok(HttpResponse::Accepted().json(DocumentOut::new(d, &name)))
}

/// Queues a document to be processed again from its original; returns its collection's name.
pub async fn queue_reindex(state: &AppState, caller: &Principal, d: &Document) -> Result<String> {
    Ok(state.corpus.reindex(caller, d).await?)
}

/// Change a document without processing it again: title, tags, metadata, whether it is
/// searched (`disabled`), its collection (a move, with its attachments).
#[utoipa::path(patch, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id or external id")),
    request_body = DocumentPatch,
    responses((status = 200, body = DocumentOut), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn patch_document(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
    body: web::Json<DocumentPatch>,
) -> Result<HttpResponse> {
    let d = find_document(&state, &caller, &id, Action::Write).await?;
    let d = change_document(&state, &caller, d, &body).await?;
    Ok(HttpResponse::Ok().json(document_out(&state, d).await?))
}

/// Applies a [`DocumentPatch`] to both stores and records it; returns the document.
pub async fn change_document(
    state: &AppState,
    caller: &Principal,
    d: Document,
    patch: &DocumentPatch,
) -> Result<Document> {
    let change = enclave_corpus::DocumentChange {
        title: patch.title.clone(),
        tags: patch.tags.clone(),
        metadata: patch.metadata.clone(),
        disabled: patch.disabled,
        collection: patch.collection.clone(),
        readers: patch.readers.clone().map(Into::into),
    };
    Ok(state.corpus.change_document(caller, &d, &change).await?)
}

/// Leave one chunk of a document out of retrieval, or take it back in.
#[utoipa::path(patch, path = "/api/v1/documents/{id}/chunks/{chunk}", tag = "documents",
    params(("id" = String, Path, description = "Document id or external id"),
        ("chunk" = String, Path, description = "Chunk id")),
    request_body = ChunkPatch,
    responses((status = 200, body = ChunkOut), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn patch_chunk(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    path: web::Path<(String, String)>,
    body: web::Json<ChunkPatch>,
) -> Result<HttpResponse> {
    let (id, chunk) = path.into_inner();
    let d = find_document(&state, &caller, &id, Action::Write).await?;
    let c = change_chunk(&state, &caller, &d, &chunk, body.disabled).await?;
    Ok(HttpResponse::Ok().json(ChunkOut {
        id: c.id,
        ordinal: c.ordinal,
        page_start: c.page_start,
        page_end: c.page_end,
        char_start: c.char_start,
        char_end: c.char_end,
        token_count: c.token_count,
        section: c.section,
        disabled: c.disabled,
        text: c.text,
    }))
}

/// Disables or enables one chunk of `d` in both stores and records it.
pub async fn change_chunk(
    state: &AppState,
    caller: &Principal,
    d: &Document,
    chunk_id: &str,
    disabled: bool,
) -> Result<enclave_storage::ChunkRecord> {
    Ok(state
        .corpus
        .change_chunk(caller, d, chunk_id, disabled)
        .await?)
}

/// Apply one action to many documents: the listed ones, or every top-level document matching
/// a filter (`delete`, `reindex`, `disable`, `enable`, `move` to `collection`). Each document
/// succeeds or fails on its own; failures are listed with their reasons.
#[utoipa::path(post, path = "/api/v1/documents/bulk", tag = "documents",
    request_body = BulkBody,
    responses((status = 200, body = BulkOut), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn bulk_documents(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    body: web::Json<BulkBody>,
) -> Result<HttpResponse> {
    caller.require_somewhere(Action::Write)?;
    Ok(HttpResponse::Ok().json(bulk(&state, &caller, &body).await?))
}

/// Runs a [`BulkBody`].
pub async fn bulk(state: &AppState, caller: &Principal, body: &BulkBody) -> Result<BulkOut> {
    let action = enclave_corpus::BulkAction::parse(&body.action, body.collection.as_deref())?;
    let target = match (&body.ids, &body.filter) {
        (Some(ids), None) => enclave_corpus::BulkTarget::Ids(ids.clone()),
        (None, Some(f)) => enclave_corpus::BulkTarget::Matching(f.criteria()),
        _ => return Err(ApiError::Invalid("give either 'ids' or 'filter'".into())),
    };
    let out = state.corpus.bulk(caller, &action, &target).await?;
    Ok(BulkOut {
        action: out.action.to_string(),
        matched: out.matched,
        succeeded: out.succeeded,
        failed: out
            .failed
            .into_iter()
            .map(|(id, error)| BulkFailure { id, error })
            .collect(),
    })
}

/// The text of every page of a document's active version.
#[utoipa::path(get, path = "/api/v1/documents/{id}/pages", tag = "documents",
    params(("id" = String, Path, description = "Document id or external id")),
    responses((status = 200, body = PageList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn document_pages(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let d = find_document(&state, &caller, &id, Action::Read).await?;
    let pages = state.meta.active_pages(&d.id).await?;
    Ok(HttpResponse::Ok().json(PageList {
        document_id: d.id,
        version: d.version,
        pages: pages
            .into_iter()
            .map(|p| PageOut {
                page_number: p.page_number,
                char_start: p.char_start,
                text: p.text,
            })
            .collect(),
    }))
}

/// The chunks of a document's active version, with their page ranges and offsets.
#[utoipa::path(get, path = "/api/v1/documents/{id}/chunks", tag = "documents",
    params(("id" = String, Path, description = "Document id or external id")),
    responses((status = 200, body = ChunkList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn document_chunks(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let d = find_document(&state, &caller, &id, Action::Read).await?;
    let curator = caller.may(Action::Write, &d.collection_id);
    let mut chunks = state.meta.active_chunks(&d.id).await?;
    // Chunks a curator left out of retrieval are for curators only.
    chunks.retain(|c| curator || !c.disabled);
    Ok(HttpResponse::Ok().json(ChunkList {
        document_id: d.id,
        version: d.version,
        chunks: chunks
            .into_iter()
            .map(|c| ChunkOut {
                id: c.id,
                ordinal: c.ordinal,
                page_start: c.page_start,
                page_end: c.page_end,
                char_start: c.char_start,
                char_end: c.char_end,
                token_count: c.token_count,
                section: c.section,
                disabled: c.disabled,
                text: c.text,
            })
            .collect(),
    }))
}

/// The original file, with its content type. Served as an inert download: a sandboxing
/// content security policy keeps HTML originals from running in Enclave's origin.
pub async fn original_file(state: &AppState, caller: &Principal, id: &str) -> Result<HttpResponse> {
    let d = find_document(state, caller, id, Action::Read).await?;
    let Some(path) = original_path(&d, &state.uploads) else {
        return Err(ApiError::NotFound(format!(
            "the original of document {} is not available ({})",
            d.id, d.source_uri
        )));
    };
    let bytes = tokio::fs::read(&path).await?;
    let name: String = file_name_for(&d, &path)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(HttpResponse::Ok()
        .content_type(
            d.mime_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        )
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{name}\""),
        ))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(bytes))
}

/// Download the original file.
#[utoipa::path(get, path = "/api/v1/documents/{id}/file", tag = "documents",
    params(("id" = String, Path, description = "Document id or external id")),
    responses((status = 200, description = "The original, with its content type",
        content_type = "application/octet-stream"), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn document_file(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    original_file(&state, &caller, &id).await
}

// ---------------------------------------------------------------- search and ask

/// The document filters of a search or ask body.
pub fn scope(body: &ScopeBody) -> Result<Scope> {
    let bound = |d: &Option<String>, end: bool| -> Result<Option<i64>> {
        d.as_deref()
            .map(|d| parse_date_bound(d, end).map_err(|e| ApiError::Invalid(e.to_string())))
            .transpose()
    };
    Ok(Scope {
        mime_types: body.types.clone(),
        tags: body.tags.clone(),
        date_from: bound(&body.date_from, false)?,
        date_to: bound(&body.date_to, true)?,
        authors: body.authors.clone(),
    })
}

/// The query of the API's search body.
pub fn query(body: &SearchBody) -> Result<enclave_corpus::Query> {
    Ok(enclave_corpus::Query {
        question: enclave_corpus::Question {
            text: body.query.clone(),
            collections: body.collections.clone(),
            mode: body.mode.clone(),
            scope: scope(&body.scope)?,
            ..Default::default()
        },
        limit: body.limit.unwrap_or(10),
        expand_neighbours: body.expand_neighbours,
    })
}

/// Passages that answer a query (no model): hybrid dense + BM25 by default.
#[utoipa::path(post, path = "/api/v1/search", tag = "search", request_body = SearchBody,
    responses((status = 200, body = SearchOut), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn search(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    body: web::Json<SearchBody>,
) -> Result<HttpResponse> {
    let results = state
        .corpus
        .search(&caller, &state.retriever()?, &query(&body)?, "api.search")
        .await?;
    Ok(HttpResponse::Ok().json(SearchOut {
        passages: PassageOut::list(&results.passages),
        relevant: results.relevant,
        unmatched_terms: results.unmatched_terms.clone(),
        names_apart: results.names_apart.clone(),
        mode: results.mode.to_string(),
        took_ms: results.took_ms,
    }))
}

/// Keeps the in-flight gauge right however an answer ends.
pub struct InFlight(crate::metrics::Metrics);

impl InFlight {
    pub fn start(metrics: &crate::metrics::Metrics) -> Self {
        metrics.answers_in_flight.inc();
        Self(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answers_in_flight.dec();
    }
}

/// Starts answering the caller's question (recorded in the question audit as coming from
/// `endpoint`), counting refusals for busy.
pub async fn start_answer(
    state: &AppState,
    caller: &Principal,
    question: &enclave_corpus::Question,
    endpoint: &str,
) -> Result<enclave_corpus::Answering> {
    let asker = state.asker()?;
    match state.corpus.ask(caller, &asker, question, endpoint).await {
        Ok(answering) => Ok(answering),
        Err(e) => {
            let e = ApiError::from(e);
            if let ApiError::Busy(_) = e {
                state.metrics.answers.with_label_values(&["busy"]).inc();
            }
            Err(e)
        }
    }
}

/// One Server-Sent Event.
pub fn sse_event(event: &str, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    Bytes::from(format!("event: {event}\ndata: {json}\n\n"))
}

/// A streamed HTTP response of Server-Sent Events.
pub fn sse_response(
    stream: impl futures::Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

/// A grounded answer with citations (JSON), or streamed as Server-Sent Events.
#[utoipa::path(post, path = "/api/v1/ask", tag = "search", request_body = AskBody,
    responses((status = 200, body = AnswerOut, description = "The answer; with `stream` (or \
        `Accept: text/event-stream`) a `text/event-stream` of `sources`, `token` ({\"text\"}), \
        then `done` (the answer) or `error`"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn ask(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    req: HttpRequest,
    body: web::Json<AskBody>,
) -> Result<HttpResponse> {
    let question = enclave_corpus::Question {
        text: body.question.clone(),
        collections: body.collections.clone(),
        mode: body.mode.clone(),
        scope: scope(&body.scope)?,
        history: body
            .history
            .iter()
            .map(|t| enclave_answer::Turn {
                question: t.question.clone(),
                answer: t.answer.clone(),
                searched: None,
            })
            .collect(),
        keep: enclave_corpus::Keep::named(body.conversation_id.as_deref()),
    };
    let wants_stream = body.stream
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
    let guard = InFlight::start(&state.metrics);
    let mut answering = start_answer(&state, &caller, &question, "api.ask").await?;
    if !wants_stream {
        while let Some(event) = answering.next().await {
            match event {
                AskEvent::Done(answer) => {
                    state.metrics.answer_done(&answer);
                    drop(guard);
                    return Ok(HttpResponse::Ok().json(AnswerOut::kept(&answer, &answering)));
                }
                AskEvent::Failed(e) => {
                    state.metrics.answers.with_label_values(&["failed"]).inc();
                    return Err(ApiError::Internal(format!("generation failed: {e}")));
                }
                AskEvent::Sources(_) | AskEvent::Token(_) => {}
            }
        }
        return Err(ApiError::Internal("the answer stream ended early".into()));
    }
    let metrics = state.metrics.clone();
    let stream = futures::stream::unfold(
        (answering, guard, metrics, false),
        |(mut answering, guard, metrics, finished)| async move {
            if finished {
                return None;
            }
            let (bytes, finished) = match answering.next().await {
                Some(AskEvent::Sources(p)) => (sse_event("sources", &PassageOut::list(&p)), false),
                Some(AskEvent::Token(t)) => {
                    (sse_event("token", &serde_json::json!({ "text": t })), false)
                }
                Some(AskEvent::Done(answer)) => {
                    metrics.answer_done(&answer);
                    (
                        sse_event("done", &AnswerOut::kept(&answer, &answering)),
                        true,
                    )
                }
                Some(AskEvent::Failed(e)) => {
                    metrics.answers.with_label_values(&["failed"]).inc();
                    let body = ApiError::Internal(format!("generation failed: {e}")).body();
                    (sse_event("error", &body), true)
                }
                None => return None,
            };
            Some((
                Ok::<_, actix_web::Error>(bytes),
                (answering, guard, metrics, finished),
            ))
        },
    );
    Ok(sse_response(stream))
}

// ---------------------------------------------------------------- health

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
    })
}

/// Readiness: both stores answer and the models are loaded; says what answered and which
/// engine and model serve answers. A store that is down makes it 503 with the store named.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse> {
    let (database, vectors) = state.check_stores().await?;
    if let Some(e) = state.not_ready() {
        return Err(e);
    }
    let info = state.asker()?.engine();
    Ok(HttpResponse::Ok().json(Readiness {
        status: "ready".into(),
        engine: info.engine,
        model: info.model,
        threads: info.threads,
        slots: info.slots,
        database,
        vectors,
    }))
}

/// Prometheus metrics.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
