//! The one place where errors of the engine crates become HTTP statuses and JSON bodies.
//!
//! `/api/v1` and the UI answer `{"code", "message"}`; `/v1` (the OpenAI-compatible API) wraps
//! the same error as `{"error": {"message", "type", "code"}}`, which OpenAI clients understand.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use enclave_answer::AnswerError;
use enclave_corpus::CorpusError;
use enclave_generation::GenerationError;
use enclave_ingest::IngestError;
use enclave_retrieval::RetrievalError;
use enclave_storage::StorageError;
use serde::Serialize;
use utoipa::ToSchema;

/// Errors of the HTTP layer, one variant per status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be read (malformed JSON, a missing multipart field).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or unknown ones.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such collection, document or route.
    #[error("{0}")]
    NotFound(String),
    /// 409: the thing exists already, or the request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the upload or body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a file type Enclave cannot read.
    #[error("{0}")]
    UnsupportedType(String),
    /// 422: well-formed but invalid (empty question, bad collection name, unknown mode).
    #[error("{0}")]
    Invalid(String),
    /// 429: the generation or ingest queue is full; retry later.
    #[error("{0}")]
    Busy(String),
    /// 503: the models are still loading, or could not be loaded.
    #[error("{0}")]
    NotReady(String),
    /// 503: a store (the metadata database or the vector store) is down or did not answer
    /// in time; the message names which and why.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a store or engine failed.
    #[error("{0}")]
    Internal(String),
}

/// The JSON body of every error of `/api/v1`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `unsupported_media_type`, `invalid`, `busy`,
    /// `not_ready`, `unavailable`, `internal`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::TooLarge(_) => "payload_too_large",
            Self::UnsupportedType(_) => "unsupported_media_type",
            Self::Invalid(_) => "invalid",
            Self::Busy(_) => "busy",
            Self::NotReady(_) => "not_ready",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::NotReady(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(message) = self {
            tracing::error!(%message, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Self::Unavailable(message) = self {
            tracing::warn!(%message, "a store is unavailable");
        }
        if matches!(
            self,
            Self::Busy(_) | Self::NotReady(_) | Self::Unavailable(_)
        ) {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
        }
        if let Self::Unauthorized(_) = self {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"enclave\""),
            ));
        }
        response.json(self.body())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(_) => Self::NotFound(e.to_string()),
            StorageError::Conflict(_) => Self::Conflict(e.to_string()),
            StorageError::Unavailable { .. } => Self::Unavailable(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<RetrievalError> for ApiError {
    fn from(e: RetrievalError) -> Self {
        match e {
            RetrievalError::UnknownCollection(_) => Self::NotFound(e.to_string()),
            RetrievalError::Invalid(_) => Self::Invalid(e.to_string()),
            RetrievalError::Storage(s) => s.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<GenerationError> for ApiError {
    fn from(e: GenerationError) -> Self {
        match e {
            GenerationError::Busy { .. } => Self::Busy(e.to_string()),
            GenerationError::InvalidRequest(_) | GenerationError::PromptTooLong { .. } => {
                Self::Invalid(e.to_string())
            }
            GenerationError::ModelMissing { .. }
            | GenerationError::ModelLoad { .. }
            | GenerationError::EngineStopped => Self::NotReady(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AnswerError> for ApiError {
    fn from(e: AnswerError) -> Self {
        match e {
            AnswerError::Retrieval(r) => r.into(),
            AnswerError::Generation(g) => g.into(),
            AnswerError::UnknownModel(_) => Self::Invalid(e.to_string()),
            AnswerError::ModelLoad { .. } => Self::NotReady(e.to_string()),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Storage(s) => s.into(),
            IngestError::MissingPath(_) => Self::NotFound(e.to_string()),
            IngestError::Invalid(m) => Self::Invalid(m),
            IngestError::Busy(m) => Self::Conflict(m),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CorpusError> for ApiError {
    fn from(e: CorpusError) -> Self {
        match e {
            CorpusError::NotFound(m) => Self::NotFound(m),
            CorpusError::Forbidden(m) => Self::Forbidden(m),
            CorpusError::Invalid(m) => Self::Invalid(m),
            CorpusError::Conflict(m) => Self::Conflict(m),
            CorpusError::Unsupported(m) => Self::UnsupportedType(m),
            CorpusError::Busy(m) => Self::Busy(m),
            CorpusError::Storage(s) => s.into(),
            CorpusError::Ingest(i) => i.into(),
            CorpusError::Retrieval(r) => r.into(),
            CorpusError::Answer(a) => a.into(),
            CorpusError::Io(e) => e.into(),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        Self::Internal(format!("file system: {e}"))
    }
}

/// An [`ApiError`] in the OpenAI error shape, for `/v1`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OpenAiError(#[from] pub ApiError);

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let kind = match &self.0 {
            ApiError::Unauthorized(_) => "authentication_error",
            ApiError::Forbidden(_) => "permission_error",
            ApiError::NotFound(_) => "not_found_error",
            ApiError::Busy(_) => "rate_limit_error",
            ApiError::NotReady(_) | ApiError::Unavailable(_) | ApiError::Internal(_) => {
                "server_error"
            }
            _ => "invalid_request_error",
        };
        let code = match &self.0 {
            ApiError::NotFound(_) => "model_not_found",
            other => other.code(),
        };
        let mut response = self.0.error_response();
        let mut builder = HttpResponse::build(self.status_code());
        for (name, value) in response.headers_mut().iter() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                builder.insert_header((name.clone(), value.clone()));
            }
        }
        builder.json(serde_json::json!({
            "error": {"message": self.0.to_string(), "type": kind, "code": code}
        }))
    }
}
