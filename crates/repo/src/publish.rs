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

use tough::schema::Targets;

use crate::delta;
use crate::error::PublishError;
use crate::fsutil::{remove_debris, sha256_hex, write_atomic_in, DirLock};
use crate::keys::{self, KeyError, KeyPaths, Passphrase};
use crate::layout::{versions_of, LayoutError, TargetMeta, TargetPath, CUSTOM_KEY};
use crate::meta::{
    bump, expiry, metafile, sign, write, write_initial, Change, Expiries, RepoDirs, State,
    SPEC_VERSION,
};

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
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
    /// Mark the version's targets as a hotfix (their custom metadata says so).
    pub hotfix: bool,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            delta_depth: 2,
            hotfix: false,
        }
    }
}

/// A repository directory opened for publishing.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub(crate) dirs: RepoDirs,
    pub(crate) keys: KeyPaths,
    pub(crate) expiries: Expiries,
}

/// How [`init_with`] makes a new repository's keys.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Where the offline (root, targets) keys are written; keep it off the server.
    pub offline_dir: PathBuf,
    /// Role expiry durations.
    pub expiries: Expiries,
    /// Encrypt every key file with this passphrase (none: plain PKCS#8, warned about).
    pub passphrase: Option<Passphrase>,
    /// How many root keys to make (`root.pk8`, `root-2.pk8`, …).
    pub root_keys: usize,
    /// How many of them must sign a new root.
    pub root_threshold: usize,
}

impl InitOptions {
    /// One root key, default expiries, no passphrase, offline keys in `offline_dir`.
    pub fn new(offline_dir: &Path) -> Self {
        Self {
            offline_dir: offline_dir.to_owned(),
            expiries: Expiries::default(),
            passphrase: None,
            root_keys: 1,
            root_threshold: 1,
        }
    }
}

/// Create a new repository in `dir` (served tree in `dir/public`, online keys in
/// `dir/online-keys`) with offline root and targets keys in `keys_dir`, unencrypted, one root
/// key; [`init_with`] takes a passphrase and a threshold root.
///
/// # Errors
/// [`PublishError::AlreadyInitialized`], key or I/O errors.
pub async fn init(
    dir: &Path,
    keys_dir: &Path,
    expiries: Expiries,
    now: Timestamp,
) -> Result<Publisher, PublishError> {
    let opts = InitOptions {
        expiries,
        ..InitOptions::new(keys_dir)
    };
    init_with(dir, &opts, now).await
}

/// Create a new repository in `dir` (served tree in `dir/public`, online keys in
/// `dir/online-keys`) with the keys `opts` asks for: `opts.root_keys` root keys of which
/// `opts.root_threshold` must sign, and a targets key, in `opts.offline_dir`; every key file
/// encrypted when `opts.passphrase` is given (`docs/operating.md#keys-and-their-ceremony`).
///
/// # Errors
/// [`PublishError::AlreadyInitialized`], [`PublishError::BadThreshold`], key or I/O errors.
pub async fn init_with(
    dir: &Path,
    opts: &InitOptions,
    now: Timestamp,
) -> Result<Publisher, PublishError> {
    let dirs = RepoDirs {
        dir: dir.to_owned(),
    };
    if dirs.metadata().join("root.json").exists() {
        return Err(PublishError::AlreadyInitialized(dir.to_owned()));
    }
    if opts.root_threshold == 0 || opts.root_threshold > opts.root_keys {
        return Err(PublishError::BadThreshold {
            keys: opts.root_keys,
            threshold: opts.root_threshold,
        });
    }
    let mut keys = dirs.key_paths(&opts.offline_dir);
    keys.passphrase.clone_from(&opts.passphrase);
    let expiries = opts.expiries;
    let mut slots: Vec<(RoleType, PathBuf)> = (1..=opts.root_keys)
        .map(|n| (RoleType::Root, keys.root_path(n)))
        .collect();
    for role in [RoleType::Targets, RoleType::Snapshot, RoleType::Timestamp] {
        slots.push((role, keys.path(role)));
    }
    // Check every key slot first, so a refused init leaves nothing half-made.
    if let Some((_, path)) = slots.iter().find(|(_, p)| p.exists()) {
        return Err(PublishError::Key(KeyError::Create {
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "key file exists"),
            path: path.clone(),
        }));
    }
    for d in [dirs.metadata(), dirs.targets()] {
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    let mut root = Root {
        spec_version: SPEC_VERSION.to_owned(),
        consistent_snapshot: true,
        version: std::num::NonZeroU64::MIN,
        expires: expiry(now, expiries.root)?,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for (role, path) in &slots {
        keys::generate(path, keys.passphrase.as_ref())?;
        let key = keys::public_key(path, keys.passphrase.as_ref())?;
        let id = key.key_id().map_err(|e| PublishError::Sign {
            role: role.to_string(),
            reason: e.to_string(),
        })?;
        root.keys.insert(id.clone(), key);
        let threshold = if *role == RoleType::Root {
            opts.root_threshold
        } else {
            1
        };
        let entry = root.roles.entry(*role).or_insert_with(|| RoleKeys {
            keyids: Vec::new(),
            threshold: std::num::NonZeroU64::MIN,
            _extra: HashMap::new(),
        });
        entry.keyids.push(id);
        entry.threshold =
            std::num::NonZeroU64::new(threshold as u64).unwrap_or(std::num::NonZeroU64::MIN);
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

    /// Open encrypted key files with `passphrase` (plain key files load either way).
    #[must_use]
    pub fn with_passphrase(mut self, passphrase: Option<Passphrase>) -> Self {
        self.keys.passphrase = passphrase;
        self
    }

    /// Moves the root key files (`root.pk8`, `root-N.pk8`) out of the key directory into `to`
    /// (created `0700`), for a repository whose root is kept offline; returns where they went.
    ///
    /// # Errors
    /// I/O errors.
    pub fn move_root_keys(&self, to: &Path) -> Result<Vec<PathBuf>, PublishError> {
        keys::create_private_dir(to).map_err(io(to))?;
        let mut moved = Vec::new();
        for from in self.keys.present(RoleType::Root) {
            let dest = to.join(from.file_name().unwrap_or_default());
            std::fs::rename(&from, &dest).map_err(io(&dest))?;
            moved.push(dest);
        }
        Ok(moved)
    }

    /// The key files present for this repository that are not encrypted (online keys first),
    /// for a warning: `docs/operating.md#keys-and-their-ceremony`.
    pub fn unencrypted_keys(&self) -> Vec<PathBuf> {
        [
            RoleType::Snapshot,
            RoleType::Timestamp,
            RoleType::Targets,
            RoleType::Root,
        ]
        .iter()
        .flat_map(|r| self.keys.present(*r))
        .filter(|p| !keys::is_encrypted(p).unwrap_or(true))
        .collect()
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
    /// Whoever holds the lock is the only writer, so the temporary files of an operation that
    /// was killed are removed here: the private [`RepoDirs::tmp`] is emptied, and `.tmp-` files
    /// an older version left in the served tree go too.
    pub(crate) fn lock(&self) -> Result<DirLock, PublishError> {
        let lock = DirLock::try_acquire(&self.dirs.dir)
            .map_err(io(&self.dirs.dir))?
            .ok_or_else(|| PublishError::Busy(self.dirs.dir.clone()))?;
        remove_debris(&self.dirs.tmp(), &[""]);
        remove_debris(&self.dirs.public(), &[".tmp-"]);
        Ok(lock)
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
        self.edit_targets(now, |targets| {
            let previous = versions_of(targets, category, name);
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
                    hotfix: opts.hotfix,
                };
                added.push(self.store(targets, &path, &bytes, &meta)?);
                for (_, prev) in previous.iter().take(opts.delta_depth) {
                    let old_path = TargetPath::new(category, name, prev, fname)?;
                    let Some(old) = self.read_stored(targets, &old_path)? else {
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
                    added.push(self.store(targets, &path.delta_from(prev)?, &d, &meta)?);
                }
            }
            Ok(added)
        })
        .await
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
        if !disk.is_file() {
            // Content-addressed: never rewritten once there.
            write_atomic_in(&disk, bytes, &self.dirs.tmp()).map_err(io(&disk))?;
        }
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

    /// Sign a new targets list made by `edit` from the current one, then a new snapshot and
    /// timestamp, under the repository lock; returns what `edit` returned. `publish` and
    /// `prune` are made of it; it also lets a repair (or a test playing a compromised
    /// publisher) sign any list.
    ///
    /// # Errors
    /// What `edit` returned, or signing and I/O errors; the served repository is then
    /// unchanged.
    pub async fn edit_targets<R>(
        &self,
        now: Timestamp,
        edit: impl FnOnce(&mut Targets) -> Result<R, PublishError>,
    ) -> Result<R, PublishError> {
        let _lock = self.lock()?;
        let state = State::load(&self.dirs)?;
        let mut targets = state.targets.signed.clone();
        let out = edit(&mut targets)?;
        self.commit(&state, Change::Targets(Box::new(targets)), now)
            .await?;
        Ok(out)
    }

    /// The targets metadata served now (what clients see).
    ///
    /// # Errors
    /// The served metadata cannot be read.
    pub fn targets(&self) -> Result<Targets, PublishError> {
        Ok(State::load(&self.dirs)?.targets.signed)
    }

    /// Sign and write new metadata over `state`: what `change` asks for, then a new timestamp.
    /// New versioned files (`N.targets.json`, `N.snapshot.json`) never overwrite anything and
    /// `timestamp.json`, the only file clients start from, is replaced last with a durable
    /// atomic rename, so a crash at any point leaves the served metadata intact.
    ///
    /// # Errors
    /// Signing or I/O errors; on error the previously served metadata is still intact.
    pub(crate) async fn commit(
        &self,
        state: &State,
        change: Change,
        now: Timestamp,
    ) -> Result<(), PublishError> {
        let (keys, expiries) = (&self.keys, &self.expiries);
        let md = self.dirs.metadata();
        let root = &state.root.signed;
        let snapshot_meta = if let Change::TimestampOnly = change {
            let bytes = &state.snapshot_bytes;
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
            let v = state.snapshot.signed.version;
            metafile(v, bytes.len() as u64, digest.as_ref())
        } else {
            let mut snapshot = state.snapshot.signed.clone();
            if let Change::Delegated {
                role,
                bytes,
                version,
            } = &change
            {
                let file = format!("{version}.{}.json", crate::tuf::quote_role(role));
                write(&self.dirs, md.join(file), bytes)?;
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
                snapshot.meta.insert(
                    format!("{role}.json"),
                    metafile(*version, bytes.len() as u64, digest.as_ref()),
                );
            }
            if let Change::Targets(t) = change {
                let mut t = *t;
                let prev = state.targets.signed.version;
                t.version = bump(prev);
                t.expires = expiry(now, expiries.targets)?;
                let signed_t = sign(t, root, keys).await?;
                let v = signed_t.signed().signed.version;
                write(
                    &self.dirs,
                    md.join(format!("{v}.targets.json")),
                    signed_t.buffer(),
                )?;
                snapshot.meta.insert(
                    "targets.json".to_owned(),
                    metafile(v, *signed_t.length(), signed_t.sha256()),
                );
            }
            snapshot.version = bump(snapshot.version);
            snapshot.expires = expiry(now, expiries.snapshot)?;
            let signed_s = sign(snapshot, root, keys).await?;
            let v = signed_s.signed().signed.version;
            write(
                &self.dirs,
                md.join(format!("{v}.snapshot.json")),
                signed_s.buffer(),
            )?;
            metafile(v, *signed_s.length(), signed_s.sha256())
        };
        let mut ts = state.timestamp.signed.clone();
        ts.version = bump(ts.version);
        ts.expires = expiry(now, expiries.timestamp)?;
        ts.meta.clear();
        ts.meta.insert("snapshot.json".to_owned(), snapshot_meta);
        let signed_ts = sign(ts, root, keys).await?;
        write(&self.dirs, md.join("timestamp.json"), signed_ts.buffer())
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
        let change = if snapshot_due {
            Change::Snapshot
        } else {
            Change::TimestampOnly
        };
        self.commit(&state, change, now).await
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
        self.commit(&state, Change::Targets(Box::new(targets)), now)
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
