//! Who is calling, and what they may do.
//!
//! Every handler receives a [`Principal`] (from an API key, a UI session, or the trusted
//! single-user mode when authentication is off) and asks it [`Principal::authorize`] for an
//! [`Action`] on a collection. That one call is where roles are decided today and where
//! per-collection grants and access tags will be decided: handlers do not change when they come.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use enclave_storage::MetaStore;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::{ApiError, OpenAiError};
use crate::state::AppState;

/// Name of the UI session cookie.
pub const SESSION_COOKIE: &str = "enclave_session";

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Search, ask, read documents.
    Reader,
    /// Also upload, replace, re-index and delete documents.
    Editor,
    /// Also create and delete collections.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reader" => Ok(Self::Reader),
            "editor" => Ok(Self::Editor),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown role '{other}' (reader, editor, admin)")),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reader => "reader",
            Self::Editor => "editor",
            Self::Admin => "admin",
        }
    }
}

/// Something a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Search, ask, read documents and pages.
    Read,
    /// Change documents.
    Write,
    /// Create and delete collections.
    Administer,
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    ApiKey {
        id: String,
    },
    User {
        id: String,
    },
    /// Authentication is off: every request is trusted.
    Trusted,
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    pub role: Role,
}

impl Principal {
    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        match &self.kind {
            PrincipalKind::ApiKey { .. } => format!("API key '{}'", self.name),
            PrincipalKind::User { .. } => format!("user '{}'", self.name),
            PrincipalKind::Trusted => "local (authentication off)".to_string(),
        }
    }

    fn trusted() -> Self {
        Self {
            name: "local".into(),
            kind: PrincipalKind::Trusted,
            role: Role::Admin,
        }
    }

    /// Allows `action` (on `collection`, when it concerns one) or says why not.
    pub fn authorize(&self, action: Action, collection: Option<&str>) -> Result<(), ApiError> {
        let needed = match action {
            Action::Read => Role::Reader,
            Action::Write => Role::Editor,
            Action::Administer => Role::Admin,
        };
        if self.role >= needed {
            return Ok(());
        }
        let target = collection.map_or_else(String::new, |c| format!(" in collection '{c}'"));
        Err(ApiError::Forbidden(format!(
            "'{}' has the {} role; this needs {}{target}",
            self.name,
            self.role.as_str(),
            needed.as_str()
        )))
    }

    /// Access tags the caller's searches are restricted to (empty: no restriction).
    pub fn access_tags(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether this is a signed-in person (the UI shows a sign-out button).
    pub fn is_user(&self) -> bool {
        matches!(self.kind, PrincipalKind::User { .. })
    }
}

/// SHA-256 hex digest: how API keys and session tokens are stored.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new API key: `(key shown once, prefix, hash to store)`.
pub fn new_api_key() -> (String, String, String) {
    let key = format!("enc_{}", random_token(24));
    let prefix = key[..12].to_string();
    let hash = digest(&key);
    (key, prefix, hash)
}

/// A new session token and its stored hash.
pub fn new_session_token() -> (String, String) {
    let token = random_token(32);
    let hash = digest(&token);
    (token, hash)
}

/// A random password for the first administrator.
pub fn new_password() -> String {
    random_token(12)
}

/// Argon2id hash (PHC string) of a password.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::Internal(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches the stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Adds a user with a hashed password.
pub async fn add_user(
    meta: &MetaStore,
    username: &str,
    password: &str,
    role: Role,
) -> Result<(), ApiError> {
    if username.trim().is_empty() || password.len() < 8 {
        return Err(ApiError::Invalid(
            "a user needs a name and a password of at least 8 characters".into(),
        ));
    }
    let hash = {
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??
    };
    meta.create_user(username, &hash, role.as_str()).await?;
    Ok(())
}

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
    let record = state
        .meta
        .api_key_by_hash(&digest(&key))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("unknown or revoked API key".into()))?;
    let role = record
        .role
        .parse()
        .map_err(|e: String| ApiError::Internal(e))?;
    Ok(Principal {
        name: record.name,
        kind: PrincipalKind::ApiKey { id: record.id },
        role,
    })
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
    let Some(user) = state.meta.session_user(&digest(cookie.value())).await? else {
        return Ok(None);
    };
    let role = user
        .role
        .parse()
        .map_err(|e: String| ApiError::Internal(e))?;
    Ok(Some(Principal {
        name: user.username,
        kind: PrincipalKind::User { id: user.id },
        role,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_lower_ones() {
        let reader = Principal {
            name: "r".into(),
            kind: PrincipalKind::Trusted,
            role: Role::Reader,
        };
        assert!(reader.authorize(Action::Read, None).is_ok());
        let err = reader.authorize(Action::Write, Some("hr")).unwrap_err();
        assert!(err.to_string().contains("editor"), "{err}");
        assert!(err.to_string().contains("'hr'"), "{err}");
        assert!(
            Principal::trusted()
                .authorize(Action::Administer, None)
                .is_ok()
        );
    }

    #[test]
    fn passwords_and_keys_are_stored_hashed() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        let (key, prefix, stored) = new_api_key();
        assert!(key.starts_with(&prefix) && key.len() == 52, "{key}");
        assert_eq!(stored, digest(&key));
        assert_ne!(stored, key);
    }
}
