//! The client side: a [`RepoClient`] opens a repository through one source at a time: the
//! metadata is loaded and checked once, giving a [`Loaded`] repository, which names the newest
//! version of each `CATEGORY/NAME` and saves a version's files through verified paths,
//! preferring a delta from the installed version and falling back to the full file. Trying
//! ordered sources until one works is [`first_success`], the one fallback loop.
//!
//! Loading runs the TUF client workflow (`crate::tuf`, `docs/architecture.md#the-client-workflow`).
//! The trusted root and the last timestamp/snapshot/targets persist in a datastore directory, so
//! metadata older than what the client already knows (a stale relay) fails for that source, and
//! an unchanged timestamp means nothing else is fetched. They are written atomically (only
//! those that changed) and only after a load verified completely, with a trust floor
//! (`trust-floor.json`: each role's version and the last good update's start time) that keeps
//! rollback protection when a role file is unreadable and moves expiry checks' time forward
//! only (`docs/operating.md#agent-self-repair`).
//!
//! Modules: [`trust`] (the trust state and the metadata load), [`loaded`] (a verified
//! repository and saving from it), [`fallback`] (the loop over ordered sources); this one holds
//! the client itself and what it is given and gives back.

mod fallback;
mod loaded;
mod trust;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cascade_core::Category;
use url::Url;

use crate::failure::FailureReason;
use crate::transport::{SourceTransport, TransportLimits};

pub use fallback::{first_success, Tried};
pub(crate) use loaded::{sha256_of, target_url};
pub use loaded::{Loaded, Newest, SignedFile};
pub use trust::{valid_root, SystemTrustClock, TrustClock};

/// One place a repository can be fetched from (a relay, a mirror, the server, the upstream),
/// as the repository client sees it: a base URL and a label for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSource {
    /// A label for reports (e.g. `relay 10.0.0.5` or the URL).
    pub label: String,
    /// Base URL; metadata is under `metadata/`, targets under `targets/`.
    pub base: Url,
}

impl RepoSource {
    /// A source labelled with its URL.
    pub fn new(base: Url) -> Self {
        Self {
            label: base.to_string(),
            base,
        }
    }

    pub(crate) fn join(&self, dir: &str) -> Result<Url, FailureReason> {
        let mut s = self.base.to_string();
        if !s.ends_with('/') {
            s.push('/');
        }
        s.push_str(dir);
        s.push('/');
        Url::parse(&s).map_err(|e| FailureReason::Local(e.to_string()))
    }
}

/// What is installed now, so a delta can be used.
#[derive(Debug, Clone, Copy)]
pub struct Installed<'a> {
    /// The installed version.
    pub version: &'a str,
    /// Directory holding the installed version's files by file name.
    pub dir: &'a Path,
}

/// One saved file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FetchedFile {
    /// File name inside the version.
    pub file: String,
    /// Where it was saved.
    pub path: PathBuf,
    /// Whether it was rebuilt from a delta.
    pub via_delta: bool,
}

/// What [`Loaded::save_into`] (and so [`RepoClient::fetch_latest`]) saved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fetched {
    /// Label of the source that served it.
    pub source: String,
    /// The newest version.
    pub version: String,
    /// True when `version` is what is installed; then `files` is empty.
    pub up_to_date: bool,
    /// The saved files.
    pub files: Vec<FetchedFile>,
}

/// A TUF client with persistent trust state.
#[derive(Debug, Clone)]
pub struct RepoClient {
    trusted_root: Vec<u8>,
    datastore: PathBuf,
    transport: SourceTransport,
    /// Limits (and transports) for particular sources, by base URL.
    per_source: HashMap<String, SourceTransport>,
    bind: Option<IpAddr>,
    min_timestamp: Option<u64>,
    tuf_limits: crate::tuf::Limits,
    /// Where partial downloads are kept (see [`RepoClient::with_partial_dir`]).
    partial_dir: Option<PathBuf>,
    /// "Now" for expiry checks.
    clock: std::sync::Arc<dyn TrustClock>,
    /// Serialises metadata loads: the trust-state files are not safe to update concurrently.
    load_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl RepoClient {
    /// A client starting from `trusted_root` (shipped out of band), keeping its state in
    /// `datastore` (created if missing).
    ///
    /// # Errors
    /// [`FailureReason::Local`] when the datastore or the HTTP client cannot be set up.
    pub fn new(
        trusted_root: Vec<u8>,
        datastore: &Path,
        limits: TransportLimits,
    ) -> Result<Self, FailureReason> {
        Self::new_bound(trusted_root, datastore, limits, None)
    }

    /// Like [`RepoClient::new`], with connections leaving from the local address `bind`.
    ///
    /// # Errors
    /// [`FailureReason::Local`] when the datastore or the HTTP client cannot be set up.
    pub fn new_bound(
        trusted_root: Vec<u8>,
        datastore: &Path,
        limits: TransportLimits,
        bind: Option<IpAddr>,
    ) -> Result<Self, FailureReason> {
        let transport = SourceTransport::new_bound(limits, bind)
            .map_err(|e| FailureReason::Local(e.to_string()))?;
        Self::with_transport(trusted_root, datastore, transport, bind)
    }

    /// Like [`RepoClient::new_bound`], fetching through `transport` (e.g. a
    /// [`SourceTransport::sibling`] of a long-lived one, so clients share connections);
    /// `bind` is used for sources given their own limits.
    ///
    /// # Errors
    /// [`FailureReason::Local`] when the datastore cannot be created.
    pub fn with_transport(
        trusted_root: Vec<u8>,
        datastore: &Path,
        transport: SourceTransport,
        bind: Option<IpAddr>,
    ) -> Result<Self, FailureReason> {
        std::fs::create_dir_all(datastore).map_err(|e| FailureReason::Local(e.to_string()))?;
        Ok(Self {
            trusted_root,
            datastore: datastore.to_owned(),
            transport,
            per_source: HashMap::new(),
            bind,
            min_timestamp: None,
            tuf_limits: crate::tuf::Limits::default(),
            partial_dir: None,
            clock: std::sync::Arc::new(SystemTrustClock),
            load_lock: std::sync::Arc::default(),
        })
    }

    /// Keeps the partial files of broken downloads in `dir` (content-addressed, outside any
    /// stage, best on the stage's file system) rather than in the stage directory, so that a
    /// download broken by a kill, a failed source or a fallback is resumed from whichever
    /// source comes next (`docs/operating.md#resumable-downloads`).
    #[must_use]
    pub fn with_partial_dir(mut self, dir: &Path) -> Self {
        self.partial_dir = Some(dir.to_owned());
        self
    }

    /// Where this client keeps its trust state (private to it).
    pub(crate) fn datastore(&self) -> &Path {
        &self.datastore
    }

    /// The transport used for sources without their own limits.
    pub fn transport(&self) -> &SourceTransport {
        &self.transport
    }

    /// Use `limits` instead of the client's for the source at `base` (e.g. short timeouts for
    /// a LAN relay, a lower floor for a slow WAN mirror).
    ///
    /// # Errors
    /// [`FailureReason::Local`] when the HTTP client cannot be built.
    pub fn with_source_limits(
        mut self,
        base: &Url,
        limits: TransportLimits,
    ) -> Result<Self, FailureReason> {
        let t = SourceTransport::new_bound(limits, self.bind)
            .map_err(|e| FailureReason::Local(e.to_string()))?;
        self.per_source.insert(base.to_string(), t);
        Ok(self)
    }

    /// Refuse sources whose timestamp is older than `version` — e.g. the version the server
    /// announced at check-in or in a notify — so a stale but still unexpired relay cannot hold
    /// this client back until its timestamp expires.
    #[must_use]
    pub fn with_min_timestamp_version(mut self, version: u64) -> Self {
        self.min_timestamp = Some(version);
        self
    }

    /// Check expiry against `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn TrustClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The transport for `source`: its own limits if it has any.
    pub(crate) fn transport_for(&self, source: &RepoSource) -> SourceTransport {
        self.per_source
            .get(source.base.as_str())
            .unwrap_or(&self.transport)
            .clone()
    }

    /// Load and check the metadata of `source` once: signatures, expiry, rollback, and the
    /// floor set by [`RepoClient::with_min_timestamp_version`]. Metadata loads are serialised
    /// per client.
    ///
    /// # Errors
    /// The classified reason the source was refused.
    pub async fn open(&self, source: &RepoSource) -> Result<Loaded, FailureReason> {
        let transport = self.transport_for(source);
        let set = self.load_with(source, transport.clone()).await?;
        let have = set.timestamp().map_or(0, |t| t.meta.version.get());
        if let Some(min) = self.min_timestamp.filter(|min| have < *min) {
            return Err(FailureReason::Rollback(format!(
                "timestamp version {have} is older than the announced {min} (stale source)"
            )));
        }
        let mut loaded = Loaded::new(source.clone(), transport, &set)?;
        loaded.partial_dir.clone_from(&self.partial_dir);
        Ok(loaded)
    }

    /// Try `sources` in order; the first that yields a verified newest version of
    /// `category/name` wins and its files are saved in `out_dir` (see [`Loaded::save_into`]).
    /// Every failure is returned with its source's label when none succeeds.
    ///
    /// # Errors
    /// Each source's label with the reason it was given up.
    pub async fn fetch_latest(
        &self,
        sources: &[RepoSource],
        category: Category,
        name: &str,
        installed: Option<Installed<'_>>,
        out_dir: &Path,
    ) -> Result<Fetched, Vec<(String, FailureReason)>> {
        first_success(sources, |source| {
            self.fetch_from(source, category, name, installed, out_dir)
        })
        .await
        .into_result()
        .map_err(|failures| {
            failures
                .into_iter()
                .map(|(s, reason)| (s.label.clone(), reason))
                .collect()
        })
    }

    async fn fetch_from(
        &self,
        source: &RepoSource,
        category: Category,
        name: &str,
        installed: Option<Installed<'_>>,
        out_dir: &Path,
    ) -> Result<Fetched, FailureReason> {
        let loaded = self.open(source).await?;
        loaded.refuse_unsafe_names()?;
        let newest = loaded.newest_of(category, name).ok_or_else(|| {
            loaded
                .refused_delegation(category)
                .unwrap_or_else(|| FailureReason::NoSuchContent(format!("{category}/{name}")))
        })?;
        loaded.save_into(&newest, installed, out_dir).await
    }
}
