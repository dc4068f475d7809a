//! The signed metadata files of a repository directory: where they live, reading the current
//! set, signing a role, and writing the first set of a new repository. Committing a new set
//! is [`crate::Publisher`]'s (it holds the keys and expiries).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;
use tough::editor::signed::SignedRole;
use tough::schema::decoded::Decoded;
use tough::schema::{Hashes, KeyHolder, Metafile, Role, Root, Signed, Snapshot, Targets};

use crate::error::PublishError;
use crate::fsutil::write_atomic_in;
use crate::keys::KeyPaths;
use crate::layout::{METADATA_DIR, TARGETS_DIR};

/// TUF specification version written into every role.
pub const SPEC_VERSION: &str = "1.0.0";

/// How long each role's signature stays valid.
#[derive(Debug, Clone, Copy)]
pub struct Expiries {
    /// Root (offline key).
    pub root: SignedDuration,
    /// Targets (offline key).
    pub targets: SignedDuration,
    /// Snapshot (online key; re-signed by `refresh_timestamp` when half of it has passed).
    pub snapshot: SignedDuration,
    /// Timestamp (online key; the server re-signs it on a schedule).
    pub timestamp: SignedDuration,
}

impl Default for Expiries {
    fn default() -> Self {
        let day = SignedDuration::from_hours(24);
        Self {
            root: day * 365,
            targets: day * 365,
            snapshot: day * 30,
            timestamp: day,
        }
    }
}

/// The directories of a repository: `DIR/public/{metadata,targets}` is what gets served,
/// `DIR/online-keys` holds the snapshot and timestamp keys and must never be served.
#[derive(Debug, Clone)]
pub struct RepoDirs {
    /// The repository directory given to `init`.
    pub dir: PathBuf,
}

impl RepoDirs {
    /// The served tree (point an HTTP server's document root here).
    pub fn public(&self) -> PathBuf {
        self.dir.join("public")
    }
    /// Signed metadata.
    pub fn metadata(&self) -> PathBuf {
        self.public().join(METADATA_DIR)
    }
    /// Content-addressed targets.
    pub fn targets(&self) -> PathBuf {
        self.public().join(TARGETS_DIR)
    }
    /// Private temporary files of a publish (a sibling of the served tree, on the same file
    /// system): a killed publish leaves its debris here, never in [`RepoDirs::public`], and the
    /// next operation that takes the repository lock removes it
    /// (`docs/operating.md#crash-debris`).
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    /// Online (snapshot, timestamp) keys.
    pub fn online_keys(&self) -> PathBuf {
        self.dir.join("online-keys")
    }
    /// Key locations with the offline keys in `offline_dir` (no passphrase).
    pub fn key_paths(&self, offline_dir: &Path) -> KeyPaths {
        KeyPaths {
            offline_dir: offline_dir.to_owned(),
            online_dir: self.online_keys(),
            passphrase: None,
        }
    }
}

/// The metadata currently served from a repository directory.
#[derive(Debug, Clone)]
pub struct State {
    /// Latest root.
    pub root: Signed<Root>,
    /// Current targets.
    pub targets: Signed<Targets>,
    /// Current snapshot.
    pub snapshot: Signed<Snapshot>,
    /// Current timestamp.
    pub timestamp: Signed<tough::schema::Timestamp>,
    /// Raw bytes of the current snapshot (for the timestamp's hash).
    pub snapshot_bytes: Vec<u8>,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<(T, Vec<u8>), PublishError> {
    let bytes = std::fs::read(path).map_err(|source| PublishError::Io {
        path: path.to_owned(),
        source,
    })?;
    let value = serde_json::from_slice(&bytes).map_err(|e| PublishError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((value, bytes))
}

fn meta_version(
    meta: &HashMap<String, Metafile>,
    name: &str,
    path: &Path,
) -> Result<u64, PublishError> {
    meta.get(name)
        .map(|m| m.version.get())
        .ok_or_else(|| PublishError::Corrupt {
            path: path.to_owned(),
            reason: format!("no `{name}` entry in meta"),
        })
}

impl State {
    /// Read the served metadata of `dirs`.
    ///
    /// # Errors
    /// [`PublishError::Io`] / [`PublishError::Corrupt`] when a file is missing or unparsable.
    pub fn load(dirs: &RepoDirs) -> Result<Self, PublishError> {
        let md = dirs.metadata();
        let ts_path = md.join("timestamp.json");
        let (timestamp, _): (Signed<tough::schema::Timestamp>, _) = read_json(&ts_path)?;
        let sv = meta_version(&timestamp.signed.meta, "snapshot.json", &ts_path)?;
        let sn_path = md.join(format!("{sv}.snapshot.json"));
        let (snapshot, snapshot_bytes): (Signed<Snapshot>, _) = read_json(&sn_path)?;
        let tv = meta_version(&snapshot.signed.meta, "targets.json", &sn_path)?;
        let (targets, _) = read_json(&md.join(format!("{tv}.targets.json")))?;
        let (root, _) = read_json(&md.join("root.json"))?;
        Ok(Self {
            root,
            targets,
            snapshot,
            timestamp,
            snapshot_bytes,
        })
    }
}

pub(crate) fn bump(v: NonZeroU64) -> NonZeroU64 {
    v.checked_add(1).unwrap_or(v)
}

/// `now + d`, truncated to whole seconds: the TUF spec's `YYYY-MM-DDTHH:MM:SSZ` form, which other
/// clients (python-tuf, go-tuf) parse strictly.
///
/// # Errors
/// [`PublishError::Time`] on overflow.
pub fn expiry(now: Timestamp, d: SignedDuration) -> Result<Timestamp, PublishError> {
    let t = now
        .checked_add(d)
        .map_err(|e| PublishError::Time(e.to_string()))?;
    Timestamp::from_second(t.as_second()).map_err(|e| PublishError::Time(e.to_string()))
}

pub(crate) fn metafile(version: NonZeroU64, bytes_len: u64, sha256: &[u8]) -> Metafile {
    Metafile {
        length: Some(bytes_len),
        hashes: Some(Hashes {
            sha256: Decoded::from(sha256.to_vec()),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

/// Sign `role` with the keys `root` lists for it, using key files from `keys`.
///
/// # Errors
/// [`PublishError::Sign`] when a key is missing or does not match root.
pub async fn sign<T: Role + serde::Serialize>(
    role: T,
    root: &Root,
    keys: &KeyPaths,
) -> Result<SignedRole<T>, PublishError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sources = keys.sources(T::TYPE)?;
    let fail = |reason: String| PublishError::Sign {
        role: T::TYPE.to_string(),
        reason,
    };
    if sources.is_empty() {
        return Err(fail(format!(
            "no key file at {}",
            keys.path(T::TYPE).display()
        )));
    }
    let signed = SignedRole::new(role, &KeyHolder::Root(root.clone()), &sources, &rng)
        .await
        .map_err(|e| fail(e.to_string()))?;
    // tough leaves root's threshold to the cross-signing check; a root signed by fewer keys
    // than its threshold would be refused by every client, so it is refused here.
    if let Some(keys_of_role) = root.roles.get(&T::TYPE) {
        let have = signed.signed().signatures.len() as u64;
        if have < keys_of_role.threshold.get() {
            return Err(fail(format!(
                "{have} of the {} keys needed are present",
                keys_of_role.threshold
            )));
        }
    }
    Ok(signed)
}

/// Write one metadata file atomically, its temporary file in the private [`RepoDirs::tmp`]
/// (never in the served tree).
pub(crate) fn write(dirs: &RepoDirs, path: PathBuf, bytes: &[u8]) -> Result<(), PublishError> {
    write_atomic_in(&path, bytes, &dirs.tmp()).map_err(|source| PublishError::Io { path, source })
}

/// What a commit signs anew besides the timestamp, which it always re-signs.
#[derive(Debug)]
pub(crate) enum Change {
    /// A new targets list (with the offline targets key), hence a new snapshot too.
    Targets(Box<Targets>),
    /// A new snapshot of the same targets (its expiry is renewed).
    Snapshot,
    /// Nothing but a new timestamp.
    TimestampOnly,
    /// A delegated targets role signed elsewhere (already verified), hence a new snapshot.
    Delegated {
        /// The role's name.
        role: String,
        /// Its signed metadata, as received.
        bytes: Vec<u8>,
        /// Its version.
        version: NonZeroU64,
    },
}

/// Build, sign and write the first metadata of a new repository (root version 1).
///
/// # Errors
/// Signing or I/O errors.
pub async fn write_initial(
    dirs: &RepoDirs,
    keys: &KeyPaths,
    root: Root,
    expiries: &Expiries,
    now: Timestamp,
) -> Result<(), PublishError> {
    let md = dirs.metadata();
    let signed_root = sign(root.clone(), &root, keys).await?;
    write(dirs, md.join("1.root.json"), signed_root.buffer())?;
    write(dirs, md.join("root.json"), signed_root.buffer())?;
    let one = NonZeroU64::MIN;
    let mut targets = Targets::new(SPEC_VERSION.to_owned(), one, expiry(now, expiries.targets)?);
    targets.delegations = None;
    let signed_t = sign(targets, &root, keys).await?;
    write(dirs, md.join("1.targets.json"), signed_t.buffer())?;
    let mut snapshot = Snapshot::new(
        SPEC_VERSION.to_owned(),
        one,
        expiry(now, expiries.snapshot)?,
    );
    snapshot.meta.insert(
        "targets.json".to_owned(),
        metafile(one, *signed_t.length(), signed_t.sha256()),
    );
    let signed_s = sign(snapshot, &root, keys).await?;
    write(dirs, md.join("1.snapshot.json"), signed_s.buffer())?;
    let mut ts = tough::schema::Timestamp::new(
        SPEC_VERSION.to_owned(),
        one,
        expiry(now, expiries.timestamp)?,
    );
    ts.meta.insert(
        "snapshot.json".to_owned(),
        metafile(one, *signed_s.length(), signed_s.sha256()),
    );
    let signed_time = sign(ts, &root, keys).await?;
    write(dirs, md.join("timestamp.json"), signed_time.buffer())
}
