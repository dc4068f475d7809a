//! Credentials. Three kinds of bearer token, each `cascade_<kind>_<id>_<secret>`: a user's
//! API token (`adm`; it acts as its user, with the user's role, until it expires or is
//! revoked), enrollment (`enr`) and a client's own credential (`cli`, the id is the client
//! id). Every token's secret is 256 random bits made by the server ([`new_token`]), so it is
//! stored as a fast keyed hash, HMAC-SHA256 keyed by a random per-row salt
//! (`$hmac-sha256$<salt>$<mac>`, hex), and compared in constant time: a slow KDF protects
//! guessable secrets against a stolen database, and 2^256 secrets are not guessable, so
//! argon2 would only cost CPU on every check (`docs/architecture.md#credentials`). Users'
//! passwords are chosen by people and stay argon2id. Token rows made before this form hold
//! an argon2id PHC string; they still verify (with argon2, bounded as below) and are
//! replaced by the fast form on their first successful verification (a compare-and-swap
//! update, so a rotation at the same moment wins). A verified token is remembered in memory
//! for a minute so that not even the fast hash or the database is paid on every request.
//! Rotating, revoking or changing a user clears it on this replica; other replicas sharing
//! the database notice within that minute.
//!
//! Roles (`docs/operating.md#users-roles-and-tokens`): the [`Viewer`], [`Operator`] and
//! [`Admin`] extractors each admit a user whose role is at least that one and refuse
//! anyone else with 403, logged.
//!
//! Argon2 is bounded (`docs/operating.md#limits`): at most one argon2 computation per core
//! runs at a time, password hashing included (a semaphore; each in working memory kept per
//! permit and reused, 19 MiB by default, so their memory is bounded whatever threads run
//! them: an argon2 that allocates its own memory on a blocking thread leaves it in that
//! thread's allocator arena). The memory of verified tokens is keyed by kind and id and
//! compares the secret in constant time, and an unknown id is verified against a dummy hash
//! of the same kind (the fast form for tokens, argon2 at the server's cost for passwords),
//! so a wrong secret costs the same whether the id exists or not (an id whose row still holds
//! an argon2 hash costs an argon2 until its first success upgrades it).
//!
//! Console sessions (`docs/architecture.md#credentials`) plug in at [`authenticate`] (token
//! login) and [`check_password`] (user name and password): a session cookie plus a CSRF
//! header on unsafe methods yields the same [`Actor`] a bearer token does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::hmac;
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

/// A new token of `kind` (`adm`, `enr`, `cli`) for `id` with a 256-bit random secret, and
/// its fast hash to store ([`fast_hash`]).
///
/// # Errors
/// When the random source fails.
pub fn new_token(random: &RandomFill, kind: &str, id: &str) -> Result<(String, String), ApiError> {
    let secret = random_hex(random, SECRET_BYTES)?;
    let hash = fast_hash(random, &secret)?;
    Ok((format!("cascade_{kind}_{id}_{secret}"), hash))
}

/// Random bytes in a token's secret.
const SECRET_BYTES: usize = 32;

/// How a stored fast hash begins.
const FAST_TAG: &str = "$hmac-sha256$";

/// The fast form of a token's `secret` to store: `$hmac-sha256$<salt>$<mac>`, the MAC of the
/// secret keyed by 16 fresh random bytes of salt.
///
/// # Errors
/// When the random source fails.
pub fn fast_hash(random: &RandomFill, secret: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    random(&mut salt).map_err(|e| ApiError::Internal(format!("random source: {e}")))?;
    Ok(fast_hash_with(secret, &salt))
}

fn fast_hash_with(secret: &str, salt: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let mac = hmac::sign(&key, secret.as_bytes());
    format!(
        "{FAST_TAG}{}${}",
        hex::encode(salt),
        hex::encode(mac.as_ref())
    )
}

/// Whether `secret` matches the fast hash `stored` (constant time); `None` when `stored` is
/// not in the fast form.
fn verify_fast(secret: &str, stored: &str) -> Option<bool> {
    let rest = stored.strip_prefix(FAST_TAG)?;
    let (salt, mac) = rest.split_once('$')?;
    let (salt, mac) = (hex::decode(salt).ok()?, hex::decode(mac).ok()?);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salt);
    Some(hmac::verify(&key, secret.as_bytes(), &mac).is_ok())
}

/// Whether `stored` is an argon2 PHC string (a row made before the fast form, or a password).
fn is_argon2(stored: &str) -> bool {
    stored.starts_with("$argon2")
}

/// The user `name` as an [`Actor`] when `password` is theirs; `None` otherwise (unknown
/// user or wrong password, logged alike). The check goes through the [`Verifier`]'s bounded
/// argon2, and an unknown user costs the same as a wrong password (a dummy argon2 hash). Failures count
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
    let ok = verifier.verify(password, hash, Dummy::Argon2).await?;
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

/// The argon2id PHC string of `secret` with `salt` at `cost`, computed in `memory` (grown
/// to the cost and kept by the caller, like [`verify_secret`]'s).
fn hash_secret(
    secret: &str,
    salt: &[u8],
    cost: HashCost,
    memory: &mut Vec<Block>,
) -> Result<String, ApiError> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| ApiError::Internal(format!("argon2 params: {e}")))?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt_text = SaltString::encode_b64(salt).map_err(|e| ApiError::Internal(e.to_string()))?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon
            .hash_password_into_with_memory(secret.as_bytes(), salt, out, &mut memory[..blocks])
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| ApiError::Internal(format!("argon2: {e}")))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|e| ApiError::Internal(format!("argon2 params: {e}")))?,
        salt: Some(salt_text.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
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
    /// One permit per argon2 computation running (verification or password hashing).
    permits: Arc<Semaphore>,
    limit: usize,
    /// The cost of passwords' hashes and of the dummy one unknown users are verified against.
    cost: HashCost,
    dummy: Arc<OnceLock<String>>,
    /// The fast hash unknown token ids are verified against.
    fast_dummy: String,
    /// Salts of password hashes and of upgraded token hashes.
    random: RandomFill,
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

/// How many verifications ran, how many argon2 computations, and the most that ran at once.
#[derive(Debug, Default)]
struct Counts {
    total: AtomicUsize,
    argon2: AtomicUsize,
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// What [`Verifier::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyStats {
    /// Verifications run, fast or argon2 (known and unknown ids alike; a token remembered
    /// as verified costs none).
    pub verifications: usize,
    /// Argon2 computations run (verifications of passwords and of old token rows, and
    /// password hashing).
    pub argon2: usize,
    /// The most argon2 computations that ran at the same time.
    pub peak_concurrent: usize,
    /// The bound on argon2 computations at the same time.
    pub limit: usize,
}

/// What an unknown id is verified against: a hash of the same kind as a known one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dummy {
    /// Tokens: the fast form.
    Fast,
    /// Passwords: argon2 at the server's cost.
    Argon2,
}

impl Verifier {
    /// A verifier over `store`, aging its memory by `clock`; passwords are hashed at `cost`
    /// (and unknown users verified against a dummy hash of that cost), and at most one argon2
    /// computation per core runs at a time.
    pub fn new(store: Store, clock: Arc<dyn Clock>, cost: HashCost) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::with_limit(store, clock, cost, cores)
    }

    /// [`Verifier::new`] with `limit` argon2 computations at a time.
    pub fn with_limit(store: Store, clock: Arc<dyn Clock>, cost: HashCost, limit: usize) -> Self {
        Verifier {
            store,
            clock,
            verified: Arc::default(),
            permits: Arc::new(Semaphore::new(limit.max(1))),
            limit: limit.max(1),
            cost,
            dummy: Arc::default(),
            // No secret is verified against it to success: `verify` refuses an unknown id
            // whatever it computes.
            fast_dummy: fast_hash_with("unknown", &[0u8; 16]),
            random: crate::settings::os_random(),
            memory: Arc::default(),
            counts: Arc::default(),
            lockout: LockoutPolicy::default(),
        }
    }

    /// Draw salts from `random` instead of the operating system's source.
    #[must_use]
    pub fn with_random(mut self, random: RandomFill) -> Self {
        self.random = random;
        self
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
            argon2: self.counts.argon2.load(Ordering::Relaxed),
            peak_concurrent: self.counts.peak.load(Ordering::Relaxed),
            limit: self.limit,
        }
    }

    /// Verifies `secret` against `hash` (or, for an unknown id, against the `dummy` hash,
    /// and then refuses): the fast form at once, argon2 one permit at a time.
    async fn verify(
        &self,
        secret: &str,
        hash: Option<String>,
        dummy: Dummy,
    ) -> Result<bool, ApiError> {
        self.counts.total.fetch_add(1, Ordering::SeqCst);
        let known = hash.is_some();
        let hash = match (hash, dummy) {
            (Some(h), _) => h,
            (None, Dummy::Fast) => self.fast_dummy.clone(),
            (None, Dummy::Argon2) => self.dummy_hash().await?,
        };
        if let Some(ok) = verify_fast(secret, &hash) {
            return Ok(ok && known);
        }
        let secret = secret.to_owned();
        let ok = self
            .with_argon2(move |memory| verify_secret(&secret, &hash, memory))
            .await?;
        Ok(ok && known)
    }

    /// Runs `work` on a blocking thread with one permit and one reused argon2 memory.
    async fn with_argon2<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let running = self.counts.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.counts.peak.fetch_max(running, Ordering::SeqCst);
        self.counts.argon2.fetch_add(1, Ordering::SeqCst);
        let mut memory = self
            .memory
            .lock()
            .ok()
            .and_then(|mut m| m.pop())
            .unwrap_or_default();
        let done = tokio::task::spawn_blocking(move || {
            let out = work(&mut memory);
            (out, memory)
        })
        .await;
        self.counts.running.fetch_sub(1, Ordering::SeqCst);
        let (out, memory) = done.map_err(|e| ApiError::Internal(e.to_string()))?;
        if let Ok(mut m) = self.memory.lock() {
            m.push(memory);
        }
        Ok(out)
    }

    /// The argon2id hash of a user's `password` at the server's cost, to store; bounded
    /// like verification (a permit and a reused memory).
    ///
    /// # Errors
    /// When the random source or the hasher fails.
    pub async fn hash_password(&self, password: &str) -> Result<String, ApiError> {
        let mut salt = [0u8; 16];
        (self.random)(&mut salt).map_err(|e| ApiError::Internal(format!("random source: {e}")))?;
        let (password, cost) = (password.to_owned(), self.cost);
        self.with_argon2(move |memory| hash_secret(&password, &salt, cost, memory))
            .await?
    }

    /// A password hash at the server's cost, made once.
    async fn dummy_hash(&self) -> Result<String, ApiError> {
        if let Some(h) = self.dummy.get() {
            return Ok(h.clone());
        }
        let cost = self.cost;
        // No password matches it: `verify` refuses an unknown user whatever it computes.
        let h = self
            .with_argon2(move |memory| hash_secret("unknown", &[0u8; 16], cost, memory))
            .await??;
        Ok(self.dummy.get_or_init(|| h).clone())
    }

    /// Replaces the argon2 hash `old` of a token that just verified with `secret` by the fast
    /// form, if the row still holds `old`. A failure is logged: the token still verifies.
    async fn upgrade(&self, kind: &str, id: &str, secret: &str, old: &str) {
        let new = match fast_hash(&self.random, secret) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(kind, id, error = %e, "credential hash kept as argon2");
                return;
            }
        };
        let done = if kind == "cli" {
            self.store.upgrade_credential_hash(id, old, &new).await
        } else {
            self.store.upgrade_token_hash(id, old, &new).await
        };
        match done {
            Ok(true) => tracing::info!(
                kind,
                id,
                "credential hash upgraded from argon2 to the fast form"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(kind, id, error = %e, "credential hash kept as argon2"),
        }
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
    let stored = hash.clone();
    if !state.verify(secret, hash, Dummy::Fast).await? {
        guard.failed(&state.store, &state.lockout, now).await;
        return Err(invalid());
    }
    if until.is_some_and(|u| now >= u) {
        tracing::warn!(token = id, "token refused: expired");
        return Err(invalid());
    }
    guard.succeeded(&state.store).await?;
    if let Some(old) = stored.filter(|h| is_argon2(h)) {
        state.upgrade(kind, id, secret, &old).await;
    }
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
        let mut memory = Vec::new();
        let h = hash_secret("abc", &[7u8; 16], cost, &mut memory).unwrap();
        assert!(verify_secret("abc", &h, &mut memory));
        assert!(!verify_secret("abd", &h, &mut memory));
        assert!(!verify_secret("abc", "not a hash", &mut memory));
        // The argon2 crate's own hashing and verification agree.
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(
            argon2::PasswordVerifier::verify_password(&Argon2::default(), b"abc", &parsed).is_ok()
        );
        let params = Params::new(64, 1, 1, None).unwrap();
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let theirs = argon2::PasswordHasher::hash_password(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            b"abc",
            &salt,
        )
        .unwrap();
        assert_eq!(h, theirs.to_string());
    }

    // A token's fast hash verifies its own secret and no other; other forms are not fast.
    #[test]
    fn fast_round_trip() {
        let random = crate::settings::os_random();
        let (token, hash) = new_token(&random, "cli", "0a0b").unwrap();
        let (_, _, secret) = parse_token(&token).unwrap();
        assert_eq!(secret.len(), 2 * SECRET_BYTES);
        assert!(hash.starts_with(FAST_TAG), "{hash}");
        assert_eq!(verify_fast(secret, &hash), Some(true));
        let mut wrong = secret.to_owned();
        wrong.replace_range(..1, if wrong.starts_with('0') { "1" } else { "0" });
        assert_eq!(verify_fast(&wrong, &hash), Some(false));
        // A fresh salt each time: the same secret hashes differently, and both verify.
        let again = fast_hash(&random, secret).unwrap();
        assert_ne!(again, hash);
        assert_eq!(verify_fast(secret, &again), Some(true));
        // A known HMAC-SHA256 vector (RFC 4231, case 2) through the stored form.
        let key = hex::encode(b"Jefe");
        let stored = format!(
            "{FAST_TAG}{key}$5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            verify_fast("what do ya want for nothing?", &stored),
            Some(true)
        );
        assert_eq!(verify_fast(secret, "$argon2id$v=19$m=64,t=1,p=1$x$y"), None);
        assert_eq!(verify_fast(secret, "$hmac-sha256$zz$00"), None);
        assert_eq!(verify_fast(secret, "$hmac-sha256$00"), None);
        assert!(is_argon2("$argon2id$v=19$m=64,t=1,p=1$x$y") && !is_argon2(&hash));
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
        let (token, hash) = new_token(&random, "adm", "0a0a").unwrap();
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
    // every one pays one verification (unknown ids against the dummy hash), and no more
    // than the limit of argon2 runs at the same time (none: tokens are in the fast form).
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
        assert_eq!(v.stats().argon2, 0, "{:?}", v.stats());
    }

    /// `token` with its secret's last hex digit changed.
    fn wrong_secret(token: &str) -> String {
        let last = if token.ends_with('0') { "1" } else { "0" };
        format!("{}{last}", &token[..token.len() - 1])
    }

    /// An admin token, an enrollment token and a client credential stored the way they were
    /// before the fast form (argon2id PHC strings), with the verifier and the tokens.
    async fn legacy(dir: &std::path::Path, limit: usize) -> (Verifier, [String; 3]) {
        let (v, _) = verifier(dir, limit).await;
        let cost = HashCost {
            memory_kib: 256,
            iterations: 1,
        };
        let mut memory = Vec::new();
        let mut old = |kind: &str, id: &str, secret: &str| {
            let h = hash_secret(secret, &[9u8; 16], cost, &mut memory).unwrap();
            assert!(is_argon2(&h));
            (format!("cascade_{kind}_{id}_{secret}"), h)
        };
        let (adm, adm_hash) = old("adm", "0b0b", &"ab".repeat(32));
        let (enr, enr_hash) = old("enr", "0c0c", &"cd".repeat(32));
        let (cli, cli_hash) = old("cli", "0d0d", &"ef".repeat(32));
        v.store
            .create_token("0b0b", &adm_hash, "admin", "old", None)
            .await
            .unwrap();
        v.store
            .create_enrollment_token("0c0c", &enr_hash, "old enrollment", None, None, false)
            .await
            .unwrap();
        let enrolled = v
            .store
            .enroll(
                "0c0c",
                &crate::store::NewClient {
                    id: "0d0d",
                    name: "old client",
                    domain: None,
                    agent_address: None,
                    credential_hash: &cli_hash,
                    enrolled_from: "127.0.0.1",
                },
            )
            .await
            .unwrap();
        assert!(matches!(
            enrolled,
            crate::store::Enrollment::Enrolled { .. }
        ));
        (v, [adm, enr, cli])
    }

    /// The stored hash of a token of the legacy set.
    async fn stored(v: &Verifier, token: &str) -> String {
        let (kind, id, _) = parse_token(token).unwrap();
        match kind {
            "adm" => v.store.token_grant(id).await.unwrap().unwrap().hash,
            "enr" => v
                .store
                .token_hash(id, TokenKind::Enroll)
                .await
                .unwrap()
                .unwrap(),
            _ => v.store.credential_hash(id).await.unwrap().unwrap(),
        }
    }

    // Rows holding argon2 hashes still verify (with argon2), refuse wrong secrets without
    // being changed, and are replaced by the fast form on their first success; after that
    // the same token verifies with no argon2 at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn argon2_rows_verify_and_are_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let (v, tokens) = legacy(dir.path(), 2).await;
        for token in &tokens {
            let before = stored(&v, token).await;
            assert!(is_argon2(&before), "{before}");
            let argon2 = v.stats().argon2;
            assert!(authenticate(&v, &bearer(&wrong_secret(token)))
                .await
                .is_err());
            assert_eq!(v.stats().argon2, argon2 + 1);
            assert_eq!(stored(&v, token).await, before, "a refusal changes nothing");

            let p = authenticate(&v, &bearer(token)).await.unwrap();
            let (kind, id, secret) = parse_token(token).unwrap();
            match (kind, &p) {
                ("adm", Principal::User(a)) => assert!(a.token == id && a.user == "admin"),
                ("enr", Principal::Enroll(e)) | ("cli", Principal::Client(e)) => {
                    assert_eq!(e, id);
                }
                _ => panic!("{kind}: {p:?}"),
            }
            assert_eq!(v.stats().argon2, argon2 + 2);
            let after = stored(&v, token).await;
            assert!(after.starts_with(FAST_TAG), "{after}");
            assert_eq!(verify_fast(secret, &after), Some(true));

            // From the database again (memory forgotten): fast, same principal.
            v.forget();
            assert_eq!(authenticate(&v, &bearer(token)).await.unwrap(), p);
            assert!(authenticate(&v, &bearer(&wrong_secret(token)))
                .await
                .is_err());
            assert_eq!(v.stats().argon2, argon2 + 2, "{:?}", v.stats());
        }
    }

    // Unknown ids of every kind and malformed tokens are refused, and wrong secrets still
    // lock the id out after the policy's failures, fast hash or not.
    #[tokio::test]
    async fn unknown_ids_and_lockout() {
        let dir = tempfile::tempdir().unwrap();
        let (v, token) = verifier(dir.path(), 1).await;
        for t in [
            "cascade_cli_0d0d_00ff",
            "cascade_enr_0e0e_00ff",
            "cascade_adm_0f0f_00ff",
            "cascade_xyz_0a0a_00ff",
        ] {
            assert!(matches!(
                authenticate(&v, &bearer(t)).await,
                Err(ApiError::Unauthorized(_))
            ));
        }
        assert_eq!(v.stats().verifications, 4);
        let strict = LockoutPolicy {
            max_failures: 3,
            ..LockoutPolicy::default()
        };
        let v = v.with_lockout(strict);
        let wrong = wrong_secret(&token);
        for _ in 0..3 {
            assert!(matches!(
                authenticate(&v, &bearer(&wrong)).await,
                Err(ApiError::Unauthorized(_))
            ));
        }
        // Locked: even the right secret is answered 429 until the lockout ends.
        assert!(matches!(
            authenticate(&v, &bearer(&token)).await,
            Err(ApiError::LockedOut { .. })
        ));
    }

    // Password hashing and checking (unknown users and wrong passwords) all run argon2 within
    // the bound; the right password logs in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn password_argon2_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = verifier(dir.path(), 2).await;
        let mut calls = Vec::new();
        for i in 0..12 {
            let v = v.clone();
            calls.push(tokio::spawn(async move {
                v.hash_password(&format!("password {i}")).await.map(|_| ())
            }));
        }
        for c in calls {
            c.await.unwrap().unwrap();
        }
        let hash = v.hash_password("right password").await.unwrap();
        assert!(is_argon2(&hash) && hash.contains("m=256,t=1,p=1"), "{hash}");
        assert!(v
            .store
            .update_user("admin", None, Some(&hash))
            .await
            .unwrap());
        let origin = Origin {
            source: None,
            method: "POST".to_owned(),
            path: "/login".to_owned(),
        };
        let mut calls = Vec::new();
        for i in 0..20 {
            let (v, origin) = (v.clone(), origin.clone());
            calls.push(tokio::spawn(async move {
                let name = if i % 2 == 0 { "admin" } else { "nobody" };
                check_password(&v, name, "wrong password", &origin).await
            }));
        }
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap(), None);
        }
        let ok = check_password(&v, "admin", "right password", &origin)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ok.user, "admin");
        let stats = v.stats();
        // 13 hashes, 21 checks, and the dummy made at least once.
        assert!(stats.argon2 > 13 + 21, "{stats:?}");
        assert!(stats.peak_concurrent <= 2, "{stats:?}");
    }
}
