//! Who is calling: an API key, a UI session, or the trusted single-user mode when
//! authentication is off, turned into the application layer's [`Principal`] (an
//! `enclave_corpus::Actor`, with its roles, grants and groups). What it may do is decided by
//! `enclave-corpus`, never here.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};

use crate::error::{ApiError, OpenAiError};
use crate::state::AppState;

/// Name of the UI session cookie.
pub const SESSION_COOKIE: &str = "enclave_session";

pub use enclave_corpus::{Action, Actor as Principal, ActorKind as PrincipalKind, Role};

pub use enclave_corpus::credentials::{
    digest, hash_password, new_api_key, new_password, new_session_token, verify_password,
};

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let headers = req.headers();
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim().to_string());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// The caller of an API request (`/api/v1`, `/v1`): an API key, or trusted when auth is off.
pub async fn api_principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = state(req)?;
    if !state.settings.auth.enabled {
        return Ok(Principal::trusted());
    }
    let Some(key) = bearer(req) else {
        return Err(ApiError::Unauthorized(
            "an API key is required: send 'Authorization: Bearer <key>' (create one with \
             'enclave keys create NAME')"
                .into(),
        ));
    };
    state
        .corpus
        .actor_for_key(&digest(&key))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("unknown or revoked API key".into()))
}

/// The caller of a UI request: the session's user, or trusted when auth is off. `None` when
/// nobody is signed in.
pub async fn ui_principal(req: &HttpRequest) -> Result<Option<Principal>, ApiError> {
    let state = state(req)?;
    if !state.settings.auth.enabled {
        return Ok(Some(Principal::trusted()));
    }
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(state
        .corpus
        .actor_for_session(&digest(cookie.value()))
        .await?)
}

/// Extracts the API caller; rejects with 401.
pub struct ApiCaller(pub Principal);

impl FromRequest for ApiCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { api_principal(&req).await.map(ApiCaller) })
    }
}

/// Extracts the caller of the OpenAI-compatible API; rejects in OpenAI's error shape.
pub struct OpenAiCaller(pub Principal);

impl FromRequest for OpenAiCaller {
    type Error = OpenAiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, OpenAiError>>>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            api_principal(&req)
                .await
                .map(OpenAiCaller)
                .map_err(OpenAiError)
        })
    }
}
