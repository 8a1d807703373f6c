//! The web UI: server-rendered pages (tera templates from `templates/`, compiled into the
//! binary), progressively enhanced by a small script that streams answers. Every piece of
//! document text goes through the templates' HTML escaping.

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use enclave_answer::{Answer, AskEvent};
use enclave_retrieval::Passage;
use enclave_storage::{DeliveryStatus, JobStatus};
use serde::{Deserialize, Serialize};
use tera::{Context, Tera};

use crate::api::{self, InFlight, sse_event, sse_response, start_answer};
use crate::auth::{self, Action, Principal, SESSION_COOKIE};
use crate::dto::{AnswerOut, CitationOut, PassageOut};
use crate::error::ApiError;
use crate::state::AppState;

static TEMPLATES: LazyLock<Tera> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.add_raw_templates(vec![
        ("base.html", include_str!("../../../templates/base.html")),
        ("login.html", include_str!("../../../templates/login.html")),
        ("ask.html", include_str!("../../../templates/ask.html")),
        (
            "passage.html",
            include_str!("../../../templates/passage.html"),
        ),
        ("error.html", include_str!("../../../templates/error.html")),
        ("jobs.html", include_str!("../../../templates/jobs.html")),
        (
            "admin_documents.html",
            include_str!("../../../templates/admin_documents.html"),
        ),
        (
            "admin_document.html",
            include_str!("../../../templates/admin_document.html"),
        ),
        (
            "admin_confirm_bulk.html",
            include_str!("../../../templates/admin_confirm_bulk.html"),
        ),
        (
            "admin_confirm_delete.html",
            include_str!("../../../templates/admin_confirm_delete.html"),
        ),
        (
            "admin_collections.html",
            include_str!("../../../templates/admin_collections.html"),
        ),
        (
            "admin_collection.html",
            include_str!("../../../templates/admin_collection.html"),
        ),
        (
            "admin_upload.html",
            include_str!("../../../templates/admin_upload.html"),
        ),
        (
            "admin_retrieval.html",
            include_str!("../../../templates/admin_retrieval.html"),
        ),
        (
            "webhooks.html",
            include_str!("../../../templates/webhooks.html"),
        ),
        (
            "admin_people.html",
            include_str!("../../../templates/admin_people.html"),
        ),
        (
            "admin_questions.html",
            include_str!("../../../templates/admin_questions.html"),
        ),
        (
            "conversations.html",
            include_str!("../../../templates/conversations.html"),
        ),
        (
            "admin_feedback.html",
            include_str!("../../../templates/admin_feedback.html"),
        ),
    ])
    .expect("the templates compile (checked by a unit test)");
    tera.autoescape_on(vec![".html"]);
    tera
});

const APP_CSS: &str = include_str!("../../../templates/static/app.css");
const APP_JS: &str = include_str!("../../../templates/static/app.js");
const ADMIN_JS: &str = include_str!("../../../templates/static/admin.js");

/// Errors of UI pages: a sign-in redirect, or an error page.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("sign-in required")]
    SignIn { next: String },
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignIn { .. } => StatusCode::SEE_OTHER,
            Self::Api(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::SignIn { next } => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, format!("/login?next={}", encode(next))))
                .finish(),
            Self::Api(e) => {
                let mut ctx = Context::new();
                ctx.insert("status", &e.status_code().as_u16());
                ctx.insert("message", &e.to_string());
                page(e.status_code(), "error.html", &ctx)
            }
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, UiError>;

pub(crate) fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn page(status: StatusCode, template: &str, ctx: &Context) -> HttpResponse {
    match TEMPLATES.render(template, ctx) {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(e) => {
            tracing::error!(error = ?e, template, "template failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body(format!("the page could not be rendered: {e}"))
        }
    }
}

/// The signed-in caller, or a redirect to the sign-in page.
pub(crate) async fn caller(req: &HttpRequest) -> Result<Principal> {
    match auth::ui_principal(req).await? {
        Some(p) => Ok(p),
        None => {
            let next = req
                .uri()
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string());
            Err(UiError::SignIn { next })
        }
    }
}

pub(crate) fn base_context(principal: &Principal) -> Context {
    let mut ctx = Context::new();
    if principal.is_user() {
        ctx.insert("user", &principal.name);
    }
    ctx.insert("can_curate", &principal.may_somewhere(Action::Write));
    ctx.insert(
        "can_administer_all",
        &principal.require_everywhere(Action::Administer).is_ok(),
    );
    ctx
}

/// The pages of a document whose text was read by OCR (its metadata's `ocr_pages`).
pub(crate) fn ocr_pages(metadata: &serde_json::Value) -> Vec<i64> {
    metadata
        .get("ocr_pages")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|n| n.as_i64()).collect())
        .unwrap_or_default()
}

/// What a document calls its pages: a slide, a sheet, or a page (a word-processor document's
/// one page is a page here).
pub(crate) fn page_noun(metadata: &serde_json::Value) -> &str {
    match metadata.get("page_noun").and_then(|v| v.as_str()) {
        Some(n @ ("slide" | "sheet")) => n,
        _ => "page",
    }
}

pub(crate) fn pages_label(start: i64, end: i64) -> String {
    if start == end {
        format!("page {start}")
    } else {
        format!("pages {start}–{end}")
    }
}

/// A safe redirect target: a local path only.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace())
                && !n.to_ascii_lowercase().starts_with("/%2f")
                && !n.to_ascii_lowercase().starts_with("/%5c") =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// Failed sign-ins allowed before delays start.
const FREE_FAILURES: i64 = 5;

/// How long sign-ins for `key` must wait after `failures` failures, the last at `last`.
fn login_wait(failures: i64, last: &str) -> Option<std::time::Duration> {
    if failures < FREE_FAILURES {
        return None;
    }
    // 1 s after the fifth failure, doubling with each further one, at most 15 minutes.
    let delay = (1i64 << (failures - FREE_FAILURES).min(10)).min(900);
    let last = chrono::DateTime::parse_from_rfc3339(last).ok()?;
    let until = last + chrono::Duration::seconds(delay);
    let left = until.signed_duration_since(chrono::Utc::now());
    (left > chrono::Duration::zero()).then(|| left.to_std().unwrap_or_default())
}

/// The address a sign-in comes from (the peer; proxies' headers are not trusted).
fn peer_key(req: &HttpRequest) -> String {
    format!(
        "ip:{}",
        req.peer_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string())
    )
}

/// A hash to verify against for unknown names, so that they take as long as known ones.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| auth::hash_password("enclave decoy password").unwrap_or_default())
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The sign-in page.
pub async fn login_page(state: web::Data<AppState>, query: web::Query<LoginQuery>) -> HttpResponse {
    if !state.settings.auth.enabled {
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/"))
            .finish();
    }
    let mut ctx = Context::new();
    ctx.insert("next", &local_path(query.next.as_deref()));
    ctx.insert("username", "");
    page(StatusCode::OK, "login.html", &ctx)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// Signs in: checks the password, opens a session, sets its cookie.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse> {
    crate::admin::same_origin(&req)?;
    let next = local_path(form.next.as_deref());
    let name = form.username.trim();
    let refuse = |status: StatusCode, message: &str| {
        let mut ctx = Context::new();
        ctx.insert("next", &next);
        ctx.insert("username", name);
        ctx.insert("error", message);
        Ok(page(status, "login.html", &ctx))
    };
    if name.chars().count() > 128 || form.password.len() > 1024 {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Name or password too long.",
        );
    }
    // Growing delays per account and per address; unknown names count the same.
    let keys = [format!("user:{}", name.to_lowercase()), peer_key(&req)];
    for key in &keys {
        if let Some((failures, last)) = state
            .meta
            .login_failures(key)
            .await
            .map_err(ApiError::from)?
            && let Some(wait) = login_wait(failures, &last)
        {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many failed sign-ins: try again in {} s.",
                    wait.as_secs().max(1)
                ),
            );
        }
    }
    let user = state
        .meta
        .user_by_name(name)
        .await
        .map_err(ApiError::from)?
        .filter(|u| u.disabled_at.is_none());
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_string(), |u| u.password_hash.clone());
    let password = form.password.clone();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        for key in &keys {
            state
                .meta
                .record_login_failure(key)
                .await
                .map_err(ApiError::from)?;
        }
        return refuse(StatusCode::UNAUTHORIZED, "Wrong name or password.");
    };
    // The address keeps its count: signing in to one account must not reset the guessing of
    // others.
    state
        .meta
        .clear_login_failures(&keys[0])
        .await
        .map_err(ApiError::from)?;
    let (token, hash) = auth::new_session_token();
    let hours = state.settings.auth.session_hours.max(1);
    let expires = chrono::Utc::now() + chrono::Duration::hours(hours as i64);
    let expires_at = expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    state
        .meta
        .create_session(&hash, &user.id, &expires_at)
        .await
        .map_err(ApiError::from)?;
    let cookie = Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.settings.auth.secure_cookies || state.settings.server.public_https())
        .max_age(actix_web::cookie::time::Duration::hours(hours as i64))
        .finish();
    Ok(HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header((header::LOCATION, next))
        .finish())
}

/// Signs out.
pub async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    crate::admin::same_origin(&req)?;
    if let Some(c) = req.cookie(SESSION_COOKIE) {
        state
            .meta
            .delete_session(&auth::digest(c.value()))
            .await
            .map_err(ApiError::from)?;
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .cookie(gone)
        .insert_header((header::LOCATION, "/login"))
        .finish())
}

#[derive(Debug, Default, Deserialize)]
pub struct AskQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    collection: String,
    #[serde(default)]
    view: String,
    #[serde(default)]
    mode: String,
    /// The conversation the question follows up (empty: a new one).
    #[serde(default)]
    c: String,
}

impl AskQuery {
    fn collections(&self) -> Vec<String> {
        if self.collection.trim().is_empty() {
            Vec::new()
        } else {
            vec![self.collection.trim().to_string()]
        }
    }

    fn mode(&self) -> Option<&str> {
        Some(self.mode.as_str()).filter(|m| !m.is_empty())
    }

    /// The question the page asks, for the application layer.
    fn question(&self) -> enclave_corpus::Question {
        enclave_corpus::Question {
            text: self.q.clone(),
            collections: self.collections(),
            mode: self.mode().map(str::to_string),
            scope: Default::default(),
            history: Vec::new(),
            // The page keeps every answer: in the thread it follows up, else in a new one.
            keep: enclave_corpus::Keep::named(
                Some(self.c.trim())
                    .filter(|c| !c.is_empty())
                    .or(Some("new")),
            ),
        }
    }
}

#[derive(Serialize)]
struct Segment {
    text: String,
    number: Option<usize>,
    url: Option<String>,
}

/// The answer text cut at its citation markers, each marker linked to its passage.
fn segments(text: &str, citations: &[CitationOut]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']').map(|c| open + c) else {
            break;
        };
        let number = rest[open + 1..close].parse::<usize>().ok();
        let citation = number.and_then(|n| citations.iter().find(|c| c.number == n));
        match citation {
            Some(c) => {
                if open > 0 {
                    out.push(Segment {
                        text: rest[..open].to_string(),
                        number: None,
                        url: None,
                    });
                }
                out.push(Segment {
                    text: rest[open..=close].to_string(),
                    number: Some(c.number),
                    url: Some(c.url.clone()),
                });
            }
            None => out.push(Segment {
                text: rest[..=close].to_string(),
                number: None,
                url: None,
            }),
        }
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Segment {
            text: rest.to_string(),
            number: None,
            url: None,
        });
    }
    out
}

#[derive(Serialize)]
pub(crate) struct PassageView {
    title: String,
    pages: String,
    url: String,
    text: String,
    fused: String,
    dense: String,
    bm25: String,
    sentence: String,
    section_lead: bool,
}

pub(crate) fn passage_views(passages: &[Passage]) -> Vec<PassageView> {
    passages
        .iter()
        .map(|p| {
            let o = PassageOut::new(0, p);
            PassageView {
                title: o.title,
                pages: o.locator,
                url: o.url,
                text: o.text,
                fused: format!("{:.4}", o.scores.fused),
                dense: o.scores.dense.map_or("–".into(), |s| format!("{s:.3}")),
                bm25: o.scores.bm25.map_or("–".into(), |s| format!("{s:.2}")),
                sentence: o.scores.sentence.map_or("–".into(), |s| format!("{s:.3}")),
                section_lead: o.section_lead,
            }
        })
        .collect()
}

fn answer_context(answer: &Answer) -> serde_json::Value {
    let out = AnswerOut::from(answer);
    let citations: Vec<_> = out
        .citations
        .iter()
        .map(|c| {
            serde_json::json!({
                "number": c.number, "url": c.url, "title": c.title, "quote": c.quote,
                "pages": c.locator,
            })
        })
        .collect();
    let t = &answer.timings;
    let mut meta = vec![
        answer.model.clone(),
        format!("retrieval {:.0} ms", t.retrieval_ms),
    ];
    if let Some(ms) = t.time_to_first_token_ms {
        meta.push(format!("first token {:.1} s", ms / 1000.0));
    }
    if let Some(r) = t.tokens_per_s {
        meta.push(format!("{r:.1} tokens/s"));
    }
    serde_json::json!({
        "refused": answer.refused,
        "refused_by_model": answer.refusal == Some(enclave_answer::Refusal::Model),
        "segments": segments(&answer.text, &out.citations),
        "citations": citations,
        "nearest": if answer.refused { passage_views(&answer.passages) } else { Vec::new() },
        "unmatched": answer.unmatched_terms.join(", "),
        // Shown only when they are why retrieval refused.
        "apart": if answer.refused && answer.unmatched_terms.is_empty() {
            answer.names_apart.join(", ")
        } else {
            String::new()
        },
        "meta": meta.join(" · "),
    })
}

/// A turn of a thread as the ask page shows it: the question, what it was searched as, the
/// answer with linked markers and its sources, the passages retrieved (on demand), the
/// reader's verdict and the sources they may pick as the right one.
fn turn_context(t: &enclave_corpus::TurnView) -> serde_json::Value {
    let mut sources: Vec<serde_json::Value> = Vec::new();
    if let Some(a) = &t.answer {
        for p in &a.passages {
            let value = format!("{}@{}", p.chunk.document_id, p.chunk.page_start);
            if !sources.iter().any(|s| s["value"] == value.as_str()) {
                sources.push(serde_json::json!({
                    "value": value,
                    "label": format!("{}, page {}", p.document_title, p.chunk.page_start),
                }));
            }
        }
    }
    serde_json::json!({
        "id": t.turn.id,
        "position": t.turn.position,
        "question": t.turn.question,
        "standalone": t.turn.standalone,
        "withheld": t.withheld,
        "text": t.turn.answer_text,
        "answer": t.answer.as_ref().map(answer_context),
        "retrieved": t.answer.as_ref().map(|a| passage_views(&a.passages)).unwrap_or_default(),
        "helpful": t.feedback.as_ref().map(|f| f.helpful),
        "comment": t.feedback.as_ref().and_then(|f| f.comment.clone()),
        "sources": sources,
    })
}

/// The ask page: the form, and (without JavaScript, or in search view) the server-rendered
/// answer or passages.
pub async fn ask_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<AskQuery>,
) -> Result<HttpResponse> {
    let principal = caller(&req).await?;
    let mut ctx = base_context(&principal);
    let collections: Vec<String> = state
        .corpus
        .collections(&principal, Action::Read)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let view = if query.view == "search" {
        "search"
    } else {
        "answer"
    };
    ctx.insert("collections", &collections);
    ctx.insert("collection", &query.collection);
    ctx.insert("q", &query.q);
    ctx.insert("view", view);
    let c = query.c.trim();
    if !c.is_empty() {
        let thread = state
            .corpus
            .conversation(&principal, c)
            .await
            .map_err(ApiError::from)?;
        let title = if thread.conversation.title.is_empty() {
            "Untitled"
        } else {
            &thread.conversation.title
        };
        ctx.insert(
            "thread",
            &serde_json::json!({
                "id": thread.conversation.id,
                "title": title,
                "turns": thread.turns.iter().map(turn_context).collect::<Vec<_>>(),
            }),
        );
    }
    if query.q.trim().is_empty() {
        return Ok(page(StatusCode::OK, "ask.html", &ctx));
    }
    let outcome: std::result::Result<Option<String>, ApiError> = async {
        if view == "search" {
            let search = enclave_corpus::Query {
                question: query.question(),
                limit: 10,
                expand_neighbours: false,
            };
            let results = state
                .corpus
                .search(&principal, &state.retriever()?, &search, "ui.search")
                .await?;
            let summary = if results.relevant {
                format!("{} passages ({} search, {:.0} ms)", results.passages.len(), results.mode, results.took_ms)
            } else {
                format!(
                    "Nothing relevant found; the nearest {} passages ({:.0} ms)",
                    results.passages.len(),
                    results.took_ms
                )
            };
            ctx.insert(
                "results",
                &serde_json::json!({"summary": summary, "passages": passage_views(&results.passages)}),
            );
        } else {
            let _guard = InFlight::start(&state.metrics);
            let mut answering =
                start_answer(&state, &principal, &query.question(), "ui.ask").await?;
            while let Some(event) = answering.next().await {
                match event {
                    AskEvent::Done(answer) => {
                        state.metrics.answer_done(&answer);
                        // Kept in its thread: show the thread, so that reloading the page
                        // does not ask again.
                        if let Some(turn) = answering.kept() {
                            return Ok(Some(format!(
                                "/?c={}#turn-{}",
                                encode(&turn.conversation_id),
                                turn.position
                            )));
                        }
                        ctx.insert("answer", &answer_context(&answer));
                        break;
                    }
                    AskEvent::Failed(e) => {
                        return Err(ApiError::Internal(format!("generation failed: {e}")));
                    }
                    _ => {}
                }
            }
        }
        Ok(None)
    }
    .await;
    let status = match outcome {
        Ok(Some(location)) => return Ok(crate::admin::see_other(&location)),
        Ok(None) => StatusCode::OK,
        Err(e) => {
            ctx.insert("error", &e.to_string());
            e.status_code()
        }
    };
    Ok(page(status, "ask.html", &ctx))
}

/// The answer as Server-Sent Events for the ask page's script: `sources`, `token`..., then
/// `done` (the answer) or `failure` (`{"message"}`).
pub async fn ask_stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<AskQuery>,
) -> Result<HttpResponse> {
    let principal = caller(&req).await?;
    let failure = |e: ApiError| {
        let body = futures::stream::once(async move {
            Ok::<_, actix_web::Error>(sse_event(
                "failure",
                &serde_json::json!({"message": e.to_string()}),
            ))
        });
        sse_response(body)
    };
    let guard = InFlight::start(&state.metrics);
    let answering = match start_answer(&state, &principal, &query.question(), "ui.ask").await {
        Ok(answering) => answering,
        Err(e) => return Ok(failure(e)),
    };
    let metrics = state.metrics.clone();
    // The thread the answer goes to comes first (an existing one), so that the page can
    // follow it; a new thread's id comes with the answer.
    let first = answering
        .conversation_id()
        .map(|id| sse_event("conversation", &serde_json::json!({ "id": id })));
    let stream = futures::stream::unfold(
        (answering, guard, metrics, first, false),
        |(mut answering, guard, metrics, first, finished)| async move {
            if let Some(bytes) = first {
                return Some((
                    Ok::<_, actix_web::Error>(bytes),
                    (answering, guard, metrics, None, false),
                ));
            }
            if finished {
                return None;
            }
            let (bytes, finished) = match answering.next().await? {
                AskEvent::Sources(p) => (sse_event("sources", &PassageOut::list(&p)), false),
                AskEvent::Token(t) => (sse_event("token", &serde_json::json!({"text": t})), false),
                AskEvent::Done(answer) => {
                    metrics.answer_done(&answer);
                    (
                        sse_event("done", &AnswerOut::kept(&answer, &answering)),
                        true,
                    )
                }
                AskEvent::Failed(e) => (
                    sse_event(
                        "failure",
                        &serde_json::json!({"message": format!("generation failed: {e}")}),
                    ),
                    true,
                ),
            };
            Some((
                Ok::<_, actix_web::Error>(bytes),
                (answering, guard, metrics, None, finished),
            ))
        },
    );
    Ok(sse_response(stream))
}

#[derive(Debug, Deserialize)]
pub struct PassageQuery {
    version: Option<i64>,
    start: Option<i64>,
    end: Option<i64>,
}

#[derive(Serialize)]
struct PageSegment {
    text: String,
    cited: bool,
    first: bool,
}

/// Cuts a page's text at the cited span (char offsets in the document text).
fn page_segments(
    page_start: i64,
    text: &str,
    span: Option<(i64, i64)>,
    first: &mut bool,
) -> Vec<PageSegment> {
    let chars: Vec<char> = text.chars().collect();
    let len = chars.len() as i64;
    let Some((start, end)) = span else {
        return vec![PageSegment {
            text: text.to_string(),
            cited: false,
            first: false,
        }];
    };
    let a = (start - page_start).clamp(0, len) as usize;
    let b = (end - page_start).clamp(0, len) as usize;
    if a >= b {
        return vec![PageSegment {
            text: text.to_string(),
            cited: false,
            first: false,
        }];
    }
    let mut out = Vec::new();
    if a > 0 {
        out.push(PageSegment {
            text: chars[..a].iter().collect(),
            cited: false,
            first: false,
        });
    }
    out.push(PageSegment {
        text: chars[a..b].iter().collect(),
        cited: true,
        first: *first,
    });
    *first = false;
    if b < chars.len() {
        out.push(PageSegment {
            text: chars[b..].iter().collect(),
            cited: false,
            first: false,
        });
    }
    out
}

/// The passage view: the pages holding a cited span, the span highlighted.
pub async fn passage_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<PassageQuery>,
) -> Result<HttpResponse> {
    let principal = caller(&req).await?;
    let doc = api::find_document(&state, &principal, &id, Action::Read).await?;
    let mut notice = None;
    let mut version = query.version.unwrap_or(doc.version);
    if version != doc.version {
        let still_there = state
            .meta
            .page_range(&doc.id, version, 1, 1)
            .await
            .map_err(ApiError::from)?;
        if still_there.is_empty() {
            notice = Some(
                "The document was replaced by a newer version since this answer was written: \
                 the current version is shown and the passage may have moved."
                    .to_string(),
            );
            version = doc.version;
        }
    }
    let span = match (query.start, query.end) {
        (Some(s), Some(e)) if notice.is_none() && s < e => Some((s, e)),
        _ => None,
    };
    let all = state
        .meta
        .page_range(&doc.id, version, 1, i64::MAX)
        .await
        .map_err(ApiError::from)?;
    if all.is_empty() {
        return Err(ApiError::NotFound(format!(
            "document {} has no text (status {})",
            doc.id, doc.status
        ))
        .into());
    }
    // The pages the span touches, or the first page without a span.
    let separator = enclave_ingest::parse::PAGE_SEPARATOR.chars().count() as i64;
    let shown: Vec<_> = match span {
        Some((s, e)) => all
            .iter()
            .filter(|p| {
                let len = p.text.chars().count() as i64;
                p.char_start < e && s < p.char_start + len + separator
            })
            .collect(),
        None => all.iter().take(1).collect(),
    };
    let mut first = true;
    let ocr = ocr_pages(&doc.metadata);
    let noun = page_noun(&doc.metadata);
    let pages: Vec<_> = shown
        .iter()
        .map(|p| {
            serde_json::json!({
                "number": p.page_number,
                "heading": format!("{}{} {}", noun[..1].to_uppercase(), &noun[1..], p.page_number),
                "ocr": ocr.contains(&p.page_number),
                "segments": page_segments(p.char_start, &p.text, span, &mut first),
            })
        })
        .collect();
    let label = match (shown.first(), shown.last()) {
        (Some(a), Some(b)) => format!(
            "{} of {}",
            pages_label(a.page_number, b.page_number),
            all.len()
        ),
        _ => String::new(),
    };
    let collection = state
        .meta
        .collection(&doc.collection_id)
        .await
        .map_err(ApiError::from)?
        .map(|c| c.name);
    let mut ctx = base_context(&principal);
    ctx.insert("id", &doc.id);
    ctx.insert("title", &doc.title);
    ctx.insert("pages", &pages);
    ctx.insert("pages_label", &label);
    ctx.insert("collection", &collection);
    ctx.insert("notice", &notice);
    ctx.insert(
        "has_original",
        &enclave_corpus::queue::original_path(&doc, &state.uploads).is_some(),
    );
    Ok(page(StatusCode::OK, "passage.html", &ctx))
}

#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    status: Option<String>,
}

/// The ingest queue for curators: jobs with their progress and errors, a retry button on
/// dead ones; the page refreshes itself while jobs run.
pub async fn jobs_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse> {
    let principal = caller(&req).await?;
    principal
        .require_somewhere(Action::Write)
        .map_err(ApiError::from)?;
    let status = query
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(api::job_status)
        .transpose()?;
    let scope = api::job_scope(&state, &principal).await?;
    let jobs = state
        .meta
        .jobs(status, None, scope.as_ref(), 200, 0)
        .await
        .map_err(ApiError::from)?;
    let c = state
        .meta
        .job_counts(scope.as_ref())
        .await
        .map_err(ApiError::from)?;
    let mut titles: HashMap<String, Option<String>> = HashMap::new();
    let mut rows = Vec::new();
    for j in &jobs {
        let title = match &j.document_id {
            Some(id) => {
                if !titles.contains_key(id) {
                    let t = state
                        .meta
                        .document(id)
                        .await
                        .map_err(ApiError::from)?
                        .map(|d| d.title);
                    titles.insert(id.clone(), t);
                }
                titles[id].clone()
            }
            None => None,
        };
        rows.push(serde_json::json!({
            "id": j.id,
            "created_at": j.created_at,
            "created": short_time(&j.created_at),
            "title": title.clone().unwrap_or_else(|| "(document deleted)".into()),
            "document_url": title.and(j.document_id.as_ref().map(|d| format!("/admin/documents/{d}"))),
            "status": j.status.as_str(),
            "worker": j.lease_owner,
            "done": j.progress_done,
            "total": j.progress_total,
            "attempts": j.attempts,
            "max_attempts": j.max_attempts,
            "last_error": j.last_error.clone().unwrap_or_default(),
            "retryable": matches!(j.status, JobStatus::Dead | JobStatus::Cancelled),
        }));
    }
    let counts: Vec<_> = [
        ("queued", c.queued),
        ("running", c.running),
        ("done", c.done),
        ("dead", c.dead),
        ("cancelled", c.cancelled),
    ]
    .into_iter()
    .map(|(status, n)| serde_json::json!({"status": status, "n": n}))
    .collect();
    let mut ctx = base_context(&principal);
    ctx.insert("jobs", &rows);
    ctx.insert("counts", &counts);
    ctx.insert("status", &status.map(JobStatus::as_str).unwrap_or(""));
    ctx.insert("live", &(c.running > 0 || c.queued > 0));
    Ok(page(StatusCode::OK, "jobs.html", &ctx))
}

/// Retries a dead job from the jobs page, then shows the page again.
pub async fn retry_job_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    crate::admin::same_origin(&req)?;
    let principal = caller(&req).await?;
    api::retry(&state, &principal, &id).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/jobs"))
        .finish())
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
}

/// A stored timestamp as shown on the pages: `2026-01-31 12:34:56`.
pub(crate) fn short_time(ts: &str) -> String {
    ts.get(..19).unwrap_or(ts).replace('T', " ")
}

/// Webhook deliveries for curators: event, document, status, attempts, the receiver's last
/// answer, the next attempt, and a redeliver button on failed and delivered ones; the page
/// refreshes itself while deliveries are pending.
pub async fn webhooks_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse> {
    let principal = caller(&req).await?;
    principal
        .require_everywhere(Action::Administer)
        .map_err(ApiError::from)?;
    let status = query
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(api::delivery_status)
        .transpose()?;
    let deliveries = state
        .meta
        .deliveries(status, 200, 0)
        .await
        .map_err(ApiError::from)?;
    let c = state.meta.delivery_counts().await.map_err(ApiError::from)?;
    let rows: Vec<_> = deliveries
        .iter()
        .map(|d| {
            let title = serde_json::from_str::<serde_json::Value>(&d.payload)
                .ok()
                .and_then(|p| p["document"]["title"].as_str().map(str::to_string));
            serde_json::json!({
                "id": d.id,
                "event": d.event,
                "created_at": d.created_at,
                "created": short_time(&d.created_at),
                "title": title.or_else(|| d.document_id.clone()).unwrap_or_default(),
                "collection": d.collection.clone().unwrap_or_default(),
                "status": d.status.as_str(),
                "sending": d.lease_owner.is_some(),
                "attempts": d.attempts,
                "code": d.last_status_code,
                "last_error": d.last_error.clone().unwrap_or_default(),
                "next": (d.status == DeliveryStatus::Pending).then(|| short_time(&d.next_attempt_at)),
                "delivered": d.delivered_at.as_deref().map(short_time),
                "redeliverable": d.status != DeliveryStatus::Pending,
            })
        })
        .collect();
    let counts: Vec<_> = [
        ("pending", c.pending),
        ("delivered", c.delivered),
        ("failed", c.failed),
    ]
    .into_iter()
    .map(|(status, n)| serde_json::json!({"status": status, "n": n}))
    .collect();
    let mut ctx = base_context(&principal);
    ctx.insert("deliveries", &rows);
    ctx.insert("counts", &counts);
    ctx.insert("status", &status.map(DeliveryStatus::as_str).unwrap_or(""));
    ctx.insert("enabled", &state.settings.webhooks.enabled());
    ctx.insert(
        "url",
        &state.settings.webhooks.url.clone().unwrap_or_default(),
    );
    ctx.insert("live", &(c.pending > 0));
    Ok(page(StatusCode::OK, "webhooks.html", &ctx))
}

/// Sends a delivery again from the webhooks page, then shows the page again.
pub async fn redeliver_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    crate::admin::same_origin(&req)?;
    let principal = caller(&req).await?;
    api::redeliver_delivery(&state, &principal, &id).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/webhooks"))
        .finish())
}

/// The original file, for signed-in users.
pub async fn file_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let principal = caller(&req).await?;
    Ok(api::original_file(&state, &principal, &id).await?)
}

pub async fn app_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(APP_CSS)
}

pub async fn admin_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(ADMIN_JS)
}

pub async fn app_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(APP_JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compile_and_escape_document_text() {
        let mut ctx = Context::new();
        ctx.insert("collections", &Vec::<String>::new());
        ctx.insert("collection", "");
        ctx.insert("q", "<b>q</b>");
        ctx.insert("view", "search");
        ctx.insert(
            "results",
            &serde_json::json!({"summary": "1", "passages": [{"title": "<i>t</i>", "pages": "page 1",
                "url": "/d", "text": "<script>alert(1)</script>", "fused": "1", "dense": "1", "bm25": "1", "sentence": "1"}]}),
        );
        let html = TEMPLATES.render("ask.html", &ctx).unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<b>q</b>"));
    }

    #[test]
    fn markers_become_links_only_for_given_citations() {
        let c = CitationOut {
            number: 2,
            document_id: "d".into(),
            title: "t".into(),
            source_uri: "s".into(),
            page_start: 1,
            page_end: 1,
            char_start: 0,
            char_end: 5,
            quote: "q".into(),
            locator: "page 1".into(),
            url: "/documents/d/passage".into(),
        };
        let s = segments("A [2] and [x] b [9].", &[c]);
        let linked: Vec<_> = s.iter().filter(|s| s.url.is_some()).collect();
        assert_eq!(linked.len(), 1);
        assert_eq!(linked[0].number, Some(2));
        let text: String = s.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(text, "A [2] and [x] b [9].");
    }

    #[test]
    fn the_span_is_cut_by_chars() {
        let mut first = true;
        let s = page_segments(10, "héllo wörld", Some((12, 17)), &mut first);
        let parts: Vec<_> = s.iter().map(|p| (p.text.as_str(), p.cited)).collect();
        assert_eq!(parts, vec![("hé", false), ("llo w", true), ("örld", false)]);
        assert!(s[1].first && !first);
    }

    #[test]
    fn the_jobs_page_escapes_errors_and_offers_retry_on_dead_jobs() {
        let mut ctx = Context::new();
        ctx.insert("can_curate", &true);
        ctx.insert("status", "");
        ctx.insert("live", &true);
        ctx.insert("counts", &serde_json::json!([{"status": "dead", "n": 1}]));
        ctx.insert(
            "jobs",
            &serde_json::json!([{"id": "j1", "created_at": "2026-01-01T00:00:00.000Z",
                "created": "2026-01-01 00:00:00", "title": "<b>memo</b>", "document_url": "/d",
                "status": "dead", "worker": null, "done": 3, "total": 7, "attempts": 3,
                "max_attempts": 3, "last_error": "<script>x</script>", "retryable": true}]),
        );
        let html = TEMPLATES.render("jobs.html", &ctx).unwrap();
        assert!(
            !html.contains("<script>x") && !html.contains("<b>memo"),
            "{html}"
        );
        assert!(html.contains("/admin/jobs/j1/retry"));
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("3/7 pages"));
    }

    #[test]
    fn the_webhooks_page_escapes_errors_and_offers_redelivery() {
        let mut ctx = Context::new();
        ctx.insert("can_curate", &true);
        ctx.insert("status", "");
        ctx.insert("live", &true);
        ctx.insert("enabled", &true);
        ctx.insert("url", "http://receiver.example/hook");
        ctx.insert(
            "counts",
            &serde_json::json!([{"status": "pending", "n": 1}, {"status": "failed", "n": 1}]),
        );
        ctx.insert(
            "deliveries",
            &serde_json::json!([
                {"id": "w1", "event": "document.ingested", "created_at": "2026-01-01T00:00:00.000Z",
                 "created": "2026-01-01 00:00:00", "title": "<b>memo</b>", "collection": "hr",
                 "status": "failed", "sending": false, "attempts": 8, "code": 500,
                 "last_error": "<script>x</script>", "next": null, "delivered": null,
                 "redeliverable": true},
                {"id": "w2", "event": "document.deleted", "created_at": "2026-01-01T00:00:01.000Z",
                 "created": "2026-01-01 00:00:01", "title": "plan", "collection": "hr",
                 "status": "pending", "sending": false, "attempts": 1, "code": null,
                 "last_error": "connection refused", "next": "2026-01-01 00:00:06",
                 "delivered": null, "redeliverable": false}]),
        );
        let html = TEMPLATES.render("webhooks.html", &ctx).unwrap();
        assert!(
            !html.contains("<script>x") && !html.contains("<b>memo"),
            "{html}"
        );
        assert!(html.contains("/admin/webhooks/w1/redeliver"));
        assert!(!html.contains("/admin/webhooks/w2/redeliver"));
        assert!(html.contains("2026-01-01 00:00:06"));
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("failed 1"));
        let base = TEMPLATES.render("jobs.html", &{
            let mut c = Context::new();
            c.insert("can_curate", &true);
            c.insert("status", "");
            c.insert("live", &false);
            c.insert("counts", &serde_json::json!([]));
            c.insert("jobs", &serde_json::json!([]));
            c
        });
        assert!(base.unwrap().contains("href=\"/admin/webhooks\""));
    }

    #[test]
    fn only_local_redirects() {
        assert_eq!(local_path(Some("/?q=x")), "/?q=x");
        assert_eq!(local_path(Some("//evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example")), "/");
    }
}
