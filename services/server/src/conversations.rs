//! Conversations and feedback over HTTP: the `/api/v1/conversations` and feedback routes, the
//! conversations page, the feedback forms, the curators' page of poor answers, and a thread's
//! export as Markdown. Every rule is in `enclave-corpus` (a thread exists only for its owner).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use enclave_corpus::{Thread, Verdict};
use serde::Deserialize;

use crate::admin::{Fields, same_origin, see_other, with_notice};
use crate::api::paging;
use crate::auth::{Action, ApiCaller};
use crate::dto::*;
use crate::error::{ApiError, ErrorBody};
use crate::export;
use crate::state::AppState;
use crate::ui::{base_context, caller, encode, page, short_time};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Where the links of an export point: `server.public_url`, else the address the request
/// came to.
fn base_url(state: &AppState, req: &HttpRequest) -> String {
    match &state.settings.server.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let ci = req.connection_info();
            format!("{}://{}", ci.scheme(), ci.host())
        }
    }
}

/// The export a request asks for (`format=pdf`, else Markdown), as a download.
fn export_response(thread: &Thread, base: &str, format: Option<&str>) -> Result<HttpResponse> {
    let (body, content_type, extension) = match format {
        None | Some("") | Some("markdown") | Some("md") => (
            export::thread_markdown(thread, base).into_bytes(),
            "text/markdown; charset=utf-8",
            "md",
        ),
        Some("pdf") => (export::thread_pdf(thread, base), "application/pdf", "pdf"),
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "format '{other}': markdown or pdf"
            )));
        }
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{}.{extension}\"",
                export::file_stem(&thread.conversation.title)
            ),
        ))
        .body(body))
}

/// Which export.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `markdown` (default) or `pdf`.
    format: Option<String>,
}

// ---------------------------------------------------------------- API

/// The caller's conversations, most recently active first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations",
    params(ConversationQuery),
    responses((status = 200, body = [ConversationOut]), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_conversations(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    query: web::Query<ConversationQuery>,
) -> Result<HttpResponse> {
    let (limit, offset) = paging(query.limit, query.offset, 50, 500)?;
    let list = state
        .corpus
        .conversations(&caller, query.q.as_deref(), limit, offset)
        .await?;
    Ok(HttpResponse::Ok().json(list.iter().map(ConversationOut::from).collect::<Vec<_>>()))
}

/// Starts a conversation (then ask with its `conversation_id`).
#[utoipa::path(post, path = "/api/v1/conversations", tag = "conversations",
    request_body = ConversationIn,
    responses((status = 201, body = ConversationOut), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_conversation(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    body: Option<web::Json<ConversationIn>>,
) -> Result<HttpResponse> {
    let title = body.as_ref().and_then(|b| b.title.clone());
    let c = state
        .corpus
        .start_conversation(&caller, title.as_deref())
        .await?;
    Ok(HttpResponse::Created().json(ConversationOut::from(&c)))
}

/// A conversation of the caller's with every question and answer (an answer made from a
/// document the caller may no longer read is withheld).
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = ThreadOut), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_conversation(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let thread = state.corpus.conversation(&caller, &id).await?;
    Ok(HttpResponse::Ok().json(ThreadOut::from(&thread)))
}

/// Renames a conversation.
#[utoipa::path(patch, path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = ConversationPatch,
    responses((status = 200, body = ConversationOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn rename_conversation(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
    body: web::Json<ConversationPatch>,
) -> Result<HttpResponse> {
    let c = state
        .corpus
        .rename_conversation(&caller, &id, &body.title)
        .await?;
    Ok(HttpResponse::Ok().json(ConversationOut::from(&c)))
}

/// Deletes a conversation and its answers.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_conversation(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    state.corpus.delete_conversation(&caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A conversation as Markdown or PDF, every citation linked to its passage.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/export", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id"), ExportQuery),
    responses((status = 200, content_type = "text/markdown", body = String),
        (status = 200, content_type = "application/pdf", body = Vec<u8>),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn export_conversation(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse> {
    let thread = state.corpus.conversation(&caller, &id).await?;
    export_response(&thread, &base_url(&state, &req), query.format.as_deref())
}

fn verdict(body: &FeedbackIn) -> Verdict {
    Verdict {
        helpful: body.helpful,
        comment: body.comment.clone(),
        right_document: body.right_document.clone(),
        right_page: body.right_page,
    }
}

/// Judges an answer kept in one of the caller's conversations (a second verdict replaces the
/// first).
#[utoipa::path(post, path = "/api/v1/answers/{id}/feedback", tag = "conversations",
    params(("id" = String, Path, description = "The answer's id (`turn_id`)")),
    request_body = FeedbackIn,
    responses((status = 201, body = FeedbackOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn give_feedback(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
    body: web::Json<FeedbackIn>,
) -> Result<HttpResponse> {
    let f = state
        .corpus
        .give_feedback(&caller, &id, &verdict(&body))
        .await?;
    Ok(HttpResponse::Created().json(FeedbackOut::from(&f)))
}

/// Verdicts on answers, newest first: every one for administrators of every collection; for
/// an editor, those on answers from the collections they edit that quote only what they read.
#[utoipa::path(get, path = "/api/v1/feedback", tag = "conversations", params(FeedbackQuery),
    responses((status = 200, body = [FeedbackOut]), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_feedback(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    query: web::Query<FeedbackQuery>,
) -> Result<HttpResponse> {
    let (limit, offset) = paging(query.limit, query.offset, 100, 500)?;
    let list = state
        .corpus
        .feedback(&caller, query.unhelpful, limit, offset)
        .await?;
    Ok(HttpResponse::Ok().json(list.iter().map(FeedbackOut::from).collect::<Vec<_>>()))
}

// ---------------------------------------------------------------- pages

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    notice: String,
}

/// The signed-in user's conversations: search, rename, delete, export.
pub async fn conversations_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> crate::ui::Result<HttpResponse> {
    let principal = caller(&req).await?;
    let list = state
        .corpus
        .conversations(&principal, Some(&query.q), 200, 0)
        .await
        .map_err(ApiError::from)?;
    let rows: Vec<_> = list
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id, "title": if c.title.is_empty() { "Untitled" } else { &c.title },
                "turns": c.turns, "updated": short_time(&c.updated_at),
            })
        })
        .collect();
    let mut ctx = base_context(&principal);
    ctx.insert("conversations", &rows);
    ctx.insert("q", &query.q);
    ctx.insert("notice", &query.notice);
    Ok(page(StatusCode::OK, "conversations.html", &ctx))
}

/// Renames a conversation from its page.
pub async fn rename_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> crate::ui::Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    let fields = Fields::parse(&body);
    state
        .corpus
        .rename_conversation(&principal, &id, fields.get("title").unwrap_or_default())
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&format!("/?c={}", encode(&id))))
}

/// Deletes a conversation from the conversations page.
pub async fn delete_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> crate::ui::Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    state
        .corpus
        .delete_conversation(&principal, &id)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&with_notice(
        "/conversations",
        "The conversation was deleted.",
    )))
}

/// The Markdown or PDF export, for the signed-in owner.
pub async fn export_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> crate::ui::Result<HttpResponse> {
    let principal = caller(&req).await?;
    let thread = state
        .corpus
        .conversation(&principal, &id)
        .await
        .map_err(ApiError::from)?;
    Ok(export_response(
        &thread,
        &base_url(&state, &req),
        query.format.as_deref(),
    )?)
}

/// A verdict from the thumbs under an answer, then the thread again at that answer.
pub async fn feedback_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> crate::ui::Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    let fields = Fields::parse(&body);
    let helpful = match fields.get("helpful") {
        Some("yes") => true,
        Some("no") => false,
        _ => {
            return Err(ApiError::Invalid("choose helpful or not helpful".into()).into());
        }
    };
    let (right_document, right_page) = match fields.get("right_source") {
        // `DOCUMENT_ID@PAGE`, from the list of the answer's passages.
        Some(pick) => match pick.rsplit_once('@') {
            Some((doc, p)) => (Some(doc.to_string()), p.parse().ok()),
            None => (Some(pick.to_string()), None),
        },
        None => (None, None),
    };
    let record = state
        .corpus
        .give_feedback(
            &principal,
            &id,
            &Verdict {
                helpful,
                comment: fields.get("comment").map(str::to_string),
                right_document,
                right_page,
            },
        )
        .await
        .map_err(ApiError::from)?;
    let turn = state
        .meta
        .turn(&record.turn_id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::NotFound("the answer is gone".into()))?;
    Ok(see_other(&format!(
        "/?c={}#turn-{}",
        encode(&turn.conversation_id),
        turn.position
    )))
}

/// Poor answers for the curators: thumbs down first-class, with the question, the answer, the
/// comment, the source the reader picked and what was retrieved and cited.
pub async fn feedback_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<FeedbackPageQuery>,
) -> crate::ui::Result<HttpResponse> {
    let principal = caller(&req).await?;
    principal
        .require_somewhere(Action::Write)
        .map_err(ApiError::from)?;
    let all = query.all.as_deref() == Some("1");
    let list = state
        .corpus
        .feedback(&principal, !all, 200, 0)
        .await
        .map_err(ApiError::from)?;
    let mut rows = Vec::with_capacity(list.len());
    for f in &list {
        let right = match &f.right_document_id {
            Some(id) => state
                .corpus
                .document(&principal, id, Action::Read)
                .await
                .ok()
                .map(|d| {
                    let page = f
                        .right_page
                        .map(|p| format!(", page {p}"))
                        .unwrap_or_default();
                    format!("{}{page}", d.title)
                }),
            None => None,
        };
        rows.push(serde_json::json!({
            "id": f.id,
            "collection": f.collections.first(),
            "at": short_time(&f.at), "actor": f.actor, "helpful": f.helpful,
            "question": f.question, "answer": f.answer_text, "refused": f.refused,
            "comment": f.comment, "right": right, "right_document_id": f.right_document_id,
            "retrieved": f.retrieved.len(), "cited": f.cited.len(), "model": f.model,
            "collections": f.collections.join(", "),
            "settings": f.settings.as_ref().map(settings_summary),
        }));
    }
    let collections: Vec<String> = state
        .corpus
        .collections(&principal, Action::Write)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let mut ctx = base_context(&principal);
    ctx.insert("feedback", &rows);
    ctx.insert("all", &all);
    ctx.insert("collections", &collections);
    ctx.insert("notice", &query.notice);
    Ok(page(StatusCode::OK, "admin_feedback.html", &ctx))
}

#[derive(Debug, Default, Deserialize)]
pub struct FeedbackPageQuery {
    all: Option<String>,
    #[serde(default)]
    notice: String,
}

/// An answer's settings in one line for the curators' page: "hybrid 1.00 · 1.00, 5 passages,
/// margin 0.05, reading order off, model refusal off, expansion off".
fn settings_summary(settings: &serde_json::Value) -> String {
    let number = |key: &str| settings.get(key).and_then(serde_json::Value::as_f64);
    let switch = |key: &str| match settings.get(key).and_then(serde_json::Value::as_bool) {
        Some(true) => "on",
        Some(false) => "off",
        None => "?",
    };
    let mode = settings
        .get("mode")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    let mut line = mode.to_string();
    if mode == "hybrid"
        && let (Some(d), Some(b)) = (number("dense_weight"), number("bm25_weight"))
    {
        line.push_str(&format!(" {d:.2} · {b:.2}"));
    }
    if let Some(n) = number("passages") {
        line.push_str(&format!(", {n} passages"));
    }
    if let Some(m) = number("passage_margin") {
        line.push_str(&format!(", margin {m:.2}"));
    }
    line.push_str(&format!(
        ", reading order {}, model refusal {}, expansion {}",
        switch("reading_order"),
        switch("model_refusal"),
        switch("expand_query")
    ));
    if settings.get("custom_system_prompt") == Some(&serde_json::Value::Bool(true)) {
        line.push_str(", own system prompt");
    }
    line
}
