//! Getting a file from upstream: one fetch per path for every client asking meanwhile,
//! bounded in number, with the version floor passed on; and whether a cached mutable file
//! or a remembered "not found" may be reused instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cascade_client::proto::RepoVersions;
use cascade_repo::fsutil::{LandError, Landing};
use cascade_repo::{find_source_failure, SourceFailure};
use futures::StreamExt as _;
use reqwest::header::{HeaderName, HeaderValue};
use tough::Transport as _;
use url::Url;

use super::cache::FETCH_PREFIX;
use super::paths::{
    check_path, expected_sha256, is_mutable, is_root_probe, timestamp_domain, timestamp_version,
};
use super::{Relay, RelayError, FLOOR_HEADER};

/// How a mutable file fetched this recently is reused by requests that queued behind it.
const MUTABLE_REUSE: Duration = Duration::from_millis(500);

/// How long "not found upstream" is remembered for a versioned root (`N.root.json`). Every
/// client probes for the next root of each repository on every update; without this each
/// probe is a WAN fetch. A root published meanwhile reaches clients at most this much later
/// (they fall back to the next source in between, never accept anything unverified). Other
/// paths are not remembered: a snapshot or blob missing for a moment (a mirror half-way
/// through a sync) must be found as soon as it lands.
const NOT_FOUND_REUSE: Duration = Duration::from_secs(5);

impl Relay {
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
}

/// The last upstream fetch of a mutable file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fetched {
    /// When it completed, by the relay's clock.
    at: SystemTime,
    /// Its number ([`Relay::fetch_count`] as it started).
    number: u64,
    /// The floor it was made for, if any.
    floor: Option<u64>,
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
