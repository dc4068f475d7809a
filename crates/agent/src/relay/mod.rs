//! The update agent's relay: serves the repository tree (`/repo/…`) to neighbouring clients as
//! a pull-through cache in front of its own plan (by default the server).
//!
//! The relay is untrusted by design (clients verify every byte through TUF), yet it does what
//! it can so that one bad upstream answer does not poison its cache: content-addressed target
//! blobs (`…/SHA256.FILE`) are hashed while they are fetched and refused on mismatch, and a
//! cached blob is hashed again before it is served whenever its file changed since it was last
//! checked (and for all blobs after each cache warming): a truncated or altered copy is
//! dropped, counted as refused, and fetched again (`docs/operating.md#relay-self-healing`).
//! Temporary files of fetches a kill interrupted are removed at start-up. Names
//! that TUF versions (`N.snapshot.json`, blobs) never change, so they are cached for good. The
//! mutable `timestamp.json` is served from cache when it is at least as new as the version
//! floor the client sends ([`FLOOR_HEADER`], the versions the server announced to it), and
//! otherwise fetched upstream once for all the clients asking meanwhile, the floor passed on
//! (`docs/operating.md#relays-serve-all-metadata`): so a relay's clients read every
//! repository file, metadata included, from the relay. A request without a floor gets a
//! timestamp fetched within the last half second. The cached one is served when every
//! upstream fails (clients judge staleness themselves); "not found everywhere" for the next root
//! (`N.root.json`, which clients probe on every update) is remembered for a few seconds.
//! Concurrent requests for one path cause one upstream fetch; fetches are bounded by a
//! semaphore and the cache by a byte budget, oldest files evicted first; blobs the current
//! metadata no longer names are removed after each cache warming ([`crate::warm`]). What it
//! served, and to which client address, is counted for the agent's check-ins
//! ([`Relay::report`]). Domain settings set its cache budget and cap what it sends, per client
//! address and in total ([`Relay::apply_limits`]).
//!
//! Files go out through the relay's own HTTP/1.1 front door ([`Relay::serve`], module
//! `front`): the kernel sends them (`sendfile(2)`), no thread or user-space copy per read.
//!
//! The pieces, one module each: `paths` (what a repository path says), `cache` (the files on
//! disk: seeding, checking, pruning, eviction), `fetch` (getting a file from upstream once
//! for all who ask, and when a cached one may be reused), `limits` (domain settings' budget
//! and bandwidth caps) and `front` (the HTTP front door).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cascade_client::proto::RepoVersions;
use cascade_core::report::RelayReport;
use cascade_core::TrustDomain;
use cascade_repo::fsutil::remove_debris;
use cascade_repo::SourceTransport;
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use crate::clock::Clock;
use crate::served::Served;

mod cache;
mod fetch;
mod front;
mod limits;
mod paths;

use cache::{FileStamp, FETCH_PREFIX, SEED_PREFIX};
use fetch::Fetched;
use limits::RelayCaps;

/// The request header carrying a client's version floor to a relay, in the server's format
/// ([`RepoVersions::header_value`]: `upstream=40, site=12`): a relay revalidates a cached
/// `timestamp.json` older than it.
pub const FLOOR_HEADER: &str = cascade_client::proto::versions::HEADER;

/// The [`FLOOR_HEADER`] a client sends with `floors` (per trust domain, the timestamp version
/// the server announced); `None` without any.
pub fn floor_header(floors: &BTreeMap<TrustDomain, u64>) -> Option<(HeaderName, HeaderValue)> {
    let mut versions = RepoVersions::default();
    for (domain, v) in floors {
        versions.set(*domain, Some(*v));
    }
    let value = HeaderValue::from_str(&versions.header_value()).ok()?;
    (!floors.is_empty()).then(|| (HeaderName::from_static(FLOOR_HEADER), value))
}

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where cached files live (inside the agent's data directory).
    pub cache_dir: PathBuf,
    /// At most this many upstream fetches at once.
    pub max_concurrent_fetches: usize,
    /// Evict the oldest cached files beyond this many bytes.
    pub max_cache_bytes: u64,
    /// What the reuse windows are measured with.
    pub clock: Arc<dyn Clock>,
}

/// Counters the relay reports to the server.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Fetches made upstream (one per cache miss, whatever the number of waiting clients).
    pub upstream_fetches: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Bytes of response bodies sent (a range counts its length; HEAD and 304 count 0).
    pub bytes_served: AtomicU64,
    /// Blobs refused because their hash did not match their name: upstream answers, and cached
    /// copies found altered or truncated (dropped and fetched again).
    pub refused: AtomicU64,
}

/// Why a relay request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A path that is not a plain repository path.
    #[error("bad repository path `{0}`")]
    BadPath(String),
    /// Every upstream said "not found".
    #[error("not found upstream: {0}")]
    NotFound(String),
    /// Every upstream failed (the last reason is kept).
    #[error("all upstreams failed for {path}: {reason}")]
    Upstream {
        /// The path.
        path: String,
        /// The last failure.
        reason: String,
    },
    /// The relay has no upstream configured yet.
    #[error("no upstream configured")]
    NoUpstream,
    /// Local disk trouble.
    #[error("cache I/O on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl RelayError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RelayError::BadPath(_) => "relay.bad_path",
            RelayError::NotFound(_) => "relay.not_found",
            RelayError::Upstream { .. } => "relay.upstream_failed",
            RelayError::NoUpstream => "relay.no_upstream",
            RelayError::Io { .. } => "relay.io",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            RelayError::BadPath(_) => StatusCode::BAD_REQUEST,
            RelayError::NotFound(_) => StatusCode::NOT_FOUND,
            RelayError::Upstream { .. } | RelayError::NoUpstream => StatusCode::BAD_GATEWAY,
            RelayError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        (self.status(), format!("{}: {self}\n", self.code())).into_response()
    }
}

/// A pull-through cache of one repository tree.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    transport: SourceTransport,
    upstreams: RwLock<Vec<Url>>,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Paths every upstream said were not found, and when.
    misses: Mutex<HashMap<String, SystemTime>>,
    /// Mutable files fetched since the last [`Relay::revalidate`].
    fetched: Mutex<HashMap<String, Fetched>>,
    /// Upstream fetches started so far (any path): a request with a floor is answered
    /// by a fetch that started after it came in, never by an earlier one.
    fetch_count: AtomicU64,
    fetch_slots: tokio::sync::Semaphore,
    /// Cached blobs whose content matched their name, with the file's stamp at that check.
    checked: Mutex<HashMap<PathBuf, FileStamp>>,
    /// Counters for reports and tests.
    pub stats: RelayStats,
    served: Served,
    started: i64,
    /// The cache budget in force (starts at `config.max_cache_bytes`; domain settings change it).
    cache_budget: AtomicU64,
    /// Bandwidth caps of what the relay sends (domain settings).
    caps: RelayCaps,
}

impl Relay {
    /// A relay caching in `config.cache_dir`, fetching through `transport`; `started` is
    /// the Unix time its report counts from.
    ///
    /// Temporary files a killed relay left in the cache (`.fetch-*`, `.seed-*`) are removed
    /// first: no other relay uses this cache.
    pub fn new(config: RelayConfig, transport: SourceTransport, started: i64) -> Arc<Self> {
        let removed = remove_debris(&config.cache_dir, &[FETCH_PREFIX, SEED_PREFIX]);
        if removed > 0 {
            tracing::info!(
                removed,
                "relay cache: temporary files of a killed relay removed"
            );
        }
        let slots = config.max_concurrent_fetches.max(1);
        Arc::new(Relay {
            cache_budget: AtomicU64::new(config.max_cache_bytes),
            caps: RelayCaps::default(),
            config,
            transport,
            upstreams: RwLock::new(Vec::new()),
            flights: Mutex::new(HashMap::new()),
            misses: Mutex::new(HashMap::new()),
            fetched: Mutex::new(HashMap::new()),
            fetch_count: AtomicU64::new(0),
            fetch_slots: tokio::sync::Semaphore::new(slots),
            checked: Mutex::new(HashMap::new()),
            stats: RelayStats::default(),
            served: Served::default(),
            started,
        })
    }

    /// Sets the ordered upstream base URLs (each the root of a `/repo/` tree, e.g.
    /// `http://server:8080/repo/`). Called whenever the relay's own plan changes.
    pub fn set_upstreams(&self, upstreams: Vec<Url>) {
        if let Ok(mut u) = self.upstreams.write() {
            *u = upstreams;
        }
    }

    /// What the relay served since it started, for the agent's check-in.
    pub fn report(&self) -> RelayReport {
        let s = &self.stats;
        let mut report = RelayReport {
            since: Some(self.started),
            requests: s.requests.load(Ordering::Relaxed),
            bytes_served: s.bytes_served.load(Ordering::Relaxed),
            upstream_fetches: s.upstream_fetches.load(Ordering::Relaxed),
            upstream_bytes: self.transport.bytes_received(),
            refused: s.refused.load(Ordering::Relaxed),
            ..RelayReport::default()
        };
        self.served.fill(&mut report);
        report
    }

    /// The axum router of what is not a repository file: `GET /relay/stats`. [`Relay::serve`]
    /// hands it every request that is not `GET`/`HEAD /repo/…`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/relay/stats", get(stats))
            .with_state(Arc::clone(self))
    }

    /// Serves the relay on `listener` (plain HTTP/1.1): `GET`/`HEAD /repo/{path}` from the
    /// cache, the file sent by the kernel (`sendfile(2)`), and [`Relay::router`] for the rest,
    /// until `shutdown` completes; then stops accepting, closes idle connections and waits up
    /// to a few seconds for responses under way.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        front::serve(self, listener, shutdown).await;
    }
}

/// `GET /relay/stats`: the [`RelayReport`] as JSON, for operators, the demo and benches.
async fn stats(State(relay): State<Arc<Relay>>) -> Response {
    axum::Json(relay.report()).into_response()
}
