//! `/api/v1`: collections, documents, search and ask, as JSON (and Server-Sent Events for
//! streamed answers).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use enclave_answer::{AskEvent, AskRequest};
use enclave_ingest::StoredContent;
use enclave_ingest::parse::DocumentKind;
use enclave_retrieval::{Scope, SearchRequest, parse_date_bound};
use enclave_storage::{
    Collection, DeliveryStatus, Document, DocumentFilter, DocumentSort, JobStatus, NewVersion,
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
use crate::worker::{Job, file_name_for, original_path, reindex_job};
use enclave_ingest::uploads::UPLOAD_SCHEME;

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
    let c = collection(&state, &caller, &name, Action::Administer).await?;
    let c = change_collection(&state, &caller, c, &body).await?;
    let stats = state.corpus.collection_stats(&caller).await?;
    let s = stats.iter().find(|s| s.collection == c.name);
    Ok(HttpResponse::Ok().json(CollectionOut::new(c, s)))
}

/// Renames a collection and changes its settings, after checking every value; returns it.
pub async fn change_collection(
    state: &AppState,
    caller: &Principal,
    c: Collection,
    body: &CollectionSettingsBody,
) -> Result<Collection> {
    let mut settings = match c.settings.clone() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let mut set = |key: &str, value: Option<serde_json::Value>| match value {
        Some(v) => settings.insert(key.into(), v),
        None => settings.remove(key),
    };
    if let Some(mode) = &body.mode {
        set(
            "mode",
            parse_mode(mode.as_deref())?.map(|m| m.to_string().into()),
        );
    }
    // Two of the embedding model's input tokens are its own markers ([CLS], [SEP]).
    let max_input = state.settings.embedding.max_input_tokens.saturating_sub(2) as u64;
    if let Some(n) = body.chunk_tokens {
        if let Some(n) = n.filter(|n| !(16..=max_input).contains(n)) {
            return Err(ApiError::Invalid(format!(
                "chunk_tokens {n}: from 16 to {max_input} (what the embedding model reads)"
            )));
        }
        set("chunk_tokens", n.map(Into::into));
    }
    if let Some(n) = body.chunk_overlap {
        set("chunk_overlap", n.map(Into::into));
    }
    if let Some(n) = body.passages {
        if let Some(n) = n.filter(|n| !(1..=50).contains(n)) {
            return Err(ApiError::Invalid(format!("passages {n}: from 1 to 50")));
        }
        set("passages", n.map(Into::into));
    }
    if let Some(model) = &body.model {
        let model = model.as_deref().map(str::trim).filter(|m| !m.is_empty());
        if let Some(m) = model
            && !state.settings.generation.models.contains_key(m)
        {
            let known: Vec<&str> = state
                .settings
                .generation
                .models
                .keys()
                .map(String::as_str)
                .collect();
            return Err(ApiError::Invalid(format!(
                "unknown model '{m}': the server offers {} (generation.models)",
                if known.is_empty() {
                    "no other model".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        set("model", model.map(Into::into));
    }
    if let Some(p) = &body.system_prompt {
        let p = p.as_deref().map(str::trim).filter(|p| !p.is_empty());
        if let Some(p) = p.filter(|p| p.chars().count() > 4000) {
            return Err(ApiError::Invalid(format!(
                "the system prompt has {} characters, at most 4,000",
                p.chars().count()
            )));
        }
        set("system_prompt", p.map(Into::into));
    }
    let settings = serde_json::Value::Object(settings);
    let chunking = &state.settings.chunking;
    enclave_ingest::chunk_sizes(&settings, chunking.max_tokens, chunking.overlap_tokens)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let mut name = c.name.clone();
    if let Some(new_name) = body.name.as_deref().map(str::trim).filter(|n| *n != c.name) {
        check_collection_name(new_name)?;
        state.meta.rename_collection(&c.id, new_name).await?;
        audit(
            state,
            caller,
            "rename_collection",
            Some(new_name),
            None,
            serde_json::json!({"from": c.name, "to": new_name}),
        )
        .await?;
        name = new_name.to_string();
    }
    if settings != c.settings {
        state.meta.set_collection_settings(&c.id, &settings).await?;
        audit(
            state,
            caller,
            "update_collection",
            Some(&name),
            None,
            settings,
        )
        .await?;
    }
    collection(state, caller, &name, Action::Administer).await
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
    /// The document: PDF, plain text, Markdown, HTML or e-mail (.eml).
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

struct ReceivedFile {
    temp: PathBuf,
    name: String,
    sha256: String,
    size: u64,
    head: Vec<u8>,
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

    fn tags(&self) -> Result<Vec<String>> {
        let mut tags = Vec::new();
        for key in ["tags", "tag"] {
            for value in self.fields.get(key).into_iter().flatten() {
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if t.len() > 64 {
                        return Err(ApiError::Invalid(format!("tag '{t}' is longer than 64")));
                    }
                    if !tags.iter().any(|x| x == t) {
                        tags.push(t.to_string());
                    }
                }
            }
        }
        Ok(tags)
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

fn extension_of(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::Pdf => "pdf",
        DocumentKind::Text => "txt",
        DocumentKind::Markdown => "md",
        DocumentKind::Html => "html",
        DocumentKind::Email => "eml",
    }
}

/// Stores a received upload and queues it; `external_id` makes it a create-or-replace.
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

pub(crate) async fn accept_upload(
    state: &AppState,
    caller: &Principal,
    form: &mut Form,
    collection: &Collection,
    external_id: Option<String>,
) -> Result<HttpResponse> {
    let tags = form.tags()?;
    let title = form.text("title");
    let Some(file) = form.file.as_ref() else {
        return Err(ApiError::BadRequest(
            "the form has no 'file' field (multipart/form-data)".into(),
        ));
    };
    let Some(kind) = DocumentKind::detect(Path::new(&file.name), &file.head) else {
        return Err(ApiError::UnsupportedType(format!(
            "'{}' is not a supported type (PDF, .txt, .md, .html, .eml)",
            file.name
        )));
    };
    if file.size == 0 {
        return Err(ApiError::Invalid(format!("'{}' is empty", file.name)));
    }
    if let Some(id) = &external_id
        && (id.len() > 256 || id.chars().any(char::is_control))
    {
        return Err(ApiError::Invalid(
            "an external id is at most 256 characters, without control characters".into(),
        ));
    }
    let source_uri = match &external_id {
        Some(id) => format!("{UPLOAD_SCHEME}{}/external/{id}", collection.name),
        None => format!(
            "{UPLOAD_SCHEME}{}/{}/{}",
            collection.name,
            uuid::Uuid::new_v4(),
            file.name
        ),
    };
    let existing = state
        .meta
        .document_by_source(&collection.id, &source_uri)
        .await?;
    if let Some(doc) = &existing
        && !caller.can_read(doc)
    {
        // Replacing a document the caller may not read would tell it the document exists.
        return Err(ApiError::NotFound(format!(
            "document '{}' does not exist for '{}' (a document it may not read cannot be \
             replaced by it)",
            external_id.as_deref().unwrap_or(&file.name),
            caller.name
        )));
    }
    let access = match form.readers() {
        Some(readers) => state.corpus.access_tokens(&readers).await?,
        None => existing
            .as_ref()
            .map(|d| d.access.clone())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| vec![enclave_corpus::PUBLIC.to_string()]),
    };
    let file = form.file.as_ref().expect("checked above");
    if let Some(doc) = &existing
        && doc.sha256 == file.sha256
        && doc.status == "ready"
        && doc.tags == tags
        && doc.access == access
        && title.as_ref().is_none_or(|t| t == &doc.title)
    {
        let out = UploadOut {
            document: DocumentOut::new(doc.clone(), &collection.name),
            unchanged: true,
            job_id: None,
        };
        form.discard().await;
        return Ok(HttpResponse::Ok().json(out));
    }
    let file = form.file.take().expect("checked above");
    let path = state
        .uploads
        .keep(&file.temp, &file.sha256, extension_of(kind))
        .await?;
    let new = NewVersion {
        collection_id: collection.id.clone(),
        source_uri: source_uri.clone(),
        external_id: external_id.clone(),
        parent_id: None,
        title: title.clone().unwrap_or_else(|| file.name.clone()),
        mime_type: Some(kind.mime_type().to_string()),
        sha256: file.sha256.clone(),
        byte_size: file.size as i64,
        metadata: serde_json::json!({}),
        tags: tags.clone(),
        access,
    };
    let document_id = state.meta.queue_document(&new).await?;
    let previous_sha = existing
        .as_ref()
        .map(|d| d.sha256.clone())
        .filter(|s| s != &file.sha256);
    // Read before the worker can start on it: the answer shows the document as queued.
    let doc =
        state.meta.document(&document_id).await?.ok_or_else(|| {
            ApiError::NotFound(format!("document '{document_id}' does not exist"))
        })?;
    audit(
        state,
        caller,
        if existing.is_some() {
            "replace"
        } else {
            "upload"
        },
        Some(&collection.name),
        Some(&document_id),
        serde_json::json!({
            "file": file.name,
            "sha256": file.sha256,
            "bytes": file.size,
            "external_id": external_id,
        }),
    )
    .await?;
    let job = state
        .jobs
        .submit(Job {
            document_id: document_id.clone(),
            content: StoredContent {
                collection: collection.name.clone(),
                path,
                file_name: file.name.clone(),
                source_uri,
                external_id,
                title,
                tags,
                access: new.access.clone(),
                force: existing.is_some(),
            },
            previous_sha,
        })
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/v1/documents/{document_id}")))
        .json(UploadOut {
            document: DocumentOut::new(doc, &collection.name),
            unchanged: false,
            job_id: Some(job.id),
        }))
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
        let c = collection(&state, &caller, &name, Action::Write).await?;
        let external_id = form.text("external_id");
        accept_upload(&state, &caller, &mut form, &c, external_id).await
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
        let c = collection(&state, &caller, &name, Action::Write).await?;
        accept_upload(
            &state,
            &caller,
            &mut form,
            &c,
            Some(external_id.into_inner()),
        )
        .await
    }
    .await;
    form.discard().await;
    result
}

/// A listing's paging: `limit` from 1 to `max` (`default` when absent), `offset` at least 0.
fn paging(limit: Option<i64>, offset: Option<i64>, default: i64, max: i64) -> Result<(i64, i64)> {
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

/// The storage filter of a listing or a bulk action, narrowed to the documents the caller may
/// do `action` on.
pub async fn document_filter(
    state: &AppState,
    caller: &Principal,
    f: &BulkFilter,
    top_level_only: bool,
    action: Action,
) -> Result<DocumentFilter> {
    let collection_id = match f.collection.as_deref().filter(|c| !c.is_empty()) {
        Some(name) => Some(collection(state, caller, name, action).await?.id),
        None => None,
    };
    let some = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let filter = DocumentFilter {
        collection_id,
        status: some(&f.status),
        mime_type: some(&f.mime_type),
        tag: some(&f.tag),
        top_level_only,
        query: some(&f.q),
        disabled: f.disabled,
        ..Default::default()
    };
    Ok(state.corpus.narrow(caller, filter, action).await?)
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
    let names = collection_names(state).await?;
    let name = names.get(&d.collection_id).cloned().unwrap_or_default();
    let Some(job) = reindex_job(d, &state.uploads, &name) else {
        return Err(ApiError::Conflict(format!(
            "the original of document {} is not available ({}): re-index its parent or \
             upload it again",
            d.id, d.source_uri
        )));
    };
    state
        .meta
        .queue_document(&NewVersion {
            collection_id: d.collection_id.clone(),
            source_uri: d.source_uri.clone(),
            external_id: d.external_id.clone(),
            parent_id: d.parent_id.clone(),
            title: d.title.clone(),
            mime_type: d.mime_type.clone(),
            sha256: d.sha256.clone(),
            byte_size: d.byte_size,
            metadata: d.metadata.clone(),
            tags: d.tags.clone(),
            access: d.access.clone(),
        })
        .await?;
    state.jobs.submit(job).await?;
    audit(
        state,
        caller,
        "reindex",
        Some(&name),
        Some(&d.id),
        serde_json::json!({}),
    )
    .await?;
    Ok(name)
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

/// The most documents one bulk action applies to.
pub const BULK_LIMIT: i64 = 10_000;

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
    let action = body.action.as_str();
    if !matches!(action, "delete" | "reindex" | "disable" | "enable" | "move") {
        return Err(ApiError::Invalid(format!(
            "unknown action '{action}': delete, reindex, disable, enable or move"
        )));
    }
    let target = match (action, body.collection.as_deref()) {
        ("move", Some(name)) => Some(collection(state, caller, name, Action::Write).await?.name),
        ("move", None) => {
            return Err(ApiError::Invalid(
                "'move' needs the target 'collection'".into(),
            ));
        }
        _ => None,
    };
    let documents: Vec<Document> = match (&body.ids, &body.filter) {
        (Some(ids), None) => {
            let mut docs = Vec::new();
            for id in ids {
                docs.push(find_document(state, caller, id, Action::Write).await?);
            }
            docs
        }
        (None, Some(f)) => {
            let filter = document_filter(state, caller, f, true, Action::Write).await?;
            let named = DocumentFilter {
                collection_ids: None,
                access_any: Vec::new(),
                disabled_only_in: None,
                ..filter.clone()
            };
            if named
                == (DocumentFilter {
                    top_level_only: true,
                    ..Default::default()
                })
            {
                return Err(ApiError::Invalid(
                    "the filter names no criterion: give at least one (collection, status, \
                     type, tag, q, disabled)"
                        .into(),
                ));
            }
            let page = state
                .meta
                .list_documents(&filter, DocumentSort::Created, false, BULK_LIMIT, 0)
                .await?;
            if page.total > BULK_LIMIT {
                return Err(ApiError::Invalid(format!(
                    "the filter matches {} documents, more than {BULK_LIMIT} at once: narrow it",
                    page.total
                )));
            }
            page.documents
        }
        _ => {
            return Err(ApiError::Invalid("give either 'ids' or 'filter'".into()));
        }
    };
    let mut out = BulkOut {
        action: action.to_string(),
        matched: documents.len(),
        succeeded: 0,
        failed: Vec::new(),
    };
    for d in documents {
        let id = d.id.clone();
        let result = match action {
            "delete" => remove_document(state, caller, &d).await,
            "reindex" => queue_reindex(state, caller, &d).await.map(drop),
            "disable" | "enable" => {
                let patch = DocumentPatch {
                    disabled: Some(action == "disable"),
                    ..Default::default()
                };
                change_document(state, caller, d, &patch).await.map(drop)
            }
            _ => {
                let patch = DocumentPatch {
                    collection: target.clone(),
                    ..Default::default()
                };
                change_document(state, caller, d, &patch).await.map(drop)
            }
        };
        match result {
            Ok(()) => out.succeeded += 1,
            Err(e) => out.failed.push(BulkFailure {
                id,
                error: e.to_string(),
            }),
        }
    }
    Ok(out)
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

/// Builds a retrieval request from the API's search body.
/// The longest question or query, in characters.
pub const MAX_QUESTION_CHARS: usize = 4000;

/// Checks the length of a question or query.
pub fn check_question(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(ApiError::Invalid("the question is empty".into()));
    }
    let n = text.chars().count();
    if n > MAX_QUESTION_CHARS {
        return Err(ApiError::Invalid(format!(
            "the question has {n} characters, at most {MAX_QUESTION_CHARS}"
        )));
    }
    Ok(())
}

/// Builds a retrieval request from the API's search body, restricted to what the caller may
/// read (collections and access lists become filters inside the vector search).
pub async fn search_request(
    state: &AppState,
    body: &SearchBody,
    caller: &Principal,
) -> Result<SearchRequest> {
    let limit = body.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::Invalid("limit must be between 1 and 100".into()));
    }
    check_question(&body.query)?;
    let allowed = state.corpus.search_scope(caller, &body.collections).await?;
    Ok(SearchRequest {
        query: body.query.clone(),
        collections: allowed.collections,
        mode: parse_mode(body.mode.as_deref())?,
        limit,
        scope: scope(&body.scope)?,
        access: allowed.access,
        expand_neighbours: body.expand_neighbours,
    })
}

/// Records a search in the question audit (a failure to record is logged, not shown).
pub async fn record_search(
    state: &AppState,
    caller: &Principal,
    endpoint: &str,
    query: &str,
    collections: &[String],
    results: &enclave_retrieval::SearchResults,
) {
    let asked = enclave_corpus::Asked {
        endpoint,
        question: query,
        collections,
        retrieved: results
            .passages
            .iter()
            .map(|p| p.chunk.id.clone())
            .collect(),
        cited: Vec::new(),
        refused: None,
        took_ms: results.took_ms,
    };
    if let Err(e) = state.questions.record(caller, asked).await {
        tracing::warn!(error = %e, "cannot record a search in the question audit");
    }
}

/// Records an answer in the question audit (a failure to record is logged, not shown).
pub async fn record_answer(
    state: &AppState,
    caller: &Principal,
    endpoint: &str,
    collections: &[String],
    answer: &enclave_answer::Answer,
    took_ms: f64,
) {
    let asked = enclave_corpus::Asked {
        endpoint,
        question: &answer.question,
        collections,
        retrieved: answer.passages.iter().map(|p| p.chunk.id.clone()).collect(),
        cited: answer
            .citations
            .iter()
            .filter_map(|c| answer.passages.get(c.number.saturating_sub(1)))
            .map(|p| p.chunk.id.clone())
            .collect(),
        refused: Some(answer.refused),
        took_ms,
    };
    if let Err(e) = state.questions.record(caller, asked).await {
        tracing::warn!(error = %e, "cannot record an answer in the question audit");
    }
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
    let request = search_request(&state, &body, &caller).await?;
    let results = state.retriever()?.search(&request).await?;
    record_search(
        &state,
        &caller,
        "api.search",
        &body.query,
        &body.collections,
        &results,
    )
    .await;
    Ok(HttpResponse::Ok().json(SearchOut {
        passages: PassageOut::list(&results.passages),
        relevant: results.relevant,
        mode: results.mode.to_string(),
        took_ms: results.took_ms,
    }))
}

/// Builds an ask request restricted to what the caller may read: the collections named must
/// be readable (else not found), and collections and access lists become filters inside the
/// search, so the model's prompt only ever holds passages the caller may read.
pub async fn ask_request(
    state: &AppState,
    question: &str,
    collections: Vec<String>,
    mode: Option<&str>,
    scope: Scope,
    caller: &Principal,
) -> Result<AskRequest> {
    check_question(question)?;
    let allowed = state.corpus.search_scope(caller, &collections).await?;
    Ok(AskRequest {
        question: question.trim().to_string(),
        collections: allowed.collections,
        mode: parse_mode(mode)?,
        access: allowed.access,
        scope,
    })
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

/// Starts an answer, counting refusals for busy.
pub async fn start_answer(
    state: &AppState,
    request: &AskRequest,
) -> Result<tokio::sync::mpsc::Receiver<AskEvent>> {
    let asker = state.asker()?;
    match asker.ask(request).await {
        Ok(rx) => Ok(rx),
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
    let request = ask_request(
        &state,
        &body.question,
        body.collections.clone(),
        body.mode.as_deref(),
        scope(&body.scope)?,
        &caller,
    )
    .await?;
    let started = std::time::Instant::now();
    let asked_of = body.collections.clone();
    let wants_stream = body.stream
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
    let guard = InFlight::start(&state.metrics);
    let mut rx = start_answer(&state, &request).await?;
    if !wants_stream {
        while let Some(event) = rx.recv().await {
            match event {
                AskEvent::Done(answer) => {
                    state.metrics.answer_done(&answer);
                    drop(guard);
                    let took = started.elapsed().as_secs_f64() * 1000.0;
                    record_answer(&state, &caller, "api.ask", &asked_of, &answer, took).await;
                    return Ok(HttpResponse::Ok().json(AnswerOut::from(answer.as_ref())));
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
    let audit = (state.clone(), caller, asked_of, started);
    let stream = futures::stream::unfold(
        (rx, guard, metrics, audit, false),
        |(mut rx, guard, metrics, audit, finished)| async move {
            if finished {
                return None;
            }
            let event = rx.recv().await;
            let (bytes, finished) = match event {
                Some(AskEvent::Sources(p)) => (sse_event("sources", &PassageOut::list(&p)), false),
                Some(AskEvent::Token(t)) => {
                    (sse_event("token", &serde_json::json!({ "text": t })), false)
                }
                Some(AskEvent::Done(answer)) => {
                    metrics.answer_done(&answer);
                    let (state, caller, asked_of, started) = &audit;
                    let took = started.elapsed().as_secs_f64() * 1000.0;
                    record_answer(state, caller, "api.ask", asked_of, &answer, took).await;
                    (sse_event("done", &AnswerOut::from(answer.as_ref())), true)
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
                (rx, guard, metrics, audit, finished),
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
