//! Collections' own evaluation sets over HTTP: cases (by hand, or from readers' verdicts) and
//! runs, in the API and on the collection's curation page. The rules are in `enclave-corpus`.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::admin::{Fields, same_origin, see_other, with_notice};
use crate::auth::ApiCaller;
use crate::dto::*;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::ui::{caller, encode};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The collection's evaluation set (editors of the collection).
#[utoipa::path(get, path = "/api/v1/collections/{name}/eval/cases", tag = "evaluation",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, body = [EvalCaseOut]), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_cases(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    let cases = state.corpus.eval_cases(&caller, &name).await?;
    Ok(HttpResponse::Ok().json(cases.iter().map(EvalCaseOut::from).collect::<Vec<_>>()))
}

/// Adds a case: a question with the document and pages that answer it, or unanswerable.
#[utoipa::path(post, path = "/api/v1/collections/{name}/eval/cases", tag = "evaluation",
    params(("name" = String, Path, description = "Collection name")),
    request_body = EvalCaseIn,
    responses((status = 201, body = EvalCaseOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn add_case(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    name: web::Path<String>,
    body: web::Json<EvalCaseIn>,
) -> Result<HttpResponse> {
    let case = enclave_corpus::NewEvalCase {
        question: body.question.clone(),
        document: body.document.clone(),
        pages: body.pages.clone(),
        unanswerable: body.unanswerable,
    };
    let c = state.corpus.add_eval_case(&caller, &name, &case).await?;
    Ok(HttpResponse::Created().json(EvalCaseOut::from(&c)))
}

/// Removes a case.
#[utoipa::path(delete, path = "/api/v1/collections/{name}/eval/cases/{id}", tag = "evaluation",
    params(("name" = String, Path, description = "Collection name"), ("id" = String, Path, description = "Case id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_case(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (name, id) = path.into_inner();
    state.corpus.delete_eval_case(&caller, &name, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The collection's evaluation runs, newest first, each with the settings it ran with.
#[utoipa::path(get, path = "/api/v1/collections/{name}/eval/runs", tag = "evaluation",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, body = [EvalRunOut]), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_runs(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    let runs = state.corpus.eval_runs(&caller, &name, 50).await?;
    Ok(HttpResponse::Ok().json(runs.iter().map(EvalRunOut::from).collect::<Vec<_>>()))
}

/// Runs the collection's evaluation set now (dense, BM25 and hybrid) and keeps the run.
#[utoipa::path(post, path = "/api/v1/collections/{name}/eval/runs", tag = "evaluation",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 201, body = EvalRunOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn run(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    let r = state
        .corpus
        .run_eval(&caller, &state.retriever()?, &name)
        .await?;
    Ok(HttpResponse::Created().json(EvalRunOut::from(&r)))
}

/// Makes a reader's verdict a case of a collection's set: its question with the reader's pick
/// of the right source, or unanswerable (administrators of every collection).
#[utoipa::path(post, path = "/api/v1/feedback/{id}/eval-case", tag = "evaluation",
    params(("id" = String, Path, description = "Feedback id")),
    request_body = FeedbackCaseIn,
    responses((status = 201, body = EvalCaseOut), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn case_from_feedback(
    state: web::Data<AppState>,
    ApiCaller(caller): ApiCaller,
    id: web::Path<String>,
    body: web::Json<FeedbackCaseIn>,
) -> Result<HttpResponse> {
    let c = state
        .corpus
        .eval_case_from_feedback(&caller, &id, &body.collection, body.unanswerable)
        .await?;
    Ok(HttpResponse::Created().json(EvalCaseOut::from(&c)))
}

// ---------------------------------------------------------------- forms

fn collection_page(name: &str) -> String {
    format!("/admin/collections/{}", encode(name))
}

/// Runs the set from the collection's page, then shows the page with the new run first.
pub async fn run_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> crate::ui::Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    let r = state
        .corpus
        .run_eval(&principal, &state.retriever()?, &name)
        .await
        .map_err(ApiError::from)?;
    let hybrid = r.modes.iter().find(|m| m.mode.to_string() == "hybrid");
    let notice = match hybrid {
        Some(h) => format!(
            "Evaluated {} cases: hybrid recall@5 {:.2}, nDCG@10 {:.2}.",
            r.record.cases, h.recall_at_5, h.ndcg_at_10
        ),
        None => format!("Evaluated {} cases.", r.record.cases),
    };
    Ok(see_other(&with_notice(&collection_page(&name), &notice)))
}

/// Adds a case from the collection's page.
pub async fn add_case_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> crate::ui::Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    let f = Fields::parse(&body);
    let unanswerable = f.get("unanswerable").is_some();
    let pages = f
        .get("pages")
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<i64>()
                .map_err(|_| ApiError::Invalid(format!("page '{p}': a whole number")))
        })
        .collect::<Result<Vec<_>>>()?;
    let case = enclave_corpus::NewEvalCase {
        question: f.get("question").unwrap_or_default().to_string(),
        document: f.get("document").map(str::to_string),
        pages,
        unanswerable,
    };
    state
        .corpus
        .add_eval_case(&principal, &name, &case)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&with_notice(
        &collection_page(&name),
        "The case was added to the evaluation set.",
    )))
}

/// Removes a case from the collection's page.
pub async fn delete_case_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> crate::ui::Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    let (name, id) = path.into_inner();
    state
        .corpus
        .delete_eval_case(&principal, &name, &id)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&with_notice(
        &collection_page(&name),
        "The case was removed.",
    )))
}

/// Makes a verdict a case from the feedback page.
pub async fn case_from_feedback_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> crate::ui::Result<HttpResponse> {
    same_origin(&req)?;
    let principal = caller(&req).await?;
    let f = Fields::parse(&body);
    let collection = f.get("collection").unwrap_or_default().to_string();
    let unanswerable = f.get("expected") == Some("unanswerable");
    state
        .corpus
        .eval_case_from_feedback(&principal, &id, &collection, unanswerable)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other(&with_notice(
        "/admin/feedback",
        &format!("The question is now a case of {collection}'s evaluation set."),
    )))
}
