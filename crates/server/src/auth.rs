//! Credentials. Three kinds of bearer token, each `cascade_<kind>_<id>_<secret>`: a user's
//! API token (`adm`; it acts as its user, with the user's role, until it expires or is
//! revoked), enrollment (`enr`) and a client's own credential (`cli`, the id is the client
//! id). Only argon2id hashes of the secrets and of users' passwords are stored; a verified
//! token is remembered in memory for a minute so the hash is not paid on every request.
//! Rotating, revoking or changing a user clears it on this replica; other replicas sharing
//! the database notice within that minute.
//!
//! Roles (`docs/operating.md#users-roles-and-tokens`): the [`Viewer`], [`Operator`] and
//! [`Admin`] extractors each admit a user whose role is at least that one and refuse
//! anyone else with 403, logged.
//!
//! Console sessions (`docs/architecture.md#credentials`) plug in at [`authenticate`] (token
//! login) and [`check_password`] (user name and password): a session cookie plus a CSRF
//! header on unsafe methods yields the same [`Actor`] a bearer token does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use cascade_proto::UserRole;

use crate::error::ApiError;
use crate::settings::{Clock, HashCost, RandomFill};
use crate::store::{Store, TokenKind};

/// A user acting through an API token or a console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user's name.
    pub user: String,
    /// The token's id (empty for a password login).
    pub token: String,
    /// The user's role.
    pub role: UserRole,
}

impl Actor {
    /// How writes record this actor (`user:<name>`).
    pub fn label(&self) -> String {
        format!("user:{}", self.user)
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user, through one of its API tokens.
    User(Actor),
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

/// The argon2id hash of a user's `password`, to store.
///
/// # Errors
/// When the random source or the hasher fails.
pub async fn hash_password(
    random: &RandomFill,
    cost: HashCost,
    password: &str,
) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    random(&mut salt).map_err(|e| ApiError::Internal(format!("random source: {e}")))?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_secret(&password, &salt, cost))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// The user `name` as an [`Actor`] when `password` is theirs; `None` otherwise (unknown
/// user or wrong password, logged alike).
///
/// # Errors
/// Database errors.
pub async fn check_password(
    store: &Store,
    name: &str,
    password: &str,
) -> Result<Option<Actor>, ApiError> {
    let (Some(hash), Some(user)) = (store.password_hash(name).await?, store.user(name).await?)
    else {
        tracing::warn!(user = name, "login refused: unknown user");
        return Ok(None);
    };
    let secret = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !ok {
        tracing::warn!(user = name, "login refused: wrong password");
        return Ok(None);
    }
    Ok(Some(Actor {
        user: user.name,
        token: String::new(),
        role: user.role,
    }))
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

/// A verified token: who it is, when it was verified, and when it expires.
type Verified = (Principal, i64, Option<i64>);

/// Checks credentials against the store, remembering verified tokens for a minute. Cheap to
/// clone; extractors take it from the router state ([`FromRef`]).
#[derive(Clone)]
pub struct Verifier {
    store: Store,
    clock: Arc<dyn Clock>,
    verified: Arc<Mutex<HashMap<String, Verified>>>,
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
            .filter(|(_, at, until)| {
                now.saturating_sub(*at) < CACHE_SECS && until.is_none_or(|u| now < u)
            })
            .map(|(p, _, _)| p.clone())
    });
    if let Some(p) = cached {
        return Ok(p);
    }
    let (kind, id, secret) = parse_token(token).ok_or_else(invalid)?;
    let mut until = None;
    let (hash, principal) = match kind {
        "adm" => {
            let grant = state.store.token_grant(id).await?.ok_or_else(invalid)?;
            if grant.expires_at.is_some_and(|e| now >= e) {
                tracing::warn!(token = id, "token refused: expired");
                return Err(invalid());
            }
            until = grant.expires_at;
            // A token made before users existed acts as an admin.
            let role = match (&grant.user, grant.role) {
                (None, _) => UserRole::Admin,
                (Some(_), Some(role)) => role,
                (Some(_), None) => return Err(invalid()),
            };
            let actor = Actor {
                user: grant.user.unwrap_or_else(|| "admin".to_owned()),
                token: id.to_owned(),
                role,
            };
            (grant.hash, Principal::User(actor))
        }
        "enr" => {
            let hash = state.store.token_hash(id, TokenKind::Enroll).await?;
            (hash.ok_or_else(invalid)?, Principal::Enroll(id.to_owned()))
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
        cache.retain(|_, (_, at, _)| now.saturating_sub(*at) < CACHE_SECS);
        cache.insert(token.to_owned(), (principal.clone(), now, until));
    }
    Ok(principal)
}

/// How long a verified token is trusted without looking at the database again. Revocation
/// on this replica clears the cache at once; other replicas see it within this time.
const CACHE_SECS: i64 = 60;

fn invalid() -> ApiError {
    tracing::warn!("credential refused: unknown, revoked, expired or mistyped");
    ApiError::Unauthorized("the token is not valid (unknown, revoked or mistyped)")
}

/// The calling user when their role is at least `needed`.
async fn user_with<S>(parts: &Parts, state: &S, needed: UserRole) -> Result<Actor, ApiError>
where
    Verifier: FromRef<S>,
{
    let principal = authenticate(&Verifier::from_ref(state), parts).await?;
    if let (Principal::User(actor), Some(slot)) = (
        &principal,
        parts.extensions.get::<crate::audit::AuditSlot>(),
    ) {
        slot.set(actor.label());
    }
    match principal {
        Principal::User(actor) if actor.role.allows(needed) => Ok(actor),
        Principal::User(actor) => {
            tracing::warn!(
                user = %actor.user,
                role = actor.role.as_str(),
                needed = needed.as_str(),
                method = %parts.method,
                path = parts.uri.path(),
                "refused: the user's role does not allow this"
            );
            Err(ApiError::Forbidden(match needed {
                UserRole::Admin => "this call needs a user with the admin role",
                UserRole::Operator => "this call needs a user with the operator or admin role",
                UserRole::Viewer => "this call needs a user token",
            }))
        }
        _ => {
            tracing::warn!(
                method = %parts.method,
                path = parts.uri.path(),
                "refused: not a user token"
            );
            Err(ApiError::Forbidden("this call needs an admin token"))
        }
    }
}

/// Extractor: the caller is a user with the admin role; holds the actor's label.
#[derive(Debug, Clone)]
pub struct Admin(pub String);

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Admin(
            user_with(parts, state, UserRole::Admin).await?.label(),
        ))
    }
}

/// Extractor: the caller is a user with the operator or admin role; holds the actor's label.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

impl<S> FromRequestParts<S> for Operator
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Operator(
            user_with(parts, state, UserRole::Operator).await?.label(),
        ))
    }
}

/// Extractor: the caller is any user (viewer and up); holds the actor.
#[derive(Debug, Clone)]
pub struct Viewer(pub Actor);

impl<S> FromRequestParts<S> for Viewer
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Viewer(user_with(parts, state, UserRole::Viewer).await?))
    }
}

/// Extractor: the caller is a user with the admin role; holds the whole actor.
#[derive(Debug, Clone)]
pub struct AdminActor(pub Actor);

impl<S> FromRequestParts<S> for AdminActor
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(AdminActor(user_with(parts, state, UserRole::Admin).await?))
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

/// Extractor: the caller holds an enrollment token; holds its id (whether it is still
/// usable is checked when the enrollment is stored).
#[derive(Debug, Clone)]
pub struct Enroller(pub String);

impl<S> FromRequestParts<S> for Enroller
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match authenticate(&Verifier::from_ref(state), parts).await? {
            Principal::Enroll(id) => Ok(Enroller(id)),
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
