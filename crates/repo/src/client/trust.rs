//! The client's trust state (`docs/architecture.md#the-client-workflow`): the role files it
//! keeps in its datastore, the trust floor (`trust-floor.json`) that keeps rollback protection
//! when a role file is unreadable and moves the time expiry is checked at forward only
//! (`docs/operating.md#agent-self-repair`), and [`RepoClient`]'s metadata load, which works in
//! a scratch copy of the datastore and lands what changed only after the whole load verified.

use std::path::Path;

use tough::schema::{Root, Signed};

use super::{RepoClient, RepoSource};
use crate::failure::FailureReason;
use crate::fsutil::write_atomic;
use crate::layout::METADATA_DIR;
use crate::tuf::{quote_role, MetaStore, TrustedSet, TufError, Updater};

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

impl RepoClient {
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
}
