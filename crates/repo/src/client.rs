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

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cascade_core::Category;
use url::Url;

use tough::schema::{Root, Signed};

use crate::delta;
use crate::failure::FailureReason;
use crate::fsutil::write_atomic;
use crate::layout::{custom_meta, TargetMeta, TargetPath, METADATA_DIR, TARGETS_DIR};
use crate::save::{fetch_verified, save_resumable, write_verified};
use crate::transport::{SourceTransport, TransportLimits};
use crate::tuf::{quote_role, MetaStore, TargetFile, TrustedSet, TufError, Updater};

/// The role files the client keeps in its datastore.
const ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];
/// The trust floor's file in the datastore.
const FLOOR_FILE: &str = "trust-floor.json";
/// Prefix of the datastore files of delegated roles.
const DELEGATED_PREFIX: &str = "delegated.";
/// Prefix of the per-load scratch datastore (inside the datastore).
const SCRATCH_PREFIX: &str = ".load-";

/// The client's source of "now" for expiry checks: the system clock unless a test injects one.
pub trait TrustClock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> std::time::SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTrustClock;

impl TrustClock for SystemTrustClock {
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
}

/// What the last completely verified load established: the version of each role (rollback
/// protection that survives an unreadable role file) and its start time, Unix seconds (a
/// floor for the time expiry is checked at, never a reason to fail by itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct TrustFloor {
    time: i64,
    root: u64,
    timestamp: u64,
    snapshot: u64,
    targets: u64,
}

impl TrustFloor {
    /// The versions `set` holds (0 for a role it does not hold).
    fn versions(set: &TrustedSet) -> [(&'static str, u64); 4] {
        [
            ("root", set.root().meta.version.get()),
            (
                "timestamp",
                set.timestamp().map_or(0, |t| t.meta.version.get()),
            ),
            (
                "snapshot",
                set.snapshot().map_or(0, |s| s.meta.version.get()),
            ),
            (
                "targets",
                set.top_targets().map_or(0, |t| t.meta.version.get()),
            ),
        ]
    }

    /// Refuses metadata older than the floor. The root never goes back; the other roles are
    /// compared only under the same root version (a new root may rotate keys, and then the
    /// client starts their versions afresh, as the workflow does).
    fn check(&self, set: &TrustedSet) -> Result<(), FailureReason> {
        let [root, rest @ ..] = Self::versions(set);
        let mut pairs = vec![(root.0, root.1, self.root)];
        if root.1 == self.root {
            let floors = [self.timestamp, self.snapshot, self.targets];
            pairs.extend(rest.iter().zip(floors).map(|((r, v), f)| (*r, *v, f)));
        }
        for (role, have, floor) in pairs {
            if have < floor {
                return Err(FailureReason::Rollback(format!(
                    "{role} version {have} is older than version {floor} this client already trusted"
                )));
            }
        }
        Ok(())
    }
}

/// The trust state of one load: role files read from (and verified ones written to) the
/// load's scratch copy of the datastore; nothing reaches the datastore itself until the whole
/// load verified.
struct ScratchStore<'a> {
    dir: &'a Path,
}

/// The datastore file of `role`: `ROLE.json` for the top-level roles, `delegated.ROLE.json`
/// (the name quoted) for delegated ones, so no delegated role's name can name another file.
fn role_file(role: &str) -> String {
    if ROLES.contains(&role) {
        format!("{role}.json")
    } else {
        format!("{DELEGATED_PREFIX}{}.json", quote_role(role))
    }
}

impl MetaStore for ScratchStore<'_> {
    fn load(&self, role: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(role_file(role))).ok()
    }

    fn store(&mut self, role: &str, raw: &[u8]) -> Result<(), TufError> {
        std::fs::write(self.dir.join(role_file(role)), raw).map_err(|e| TufError::Store {
            role: role.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Unix seconds of `t` (0 before the epoch).
fn unix_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A verified target's SHA-256 (what cascade's layout and saving need).
pub(crate) fn sha256_of(t: &TargetFile) -> Result<Vec<u8>, FailureReason> {
    t.sha256()
        .ok_or_else(|| FailureReason::HashMismatch("target lists no sha256 hash".to_owned()))
}

/// `signed.version` of a metadata file, if it parses as one.
fn signed_version(bytes: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()?
        .get("signed")?
        .get("version")?
        .as_u64()
}

/// Whether `bytes` are a root metadata file signed by its own keys.
pub fn valid_root(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Signed<Root>>(bytes).is_ok_and(|r| r.signed.verify_role(&r).is_ok())
}

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

    /// The trust floor kept beside the role files (absent before the first verified load).
    fn read_floor(&self) -> TrustFloor {
        std::fs::read(self.datastore.join(FLOOR_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// A scratch datastore for one load, seeded with the role files that still parse. Files
    /// that no longer parse (torn by a crash of an older version, or damaged) are moved aside
    /// as `ROLE.json.unreadable`; the trust floor keeps their versions, so rollback protection
    /// holds without them. Scratch directories left by a crash are removed first once they are
    /// an hour old (a younger one may belong to a load running in another process).
    fn seed_scratch(&self) -> Result<tempfile::TempDir, FailureReason> {
        let stale = |e: &std::fs::DirEntry| {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600))
        };
        if let Ok(entries) = std::fs::read_dir(&self.datastore) {
            for e in entries.filter_map(Result::ok) {
                if e.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) && stale(&e) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let scratch = tempfile::Builder::new()
            .prefix(SCRATCH_PREFIX)
            .tempdir_in(&self.datastore)
            .map_err(|e| FailureReason::Local(format!("trust scratch: {e}")))?;
        for role in ROLES {
            let path = self.datastore.join(format!("{role}.json"));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let readable = if role == "root" {
                valid_root(&bytes)
            } else {
                signed_version(&bytes).is_some()
            };
            if readable {
                std::fs::write(scratch.path().join(format!("{role}.json")), &bytes)
                    .map_err(|e| FailureReason::Local(format!("trust scratch: {e}")))?;
            } else {
                let _ = std::fs::rename(&path, path.with_extension("json.unreadable"));
            }
        }
        // Delegated roles: a copy that no longer parses is simply fetched again.
        if let Ok(entries) = std::fs::read_dir(&self.datastore) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                let json = Path::new(&name).extension().is_some_and(|x| x == "json");
                if !(name.starts_with(DELEGATED_PREFIX) && json) {
                    continue;
                }
                if let Ok(bytes) = std::fs::read(e.path()) {
                    if signed_version(&bytes).is_some() {
                        std::fs::write(scratch.path().join(&name), &bytes)
                            .map_err(|e| FailureReason::Local(format!("trust scratch: {e}")))?;
                    }
                }
            }
        }
        Ok(scratch)
    }

    /// The newest root this client trusts: the datastore's copy when it parses and verifies
    /// against itself, else the shipped (pinned) one.
    fn root_bytes(&self) -> Vec<u8> {
        std::fs::read(self.datastore.join("root.json"))
            .ok()
            .filter(|b| valid_root(b))
            .unwrap_or_else(|| self.trusted_root.clone())
    }

    /// Load and verify the repository's metadata through `source` only.
    pub(crate) async fn load(&self, source: &RepoSource) -> Result<TrustedSet, FailureReason> {
        let transport = self.transport_for(source);
        self.load_with(source, transport).await
    }

    /// Load through `source` with a given transport (e.g. one that records what it fetched).
    ///
    /// The TUF workflow (`docs/architecture.md#trust-model`) works in a scratch copy of the
    /// trust state; only when the whole load verified (signatures, rollback, expiry at the
    /// update's start time, the trust floor) are the role files that changed landed in the
    /// datastore, each atomically, and the floor moved up
    /// (`docs/operating.md#agent-self-repair`). A failed load changes nothing stored.
    pub(crate) async fn load_with<T: tough::Transport + 'static>(
        &self,
        source: &RepoSource,
        transport: T,
    ) -> Result<TrustedSet, FailureReason> {
        let _guard = self.load_lock.lock().await;
        let scratch = self.seed_scratch()?;
        let floor = self.read_floor();
        let started = unix_secs(self.clock.now());
        let root = self.root_bytes();
        // Expiry is checked against the fixed update start time, which the trust floor may
        // only move forward.
        let at = jiff::Timestamp::from_second(started.max(floor.time))
            .map_err(|e| FailureReason::Local(format!("trusted time: {e}")))?;
        let mut store = ScratchStore {
            dir: scratch.path(),
        };
        let metadata = source.join(METADATA_DIR)?;
        let mut updater = Updater::new(
            &root,
            at,
            &transport,
            &metadata,
            &mut store,
            self.tuf_limits,
        )?;
        updater.refresh().await?;
        updater.load_delegated().await?;
        let set = updater.into_trusted();
        floor.check(&set)?;
        self.persist(&set, &floor, started)?;
        Ok(set)
    }

    /// Lands the verified role files that changed in the datastore (each atomically), then
    /// the raised trust floor.
    fn persist(
        &self,
        set: &TrustedSet,
        floor: &TrustFloor,
        started: i64,
    ) -> Result<(), FailureReason> {
        let local = |e: std::io::Error| FailureReason::Local(format!("storing trust state: {e}"));
        let roles = [
            ("root", Some(&set.root().raw)),
            ("timestamp", set.timestamp().map(|t| &t.raw)),
            ("snapshot", set.snapshot().map(|s| &s.raw)),
            ("targets", set.top_targets().map(|t| &t.raw)),
        ];
        let delegated = set
            .delegated_roles()
            .map(|(name, v)| (name.as_str(), Some(&v.raw)));
        for (role, raw) in roles.into_iter().chain(delegated) {
            let Some(raw) = raw else { continue };
            let path = self.datastore.join(role_file(role));
            if std::fs::read(&path).ok().as_ref() != Some(raw) {
                write_atomic(&path, raw).map_err(local)?;
            }
        }
        let [root, timestamp, snapshot, targets] = TrustFloor::versions(set).map(|(_, v)| v);
        let next = TrustFloor {
            time: floor.time.max(started),
            root,
            timestamp,
            snapshot,
            targets,
        };
        let bytes = serde_json::to_vec(&next).map_err(|e| FailureReason::Local(e.to_string()))?;
        write_atomic(&self.datastore.join(FLOOR_FILE), &bytes).map_err(local)?;
        // Written by tough's own clock check in older versions; never read now.
        let _ = std::fs::remove_file(self.datastore.join("latest_known_time.json"));
        Ok(())
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

/// What [`first_success`] found: the sources that failed, in order, then the first success.
#[derive(Debug)]
pub struct Tried<S, T, E> {
    /// Each source tried in vain, in order, with its failure.
    pub failed: Vec<(S, E)>,
    /// What the first source that worked gave, if one did.
    pub success: Option<T>,
}

impl<S, T, E> Tried<S, T, E> {
    /// The success, or every failure when no source worked.
    ///
    /// # Errors
    /// Every source with its failure (empty when there was no source).
    pub fn into_result(self) -> Result<T, Vec<(S, E)>> {
        self.success.ok_or(self.failed)
    }
}

/// The fallback rule, the one loop over ordered sources: try each in turn with `attempt` and
/// stop at the first success.
pub async fn first_success<S: Clone, T, E, Fut>(
    sources: impl IntoIterator<Item = S>,
    mut attempt: impl FnMut(S) -> Fut,
) -> Tried<S, T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut failed = Vec::new();
    for source in sources {
        match attempt(source.clone()).await {
            Ok(t) => {
                return Tried {
                    failed,
                    success: Some(t),
                }
            }
            Err(e) => failed.push((source, e)),
        }
    }
    Tried {
        failed,
        success: None,
    }
}

/// One signed target of a [`Loaded`] repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFile {
    /// Its name.
    pub path: TargetPath,
    /// Where its content-addressed copy is (below the source's `targets/`).
    pub url: Url,
    /// Its signed length.
    pub length: u64,
    /// Its signed SHA-256.
    pub sha256: Vec<u8>,
    /// cascade's metadata of it, when it has any.
    pub meta: Option<TargetMeta>,
}

impl SignedFile {
    /// Whether it is a delta rather than a full file.
    pub fn is_delta(&self) -> bool {
        self.meta.as_ref().is_some_and(TargetMeta::is_delta)
    }
}

/// The newest version of one `CATEGORY/NAME` in a [`Loaded`] repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newest {
    /// The category.
    pub category: Category,
    /// The content name.
    pub name: String,
    /// The newest version (highest publish sequence).
    pub version: String,
    /// Its signed files, full files and deltas.
    pub files: Vec<SignedFile>,
}

/// A repository whose metadata one source delivered and the client verified: what it offers,
/// and saving it, with no further metadata fetch.
#[derive(Debug, Clone)]
pub struct Loaded {
    source: RepoSource,
    transport: SourceTransport,
    timestamp_version: u64,
    files: Vec<SignedFile>,
    /// The first signed name that is not `CATEGORY/NAME/VERSION/FILE`, if any.
    unsafe_name: Option<String>,
    /// Where partial downloads are kept; the stage itself when `None`.
    partial_dir: Option<PathBuf>,
    /// Delegated roles that could not be trusted.
    refused: Vec<crate::tuf::RefusedRole>,
}

impl Loaded {
    fn new(
        source: RepoSource,
        transport: SourceTransport,
        set: &TrustedSet,
    ) -> Result<Self, FailureReason> {
        let base = source.join(TARGETS_DIR)?;
        let mut files = Vec::new();
        let mut unsafe_name = None;
        for (name, t) in &set.resolved_targets() {
            // cascade's layout needs a sha256 (it names the content-addressed copy).
            let (Ok(path), Some(sha256)) = (name.parse::<TargetPath>(), t.sha256()) else {
                unsafe_name.get_or_insert_with(|| name.clone());
                continue;
            };
            let Ok(url) = target_url(&base, &path, &sha256) else {
                unsafe_name.get_or_insert_with(|| name.clone());
                continue;
            };
            files.push(SignedFile {
                path,
                url,
                length: t.length,
                sha256,
                meta: custom_meta(t.custom.as_ref()),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            source,
            transport,
            timestamp_version: set.timestamp().map_or(0, |t| t.meta.version.get()),
            files,
            unsafe_name,
            partial_dir: None,
            refused: set.refused_delegations().to_vec(),
        })
    }

    /// The source it was loaded from.
    pub fn source(&self) -> &RepoSource {
        &self.source
    }

    /// The version of the timestamp it was loaded with.
    pub fn timestamp_version(&self) -> u64 {
        self.timestamp_version
    }

    /// Every signed target (those with a name cascade can use), in name order.
    pub fn files(&self) -> &[SignedFile] {
        &self.files
    }

    /// Why a delegated role that may hold targets of `category` could not be trusted (a
    /// signature not of the delegated keys, a wrong version, an expired role), if one could
    /// not: the specification makes that a failure of the update rather than a silent gap
    /// (`docs/architecture.md#trust-model`). Targets of other categories are unaffected.
    pub fn refused_delegation(&self, category: Category) -> Option<FailureReason> {
        self.refused
            .iter()
            .find(|r| r.may_cover(&category.to_string()))
            .map(|r| {
                let why: FailureReason = r.error.clone().into();
                why
            })
    }

    /// Our publisher only signs `CATEGORY/NAME/VERSION/FILE` names; anything else in signed
    /// metadata means a hostile or broken publisher, and nothing is saved from this source.
    fn refuse_unsafe_names(&self) -> Result<(), FailureReason> {
        match &self.unsafe_name {
            Some(bad) => Err(FailureReason::UnsafeName(bad.clone())),
            None => Ok(()),
        }
    }

    /// The newest version of `category/name`, `None` when the repository lists none.
    pub fn newest_of(&self, category: Category, name: &str) -> Option<Newest> {
        let mine = |f: &&SignedFile| f.path.category() == category && f.path.name() == name;
        let by_seq: BTreeMap<u64, &str> = self
            .files
            .iter()
            .filter(mine)
            .filter_map(|f| f.meta.as_ref().map(|m| (m.seq, m.version.as_str())))
            .collect();
        let (_, version) = by_seq.last_key_value()?;
        let files = self
            .files
            .iter()
            .filter(mine)
            .filter(|f| f.meta.as_ref().is_some_and(|m| m.version == *version))
            .cloned()
            .collect();
        Some(Newest {
            category,
            name: name.to_owned(),
            version: (*version).to_owned(),
            files,
        })
    }

    /// The newest version of every name of `category` that has a full file, by name.
    pub fn newest(&self, category: Category) -> Vec<Newest> {
        let mut names: Vec<&str> = self
            .files
            .iter()
            .filter(|f| f.path.category() == category && f.meta.is_some() && !f.is_delta())
            .map(|f| f.path.name())
            .collect();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| self.newest_of(category, name))
            .collect()
    }

    /// Save the full files of `newest` in `stage`, each rebuilt from a signed delta against
    /// `installed` when one fits, else fetched whole. Nothing is saved when `installed` is
    /// that very version.
    ///
    /// `stage` is a staging directory: only verified files ever appear in it under their names
    /// (each by atomic rename, never outside it), plus, unless the client has a
    /// [`RepoClient::with_partial_dir`], `.partial-SHA256` files of broken transfers, which a
    /// later call with the same `stage` resumes (from any source) and hash-checks before use. After an `Err` it may hold some files of the version whose other
    /// files failed.
    ///
    /// # Errors
    /// The reason the source failed: an unsafe signed name, a transfer or a hash.
    pub async fn save_into(
        &self,
        newest: &Newest,
        installed: Option<Installed<'_>>,
        stage: &Path,
    ) -> Result<Fetched, FailureReason> {
        self.refuse_unsafe_names()?;
        let mut fetched = Fetched {
            source: self.source.label.clone(),
            version: newest.version.clone(),
            up_to_date: installed.is_some_and(|i| i.version == newest.version),
            files: Vec::new(),
        };
        if fetched.up_to_date {
            return Ok(fetched);
        }
        for full in newest.files.iter().filter(|f| !f.is_delta()) {
            let file = full.path.file();
            let via_delta = match installed {
                Some(i) => self.try_delta(full, i, stage).await,
                None => false,
            };
            if !via_delta {
                save_resumable(
                    &self.transport,
                    full.url.clone(),
                    full.length,
                    &full.sha256,
                    (stage, file),
                    self.partial_dir.as_deref().unwrap_or(stage),
                )
                .await?;
            }
            fetched.files.push(FetchedFile {
                file: file.to_owned(),
                path: stage.join(file),
                via_delta,
            });
        }
        fetched.files.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(fetched)
    }

    /// Rebuild `full` from the installed copy and a signed delta; false when no delta fits or
    /// anything about it fails (the caller then fetches the full file).
    async fn try_delta(&self, full: &SignedFile, installed: Installed<'_>, stage: &Path) -> bool {
        let Ok(dpath) = full.path.delta_from(installed.version) else {
            return false;
        };
        let Some(d) = self.files.iter().find(|f| f.path == dpath) else {
            return false;
        };
        let Ok(old) = std::fs::read(installed.dir.join(full.path.file())) else {
            return false;
        };
        let Ok(patch) = fetch_verified(&self.transport, d.url.clone(), d.length, &d.sha256).await
        else {
            return false;
        };
        let Ok(new) = delta::apply(&old, &patch, full.length) else {
            return false;
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &new);
        if new.len() as u64 != full.length || digest.as_ref() != full.sha256.as_slice() {
            return false;
        }
        write_verified(&new, stage, full.path.file()).is_ok()
    }
}

/// The URL of a target's content-addressed copy under `base` (`DIR/SHA256.FILE`).
///
/// # Errors
/// [`FailureReason::UnsafeName`] if the URL would leave `base`.
pub(crate) fn target_url(
    base: &Url,
    path: &TargetPath,
    sha256: &[u8],
) -> Result<Url, FailureReason> {
    let rel = path.stored_path(&hex::encode(sha256));
    let url = base
        .join(&rel)
        .map_err(|e| FailureReason::UnsafeName(e.to_string()))?;
    if !url.as_str().starts_with(base.as_str()) {
        return Err(FailureReason::UnsafeName(rel));
    }
    Ok(url)
}
