//! Secrets: API keys and session tokens (stored as SHA-256 digests), passwords (Argon2id).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use enclave_storage::MetaStore;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::actor::Role;
use crate::error::{CorpusError, Result};

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
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| CorpusError::Invalid(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CorpusError::Invalid(format!("hashing a password: {e}")))
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
    role: Option<Role>,
) -> Result<()> {
    check_password(password)?;
    if username.trim().is_empty() || username.chars().any(char::is_control) || username.len() > 128
    {
        return Err(CorpusError::Invalid(
            "a user name is 1 to 128 characters, without control characters".into(),
        ));
    }
    let hash = {
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| CorpusError::Invalid(format!("hashing a password: {e}")))??
    };
    meta.create_user(username, &hash, Role::global_str(role))
        .await?;
    Ok(())
}

/// Refuses a password shorter than 8 characters.
pub fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(CorpusError::Invalid(
            "a password needs at least 8 characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
