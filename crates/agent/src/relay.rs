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

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cascade_client::proto::RepoVersions;
use cascade_core::report::RelayReport;
use cascade_core::TrustDomain;
use cascade_repo::fsutil::{remove_debris, sha256_file_hex, LandError, Landing};
use cascade_repo::throttle::Throttle;
use cascade_repo::{find_source_failure, SourceFailure, SourceTransport};
use futures::StreamExt as _;
use reqwest::header::{HeaderName, HeaderValue};
use tough::Transport as _;
use url::Url;

use crate::clock::Clock;
use crate::served::Served;

mod front;

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

/// How a mutable file fetched this recently is reused by requests that queued behind it.
const MUTABLE_REUSE: Duration = Duration::from_millis(500);

/// How long "not found upstream" is remembered for a versioned root (`N.root.json`). Every
/// client probes for the next root of each repository on every update; without this each
/// probe is a WAN fetch. A root published meanwhile reaches clients at most this much later
/// (they fall back to the next source in between, never accept anything unverified). Other
/// paths are not remembered: a snapshot or blob missing for a moment (a mirror half-way
/// through a sync) must be found as soon as it lands.
const NOT_FOUND_REUSE: Duration = Duration::from_secs(5);

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

/// Bandwidth caps of a relay's responses: one for all clients together, one per client
/// address (`docs/operating.md#domains-and-their-settings`).
#[derive(Debug, Default)]
struct RelayCaps {
    total: Arc<Throttle>,
    per_client_rate: AtomicU64,
    /// One bucket per client address; emptied when it grows past [`MAX_CAPPED_CLIENTS`].
    per_client: Mutex<HashMap<IpAddr, Arc<Throttle>>>,
}

/// At most this many per-client buckets are kept (a campus); beyond, they start afresh.
const MAX_CAPPED_CLIENTS: usize = 4096;

impl RelayCaps {
    /// The buckets a response to `peer` goes through, or none when no cap is set.
    fn for_peer(&self, peer: Option<IpAddr>) -> Vec<Arc<Throttle>> {
        let mut out = Vec::new();
        if self.total.rate() > 0 {
            out.push(Arc::clone(&self.total));
        }
        let rate = self.per_client_rate.load(Ordering::Relaxed);
        if let (Some(ip), true, Ok(mut map)) = (peer, rate > 0, self.per_client.lock()) {
            if map.len() >= MAX_CAPPED_CLIENTS && !map.contains_key(&ip) {
                map.clear();
            }
            let t = map
                .entry(ip)
                .or_insert_with(|| Arc::new(Throttle::new(rate)));
            t.set_rate(rate);
            out.push(Arc::clone(t));
        }
        out
    }
}

impl Relay {
    /// Applies domain settings: the cache budget (evicting down to it now) and the bandwidth
    /// caps per client and in total (bytes/s, 0: none), for responses started from now on.
    pub fn apply_limits(&self, cache_bytes: u64, per_client: u64, total: u64) {
        let before = self.cache_budget.swap(cache_bytes, Ordering::Relaxed);
        self.caps
            .per_client_rate
            .store(per_client, Ordering::Relaxed);
        self.caps.total.set_rate(total);
        if cache_bytes < before {
            self.evict();
        }
    }

    /// The cache budget in force, bytes.
    pub fn cache_budget(&self) -> u64 {
        self.cache_budget.load(Ordering::Relaxed)
    }

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

    /// Puts a local copy of the content-addressed blob `path` into the cache (the agent's own
    /// verified install of it), so the relay need not fetch it again over the WAN. The bytes
    /// are hashed while copied and refused unless they match the hash in the name. Returns
    /// whether the cache now holds it from this copy (`false`: cached already, or `path` is
    /// not a content-addressed blob).
    ///
    /// # Errors
    /// A bad path, a mismatching file, or local I/O trouble.
    pub fn seed(&self, path: &str, from: &Path) -> Result<bool, RelayError> {
        check_path(path)?;
        let Some(want) = expected_sha256(path) else {
            return Ok(false);
        };
        let want = hex::decode(want).map_err(|_| RelayError::BadPath(path.to_owned()))?;
        let local = self.config.cache_dir.join(path);
        if local.is_file() {
            return Ok(false);
        }
        let io = |source| RelayError::Io {
            path: local.clone(),
            source,
        };
        let mut landing = Landing::start(&local, SEED_PREFIX).map_err(io)?;
        let mut src = std::fs::File::open(from).map_err(io)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = std::io::Read::read(&mut src, &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            landing.write(&buf[..n]).map_err(io)?;
        }
        match landing.finish(Some(&want)) {
            Ok(_) => self.mark_intact(&local),
            Err(LandError::Mismatch { .. }) => {
                return Err(RelayError::BadPath(format!(
                    "{path}: the local copy does not match the hash in its name"
                )))
            }
            Err(LandError::Io(e)) => return Err(io(e)),
        }
        self.evict();
        Ok(true)
    }

    /// Makes the next request for each mutable file (`timestamp.json`) go upstream, however
    /// recently it was fetched. The agent calls it before warming the cache after its own
    /// update: a timestamp fetched a moment before a publish must not be reused then.
    pub fn revalidate(&self) {
        if let Ok(mut f) = self.fetched.lock() {
            f.clear();
        }
    }

    /// Whether the cached mutable file `path` may be reused: fetched within
    /// [`MUTABLE_REUSE`], and not before the last [`Relay::revalidate`].
    fn fresh(&self, path: &str) -> bool {
        self.fetched.lock().is_ok_and(|f| {
            f.get(path)
                .is_some_and(|last| self.age(last.at) < MUTABLE_REUSE)
        })
    }

    /// Whether the mutable file `path` was fetched for a floor of `floor` or higher within
    /// [`MUTABLE_REUSE`] (and not met it, or it would not be asked again): the upstream has
    /// nothing newer yet, and asking it again at once per client would only load it.
    fn tried_for(&self, path: &str, floor: u64) -> bool {
        self.fetched.lock().is_ok_and(|f| {
            f.get(path).is_some_and(|last| {
                last.floor.is_some_and(|tried| tried >= floor) && self.age(last.at) < MUTABLE_REUSE
            })
        })
    }

    /// Whether an upstream fetch of the mutable file `path` numbered above `count` (started
    /// after [`Relay::fetch_count`] read `count`) completed since the last revalidation.
    fn fetched_after(&self, path: &str, count: u64) -> bool {
        self.fetched
            .lock()
            .is_ok_and(|f| f.get(path).is_some_and(|last| last.number > count))
    }

    /// How long ago `at` was by the relay's clock; a time ahead of it (the clock was set
    /// back) counts as long ago, so nothing is reused for longer than its window.
    fn age(&self, at: SystemTime) -> Duration {
        self.config
            .clock
            .now()
            .duration_since(at)
            .unwrap_or(Duration::MAX)
    }

    /// Removes the cached content-addressed blobs below `prefix` (e.g. `upstream/targets/`)
    /// whose relay paths are not in `keep` (the blobs the current metadata names): no client
    /// can verify them any more. Returns how many files were removed.
    ///
    /// # Errors
    /// A bad prefix.
    pub fn prune_unnamed(
        &self,
        prefix: &str,
        keep: &std::collections::BTreeSet<String>,
    ) -> Result<usize, RelayError> {
        check_path(prefix.trim_end_matches('/'))?;
        let mut files = Vec::new();
        collect_files(&self.config.cache_dir.join(prefix), &mut files);
        let mut removed = 0;
        for (file, _, _) in files {
            let Ok(rel) = file.strip_prefix(&self.config.cache_dir) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            let name = rel.rsplit('/').next().unwrap_or(&rel);
            if name.starts_with('.') || expected_sha256(&rel).is_none() || keep.contains(&rel) {
                continue;
            }
            if std::fs::remove_file(&file).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
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

    /// Makes sure `path` is in the cache (fetching it once if needed) and returns its file.
    ///
    /// # Errors
    /// A bad path, or every upstream failed and nothing usable is cached.
    pub async fn obtain(&self, path: &str) -> Result<PathBuf, RelayError> {
        self.obtain_with_floor(path, RepoVersions::default()).await
    }

    /// [`Relay::obtain`] for a client whose version floor is `floor`: a cached
    /// `DOMAIN/metadata/timestamp.json` at least as new as the floor's version for `DOMAIN` is
    /// served as it is, an older one is fetched again upstream (once for every client asking
    /// meanwhile, the floor passed on), unless a fetch that started after this request came in,
    /// or one for as high a floor within the last half second, found nothing newer (then the
    /// newest there is served, and the client refuses it).
    ///
    /// # Errors
    /// A bad path, or every upstream failed and nothing usable is cached.
    pub async fn obtain_with_floor(
        &self,
        path: &str,
        floor: RepoVersions,
    ) -> Result<PathBuf, RelayError> {
        check_path(path)?;
        let local = self.config.cache_dir.join(path);
        let mutable = is_mutable(path);
        if !mutable && local.is_file() && self.intact(path, &local, false) {
            return Ok(local);
        }
        let floor = timestamp_domain(path).and_then(|d| floor.get(d));
        let meets = |local: &Path| {
            floor.is_some_and(|f| timestamp_version(local).is_some_and(|have| have >= f))
        };
        if meets(&local) {
            return Ok(local);
        }
        if self.missed_recently(path) {
            return Err(RelayError::NotFound(path.to_owned()));
        }
        let came_in = self.fetch_count.load(Ordering::SeqCst);
        let flight = {
            let mut map = self.flights.lock().map_err(|_| RelayError::NoUpstream)?;
            Arc::clone(map.entry(path.to_owned()).or_default())
        };
        let _guard = flight.lock().await;
        let cached = local.is_file() && (mutable || self.intact(path, &local, false));
        let reusable = !mutable
            || match floor {
                Some(f) => {
                    meets(&local) || self.fetched_after(path, came_in) || self.tried_for(path, f)
                }
                None => self.fresh(path),
            };
        if cached && reusable {
            return Ok(local);
        }
        if self.missed_recently(path) {
            return Err(RelayError::NotFound(path.to_owned()));
        }
        let number = self.fetch_count.fetch_add(1, Ordering::SeqCst) + 1;
        let pass_on = floor.map(|f| {
            let mut v = RepoVersions::default();
            if let Some(d) = timestamp_domain(path) {
                v.set(d, Some(f));
            }
            v
        });
        let result = self.fetch_upstream(path, &local, pass_on).await;
        if let Ok(mut map) = self.flights.lock() {
            if Arc::strong_count(&flight) <= 2 {
                map.remove(path);
            }
        }
        match result {
            Ok(()) => {
                if expected_sha256(path).is_some() {
                    // Hashed while it was fetched: not again before its first answer.
                    self.mark_intact(&local);
                }
                if mutable {
                    if let Ok(mut f) = self.fetched.lock() {
                        let at = self.config.clock.now();
                        f.insert(path.to_owned(), Fetched { at, number, floor });
                    }
                }
                self.evict();
                Ok(local)
            }
            // A stale timestamp is better than none: clients detect staleness themselves.
            Err(_) if mutable && local.is_file() => Ok(local),
            Err(RelayError::NotFound(p)) => {
                if is_root_probe(path) {
                    self.remember_miss(path);
                }
                Err(RelayError::NotFound(p))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the cached file `local` (relay path `path`) may be served: anything without a
    /// hash in its name is; a content-addressed blob is when its content hashes to its name.
    /// The check is skipped while the file is unchanged since it last passed (same inode,
    /// length, modification and change times) unless `again`. A blob that fails is removed
    /// and counted as refused.
    fn intact(&self, path: &str, local: &Path, again: bool) -> bool {
        let Some(want) = expected_sha256(path) else {
            return true;
        };
        let Some(stamp) = FileStamp::of(local) else {
            return false;
        };
        if !again
            && self
                .checked
                .lock()
                .is_ok_and(|c| c.get(local) == Some(&stamp))
        {
            return true;
        }
        let ok = sha256_file_hex(local).is_ok_and(|h| h == want);
        if let Ok(mut c) = self.checked.lock() {
            if ok {
                if c.len() >= 100_000 {
                    c.clear();
                }
                c.insert(local.to_owned(), stamp);
            } else {
                c.remove(local);
            }
        }
        if !ok {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path, "relay cache: blob does not match its name; dropped");
            let _ = std::fs::remove_file(local);
        }
        ok
    }

    /// Records that the cached blob `local`, as it is now, matches its name (it was hashed
    /// while it was written).
    fn mark_intact(&self, local: &Path) {
        let Some(stamp) = FileStamp::of(local) else {
            return;
        };
        if let Ok(mut c) = self.checked.lock() {
            if c.len() >= 100_000 {
                c.clear();
            }
            c.insert(local.to_owned(), stamp);
        }
    }

    /// Hashes every cached blob again, whether or not its file changed, and drops those that
    /// do not match their names (the agent calls it after warming the cache, so a blob altered
    /// in place is repaired by the next warming at the latest). Returns how many were dropped.
    pub fn check_cache(&self) -> usize {
        let mut files = Vec::new();
        collect_files(&self.config.cache_dir, &mut files);
        let mut dropped = 0;
        for (file, _, _) in files {
            let Ok(rel) = file.strip_prefix(&self.config.cache_dir) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if !self.intact(&rel, &file, true) {
                dropped += 1;
            }
        }
        dropped
    }

    fn missed_recently(&self, path: &str) -> bool {
        self.misses.lock().is_ok_and(|m| {
            m.get(path)
                .is_some_and(|at| self.age(*at) < NOT_FOUND_REUSE)
        })
    }

    fn remember_miss(&self, path: &str) {
        if let Ok(mut m) = self.misses.lock() {
            if m.len() >= 10_000 {
                m.retain(|_, at| self.age(*at) < NOT_FOUND_REUSE);
            }
            m.insert(path.to_owned(), self.config.clock.now());
        }
    }

    /// Fetches `path` from the first upstream that has it; `floor` is passed on as
    /// [`FLOOR_HEADER`] (a relay upstream of this one revalidates too).
    async fn fetch_upstream(
        &self,
        path: &str,
        local: &Path,
        floor: Option<RepoVersions>,
    ) -> Result<(), RelayError> {
        let upstreams = self.upstreams.read().map(|u| u.clone()).unwrap_or_default();
        if upstreams.is_empty() {
            return Err(RelayError::NoUpstream);
        }
        let _slot = self
            .fetch_slots
            .acquire()
            .await
            .map_err(|_| RelayError::NoUpstream)?;
        self.stats.upstream_fetches.fetch_add(1, Ordering::Relaxed);
        let mut all_not_found = true;
        let mut last = String::new();
        for base in upstreams {
            let Ok(url) = base.join(path) else { continue };
            match self.download(url, path, local, floor).await {
                Ok(()) => return Ok(()),
                Err(Failure::NotFound) => last = format!("{base}: not found"),
                Err(Failure::Other(why)) => {
                    all_not_found = false;
                    last = format!("{base}: {why}");
                }
                Err(Failure::Local(e)) => return Err(e),
            }
        }
        if all_not_found {
            Err(RelayError::NotFound(path.to_owned()))
        } else {
            Err(RelayError::Upstream {
                path: path.to_owned(),
                reason: last,
            })
        }
    }

    async fn download(
        &self,
        url: Url,
        path: &str,
        local: &Path,
        floor: Option<RepoVersions>,
    ) -> Result<(), Failure> {
        let io = |source| {
            Failure::Local(RelayError::Io {
                path: local.to_owned(),
                source,
            })
        };
        let header = floor.and_then(|v| {
            let value = HeaderValue::from_str(&v.header_value()).ok()?;
            Some((HeaderName::from_static(FLOOR_HEADER), value))
        });
        let fetched = match header {
            // A clone shares the byte counter of the relay's report.
            Some((name, value)) => {
                self.transport
                    .clone()
                    .with_header(name, value)
                    .fetch(url)
                    .await
            }
            None => self.transport.fetch(url).await,
        };
        let mut stream = fetched.map_err(|e| classify(&e))?;
        let mut landing = Landing::start(local, FETCH_PREFIX).map_err(io)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(&e))?;
            landing.write(&chunk).map_err(io)?;
        }
        let want = expected_sha256(path);
        let want_bytes = want.and_then(|w| hex::decode(w).ok());
        match landing.finish(want_bytes.as_deref()) {
            Ok(_) => Ok(()),
            Err(LandError::Mismatch { sha256, .. }) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(Failure::Other(format!(
                    "hash mismatch: name says {}, content is {}",
                    want.unwrap_or_default(),
                    hex::encode(sha256)
                )))
            }
            Err(LandError::Io(e)) => Err(io(e)),
        }
    }

    /// Removes the least recently written files until the cache fits its byte budget.
    fn evict(&self) {
        let mut files = Vec::new();
        collect_files(&self.config.cache_dir, &mut files);
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let budget = self.cache_budget();
        if total <= budget {
            return;
        }
        files.sort_by_key(|f| f.2);
        for (path, size, _) in files {
            if total <= budget {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(size);
            }
        }
    }
}

/// The prefix of a fetch's temporary file in the cache.
const FETCH_PREFIX: &str = ".fetch-";
/// The prefix of a seed's temporary file in the cache.
const SEED_PREFIX: &str = ".seed-";

/// The last upstream fetch of a mutable file.
#[derive(Debug, Clone, Copy)]
struct Fetched {
    /// When it completed, by the relay's clock.
    at: SystemTime,
    /// Its number ([`Relay::fetch_count`] as it started).
    number: u64,
    /// The floor it was made for, if any.
    floor: Option<u64>,
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

enum Failure {
    NotFound,
    Other(String),
    Local(RelayError),
}

fn classify(e: &tough::TransportError) -> Failure {
    match find_source_failure(e) {
        Some(SourceFailure::NotFound(_)) => Failure::NotFound,
        Some(f) => Failure::Other(f.to_string()),
        None => Failure::Other(e.to_string()),
    }
}

/// `GET /relay/stats`: the [`RelayReport`] as JSON, for operators, the demo and benches.
async fn stats(State(relay): State<Arc<Relay>>) -> Response {
    axum::Json(relay.report()).into_response()
}

/// Only plain relative paths of safe segments: no `..`, no dot files, no empty segments.
fn check_path(path: &str) -> Result<(), RelayError> {
    let ok = !path.is_empty()
        && path.split('/').count() <= 8
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg.len() <= 200
                && seg.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'~' | b'-')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(RelayError::BadPath(path.to_owned()))
    }
}

/// `timestamp.json` (and an unversioned `root.json`) change in place; everything else that
/// TUF serves has a versioned or content-addressed name.
fn is_mutable(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or(path);
    last == "timestamp.json" || last == "root.json"
}

/// The trust domain of `DOMAIN/metadata/timestamp.json`; `None` for any other path.
fn timestamp_domain(path: &str) -> Option<TrustDomain> {
    let (domain, rest) = path.split_once('/')?;
    (rest == "metadata/timestamp.json")
        .then(|| domain.parse().ok())
        .flatten()
}

/// The `signed.version` of the cached `timestamp.json` at `local` (a few hundred bytes).
fn timestamp_version(local: &Path) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Signed {
        version: u64,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        signed: Signed,
    }
    let bytes = std::fs::read(local).ok()?;
    serde_json::from_slice::<Metadata>(&bytes)
        .ok()
        .map(|m| m.signed.version)
}

/// A versioned root, `…/metadata/N.root.json`: what TUF clients probe for on every update.
fn is_root_probe(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or(path);
    last.strip_suffix(".root.json")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The SHA-256 a content-addressed target blob's name promises (`…/targets/…/HEX.FILE`).
fn expected_sha256(path: &str) -> Option<&str> {
    if !path.split('/').any(|s| s == "targets") {
        return None;
    }
    let last = path.rsplit('/').next()?;
    let (hex, _) = last.split_once('.')?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, u64, SystemTime)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            collect_files(&path, out);
        } else if !is_mutable(&path.to_string_lossy()) {
            out.push((
                path,
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
    }
}
