//! The OpenAPI document of `/api/v1` and `/v1`, served at `/api/v1/openapi.json`.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::{api, conversations, dto, error, eval, openai};

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `enclave keys create NAME`, as `Authorization: Bearer KEY`",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Enclave",
        description = "Grounded, cited answers from your own documents. Errors are JSON \
            `{code, message}` (on `/v1`: OpenAI's `{error: {message, type, code}}`)."
    ),
    paths(
        api::healthz, api::readyz,
        api::list_collections, api::create_collection, api::get_collection, api::update_collection, api::delete_collection,
        api::list_documents, api::upload_document, api::get_document, api::put_document,
        api::delete_document, api::patch_document, api::patch_chunk, api::bulk_documents, api::reindex_document, api::document_pages, api::document_chunks,
        api::document_file, api::audit_log, api::question_audit, api::list_jobs, api::get_job, api::retry_job, api::search, api::ask,
        api::list_deliveries, api::redeliver,
        conversations::list_conversations, conversations::create_conversation,
        conversations::get_conversation, conversations::rename_conversation,
        conversations::delete_conversation, conversations::export_conversation,
        conversations::give_feedback, conversations::list_feedback,
        eval::list_cases, eval::add_case, eval::delete_case, eval::list_runs, eval::run,
        eval::case_from_feedback,
        openai::models, openai::chat_completions,
    ),
    components(schemas(
        error::ErrorBody, dto::CollectionOut, dto::CollectionList, dto::NewCollection, dto::CollectionSettingsBody,
        dto::DocumentOut, dto::DocumentDetail, dto::VersionOut, dto::UploadOut, dto::DocumentList,
        dto::PageOut, dto::PageList, dto::DocumentPatch, dto::ChunkPatch, dto::BulkFilter, dto::BulkBody, dto::BulkFailure, dto::BulkOut, dto::ChunkOut, dto::ChunkList, dto::ScoresOut,
        dto::PassageOut, dto::ScopeBody, dto::SearchBody, dto::SearchOut, dto::AskBody, dto::CitationOut,
        dto::TimingsOut, dto::AnswerOut, dto::JobOut, dto::JobList, dto::AuditOut, dto::AuditList, dto::Health, dto::Readiness, api::UploadForm,
        dto::DeliveryOut, dto::DeliveryList, dto::QuestionOut, dto::QuestionList, dto::ReadersBody,
        openai::ModelOut, openai::ModelList, openai::ChatMessageIn, openai::ChatRequest,
        openai::Grounding,
        dto::TurnIn, dto::RewriteOut, dto::ConversationOut, dto::ConversationIn,
        dto::ConversationPatch, dto::TurnOut, dto::ThreadOut, dto::FeedbackIn, dto::FeedbackOut,
        dto::EvalCaseIn, dto::EvalCaseOut, dto::ModeFiguresOut, dto::EvalRunOut, dto::FeedbackCaseIn,
    )),
    modifiers(&Security),
    tags(
        (name = "collections", description = "Named sets of documents searched together"),
        (name = "documents", description = "Upload, replace by external id, inspect, re-index, delete"),
        (name = "jobs", description = "The durable ingest queue: progress, failures, retry"),
        (name = "audit", description = "Who changed what in the corpus, and when"),
        (name = "webhooks", description = "Signed document events and their delivery status"),
        (name = "search", description = "Passages and grounded answers"),
        (name = "conversations", description = "Threads of questions and answers, and feedback on answers"),
        (name = "evaluation", description = "Collections' own evaluation sets and their runs"),
        (name = "openai", description = "OpenAI-compatible chat API"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;
