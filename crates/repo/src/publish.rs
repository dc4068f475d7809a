//! Publishing: create a repository, add versions (with deltas from the versions kept before),
//! re-sign the timestamp, prune old versions.
//!
//! Content files are written first (content-addressed, never overwritten), metadata last, so a
//! crash at any point leaves the previously published repository intact and serveable. One
//! operation at a time per repository directory (a lock file; [`PublishError::Busy`] otherwise).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use cascade_core::Category;
use jiff::Timestamp;
use tough::schema::decoded::Decoded;
use tough::schema::{Hashes, RoleKeys, RoleType, Root, Target};
use tough::TargetName;

use crate::delta;
use crate::fsutil::{sha256_hex, write_new, DirLock};
use crate::keys::{self, KeyError, KeyPaths};
use crate::layout::{LayoutError, TargetMeta, TargetPath, CUSTOM_KEY};

// Kept here too (they lived here first; the agent imports them from this path).
pub use crate::layout::{target_meta, versions_of};
use crate::meta::{commit, write_initial, Expiries, RepoDirs, State, SPEC_VERSION};

/// Errors from publishing operations.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Served metadata could not be parsed.
    #[error("repository file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The directory already holds a repository.
    #[error("{0} already holds a repository")]
    AlreadyInitialized(PathBuf),
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A name, version or file name broke the naming rules.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Signing a role failed (missing key, key not in root).
    #[error("signing {role} failed: {reason}")]
    Sign {
        /// The role.
        role: String,
        /// Why.
        reason: String,
    },
    /// This version was already published.
    #[error("{0} is already published")]
    VersionExists(String),
    /// Nothing to publish.
    #[error("no files given")]
    NoFiles,
    /// Two files with the same name in one version.
    #[error("file name `{0}` given twice")]
    DuplicateFile(String),
    /// Expiry arithmetic overflowed.
    #[error("bad expiry time: {0}")]
    Time(String),
    /// A stored file did not match its signed hash.
    #[error("stored file {0} does not match its signed hash")]
    StoredMismatch(PathBuf),
    /// Delta generation failed.
    #[error(transparent)]
    Delta(#[from] delta::DeltaError),
    /// `prune` was asked to keep no version at all.
    #[error("refusing to prune every version: keep at least 1")]
    KeepZero,
    /// Another process is publishing to this repository right now.
    #[error("{0} is locked by another publisher")]
    Busy(PathBuf),
}

impl PublishError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Io { .. } => "publish.io",
            PublishError::Corrupt { .. } => "publish.corrupt",
            PublishError::AlreadyInitialized(_) => "publish.already_initialized",
            PublishError::Key(e) => e.code(),
            PublishError::Layout(e) => e.code(),
            PublishError::Sign { .. } => "publish.sign",
            PublishError::VersionExists(_) => "publish.version_exists",
            PublishError::NoFiles => "publish.no_files",
            PublishError::DuplicateFile(_) => "publish.duplicate_file",
            PublishError::Time(_) => "publish.time",
            PublishError::StoredMismatch(_) => "publish.stored_mismatch",
            PublishError::Delta(e) => e.code(),
            PublishError::Busy(_) => "publish.busy",
            PublishError::KeepZero => "publish.keep_zero",
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One target the publish added.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishedTarget {
    /// Target name.
    pub name: String,
    /// Length in bytes.
    pub length: u64,
    /// For a delta, the version it applies to.
    pub delta_from: Option<String>,
}

/// Publishing options.
#[derive(Debug, Clone, Copy)]
pub struct PublishOptions {
    /// Generate deltas from at most this many previous versions (newest first).
    pub delta_depth: usize,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self { delta_depth: 2 }
    }
}

/// A repository directory opened for publishing.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub(crate) dirs: RepoDirs,
    pub(crate) keys: KeyPaths,
    pub(crate) expiries: Expiries,
}

/// Create a new repository in `dir` (served tree in `dir/public`, online keys in
/// `dir/online-keys`) with offline root and targets keys in `keys_dir`.
///
/// # Errors
/// [`PublishError::AlreadyInitialized`], key or I/O errors.
pub async fn init(
    dir: &Path,
    keys_dir: &Path,
    expiries: Expiries,
    now: Timestamp,
) -> Result<Publisher, PublishError> {
    let dirs = RepoDirs {
        dir: dir.to_owned(),
    };
    if dirs.metadata().join("root.json").exists() {
        return Err(PublishError::AlreadyInitialized(dir.to_owned()));
    }
    let keys = dirs.key_paths(keys_dir);
    let roles = [
        RoleType::Root,
        RoleType::Targets,
        RoleType::Snapshot,
        RoleType::Timestamp,
    ];
    // Check every key slot first, so a refused init leaves nothing half-made.
    if let Some(path) = roles.iter().map(|r| keys.path(*r)).find(|p| p.exists()) {
        return Err(PublishError::Key(KeyError::Create {
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "key file exists"),
            path,
        }));
    }
    for d in [dirs.metadata(), dirs.targets()] {
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    let mut root = Root {
        spec_version: SPEC_VERSION.to_owned(),
        consistent_snapshot: true,
        version: std::num::NonZeroU64::MIN,
        expires: crate::meta::expiry(now, expiries.root)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for role in roles {
        let path = keys.path(role);
        keys::generate(&path)?;
        let key = keys::public_key(&path)?;
        let id = key.key_id().map_err(|e| PublishError::Sign {
            role: role.to_string(),
            reason: e.to_string(),
        })?;
        root.keys.insert(id.clone(), key);
        root.roles.insert(
            role,
            RoleKeys {
                keyids: vec![id],
                threshold: std::num::NonZeroU64::MIN,
                _extra: HashMap::new(),
            },
        );
    }
    write_initial(&dirs, &keys, root, &expiries, now).await?;
    Ok(Publisher {
        dirs,
        keys,
        expiries,
    })
}

impl Publisher {
    /// Open an existing repository; `keys_dir` holds the offline keys (only needed for
    /// `publish` and `prune`).
    pub fn open(dir: &Path, keys_dir: &Path) -> Self {
        let dirs = RepoDirs {
            dir: dir.to_owned(),
        };
        let keys = dirs.key_paths(keys_dir);
        Self {
            dirs,
            keys,
            expiries: Expiries::default(),
        }
    }

    /// Use other expiry durations.
    #[must_use]
    pub fn with_expiries(mut self, expiries: Expiries) -> Self {
        self.expiries = expiries;
        self
    }

    /// The served tree (`DIR/public`).
    pub fn public_dir(&self) -> PathBuf {
        self.dirs.public()
    }

    /// Exclusive use of the repository for one operation (publish, refresh, prune).
    pub(crate) fn lock(&self) -> Result<DirLock, PublishError> {
        DirLock::try_acquire(&self.dirs.dir)
            .map_err(io(&self.dirs.dir))?
            .ok_or_else(|| PublishError::Busy(self.dirs.dir.clone()))
    }

    /// Add `version` of `category/name` made of `files`, with deltas from earlier versions.
    ///
    /// # Errors
    /// Naming, I/O, signing or delta errors; the served repository is unchanged on error.
    pub async fn publish(
        &self,
        category: Category,
        name: &str,
        version: &str,
        files: &[PathBuf],
        opts: PublishOptions,
        now: Timestamp,
    ) -> Result<Vec<PublishedTarget>, PublishError> {
        if files.is_empty() {
            return Err(PublishError::NoFiles);
        }
        let _lock = self.lock()?;
        let state = State::load(&self.dirs)?;
        let mut targets = state.targets.signed.clone();
        let previous = versions_of(&targets, category, name);
        if previous.iter().any(|(_, v)| v == version) {
            return Err(PublishError::VersionExists(format!(
                "{category}/{name}/{version}"
            )));
        }
        let seq = previous.first().map_or(1, |(s, _)| s + 1);
        let mut added = Vec::new();
        let mut names = HashSet::new();
        for file in files {
            let fname = file
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default();
            let path = TargetPath::new(category, name, version, fname)?;
            if !names.insert(fname.to_owned()) {
                return Err(PublishError::DuplicateFile(fname.to_owned()));
            }
            let bytes = std::fs::read(file).map_err(io(file))?;
            let meta = TargetMeta {
                version: version.to_owned(),
                seq,
                delta_from: None,
                delta_of: None,
            };
            added.push(self.store(&mut targets, &path, &bytes, &meta)?);
            for (_, prev) in previous.iter().take(opts.delta_depth) {
                let old_path = TargetPath::new(category, name, prev, fname)?;
                let Some(old) = self.read_stored(&targets, &old_path)? else {
                    continue;
                };
                let d = delta::make(&old, &bytes)?;
                if d.len() >= bytes.len() {
                    continue;
                }
                let meta = TargetMeta {
                    delta_from: Some(prev.clone()),
                    delta_of: Some(fname.to_owned()),
                    ..meta.clone()
                };
                added.push(self.store(&mut targets, &path.delta_from(prev)?, &d, &meta)?);
            }
        }
        commit(
            &self.dirs,
            &self.keys,
            &state,
            Some(targets),
            true,
            &self.expiries,
            now,
        )
        .await?;
        Ok(added)
    }

    fn store(
        &self,
        targets: &mut tough::schema::Targets,
        path: &TargetPath,
        bytes: &[u8],
        meta: &TargetMeta,
    ) -> Result<PublishedTarget, PublishError> {
        let sha = sha256_hex(bytes);
        let disk = self.dirs.targets().join(path.stored_path(&sha));
        write_new(&disk, bytes).map_err(io(&disk))?;
        let custom = HashMap::from([(
            CUSTOM_KEY.to_owned(),
            serde_json::to_value(meta).map_err(|e| PublishError::Corrupt {
                path: disk.clone(),
                reason: e.to_string(),
            })?,
        )]);
        let target = Target {
            length: bytes.len() as u64,
            hashes: Hashes {
                sha256: Decoded::from(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
                        .as_ref()
                        .to_vec(),
                ),
                _extra: HashMap::new(),
            },
            custom,
            _extra: HashMap::new(),
        };
        let tn = TargetName::new(path.to_string())
            .map_err(|_| LayoutError::BadTargetName(path.to_string()))?;
        targets.targets.insert(tn, target);
        Ok(PublishedTarget {
            name: path.to_string(),
            length: bytes.len() as u64,
            delta_from: meta.delta_from.clone(),
        })
    }

    /// Read a stored full file back, checked against its signed hash; `None` if not published.
    fn read_stored(
        &self,
        targets: &tough::schema::Targets,
        path: &TargetPath,
    ) -> Result<Option<Vec<u8>>, PublishError> {
        let Some(t) = targets
            .targets
            .iter()
            .find(|(n, _)| n.raw() == path.to_string())
            .map(|(_, t)| t)
        else {
            return Ok(None);
        };
        let sha = hex::encode(&*t.hashes.sha256);
        let disk = self.dirs.targets().join(path.stored_path(&sha));
        let bytes = std::fs::read(&disk).map_err(io(&disk))?;
        if sha256_hex(&bytes) != sha {
            return Err(PublishError::StoredMismatch(disk));
        }
        Ok(Some(bytes))
    }

    /// Re-sign the timestamp (and the snapshot once half its lifetime has passed) with the
    /// online keys only.
    ///
    /// # Errors
    /// Signing or I/O errors.
    pub async fn refresh_timestamp(&self, now: Timestamp) -> Result<(), PublishError> {
        let _lock = self.lock()?;
        let state = State::load(&self.dirs)?;
        let half = self.expiries.snapshot / 2;
        let snapshot_due = state
            .snapshot
            .signed
            .expires
            .checked_sub(half)
            .map_or(true, |t| t <= now);
        commit(
            &self.dirs,
            &self.keys,
            &state,
            None,
            snapshot_due,
            &self.expiries,
            now,
        )
        .await
    }

    /// Keep the newest `keep` versions of every `CATEGORY/NAME`; remove older versions, their
    /// deltas, and then their no longer referenced files. Returns the removed target names.
    ///
    /// # Errors
    /// Signing or I/O errors.
    pub async fn prune(&self, keep: usize, now: Timestamp) -> Result<Vec<String>, PublishError> {
        if keep == 0 {
            return Err(PublishError::KeepZero);
        }
        let _lock = self.lock()?;
        let state = State::load(&self.dirs)?;
        let mut targets = state.targets.signed.clone();
        let mut drop: HashSet<(Category, String, String)> = HashSet::new();
        let mut groups: HashSet<(Category, String)> = HashSet::new();
        for tn in targets.targets.keys() {
            if let Ok(p) = tn.raw().parse::<TargetPath>() {
                groups.insert((p.category(), p.name().to_owned()));
            }
        }
        for (cat, name) in &groups {
            for (_, v) in versions_of(&targets, *cat, name).into_iter().skip(keep) {
                drop.insert((*cat, name.clone(), v));
            }
        }
        let removed: Vec<(TargetName, Target)> = targets
            .targets
            .iter()
            .filter(|(tn, _)| {
                tn.raw().parse::<TargetPath>().is_ok_and(|p| {
                    drop.contains(&(p.category(), p.name().to_owned(), p.version().to_owned()))
                })
            })
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        if removed.is_empty() {
            return Ok(Vec::new());
        }
        for (tn, _) in &removed {
            targets.targets.remove(tn);
        }
        commit(
            &self.dirs,
            &self.keys,
            &state,
            Some(targets),
            true,
            &self.expiries,
            now,
        )
        .await?;
        let mut names = Vec::new();
        for (tn, t) in removed {
            if let Ok(p) = tn.raw().parse::<TargetPath>() {
                let disk = self
                    .dirs
                    .targets()
                    .join(p.stored_path(&hex::encode(&*t.hashes.sha256)));
                // Best effort: a file left behind is harmless, it is no longer listed.
                let _ = std::fs::remove_file(&disk);
                if let Some(parent) = disk.parent() {
                    let _ = std::fs::remove_dir(parent);
                }
            }
            names.push(tn.raw().to_owned());
        }
        names.sort();
        Ok(names)
    }
}
