//! Credentials. Three kinds of bearer token, each `cascade_<kind>_<id>_<secret>`: admin
//! (`adm`), enrollment (`enr`) and a client's own credential (`cli`, the id is the client
//! id). Only argon2id hashes of the secrets are stored; a verified token is remembered in
//! memory for a minute so the hash is not paid on every request. Rotating or revoking clears
//! it on this replica; other replicas sharing the database notice within that minute.
//!
//! Console sessions (`docs/architecture.md#credentials`) plug in at [`authenticate`]: a
//! session cookie plus a CSRF header on unsafe methods yields [`Principal::Admin`] the same
//! way a bearer token does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::settings::{Clock, HashCost, RandomFill};
use crate::store::{Store, TokenKind};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An administrator, by token id.
    Admin(String),
    /// A holder of the enrollment token, by token id.
    Enroll(String),
    /// An enrolled client, by client id.
    Client(String),
}

/// A fresh random hex string of `bytes` bytes.
///
/// # Errors
/// When the random source fails.
pub fn random_hex(random: &RandomFill, bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    random(&mut buf).map_err(|e| ApiError::Internal(format!("random source: {e}")))?;
    Ok(hex::encode(buf))
}

/// A new token of `kind` (`adm`, `enr`, `cli`) for `id`, and the hash to store.
///
/// # Errors
/// When the random source or the hasher fails.
pub async fn new_token(
    random: &RandomFill,
    cost: HashCost,
    kind: &str,
    id: &str,
) -> Result<(String, String), ApiError> {
    let secret = random_hex(random, 32)?;
    let mut salt = [0u8; 16];
    random(&mut salt).map_err(|e| ApiError::Internal(format!("random source: {e}")))?;
    let token = format!("cascade_{kind}_{id}_{secret}");
    let hash = tokio::task::spawn_blocking(move || hash_secret(&secret, &salt, cost))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((token, hash))
}

fn hash_secret(secret: &str, salt: &[u8], cost: HashCost) -> Result<String, ApiError> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| ApiError::Internal(format!("argon2 params: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(salt).map_err(|e| ApiError::Internal(e.to_string()))?;
    argon
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
}

fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Splits `cascade_<kind>_<id>_<secret>`.
fn parse_token(token: &str) -> Option<(&str, &str, &str)> {
    let rest = token.strip_prefix("cascade_")?;
    let mut parts = rest.splitn(3, '_');
    let kind = parts.next()?;
    let id = parts.next()?;
    let secret = parts.next()?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (ok(id) && ok(secret)).then_some((kind, id, secret))
}

/// Checks credentials against the store, remembering verified tokens for a minute. Cheap to
/// clone; extractors take it from the router state ([`FromRef`]).
#[derive(Clone)]
pub struct Verifier {
    store: Store,
    clock: Arc<dyn Clock>,
    verified: Arc<Mutex<HashMap<String, (Principal, i64)>>>,
}

impl Verifier {
    /// A verifier over `store`, aging its memory by `clock`.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Verifier {
            store,
            clock,
            verified: Arc::default(),
        }
    }

    /// Forgets every verified token (after a rotation or revocation).
    pub fn forget(&self) {
        if let Ok(mut cache) = self.verified.lock() {
            cache.clear();
        }
    }
}

/// Who the request's credential belongs to.
///
/// # Errors
/// 401 when there is no bearer token or it does not verify.
pub async fn authenticate(state: &Verifier, parts: &Parts) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>`",
        ))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(
            "the Authorization header is not `Bearer <token>`",
        ))?;
    let now = state.clock.now();
    let cached = state.verified.lock().ok().and_then(|c| {
        c.get(token)
            .filter(|(_, at)| now.saturating_sub(*at) < CACHE_SECS)
            .map(|(p, _)| p.clone())
    });
    if let Some(p) = cached {
        return Ok(p);
    }
    let (kind, id, secret) = parse_token(token).ok_or_else(invalid)?;
    let (hash, principal) = match kind {
        "adm" | "enr" => {
            let (want, p) = if kind == "adm" {
                (TokenKind::Admin, Principal::Admin(id.to_owned()))
            } else {
                (TokenKind::Enroll, Principal::Enroll(id.to_owned()))
            };
            let hash = state.store.token_hash(id, want).await?;
            (hash.ok_or_else(invalid)?, p)
        }
        "cli" => {
            let hash = state.store.credential_hash(id).await?;
            (hash.ok_or_else(invalid)?, Principal::Client(id.to_owned()))
        }
        _ => return Err(invalid()),
    };
    let secret = secret.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !ok {
        return Err(invalid());
    }
    if let Ok(mut cache) = state.verified.lock() {
        cache.retain(|_, (_, at)| now.saturating_sub(*at) < CACHE_SECS);
        cache.insert(token.to_owned(), (principal.clone(), now));
    }
    Ok(principal)
}

/// How long a verified token is trusted without looking at the database again. Revocation
/// on this replica clears the cache at once; other replicas see it within this time.
const CACHE_SECS: i64 = 60;

fn invalid() -> ApiError {
    ApiError::Unauthorized("the token is not valid (unknown, revoked or mistyped)")
}

/// Extractor: the caller is an administrator; holds the admin token id (the actor).
#[derive(Debug, Clone)]
pub struct Admin(pub String);

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match authenticate(&Verifier::from_ref(state), parts).await? {
            Principal::Admin(id) => Ok(Admin(format!("admin:{id}"))),
            _ => Err(ApiError::Forbidden("this call needs an admin token")),
        }
    }
}

/// Extractor: the caller is an enrolled client; holds its client id.
#[derive(Debug, Clone)]
pub struct ClientAuth(pub String);

impl<S> FromRequestParts<S> for ClientAuth
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match authenticate(&Verifier::from_ref(state), parts).await? {
            Principal::Client(id) => Ok(ClientAuth(id)),
            _ => Err(ApiError::Forbidden("this call needs a client credential")),
        }
    }
}

/// Extractor: the caller holds the current enrollment token.
#[derive(Debug, Clone)]
pub struct Enroller;

impl<S> FromRequestParts<S> for Enroller
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match authenticate(&Verifier::from_ref(state), parts).await? {
            Principal::Enroll(_) => Ok(Enroller),
            _ => Err(ApiError::Forbidden("enrollment needs the enrollment token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A token splits into kind, id and secret; anything else is refused.
    #[test]
    fn token_format() {
        assert_eq!(
            parse_token("cascade_adm_0a1b_ff00"),
            Some(("adm", "0a1b", "ff00"))
        );
        assert_eq!(parse_token("cascade_adm_0a1b"), None);
        assert_eq!(parse_token("cascade_adm_zz_ff"), None);
        assert_eq!(parse_token("bearer"), None);
    }

    // A hash verifies its own secret and no other.
    #[test]
    fn hash_round_trip() {
        let cost = HashCost {
            memory_kib: 64,
            iterations: 1,
        };
        let h = hash_secret("abc", &[7u8; 16], cost).unwrap();
        assert!(verify_secret("abc", &h));
        assert!(!verify_secret("abd", &h));
    }
}
