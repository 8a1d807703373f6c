//! The curators' pages under `/admin`: documents (a table with search, filters, sorting,
//! paging and bulk actions; a detail page with versions, pages, chunks, the ingest log and
//! edits), collections (create, rename, settings, delete), upload of many files with progress,
//! and a retrieval test (dense, BM25 and hybrid side by side).
//!
//! Every change goes through the same functions as the REST API ([`crate::api`]), so the
//! checks, the audit log and the mirroring into the vector store are the same on both paths.
//! Forms are plain HTML posts (they work without JavaScript); a post from another site is
//! refused.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use enclave_ingest::parse::DocumentKind;
use enclave_retrieval::SearchMode;
use enclave_storage::Document;
use serde::Deserialize;

use crate::api;
use crate::auth::{Action, Principal};
use crate::dto::*;
use crate::error::ApiError;
use crate::state::AppState;
use crate::ui::{
    Result, base_context, caller, encode, page, pages_label, passage_views, short_time,
};

/// Documents per page of the table.
const PAGE_SIZE: i64 = 50;

pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_string()))
        .finish()
}

/// `location` with a notice for the next page to show.
pub(crate) fn with_notice(location: &str, notice: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}notice={}", encode(notice))
}

/// Refuses a form posted from another site. Browsers say where a request comes from
/// (`Sec-Fetch-Site`, `Origin`); this matters most when authentication is off and no
/// session cookie stands guard.
pub(crate) fn same_origin(req: &HttpRequest) -> std::result::Result<(), ApiError> {
    let headers = req.headers();
    let refuse = || {
        Err(ApiError::Forbidden(
            "this form was sent from another site: open the page in Enclave and send it again"
                .into(),
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => refuse(),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = req.connection_info().host().to_string();
        let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
        if origin_host != host {
            return refuse();
        }
    }
    Ok(())
}

/// The signed-in caller, if allowed to change documents.
async fn curator(req: &HttpRequest) -> Result<Principal> {
    let p = caller(req).await?;
    p.require_somewhere(Action::Write).map_err(ApiError::from)?;
    Ok(p)
}

/// A posted form as name/value pairs (names may repeat).
pub(crate) struct Fields(pub(crate) Vec<(String, String)>);

impl Fields {
    pub(crate) fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn short_type(mime: Option<&str>) -> &'static str {
    mime.and_then(DocumentKind::of_mime_type)
        .map_or("Other", DocumentKind::label)
}

const STATUSES: [&str; 7] = [
    "queued",
    "indexing",
    "ready",
    "failed",
    "no_text",
    "interrupted",
    "deleting",
];

fn size_label(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} kB", b as f64 / (1 << 10) as f64),
        b => format!("{b} B"),
    }
}

async fn collection_list(
    state: &AppState,
    principal: &Principal,
    action: Action,
) -> Result<Vec<String>> {
    Ok(state
        .corpus
        .collections(principal, action)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|c| c.name)
        .collect())
}

// ------------------------------------------------------------------ documents table

/// The documents table's query: filters, order and position.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct DocumentsQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    collection: String,
    #[serde(default)]
    status: String,
    #[serde(default, rename = "type")]
    mime_type: String,
    #[serde(default)]
    tag: String,
    /// `yes` (only disabled), `no` (only searched) or empty.
    #[serde(default)]
    disabled: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    order: String,
    #[serde(default)]
    offset: i64,
    #[serde(default)]
    notice: String,
}

impl DocumentsQuery {
    fn from_fields(f: &Fields) -> Self {
        let get = |k: &str| f.get(k).unwrap_or_default().to_string();
        Self {
            q: get("q"),
            collection: get("collection"),
            status: get("status"),
            mime_type: get("type"),
            tag: get("tag"),
            disabled: get("disabled"),
            sort: get("sort"),
            order: get("order"),
            offset: 0,
            notice: String::new(),
        }
    }

    fn filter(&self) -> BulkFilter {
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        BulkFilter {
            collection: some(&self.collection),
            status: some(&self.status),
            mime_type: some(&self.mime_type),
            tag: some(&self.tag),
            q: some(&self.q),
            disabled: match self.disabled.as_str() {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            },
        }
    }

    /// The filter fields as `(name, value)` pairs, without empty ones.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("q", &self.q),
            ("collection", &self.collection),
            ("status", &self.status),
            ("type", &self.mime_type),
            ("tag", &self.tag),
            ("disabled", &self.disabled),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.clone()))
        .collect()
    }

    /// The table's URL with these filters and the given order and offset.
    fn url(&self, sort: &str, order: &str, offset: i64) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            s.append_pair(k, &v);
        }
        if !sort.is_empty() {
            s.append_pair("sort", sort);
        }
        if !order.is_empty() {
            s.append_pair("order", order);
        }
        if offset > 0 {
            s.append_pair("offset", &offset.to_string());
        }
        let q = s.finish();
        if q.is_empty() {
            "/admin/documents".into()
        } else {
            format!("/admin/documents?{q}")
        }
    }
}

/// The documents table.
pub async fn documents_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<DocumentsQuery>,
) -> Result<HttpResponse> {
    let principal = curator(&req).await?;
    let query = query.into_inner();
    let filter =
        api::document_filter(&state, &principal, &query.filter(), true, Action::Write).await?;
    let (sort, descending) =
        api::document_sort(Some(query.sort.as_str()), Some(query.order.as_str()))?;
    let offset = query.offset.max(0);
    let listing = state
        .meta
        .list_documents(&filter, sort, descending, PAGE_SIZE, offset)
        .await
        .map_err(ApiError::from)?;
    let names = api::collection_names(&state).await?;
    let rows: Vec<_> = listing
        .documents
        .iter()
        .map(|d| {
            serde_json::json!({
                "id": d.id,
                "title": d.title,
                "collection": names.get(&d.collection_id).cloned().unwrap_or_default(),
                "status": d.status,
                "type": short_type(d.mime_type.as_deref()),
                "pages": d.page_count,
                "chunks": d.chunk_count,
                "size": size_label(d.byte_size),
                "updated": short_time(&d.updated_at),
                "tags": d.tags,
                "disabled": d.disabled,
                "error": d.error.clone().unwrap_or_default(),
                "external_id": d.external_id,
            })
        })
        .collect();
    // Column headers link to their order; the current column toggles its direction.
    let columns: Vec<_> = [
        ("title", "Title"),
        ("status", "Status"),
        ("pages", "Pages"),
        ("chunks", "Chunks"),
        ("size", "Size"),
        ("updated", "Changed"),
    ]
    .into_iter()
    .map(|(key, label)| {
        let current = sort.as_str() == key;
        let next = if current && descending { "asc" } else { "desc" };
        let next = if !current && key == "title" {
            "asc"
        } else {
            next
        };
        let arrow = match (current, descending) {
            (false, _) => "",
            (true, true) => "↓",
            (true, false) => "↑",
        };
        serde_json::json!({
            "label": label,
            "url": query.url(key, next, 0),
            "current": current,
            "arrow": arrow,
        })
    })
    .collect();
    let total = listing.total;
    let mut ctx = base_context(&principal);
    ctx.insert("rows", &rows);
    ctx.insert("columns", &columns);
    ctx.insert("total", &total);
    ctx.insert("from", &(offset + 1).min(total));
    ctx.insert("to", &(offset + rows.len() as i64));
    ctx.insert(
        "prev_url",
        &(offset > 0).then(|| query.url(&query.sort, &query.order, (offset - PAGE_SIZE).max(0))),
    );
    ctx.insert(
        "next_url",
        &(offset + PAGE_SIZE < total)
            .then(|| query.url(&query.sort, &query.order, offset + PAGE_SIZE)),
    );
    ctx.insert("q", &query.q);
    ctx.insert("collection", &query.collection);
    ctx.insert("status", &query.status);
    ctx.insert("type", &query.mime_type);
    ctx.insert("tag", &query.tag);
    ctx.insert("disabled", &query.disabled);
    ctx.insert("sort", &query.sort);
    ctx.insert("order", &query.order);
    ctx.insert("filtered", &!query.pairs().is_empty());
    ctx.insert("notice", &query.notice);
    ctx.insert(
        "collections",
        &collection_list(&state, &principal, Action::Write).await?,
    );
    ctx.insert("statuses", &STATUSES);
    ctx.insert(
        "types",
        &DocumentKind::ALL
            .iter()
            .map(|k| serde_json::json!({"mime": k.mime_type(), "label": k.label()}))
            .collect::<Vec<_>>(),
    );
    Ok(page(StatusCode::OK, "admin_documents.html", &ctx))
}

/// A bulk action from the table: on the ticked documents, or on every document matching the
/// table's filters. Deletes ask for a confirmation first.
pub async fn documents_bulk(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = curator(&req).await?;
    let fields = Fields::parse(&body);
    let query = DocumentsQuery::from_fields(&fields);
    let back = query.url(&query.sort, &query.order, 0);
    let action = fields.get("action").unwrap_or_default().to_string();
    let matching = fields.get("scope") == Some("matching");
    let ids = fields.all("ids");
    if !matching && ids.is_empty() {
        return Ok(see_other(&with_notice(
            &back,
            "Tick the documents to act on, or choose “all matching the filters”.",
        )));
    }
    let bulk = BulkBody {
        action: action.clone(),
        ids: (!matching).then(|| ids.clone()),
        filter: matching.then(|| query.filter()),
        collection: fields.get("target").map(str::to_string),
    };
    if action == "delete" && fields.get("confirm") != Some("yes") {
        // Say what would go before it goes.
        let count = if matching {
            let filter =
                api::document_filter(&state, &principal, &query.filter(), true, Action::Write)
                    .await?;
            state
                .meta
                .list_documents(&filter, Default::default(), true, 1, 0)
                .await
                .map_err(ApiError::from)?
                .total
        } else {
            ids.len() as i64
        };
        let mut ctx = base_context(&principal);
        ctx.insert("count", &count);
        ctx.insert("matching", &matching);
        ctx.insert("fields", &fields.0);
        ctx.insert("back", &back);
        return Ok(page(StatusCode::OK, "admin_confirm_bulk.html", &ctx));
    }
    let out = api::bulk(&state, &principal, &bulk).await?;
    let mut notice = format!(
        "{}: {} of {} document(s) done.",
        out.action, out.succeeded, out.matched
    );
    for f in out.failed.iter().take(5) {
        notice.push_str(&format!(" {}: {}.", f.id, f.error));
    }
    Ok(see_other(&with_notice(&back, &notice)))
}

// ------------------------------------------------------------------ document detail

#[derive(Debug, Default, Deserialize)]
pub struct DocumentQuery {
    /// The page whose text and chunks are shown.
    page: Option<i64>,
    #[serde(default)]
    notice: String,
}

/// A document for curators: metadata, versions, attachments, the text and chunks of a page,
/// the ingest log, and the forms that change it.
pub async fn document_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<DocumentQuery>,
) -> Result<HttpResponse> {
    let principal = curator(&req).await?;
    let d = api::find_document(&state, &principal, &id, Action::Write).await?;
    let names = api::collection_names(&state).await?;
    let meta = &state.meta;
    let versions = meta.version_records(&d.id).await.map_err(ApiError::from)?;
    let children = state
        .corpus
        .children(&principal, &d)
        .await
        .map_err(ApiError::from)?;
    let parent = state
        .corpus
        .parent(&principal, &d)
        .await
        .map_err(ApiError::from)?;
    let pages = meta.active_pages(&d.id).await.map_err(ApiError::from)?;
    let page_count = pages.len() as i64;
    let shown = query.page.unwrap_or(1).clamp(1, page_count.max(1));
    let text = pages
        .iter()
        .find(|p| p.page_number == shown)
        .map(|p| p.text.clone());
    let chunks = meta.active_chunks(&d.id).await.map_err(ApiError::from)?;
    let disabled_chunks = chunks.iter().filter(|c| c.disabled).count();
    let chunk_rows: Vec<_> = chunks
        .iter()
        .filter(|c| c.page_start <= shown && shown <= c.page_end)
        .map(|c| {
            serde_json::json!({
                "id": c.id,
                "ordinal": c.ordinal,
                "pages": pages_label(c.page_start, c.page_end),
                "tokens": c.token_count,
                "section": c.section,
                "text": c.text,
                "disabled": c.disabled,
                "url": passage_url(&d.id, d.version, c.char_start, c.char_end),
            })
        })
        .collect();
    let jobs: Vec<_> = meta
        .jobs(None, Some(&d.id), None, 20, 0)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|j| {
            serde_json::json!({
                "created": short_time(&j.created_at),
                "status": j.status.as_str(),
                "attempts": j.attempts,
                "max_attempts": j.max_attempts,
                "done": j.progress_done,
                "total": j.progress_total,
                "error": j.last_error.unwrap_or_default(),
                "worker": j.lease_owner,
            })
        })
        .collect();
    let audit: Vec<_> = meta
        .audit_entries(Some(&d.id), 50, 0)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|a| {
            let detail = if a.detail.as_object().is_some_and(|m| m.is_empty()) {
                String::new()
            } else {
                a.detail.to_string()
            };
            serde_json::json!({
                "at": short_time(&a.at),
                "actor": a.actor,
                "action": a.action,
                "detail": detail,
            })
        })
        .collect();
    let collection = names.get(&d.collection_id).cloned().unwrap_or_default();
    let mut ctx = base_context(&principal);
    ctx.insert("doc", &document_view(&d, &collection));
    ctx.insert(
        "metadata_json",
        &serde_json::to_string_pretty(&d.metadata).unwrap_or_default(),
    );
    ctx.insert("tags_text", &d.tags.join(", "));
    let readers: crate::dto::ReadersBody = state
        .corpus
        .readers(&d.access)
        .await
        .map_err(ApiError::from)?
        .into();
    ctx.insert("readers", &readers);
    ctx.insert(
        "versions",
        &versions
            .into_iter()
            .map(|v| {
                serde_json::json!({
                    "version": v.version, "state": v.state, "sha256": v.sha256.get(..12).unwrap_or(&v.sha256),
                    "error": v.error, "pages": v.page_count, "chunks": v.chunk_count,
                    "created": short_time(&v.created_at), "finished": v.finished_at.as_deref().map(short_time),
                })
            })
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "children",
        &children
            .iter()
            .map(|c| serde_json::json!({"id": c.id, "title": c.title, "status": c.status}))
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "parent",
        &parent.map(|p| serde_json::json!({"id": p.id, "title": p.title})),
    );
    ctx.insert("page_numbers", &(1..=page_count).collect::<Vec<_>>());
    ctx.insert("shown", &shown);
    ctx.insert(
        "shown_ocr",
        &crate::ui::ocr_pages(&d.metadata).contains(&shown),
    );
    ctx.insert("page_noun", crate::ui::page_noun(&d.metadata));
    ctx.insert("page_text", &text);
    ctx.insert("chunks", &chunk_rows);
    ctx.insert("chunk_total", &chunks.len());
    ctx.insert("disabled_chunks", &disabled_chunks);
    ctx.insert("jobs", &jobs);
    ctx.insert("audit", &audit);
    ctx.insert("notice", &query.notice);
    ctx.insert(
        "collections",
        &collection_list(&state, &principal, Action::Write).await?,
    );
    ctx.insert(
        "has_original",
        &enclave_corpus::queue::original_path(&d, &state.uploads).is_some(),
    );
    Ok(page(StatusCode::OK, "admin_document.html", &ctx))
}

fn document_view(d: &Document, collection: &str) -> serde_json::Value {
    serde_json::json!({
        "id": d.id,
        "title": d.title,
        "collection": collection,
        "source_uri": d.source_uri,
        "external_id": d.external_id,
        "type": short_type(d.mime_type.as_deref()),
        "mime_type": d.mime_type,
        "sha256": d.sha256,
        "status": d.status,
        "error": d.error,
        "version": d.version,
        "size": size_label(d.byte_size),
        "pages": d.page_count,
        "chunks": d.chunk_count,
        "tags": d.tags,
        "disabled": d.disabled,
        "created": short_time(&d.created_at),
        "updated": short_time(&d.updated_at),
        "is_attachment": d.parent_id.is_some(),
    })
}

fn document_url(id: &str) -> String {
    format!("/admin/documents/{id}")
}

/// Edits title, tags and metadata.
pub async fn document_edit(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = curator(&req).await?;
    let d = api::find_document(&state, &principal, &id, Action::Write).await?;
    let fields = Fields::parse(&body);
    let metadata = match fields.get("metadata") {
        None => serde_json::json!({}),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| ApiError::Invalid(format!("the metadata is not valid JSON: {e}")))?,
    };
    let tags: Vec<String> = fields
        .get("tags")
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let names = |key: &str| -> Vec<String> {
        fields
            .get(key)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    };
    let readers = (fields.get("allowed_users").is_some()
        || fields.get("allowed_groups").is_some()
        || fields.get("allowed_keys").is_some())
    .then(|| crate::dto::ReadersBody {
        users: names("allowed_users"),
        groups: names("allowed_groups"),
        keys: names("allowed_keys"),
    });
    let patch = DocumentPatch {
        title: Some(fields.get("title").unwrap_or_default().to_string()),
        tags: Some(tags),
        metadata: Some(metadata),
        readers,
        ..Default::default()
    };
    let d = api::change_document(&state, &principal, d, &patch).await?;
    Ok(see_other(&with_notice(&document_url(&d.id), "Saved.")))
}

/// Takes a document out of retrieval, or back in; or moves it to another collection.
pub async fn document_state(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = curator(&req).await?;
    let d = api::find_document(&state, &principal, &id, Action::Write).await?;
    let fields = Fields::parse(&body);
    let (patch, notice) = if let Some(target) = fields.get("collection") {
        (
            DocumentPatch {
                collection: Some(target.to_string()),
                ..Default::default()
            },
            format!("Moved to {target}."),
        )
    } else {
        let disabled = fields.get("disabled") == Some("true");
        (
            DocumentPatch {
                disabled: Some(disabled),
                ..Default::default()
            },
            if disabled {
                "Disabled: the document is no longer retrieved.".to_string()
            } else {
                "Enabled: the document is retrieved again.".to_string()
            },
        )
    };
    let d = api::change_document(&state, &principal, d, &patch).await?;
    Ok(see_other(&with_notice(&document_url(&d.id), &notice)))
}

/// Takes one chunk out of retrieval, or back in.
pub async fn chunk_state(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = curator(&req).await?;
    let (id, chunk) = path.into_inner();
    let d = api::find_document(&state, &principal, &id, Action::Write).await?;
    let fields = Fields::parse(&body);
    let disabled = fields.get("disabled") == Some("true");
    let c = api::change_chunk(&state, &principal, &d, &chunk, disabled).await?;
    let notice = format!(
        "Chunk {} {}.",
        c.ordinal + 1,
        if disabled { "disabled" } else { "enabled" }
    );
    let url = format!(
        "{}&page={}#chunk-{}",
        with_notice(&document_url(&d.id), &notice),
        c.page_start,
        c.id
    );
    Ok(see_other(&url))
}

/// Queues a document to be processed again.
pub async fn document_reindex(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = curator(&req).await?;
    let d = api::find_document(&state, &principal, &id, Action::Write).await?;
    api::queue_reindex(&state, &principal, &d).await?;
    Ok(see_other(&with_notice(
        &document_url(&d.id),
        "Queued for re-indexing: see the ingest log below.",
    )))
}

/// Deletes a document, after a confirmation.
pub async fn document_delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = curator(&req).await?;
    let d = api::find_document(&state, &principal, &id, Action::Write).await?;
    let fields = Fields::parse(&body);
    if fields.get("confirm") != Some("yes") {
        let mut ctx = base_context(&principal);
        ctx.insert("title", &d.title);
        ctx.insert("id", &d.id);
        ctx.insert(
            "children",
            &state
                .meta
                .children(&d.id)
                .await
                .map_err(ApiError::from)?
                .len(),
        );
        return Ok(page(StatusCode::OK, "admin_confirm_delete.html", &ctx));
    }
    api::remove_document(&state, &principal, &d).await?;
    Ok(see_other(&with_notice(
        "/admin/documents",
        &format!("Deleted “{}”.", d.title),
    )))
}

// ------------------------------------------------------------------ collections

#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

/// Collections with their counts, and the form that creates one.
pub async fn collections_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse> {
    let principal = curator(&req).await?;
    let stats = state
        .corpus
        .collection_stats(&principal)
        .await
        .map_err(ApiError::from)?;
    let collections: Vec<_> = state
        .corpus
        .collections(&principal, Action::Write)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|c| {
            let s = stats.iter().find(|s| s.collection == c.name);
            CollectionOut::new(c, s)
        })
        .collect();
    let mut ctx = base_context(&principal);
    ctx.insert("collections", &collections);
    ctx.insert(
        "can_administer",
        &principal.require_everywhere(Action::Administer).is_ok(),
    );
    ctx.insert("notice", &query.notice);
    Ok(page(StatusCode::OK, "admin_collections.html", &ctx))
}

/// Creates a collection.
pub async fn collection_create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    let fields = Fields::parse(&body);
    let name = fields.get("name").unwrap_or_default().to_string();
    let c = state
        .corpus
        .create_collection(&principal, &name)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&with_notice(
        &format!("/admin/collections/{}", encode(&c.name)),
        "Collection created.",
    )))
}

/// One collection's name and settings, and its delete form.
pub async fn collection_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse> {
    let principal = curator(&req).await?;
    let c = api::collection(&state, &principal, &name, Action::Write).await?;
    let c_name = c.name.clone();
    let stats = state
        .corpus
        .collection_stats(&principal)
        .await
        .map_err(ApiError::from)?;
    let s = stats.iter().find(|s| s.collection == c.name);
    let mut ctx = base_context(&principal);
    ctx.insert("c", &CollectionOut::new(c, s));
    ctx.insert(
        "can_administer",
        &principal.require_everywhere(Action::Administer).is_ok(),
    );
    ctx.insert("defaults", &{
        let st = &state.settings;
        serde_json::json!({
            "chunk_tokens": st.chunking.max_tokens,
            "chunk_overlap": st.chunking.overlap_tokens,
            "passages": st.generation.passages,
            "passage_margin": st.generation.passage_margin,
            "reading_order": st.generation.reading_order,
            "dense_weight": st.retrieval.dense_weight,
            "bm25_weight": st.retrieval.bm25_weight,
            "max_chunk_tokens": st.embedding.max_input_tokens.saturating_sub(2),
            "model": st.generation_model().file_name().map(|f| f.to_string_lossy().to_string()),
            "models": st.generation.models.keys().collect::<Vec<_>>(),
        })
    });
    ctx.insert("notice", &query.notice);
    let cases = state
        .corpus
        .eval_cases(&principal, &c_name)
        .await
        .map_err(ApiError::from)?;
    let runs = state
        .corpus
        .eval_runs(&principal, &c_name, 20)
        .await
        .map_err(ApiError::from)?;
    // A case's document is named only to those who may read it.
    let mut titles = std::collections::HashMap::new();
    for id in cases.iter().filter_map(|k| k.document_id.as_ref()) {
        if !titles.contains_key(id) {
            let title = match state.corpus.document(&principal, id, Action::Read).await {
                Ok(d) => d.title,
                Err(_) => "a document you may not read".to_string(),
            };
            titles.insert(id.clone(), title);
        }
    }
    let case_rows: Vec<_> = cases
        .iter()
        .map(|k| {
            serde_json::json!({
                "id": k.id, "question": k.question, "unanswerable": k.unanswerable,
                "document_id": k.document_id,
                "document": k.document_id.as_ref().and_then(|d| titles.get(d)),
                "pages": k.pages.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
                "from_feedback": k.feedback_id.is_some(),
            })
        })
        .collect();
    let run_rows: Vec<_> = runs.iter().map(run_row).collect();
    ctx.insert("cases", &case_rows);
    ctx.insert("runs", &run_rows);
    Ok(page(StatusCode::OK, "admin_collection.html", &ctx))
}

/// An evaluation run as the collection page shows it: when, the settings it ran with, and the
/// figures of each mode.
fn run_row(r: &enclave_corpus::EvalRun) -> serde_json::Value {
    let s = &r.record.settings;
    let c = &s["collection"];
    let setting = |key: &str| match &c[key] {
        serde_json::Value::Null => "default".to_string(),
        serde_json::Value::String(v) => v.clone(),
        v => v.to_string(),
    };
    let number = |v: &serde_json::Value| {
        v.as_f64()
            .map_or_else(|| "?".to_string(), |n| format!("{n:.2}"))
    };
    // The collection's own weights where it has them, else the server's.
    let fusion_weight = |key: &str| {
        number(match &c[key] {
            serde_json::Value::Null => &s["retrieval"][key],
            own => own,
        })
    };
    let settings = format!(
        "mode {}, chunks {}/{} tokens, passages {} (margin {}, reading order {}), model {}, fusion {}:{}, threshold {}",
        setting("mode"),
        setting("chunk_tokens"),
        setting("chunk_overlap"),
        setting("passages"),
        setting("passage_margin"),
        setting("reading_order"),
        setting("model"),
        fusion_weight("dense_weight"),
        fusion_weight("bm25_weight"),
        number(&s["retrieval"]["min_dense_score"]),
    );
    let modes: Vec<_> = r
        .modes
        .iter()
        .map(|m| {
            serde_json::json!({
                "mode": m.mode.to_string(),
                "recall_at_5": format!("{:.3}", m.recall_at_5),
                "ndcg": format!("{:.3}", m.ndcg_at_10),
                "mrr": format!("{:.3}", m.mrr),
                "refusals": format!("{:.2}", m.refusal_accuracy),
                "false_refusals": m.false_refusals,
            })
        })
        .collect();
    serde_json::json!({
        "at": short_time(&r.record.at), "actor": r.record.actor, "cases": r.record.cases,
        "settings": settings, "modes": modes,
        "answers": r.record.answers.as_ref().map(answers_cell),
    })
}

/// A run's answers in one cell: "MODEL: cites an expected page 7/10, unanswerable refused
/// 4/5, answerable refused 0/10, first token 2.1 s".
fn answers_cell(a: &serde_json::Value) -> String {
    let n = |key: &str| a[key].as_u64().unwrap_or(0);
    format!(
        "{}: cites an expected page {}/{}, unanswerable refused {}/{}, answerable refused {}/{}, \
         first token {:.1} s",
        a["model"].as_str().unwrap_or("?"),
        n("cited_gold_page"),
        n("answerable"),
        n("refused"),
        n("unanswerable"),
        n("false_refusals"),
        n("answerable"),
        a["ttft_p50_ms"].as_f64().unwrap_or(0.0) / 1000.0
    )
}

/// Saves a collection's name and settings (an empty field: back to the default).
pub async fn collection_save(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    let c = api::collection(&state, &principal, &name, Action::Administer).await?;
    let fields = Fields::parse(&body);
    let number = |key: &str| -> std::result::Result<Option<u64>, ApiError> {
        fields
            .get(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::Invalid(format!("{key} '{v}': a whole number")))
            })
            .transpose()
    };
    let weight = |key: &str| -> std::result::Result<Option<f64>, ApiError> {
        fields
            .get(key)
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| ApiError::Invalid(format!("{key} '{v}': a number")))
            })
            .transpose()
    };
    let body = CollectionSettingsBody {
        dense_weight: Some(weight("dense_weight")?),
        bm25_weight: Some(weight("bm25_weight")?),
        name: fields.get("name").map(str::to_string),
        mode: Some(fields.get("mode").map(str::to_string)),
        chunk_tokens: Some(number("chunk_tokens")?),
        chunk_overlap: Some(number("chunk_overlap")?),
        passages: Some(number("passages")?),
        passage_margin: Some(weight("passage_margin")?),
        reading_order: Some(
            fields
                .get("reading_order")
                .map(|v| match v {
                    "on" => Ok(true),
                    "off" => Ok(false),
                    other => Err(ApiError::Invalid(format!(
                        "reading_order '{other}': on, off or empty (the default)"
                    ))),
                })
                .transpose()?,
        ),
        system_prompt: Some(fields.get("system_prompt").map(str::to_string)),
        model: Some(fields.get("model").map(str::to_string)),
    };
    let c = api::change_collection(&state, &principal, &c.name, &body).await?;
    Ok(see_other(&with_notice(
        &format!("/admin/collections/{}", encode(&c.name)),
        "Saved. New chunk sizes apply to documents processed from now on: re-index to apply \
         them to the others.",
    )))
}

/// Deletes a collection when its name is typed again.
pub async fn collection_delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    let c = api::collection(&state, &principal, &name, Action::Administer).await?;
    let fields = Fields::parse(&body);
    if fields.get("confirm_name") != Some(c.name.as_str()) {
        return Ok(see_other(&with_notice(
            &format!("/admin/collections/{}", encode(&c.name)),
            "Not deleted: type the collection's name to confirm.",
        )));
    }
    let deleted = c.name.clone();
    state
        .corpus
        .remove_collection(&principal, &deleted)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&with_notice(
        "/admin/collections",
        &format!("Deleted collection {deleted} and its documents."),
    )))
}

// ------------------------------------------------------------------ upload

/// The upload page: many files at once, each with its upload and processing progress.
pub async fn upload_page(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let principal = curator(&req).await?;
    let mut ctx = base_context(&principal);
    ctx.insert(
        "collections",
        &collection_list(&state, &principal, Action::Write).await?,
    );
    ctx.insert("max_bytes", &state.settings.server.max_upload_bytes);
    Ok(page(StatusCode::OK, "admin_upload.html", &ctx))
}

/// One uploaded file (multipart: `file`, `collection`, `tags`, `title`): the same checks and
/// queueing as `POST /api/v1/documents`, answered in JSON for the page's script, or by a
/// redirect to the jobs page for a plain form.
pub async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    same_origin(&req)?;
    let principal = curator(&req).await?;
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let mut form = api::read_form(&state, &req, payload).await?;
    let result = async {
        let name = form
            .text("collection")
            .ok_or_else(|| ApiError::BadRequest("choose a collection".into()))?;
        api::accept_upload(&state, &principal, &form, &name, None).await
    }
    .await;
    form.discard().await;
    match (result, wants_json) {
        (Ok(response), true) => Ok(response),
        (Ok(_), false) => Ok(see_other("/admin/jobs")),
        // The script shows the error next to its file.
        (Err(e), true) => Ok(actix_web::ResponseError::error_response(&e)),
        (Err(e), false) => Err(e.into()),
    }
}

/// A job's state for the upload page's script.
pub async fn job_json(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> std::result::Result<HttpResponse, ApiError> {
    let principal = crate::auth::ui_principal(&req)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("sign in again".into()))?;
    principal.require_somewhere(Action::Write)?;
    let job = api::find_job(&state, &principal, &id).await?;
    let document = match &job.document_id {
        Some(d) => state.meta.document(d).await?,
        None => None,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "job": JobOut::from(job),
            "document": document.map(|d| serde_json::json!({
                "id": d.id, "status": d.status, "error": d.error, "pages": d.page_count,
                "chunks": d.chunk_count, "url": document_url(&d.id),
            })),
        })))
}

// ------------------------------------------------------------------ retrieval test

#[derive(Debug, Default, Deserialize)]
pub struct RetrievalQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    collection: String,
}

/// What a query would retrieve, by dense, BM25 and hybrid search side by side.
pub async fn retrieval_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<RetrievalQuery>,
) -> Result<HttpResponse> {
    let principal = curator(&req).await?;
    let mut ctx = base_context(&principal);
    ctx.insert(
        "collections",
        &collection_list(&state, &principal, Action::Write).await?,
    );
    ctx.insert("q", &query.q);
    ctx.insert("collection", &query.collection);
    if !query.q.trim().is_empty() {
        let retriever = state.retriever()?;
        let named: Vec<String> = Some(query.collection.trim().to_string())
            .filter(|c| !c.is_empty())
            .into_iter()
            .collect();
        let mut columns = Vec::new();
        for mode in [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid] {
            let search = enclave_corpus::Query {
                question: enclave_corpus::Question {
                    text: query.q.clone(),
                    collections: named.clone(),
                    mode: Some(mode.to_string()),
                    scope: Default::default(),
                    ..Default::default()
                },
                limit: 10,
                expand_neighbours: false,
            };
            // The hybrid column is the search a reader would get: that one is recorded.
            let results = if mode == SearchMode::Hybrid {
                state
                    .corpus
                    .search(&principal, &retriever, &search, "admin.retrieval")
                    .await
            } else {
                match state.corpus.search_request(&principal, &search).await {
                    Ok(request) => retriever.search(&request).await.map_err(Into::into),
                    Err(e) => Err(e),
                }
            }
            .map_err(ApiError::from)?;
            let label = match mode {
                SearchMode::Dense => "Dense (embeddings)",
                SearchMode::Bm25 => "BM25 (words)",
                SearchMode::Hybrid => "Hybrid (fused)",
            };
            columns.push(serde_json::json!({
                "label": label,
                "took": format!("{:.0} ms", results.took_ms),
                "relevant": results.relevant,
                "passages": passage_views(&results.passages),
                "best_dense": format!("{:.3}", results.best_dense),
                "chunks": results.passages.iter().map(|p| serde_json::json!({
                    "id": p.chunk.id, "document": p.chunk.document_id, "page": p.chunk.page_start,
                })).collect::<Vec<_>>(),
            }));
        }
        ctx.insert("columns", &columns);
    }
    Ok(page(StatusCode::OK, "admin_retrieval.html", &ctx))
}
