//! The client side: load a repository through one source at a time, pick the newest version of
//! `CATEGORY/NAME`, and save its files through verified paths, preferring a delta from the
//! installed version and falling back to the full file.
//!
//! The trusted root and the last timestamp/snapshot/targets persist in a datastore directory, so
//! metadata older than what the client already knows (a stale relay) fails for that source.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cascade_core::Category;
use tough::{Repository, RepositoryLoader};
use url::Url;

use crate::delta;
use crate::layout::{target_meta, versions_of};
use crate::layout::{TargetPath, METADATA_DIR, TARGETS_DIR};
use crate::save::{fetch_verified, save_resumable, write_verified};
use crate::transport::{SourceTransport, TransportLimits};

pub use crate::failure::{classify, FailureReason};

/// One place a repository can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// A label for reports (e.g. `relay 10.0.0.5` or the URL).
    pub label: String,
    /// Base URL; metadata is under `metadata/`, targets under `targets/`.
    pub base: Url,
}

impl Source {
    /// A source labelled with its URL.
    pub fn new(base: Url) -> Self {
        Self {
            label: base.to_string(),
            base,
        }
    }

    fn join(&self, dir: &str) -> Result<Url, FailureReason> {
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

/// The result of a successful [`RepoClient::fetch_latest`].
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
    tuf_limits: tough::Limits,
    /// Serialises metadata loads: tough's trust-state files are not safe to update concurrently.
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
            tuf_limits: tough::Limits::default(),
            load_lock: std::sync::Arc::default(),
        })
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

    /// The transport for `source`: its own limits if it has any.
    ///
    /// # Errors
    /// Never today; kept fallible for transports built on demand.
    pub fn transport_for(&self, source: &Source) -> Result<SourceTransport, FailureReason> {
        Ok(self
            .per_source
            .get(source.base.as_str())
            .unwrap_or(&self.transport)
            .clone())
    }

    /// Move aside trust-state files that no longer parse (tough writes them without
    /// temp+rename, so a crash can truncate one). Without this the client would refuse every
    /// source forever; the cost is one update cycle without rollback protection for that role.
    fn quarantine_unreadable_state(&self) {
        for role in ["root", "timestamp", "snapshot", "targets"] {
            let path = self.datastore.join(format!("{role}.json"));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let readable = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("signed")?.get("version")?.as_u64())
                .is_some();
            if !readable {
                let _ = std::fs::rename(&path, path.with_extension("json.unreadable"));
            }
        }
    }

    /// The newest root this client trusts: the datastore's copy if any, else the shipped one.
    fn root_bytes(&self) -> Vec<u8> {
        std::fs::read(self.datastore.join("root.json"))
            .unwrap_or_else(|_| self.trusted_root.clone())
    }

    /// Load and verify the repository's metadata through `source` only.
    ///
    /// # Errors
    /// The classified reason the source was refused.
    pub async fn load(&self, source: &Source) -> Result<Repository, FailureReason> {
        let transport = self.transport_for(source)?;
        self.load_with(source, transport).await
    }

    /// Load through `source` with a given transport (e.g. one that records what it fetched).
    ///
    /// # Errors
    /// The classified reason the source was refused.
    pub async fn load_with<T: tough::Transport + 'static>(
        &self,
        source: &Source,
        transport: T,
    ) -> Result<Repository, FailureReason> {
        let _guard = self.load_lock.lock().await;
        self.quarantine_unreadable_state();
        let root = self.root_bytes();
        RepositoryLoader::new(&root, source.join(METADATA_DIR)?, source.join(TARGETS_DIR)?)
            .transport(transport)
            .limits(self.tuf_limits)
            .datastore(self.datastore.clone())
            .load()
            .await
            .map_err(|e| classify(&e))
    }

    /// Try `sources` in order; the first that yields a verified newest version of
    /// `category/name` wins and its files are saved in `out_dir`. Every failure is returned with
    /// its source when none succeeds.
    ///
    /// `out_dir` is a staging directory: only verified files ever appear in it under their names
    /// (each by atomic rename, never outside it), plus `.partial-SHA256` files of broken
    /// transfers, which a later call with the same `out_dir` resumes (from any source) and
    /// hash-checks before use. After an `Err` it may hold some files of a version whose other
    /// files failed. Metadata loads are serialised per client.
    ///
    /// # Errors
    /// Each source's label with the reason it was given up.
    pub async fn fetch_latest(
        &self,
        sources: &[Source],
        category: Category,
        name: &str,
        installed: Option<Installed<'_>>,
        out_dir: &Path,
    ) -> Result<Fetched, Vec<(String, FailureReason)>> {
        let mut failures = Vec::new();
        for source in sources {
            match self
                .fetch_from(source, category, name, installed, out_dir)
                .await
            {
                Ok(f) => return Ok(f),
                Err(reason) => failures.push((source.label.clone(), reason)),
            }
        }
        Err(failures)
    }

    async fn fetch_from(
        &self,
        source: &Source,
        category: Category,
        name: &str,
        installed: Option<Installed<'_>>,
        out_dir: &Path,
    ) -> Result<Fetched, FailureReason> {
        let transport = self.transport_for(source)?;
        let repo = self.load_with(source, transport.clone()).await?;
        let have = repo.timestamp().signed.version.get();
        if let Some(min) = self.min_timestamp.filter(|min| have < *min) {
            return Err(FailureReason::Rollback(format!(
                "timestamp version {have} is older than the announced {min}"
            )));
        }
        let targets = &repo.targets().signed;
        // Our publisher only signs CATEGORY/NAME/VERSION/FILE names; anything else in signed
        // metadata means a hostile or broken publisher, and the whole source is refused.
        if let Some((bad, _)) = targets
            .targets_iter()
            .find(|(tn, _)| tn.raw().parse::<TargetPath>().is_err())
        {
            return Err(FailureReason::UnsafeName(bad.raw().to_owned()));
        }
        let Some((_, version)) = versions_of(targets, category, name).into_iter().next() else {
            return Err(FailureReason::NoSuchContent(format!("{category}/{name}")));
        };
        if installed.is_some_and(|i| i.version == version) {
            return Ok(Fetched {
                source: source.label.clone(),
                version,
                up_to_date: true,
                files: Vec::new(),
            });
        }
        let base = source.join(TARGETS_DIR)?;
        let ctx = TargetsAt {
            transport: &transport,
            base: &base,
            targets,
        };
        let mut files = Vec::new();
        // Collected first: tough's iterator is not Send, and this future must be.
        let all: Vec<_> = targets.targets_iter().collect();
        for (tn, t) in all {
            let Some(meta) = target_meta(t) else { continue };
            let Ok(path) = tn.raw().parse::<TargetPath>() else {
                continue;
            };
            if meta.is_delta()
                || path.category() != category
                || path.name() != name
                || meta.version != version
            {
                continue;
            }
            let via_delta = match installed {
                Some(i) => try_delta(&ctx, &path, t, i, out_dir).await,
                None => false,
            };
            if !via_delta {
                let url = target_url(&base, &path, t)?;
                save_resumable(
                    &transport,
                    url,
                    t.length,
                    &t.hashes.sha256,
                    out_dir,
                    path.file(),
                )
                .await?;
            }
            files.push(FetchedFile {
                file: path.file().to_owned(),
                path: out_dir.join(path.file()),
                via_delta,
            });
        }
        files.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(Fetched {
            source: source.label.clone(),
            version,
            up_to_date: false,
            files,
        })
    }
}

/// The URL of a target's content-addressed copy under `base` (`DIR/SHA256.FILE`).
///
/// # Errors
/// [`FailureReason::UnsafeName`] if the URL would leave `base`.
pub fn target_url(
    base: &Url,
    path: &TargetPath,
    t: &tough::schema::Target,
) -> Result<Url, FailureReason> {
    let rel = path.stored_path(&hex::encode(&*t.hashes.sha256));
    let url = base
        .join(&rel)
        .map_err(|e| FailureReason::UnsafeName(e.to_string()))?;
    if !url.as_str().starts_with(base.as_str()) {
        return Err(FailureReason::UnsafeName(rel));
    }
    Ok(url)
}

/// Where the targets of one loaded repository come from.
struct TargetsAt<'a> {
    transport: &'a SourceTransport,
    base: &'a Url,
    targets: &'a tough::schema::Targets,
}

/// Rebuild `full` from the installed copy and a signed delta; false when no delta fits or
/// anything about it fails (the caller then fetches the full file).
async fn try_delta(
    ctx: &TargetsAt<'_>,
    full: &TargetPath,
    full_target: &tough::schema::Target,
    installed: Installed<'_>,
    out_dir: &Path,
) -> bool {
    let Ok(dpath) = full.delta_from(installed.version) else {
        return false;
    };
    let Some((_, dt)) = ctx
        .targets
        .targets_iter()
        .find(|(n, _)| n.raw() == dpath.to_string())
    else {
        return false;
    };
    let Ok(old) = std::fs::read(installed.dir.join(full.file())) else {
        return false;
    };
    let Ok(url) = target_url(ctx.base, &dpath, dt) else {
        return false;
    };
    let Ok(d) = fetch_verified(ctx.transport, url, dt.length, &dt.hashes.sha256).await else {
        return false;
    };
    let Ok(new) = delta::apply(&old, &d, full_target.length) else {
        return false;
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &new);
    if new.len() as u64 != full_target.length || digest.as_ref() != &*full_target.hashes.sha256 {
        return false;
    }
    write_verified(&new, out_dir, full.file()).is_ok()
}
