//! The [`Verifier`]: checks secrets against their stored hashes, the fast form at once and
//! argon2 one permit per core at a time in reused memory, remembers verified tokens, and
//! counts what it ran.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::Block;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::lockout::{self, Attempt, LockoutPolicy, Origin};
use crate::settings::{Clock, HashCost, RandomFill};
use crate::store::Store;

use super::secret::{fast_hash, fast_hash_with, hash_secret, verify_fast, verify_secret};
use super::Principal;

/// Checks credentials against the store, remembering verified tokens for a minute. Cheap to
/// clone; extractors take it from the router state ([`FromRef`](axum::extract::FromRef)).
#[derive(Clone)]
pub struct Verifier {
    pub(super) store: Store,
    pub(super) clock: Arc<dyn Clock>,
    /// Verified tokens by `kind_id`: the secret that verified, who it is, and when.
    pub(super) verified: Arc<Mutex<HashMap<String, Remembered>>>,
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
    pub(super) lockout: LockoutPolicy,
}

/// A token that verified: its secret, who it is, and when.
#[derive(Clone)]
pub(super) struct Remembered {
    pub(super) secret: String,
    pub(super) principal: Principal,
    pub(super) at: i64,
    /// When the token expires, if it does.
    pub(super) until: Option<i64>,
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
pub(super) enum Dummy {
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
    pub(super) async fn verify(
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
    pub(super) async fn upgrade(&self, kind: &str, id: &str, secret: &str, old: &str) {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::auth::new_token;
    use crate::store::TokenKind;

    pub(in crate::auth) async fn verifier(
        dir: &std::path::Path,
        limit: usize,
    ) -> (Verifier, String) {
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
}
