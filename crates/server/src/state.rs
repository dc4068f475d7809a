//! The state every handler shares: the database, injected clock and randomness, notify
//! channels, metrics, the small-file cache of `/repo/`, the verified-token cache and the
//! shutdown signal. Handlers that need only the store take `State<Store>` ([`FromRef`]).

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use tokio::sync::watch;

use crate::auth::Verifier;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::settings::{Clock, HashCost, RandomFill};
use crate::store::Store;

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// The database (pool and backend).
    pub db: Db,
    /// Every SQL statement and policy write.
    pub store: Store,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The random source.
    pub random: RandomFill,
    /// Credential hash cost.
    pub hash_cost: HashCost,
    /// When a client counts as stale.
    pub stale_after: Duration,
    /// How often agents update (the health window is two of these).
    pub update_interval: Duration,
    /// The console's last fleet health (`crate::fleet::health_for_pages`).
    pub health_cache: Arc<crate::fleet::HealthCache>,
    /// How far filling in the fleet figures of older clients is (`crate::backfill`).
    pub backfill: Arc<crate::backfill::Progress>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The repository directory served at `/repo/`.
    pub repo_dir: PathBuf,
    /// The server's own site repository (served at `/repo/site/`) and its one publisher.
    pub site: crate::site::Site,
    /// Upstream mirroring.
    pub mirror: crate::mirror::Mirror,
    /// Notify fan-out.
    pub notifier: Arc<Notifier>,
    /// Prometheus counters.
    pub metrics: Arc<Metrics>,
    /// Small repository files in memory (validated against the file on every request).
    pub repo_cache: Arc<crate::repo::Cache>,
    /// Credential checks, with the tokens already verified.
    pub auth: Verifier,
    /// Timeouts, the connection cap and the body-size limit.
    pub limits: crate::limits::ServeLimits,
    /// The token `/metrics` asks for, if any.
    pub metrics_token: Option<String>,
    /// HTTPS material: the CA served at `/ca.pem` and named in enrollment tokens.
    pub tls: Arc<crate::tls::Tls>,
    /// The replicas' base URLs told to clients at enrollment (`--replica-url`).
    pub replica_urls: Vec<String>,
    /// The repository shared with the other replicas (on PostgreSQL only).
    pub shared: Option<crate::shared::Shared>,
    /// Flips to `true` when the server shuts down (ends event streams).
    pub shutdown: watch::Sender<bool>,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl AppState {
    /// What a mirror run uses, from this state.
    pub fn mirror_job(&self) -> crate::mirror::Job<'_> {
        crate::mirror::Job {
            mirror: &self.mirror,
            store: &self.store,
            clock: self.clock.as_ref(),
            metrics: &self.metrics,
            data_dir: &self.data_dir,
            repo_dir: &self.repo_dir,
            shared: self.shared.as_ref(),
        }
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl FromRef<AppState> for Store {
    fn from_ref(st: &AppState) -> Store {
        st.store.clone()
    }
}

impl FromRef<AppState> for crate::limits::ServeLimits {
    fn from_ref(st: &AppState) -> crate::limits::ServeLimits {
        st.limits
    }
}

impl FromRef<AppState> for Verifier {
    fn from_ref(st: &AppState) -> Verifier {
        st.auth.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(st: &AppState) -> Arc<Metrics> {
        st.metrics.clone()
    }
}

impl FromRef<AppState> for crate::site::Site {
    fn from_ref(st: &AppState) -> crate::site::Site {
        st.site.clone()
    }
}

impl FromRef<AppState> for crate::repo::Served {
    fn from_ref(st: &AppState) -> crate::repo::Served {
        crate::repo::Served {
            dir: st.repo_dir.clone(),
            site: st.site.own_public_dir(),
            cache: st.repo_cache.clone(),
        }
    }
}
