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
//! Verification is bounded (`docs/operating.md#limits`): at most one argon2 verification per
//! core runs at a time (a semaphore; each in working memory kept per permit and reused, 19 MiB
//! by default, so their memory is bounded whatever threads run them), the
//! memory of verified tokens is keyed by kind and id and compares the secret in constant
//! time, and an unknown id is verified against a dummy hash of the same cost, so a wrong
//! secret costs the same whether the id exists or not.
//!
//! Console sessions (`docs/architecture.md#credentials`) plug in at [`authenticate`] (token
//! login) and [`check_password`] (user name and password): a session cookie plus a CSRF
//! header on unsafe methods yields the same [`Actor`] a bearer token does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use cascade_proto::UserRole;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::lockout::{self, Attempt, LockoutPolicy, Origin};
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
/// user or wrong password, logged alike). The check goes through the [`Verifier`]'s bounded
/// verification, and an unknown user costs the same as a wrong password. Failures count
/// towards a lockout of the name and of `origin`'s address ([`crate::lockout`]).
///
/// # Errors
/// [`ApiError::LockedOut`] while the name or address is locked; database errors.
pub async fn check_password(
    verifier: &Verifier,
    name: &str,
    password: &str,
    origin: &Origin,
) -> Result<Option<Actor>, ApiError> {
    let store = &verifier.store;
    let now = verifier.clock.now();
    let guard = lockout::check(store, Attempt::Login, Some(name), origin, now).await?;
    let (hash, user) = (store.password_hash(name).await?, store.user(name).await?);
    let known = hash.is_some() && user.is_some();
    let ok = verifier.verify(password, hash).await?;
    let Some(user) = user.filter(|_| ok && known) else {
        tracing::warn!(user = name, "login refused: unknown user or wrong password");
        guard.failed(store, &verifier.lockout, now).await;
        return Ok(None);
    };
    guard.succeeded(store).await?;
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

/// Whether `secret` matches the argon2 PHC string `hash`, computed in `memory` (grown to the
/// hash's cost and kept by the caller, so a verification allocates nothing: the memory of
/// verifications is a fixed `limit × cost`, whatever the threads that ran them).
fn verify_secret(secret: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let Ok(version) = parsed.version.map(Version::try_from).transpose() else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    argon
        .hash_password_into_with_memory(secret.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
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
    /// Verified tokens by `kind_id`: the secret that verified, who it is, and when.
    verified: Arc<Mutex<HashMap<String, Remembered>>>,
    /// One permit per argon2 verification running.
    permits: Arc<Semaphore>,
    limit: usize,
    /// The cost of the dummy hash unknown ids are verified against.
    cost: HashCost,
    dummy: Arc<OnceLock<String>>,
    /// Argon2 working memory, one per permit, reused.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    counts: Arc<Counts>,
    /// Failures that lock a name, id or address out.
    lockout: LockoutPolicy,
}

/// A token that verified: its secret, who it is, and when.
#[derive(Clone)]
struct Remembered {
    secret: String,
    principal: Principal,
    at: i64,
    /// When the token expires, if it does.
    until: Option<i64>,
}

/// How many argon2 verifications ran, and the most that ran at once.
#[derive(Debug, Default)]
struct Counts {
    total: AtomicUsize,
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// What [`Verifier::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyStats {
    /// Argon2 verifications run (known and unknown ids alike).
    pub verifications: usize,
    /// The most that ran at the same time.
    pub peak_concurrent: usize,
    /// The bound on verifications at the same time.
    pub limit: usize,
}

impl Verifier {
    /// A verifier over `store`, aging its memory by `clock`; unknown ids are verified against
    /// a dummy hash of `cost`, and at most one verification per core runs at a time.
    pub fn new(store: Store, clock: Arc<dyn Clock>, cost: HashCost) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::with_limit(store, clock, cost, cores)
    }

    /// [`Verifier::new`] with `limit` verifications at a time.
    pub fn with_limit(store: Store, clock: Arc<dyn Clock>, cost: HashCost, limit: usize) -> Self {
        Verifier {
            store,
            clock,
            verified: Arc::default(),
            permits: Arc::new(Semaphore::new(limit.max(1))),
            limit: limit.max(1),
            cost,
            dummy: Arc::default(),
            memory: Arc::default(),
            counts: Arc::default(),
            lockout: LockoutPolicy::default(),
        }
    }

    /// Use `policy` for lockouts instead of the default.
    #[must_use]
    pub fn with_lockout(mut self, policy: LockoutPolicy) -> Self {
        self.lockout = policy;
        self
    }

    /// Counts a failed `attempt` by `id` from `origin` that was refused after its
    /// credential verified (an enrollment token that is revoked, expired or used up).
    ///
    /// # Errors
    /// [`ApiError::LockedOut`] when already locked; database errors.
    pub async fn count_failure(
        &self,
        attempt: Attempt,
        id: &str,
        origin: &Origin,
    ) -> Result<(), ApiError> {
        let now = self.clock.now();
        lockout::check(&self.store, attempt, Some(id), origin, now)
            .await?
            .failed(&self.store, &self.lockout, now)
            .await;
        Ok(())
    }

    /// Forgets every verified token (after a rotation or revocation).
    pub fn forget(&self) {
        if let Ok(mut cache) = self.verified.lock() {
            cache.clear();
        }
    }

    /// Verifications so far and the most at once.
    pub fn stats(&self) -> VerifyStats {
        VerifyStats {
            verifications: self.counts.total.load(Ordering::Relaxed),
            peak_concurrent: self.counts.peak.load(Ordering::Relaxed),
            limit: self.limit,
        }
    }

    /// Verifies `secret` against `hash` (or, for an unknown id, against the dummy hash, and
    /// then refuses), one permit at a time.
    async fn verify(&self, secret: &str, hash: Option<String>) -> Result<bool, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let known = hash.is_some();
        let hash = match hash {
            Some(h) => h,
            None => self.dummy_hash().await?,
        };
        let running = self.counts.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.counts.peak.fetch_max(running, Ordering::SeqCst);
        self.counts.total.fetch_add(1, Ordering::SeqCst);
        let secret = secret.to_owned();
        let mut memory = self
            .memory
            .lock()
            .ok()
            .and_then(|mut m| m.pop())
            .unwrap_or_default();
        let ok = tokio::task::spawn_blocking(move || {
            let ok = verify_secret(&secret, &hash, &mut memory);
            (ok, memory)
        })
        .await;
        self.counts.running.fetch_sub(1, Ordering::SeqCst);
        let (ok, memory) = ok.map_err(|e| ApiError::Internal(e.to_string()))?;
        if let Ok(mut m) = self.memory.lock() {
            m.push(memory);
        }
        Ok(ok && known)
    }

    /// A hash at the server's cost, made once.
    async fn dummy_hash(&self) -> Result<String, ApiError> {
        if let Some(h) = self.dummy.get() {
            return Ok(h.clone());
        }
        let cost = self.cost;
        // No secret matches it: `verify` refuses an unknown id whatever it computes.
        let h = tokio::task::spawn_blocking(move || hash_secret("unknown", &[0u8; 16], cost))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        Ok(self.dummy.get_or_init(|| h).clone())
    }
}

/// Who the request's credential belongs to.
///
/// Wrong secrets count towards a lockout of the token id and of the source address
/// ([`crate::lockout`]); a token remembered as verified is answered from memory, without
/// reading or writing the database.
///
/// # Errors
/// 401 when there is no bearer token or it does not verify; 429 while its id or address is
/// locked out.
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
    // A full enrollment token (`docs/operating.md#enrollment-token-format`) authenticates with its
    // secret part.
    let full = cascade_proto::enroll_token::secret_of(token);
    let token = full.as_str();
    let now = state.clock.now();
    let origin = Origin::of(parts);
    let Some((kind, id, secret)) = parse_token(token) else {
        // No id to count: the address alone.
        lockout::check(&state.store, Attempt::Token, None, &origin, now)
            .await?
            .failed(&state.store, &state.lockout, now)
            .await;
        return Err(invalid());
    };
    let key = format!("{kind}_{id}");
    let cached = state.verified.lock().ok().and_then(|c| {
        c.get(&key)
            .filter(|r| now.saturating_sub(r.at) < CACHE_SECS && r.until.is_none_or(|u| now < u))
            .filter(|r| bool::from(r.secret.as_bytes().ct_eq(secret.as_bytes())))
            .map(|r| r.principal.clone())
    });
    if let Some(p) = cached {
        return Ok(p);
    }
    let attempt = if kind == "enr" {
        Attempt::Enroll
    } else {
        Attempt::Token
    };
    let guard = lockout::check(&state.store, attempt, Some(&key), &origin, now).await?;
    let mut until = None;
    let (hash, principal) = match kind {
        "adm" => match state.store.token_grant(id).await? {
            // Unknown: verified against the dummy hash below, at the same cost.
            None => (None, Principal::Client(String::new())),
            Some(grant) => {
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
                (Some(grant.hash), Principal::User(actor))
            }
        },
        "enr" => (
            state.store.token_hash(id, TokenKind::Enroll).await?,
            Principal::Enroll(id.to_owned()),
        ),
        "cli" => (
            state.store.credential_hash(id).await?,
            Principal::Client(id.to_owned()),
        ),
        _ => (None, Principal::Client(String::new())),
    };
    if !state.verify(secret, hash).await? {
        guard.failed(&state.store, &state.lockout, now).await;
        return Err(invalid());
    }
    if until.is_some_and(|u| now >= u) {
        tracing::warn!(token = id, "token refused: expired");
        return Err(invalid());
    }
    guard.succeeded(&state.store).await?;
    if let Ok(mut cache) = state.verified.lock() {
        cache.retain(|_, r| now.saturating_sub(r.at) < CACHE_SECS);
        cache.insert(
            key,
            Remembered {
                secret: secret.to_owned(),
                principal: principal.clone(),
                at: now,
                until,
            },
        );
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
        let mut memory = Vec::new();
        assert!(verify_secret("abc", &h, &mut memory));
        assert!(!verify_secret("abd", &h, &mut memory));
        assert!(!verify_secret("abc", "not a hash", &mut memory));
        // The argon2 crate's own verification agrees.
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(
            argon2::PasswordVerifier::verify_password(&Argon2::default(), b"abc", &parsed).is_ok()
        );
    }

    async fn verifier(dir: &std::path::Path, limit: usize) -> (Verifier, String) {
        let db = crate::db::open(dir, None).await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(crate::settings::SystemClock);
        let store = Store::new(db.pool.clone(), clock.clone());
        let cost = HashCost {
            memory_kib: 256,
            iterations: 1,
        };
        let random = crate::settings::os_random();
        let (token, hash) = new_token(&random, cost, "adm", "0a0a").await.unwrap();
        store
            .initialize(
                ("admin", &hash),
                &[("0a0a", TokenKind::Admin, &hash, "test")],
            )
            .await
            .unwrap();
        // Wrong secrets by the dozen here are about bounding argon2, not about lockout.
        let lenient = LockoutPolicy {
            max_failures: u32::MAX,
            max_address_failures: u32::MAX,
            ..LockoutPolicy::default()
        };
        (
            Verifier::with_limit(store, clock, cost, limit).with_lockout(lenient),
            token,
        )
    }

    fn bearer(token: &str) -> Parts {
        let req = axum::http::Request::builder()
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap();
        req.into_parts().0
    }

    // Many wrong secrets at once, for a known id and for unknown ids: every one is refused,
    // every one pays one argon2 verification (unknown ids against the dummy hash), and no
    // more than the limit run at the same time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn verification_is_bounded_and_costs_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (v, token) = verifier(dir.path(), 2).await;
        let wrong = format!("{}ff", &token[..token.len() - 2]);
        let wrong = if wrong == token {
            format!("{}ee", &token[..token.len() - 2])
        } else {
            wrong
        };
        let mut calls = Vec::new();
        for i in 0..40 {
            let v = v.clone();
            let t = if i % 2 == 0 {
                wrong.clone()
            } else {
                format!("cascade_adm_{i:04x}ff_00ff")
            };
            calls.push(tokio::spawn(
                async move { authenticate(&v, &bearer(&t)).await },
            ));
        }
        for c in calls {
            assert!(matches!(c.await.unwrap(), Err(ApiError::Unauthorized(_))));
        }
        let stats = v.stats();
        assert_eq!(stats.verifications, 40, "{stats:?}");
        assert!(stats.peak_concurrent <= 2, "{stats:?}");
        // The right secret verifies once, then comes from memory; a wrong secret for the
        // remembered id is still verified (and refused).
        let p = authenticate(&v, &bearer(&token)).await.unwrap();
        assert!(
            matches!(&p, Principal::User(a) if a.token == "0a0a" && a.role == UserRole::Admin),
            "{p:?}"
        );
        authenticate(&v, &bearer(&token)).await.unwrap();
        assert_eq!(v.stats().verifications, 41);
        assert!(authenticate(&v, &bearer(&wrong)).await.is_err());
        assert_eq!(v.stats().verifications, 42);
    }
}
