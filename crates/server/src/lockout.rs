//! Rate limits with lockout (`docs/operating.md#rate-limits-and-lockout`): failed password
//! logins are counted per user name and per source address, failed enrollments per
//! enrollment token id and per source address, and wrong token secrets per token id and per
//! source address. A key that reaches its limit of failures within the window is locked for
//! the lockout period: every attempt on it is then answered 429 with `Retry-After`, before
//! any password or secret is checked, the same way whether the name or id exists or not,
//! logged and recorded in the audit log. The counts live in the [`Store`], so replicas
//! sharing a database share them; only failures write, and a success clears its name's or
//! id's count (its address's count only ages out, so one good login cannot reset a guesser's
//! address).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::store::{FailureRule, NewAudit, Store};

/// What is being attempted; each has its own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A user name and password (console login).
    Login,
    /// An enrollment with an enrollment token.
    Enroll,
    /// A user's API token or a client's credential.
    Token,
}

impl Attempt {
    /// The name used in logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Attempt::Login => "login",
            Attempt::Enroll => "enrollment",
            Attempt::Token => "token",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Attempt::Login => "login-user",
            Attempt::Enroll => "enroll-token",
            Attempt::Token => "token-id",
        }
    }

    fn address_prefix(self) -> &'static str {
        match self {
            Attempt::Login => "login-addr",
            Attempt::Enroll => "enroll-addr",
            Attempt::Token => "token-addr",
        }
    }
}

/// The limits: how many failures in what window lock a name, id or address, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures per user name, token id or enrollment token id.
    pub max_failures: u32,
    /// Failures per source address (higher: many people may share one address).
    pub max_address_failures: u32,
    /// The window failures are counted in, from the first one.
    pub window: Duration,
    /// How long a lock lasts.
    pub lockout: Duration,
}

impl Default for LockoutPolicy {
    /// 10 failures per name or id, 50 per address, within 15 minutes, lock 15 minutes.
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 10,
            max_address_failures: 50,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

impl LockoutPolicy {
    fn rule(&self, max: u32) -> FailureRule {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        FailureRule {
            max_failures: max,
            window_secs: secs(self.window),
            lock_secs: secs(self.lockout).max(1),
        }
    }
}

/// Where an attempt came from: its source address and the request, for the keys, the log and
/// the audit record.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The peer's address, when known.
    pub source: Option<IpAddr>,
    /// The request method.
    pub method: String,
    /// The request path.
    pub path: String,
}

impl Origin {
    /// The origin of a request.
    pub fn of(parts: &Parts) -> Self {
        Origin {
            source: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
        }
    }
}

/// The longest name or id kept as a key (longer ones cannot be valid anyway).
const MAX_ID: usize = 128;

/// The counters of one attempt, checked: call [`Guard::failed`] or [`Guard::succeeded`].
#[derive(Debug)]
pub struct Guard {
    attempt: Attempt,
    id: Option<String>,
    id_key: Option<String>,
    address_key: Option<String>,
    /// Whether the id's key had failures counted (a success then clears them).
    id_counted: bool,
}

/// Checks the counters of `attempt` by `id` (a user name or `KIND_ID`; `None` when the
/// credential named none) from `origin` at `now`.
///
/// # Errors
/// [`ApiError::LockedOut`] while the id or the address is locked (logged and audited);
/// database errors.
pub async fn check(
    store: &Store,
    attempt: Attempt,
    id: Option<&str>,
    origin: &Origin,
    now: i64,
) -> Result<Guard, ApiError> {
    let id: Option<String> = id.map(|i| i.chars().take(MAX_ID).collect());
    let id_key = id.as_ref().map(|i| format!("{}:{i}", attempt.id_prefix()));
    let address_key = origin
        .source
        .map(|a| format!("{}:{a}", attempt.address_prefix()));
    let keys: Vec<&str> = id_key
        .iter()
        .chain(&address_key)
        .map(String::as_str)
        .collect();
    let state = store.lock_state(&keys, now).await?;
    if let Some(until) = state.locked_until {
        let retry_after = u64::try_from(until.saturating_sub(now)).unwrap_or(1).max(1);
        refused(store, attempt, id.as_deref(), origin, retry_after).await;
        return Err(ApiError::LockedOut {
            what: attempt.as_str(),
            retry_after,
        });
    }
    let id_counted = id_key
        .as_ref()
        .is_some_and(|k| state.counted.iter().any(|c| c == k));
    Ok(Guard {
        attempt,
        id,
        id_key,
        address_key,
        id_counted,
    })
}

/// Logs and audits one refusal of a locked attempt. The audit middleware records refused
/// writes on the admin API itself; everything else (reads, the client API, login) is
/// recorded here.
async fn refused(store: &Store, attempt: Attempt, id: Option<&str>, origin: &Origin, retry: u64) {
    let source = origin
        .source
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    tracing::warn!(
        attempt = attempt.as_str(),
        id = id.unwrap_or("-"),
        %source,
        retry_after = retry,
        path = %origin.path,
        "refused: locked out after repeated failures"
    );
    let method: axum::http::Method = origin.method.parse().unwrap_or_default();
    if crate::audit::audited(&method, &origin.path) {
        return;
    }
    let entry = NewAudit {
        actor: "-",
        source: &source,
        method: &origin.method,
        path: &origin.path,
        status: 429,
        before: None,
        after: None,
    };
    if let Err(e) = store.append_audit(&entry).await {
        tracing::error!(error = %e, "audit record of a lockout refusal not written");
    }
}

impl Guard {
    /// Counts a failure of this attempt (its id and its address); a count that reaches its
    /// limit locks it, logged. A database error here is logged, not returned: the caller
    /// refuses the attempt either way.
    pub async fn failed(self, store: &Store, policy: &LockoutPolicy, now: i64) {
        let counted = [
            (self.id_key.as_deref(), policy.rule(policy.max_failures)),
            (
                self.address_key.as_deref(),
                policy.rule(policy.max_address_failures),
            ),
        ];
        for (key, rule) in counted {
            let Some(key) = key else { continue };
            match store.record_failure(key, now, rule).await {
                Ok(Some(until)) => tracing::warn!(
                    attempt = self.attempt.as_str(),
                    key,
                    failures = rule.max_failures,
                    locked_for = until.saturating_sub(now),
                    "locked out after repeated failures"
                ),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, key, "failure not counted"),
            }
        }
    }

    /// A success: clears the id's failures, if it had any (no write otherwise).
    ///
    /// # Errors
    /// Database errors.
    pub async fn succeeded(self, store: &Store) -> Result<(), ApiError> {
        if let (true, Some(key)) = (self.id_counted, &self.id_key) {
            store.clear_failures(key).await?;
            tracing::info!(
                attempt = self.attempt.as_str(),
                id = self.id.as_deref().unwrap_or("-"),
                "failures cleared by a success"
            );
        }
        Ok(())
    }
}
