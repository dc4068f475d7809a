//! The agent's data directory: everything it keeps lives under one root, every file that
//! matters is written atomically (temp file, fsync, rename), and nothing is ever written
//! outside it.
//!
//! ```text
//! DATA/identity.json      server URL, client id and credential (0600)
//! DATA/identity.copy.json a second copy of it, which repairs the first (0600)
//! DATA/policy.json        the last policy fetched, with its revision (drives offline updates)
//! DATA/trust/upstream/    TUF state for components (trusted root, last timestamp…)
//! DATA/trust/site/        TUF state for domain settings and programs
//! DATA/installed/         installed content (see `install`)
//! DATA/staging/           downloads in progress
//! DATA/relay-cache/       the relay's cache (update agents only)
//! DATA/last-report.json   the last update's report, kept until the server has it
//! ```
//!
//! Damaged state repairs itself (`docs/operating.md#agent-self-repair`): a corrupt cached
//! policy is set aside and fetched again, a corrupt identity is restored from its copy, and
//! when both copies are lost the agent says how to enrol again.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use cascade_core::{PolicyDoc, TrustDomain};
use serde::{Deserialize, Serialize};

/// Errors reading or writing the data directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Both copies of the identity are corrupt or missing: the agent must enrol again.
    #[error(
        "{path} and its copy are corrupt (moved aside as *.corrupt): this data directory must \
         enrol again: run with --server URL --enroll-token TOKEN, then delete its old record \
         in the console"
    )]
    IdentityLost {
        /// The identity file.
        path: PathBuf,
    },
    /// A file is there but is not what the agent wrote.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

impl StateError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Io { source, .. } if is_disk_full(source) => "agent.disk_full",
            StateError::Io { .. } => "state.io",
            StateError::IdentityLost { .. } => "state.identity_lost",
            StateError::Corrupt { .. } => "state.corrupt",
        }
    }
}

/// Whether `e` says the disk (or the user's quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28 | 122)) // ENOSPC, EDQUOT
}

const IDENTITY: &str = "identity.json";
/// The server's CA certificate, pinned at enrollment.
const SERVER_CA: &str = "server-ca.pem";
const IDENTITY_COPY: &str = "identity.copy.json";

/// Who this agent is to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The server's base URL (the one enrolled with).
    pub server: url::Url,
    /// Every replica's base URL, in order of preference, when there are several
    /// (`docs/operating.md#replicas`); empty: only `server`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<url::Url>,
    /// The id the server gave at enrollment.
    pub client_id: String,
    /// The client credential (a bearer token).
    pub credential: String,
}

/// The cached policy and what the server told this client about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPolicy {
    /// The policy revision.
    pub revision: i64,
    /// The policy document.
    pub policy: PolicyDoc,
    /// The client's domain, if any.
    #[serde(default)]
    pub domain: Option<String>,
    /// The version of each rolled-out program this client may install (`None`: none), from
    /// the server (`docs/operating.md#rollouts`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub program_pins: std::collections::BTreeMap<String, Option<String>>,
}

/// The root of one agent's data.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A data directory at `root` (created if missing).
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(root).map_err(|source| StateError::Io {
            path: root.to_owned(),
            source,
        })?;
        Ok(DataDir {
            root: root.to_owned(),
        })
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Installed content.
    pub fn installed(&self) -> PathBuf {
        self.root.join("installed")
    }

    /// Downloads in progress.
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// The relay cache.
    pub fn relay_cache(&self) -> PathBuf {
        self.root.join("relay-cache")
    }

    /// The server's CA certificate pinned at enrollment (`docs/architecture.md#trust-model`):
    /// the only trust anchor for the server's HTTPS; `None` when the server speaks plain HTTP
    /// (or was enrolled with before it spoke HTTPS).
    ///
    /// # Errors
    /// When the file exists but cannot be read.
    pub fn server_ca(&self) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.root.join(SERVER_CA);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Stores the server's CA certificate (atomically).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save_server_ca(&self, pem: &[u8]) -> Result<(), StateError> {
        let path = self.root.join(SERVER_CA);
        cascade_repo::fsutil::write_atomic(&path, pem)
            .map_err(|source| StateError::Io { path, source })
    }

    /// TUF state for one trust domain.
    pub fn trust(&self, domain: TrustDomain) -> PathBuf {
        self.root.join("trust").join(domain.as_str())
    }

    /// The enrolled identity, if any. A missing or corrupt `identity.json` is restored from
    /// its copy (and a missing or corrupt copy from it).
    ///
    /// # Errors
    /// An unreadable file, or [`StateError::IdentityLost`] when both copies are corrupt (they
    /// are then moved aside, so the next start with a token enrols again).
    pub fn identity(&self) -> Result<Option<Identity>, StateError> {
        let main = self.read_json::<Identity>(IDENTITY);
        let copy = self.read_json::<Identity>(IDENTITY_COPY);
        match (main, copy) {
            (Ok(Some(id)), Ok(Some(c))) if id == c => Ok(Some(id)),
            (Ok(Some(id)), Ok(_) | Err(StateError::Corrupt { .. })) => {
                self.write_identity(IDENTITY_COPY, &id)?;
                Ok(Some(id))
            }
            (Ok(None) | Err(StateError::Corrupt { .. }), Ok(Some(id))) => {
                tracing::warn!("identity.json is missing or corrupt; restored from its copy");
                self.write_identity(IDENTITY, &id)?;
                Ok(Some(id))
            }
            (Ok(None), Ok(None)) => Ok(None),
            (Err(e @ StateError::Io { .. }), _) | (_, Err(e @ StateError::Io { .. })) => Err(e),
            _ => {
                for name in [IDENTITY, IDENTITY_COPY] {
                    let path = self.root.join(name);
                    if path.exists() {
                        let _ = std::fs::rename(&path, path.with_extension("json.corrupt"));
                    }
                }
                Err(StateError::IdentityLost {
                    path: self.root.join(IDENTITY),
                })
            }
        }
    }

    /// Stores the identity in both of its places (readable by the owner only).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save_identity(&self, id: &Identity) -> Result<(), StateError> {
        self.write_identity(IDENTITY_COPY, id)?;
        self.write_identity(IDENTITY, id)
    }

    fn write_identity(&self, name: &str, id: &Identity) -> Result<(), StateError> {
        self.write_json(name, id)?;
        let path = self.root.join(name);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| StateError::Io { path, source })
    }

    /// The cached policy, if any. A corrupt one is moved aside (`policy.json.corrupt`) and
    /// counts as none, so the agent fetches it again.
    ///
    /// # Errors
    /// An unreadable file.
    pub fn policy(&self) -> Result<Option<CachedPolicy>, StateError> {
        match self.read_json("policy.json") {
            Err(StateError::Corrupt { path, reason }) => {
                tracing::warn!(path = %path.display(), %reason, "corrupt cached policy set aside; fetching it again");
                let _ = std::fs::rename(&path, path.with_extension("json.corrupt"));
                Ok(None)
            }
            other => other,
        }
    }

    /// Replaces the cached policy.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save_policy(&self, p: &CachedPolicy) -> Result<(), StateError> {
        self.write_json("policy.json", p)
    }

    /// Reads `name` as JSON; `None` when absent.
    ///
    /// # Errors
    /// An unreadable or corrupt file.
    pub fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateError> {
        let path = self.root.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::Corrupt {
                        path,
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Writes `name` as JSON atomically.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let path = self.root.join(name);
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        cascade_repo::fsutil::write_atomic(&path, &bytes)
            .map_err(|source| StateError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id() -> Identity {
        Identity {
            servers: Vec::new(),
            server: url::Url::parse("http://127.0.0.1:1/").unwrap(),
            client_id: "c-1".into(),
            credential: "secret".into(),
        }
    }

    // A garbled identity is restored from its copy (and the copy from it); with both garbled
    // they are moved aside and the error says to enrol again.
    #[test]
    fn identity_repairs_from_its_copy_or_says_to_enrol_again() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        data.save_identity(&id()).unwrap();
        std::fs::write(dir.path().join(IDENTITY), b"{\"server\": \"ht").unwrap();
        assert_eq!(data.identity().unwrap(), Some(id()));
        assert_eq!(data.read_json::<Identity>(IDENTITY).unwrap(), Some(id()));
        std::fs::write(dir.path().join(IDENTITY_COPY), b"").unwrap();
        assert_eq!(data.identity().unwrap(), Some(id()));
        assert_eq!(
            data.read_json::<Identity>(IDENTITY_COPY).unwrap(),
            Some(id())
        );

        std::fs::write(dir.path().join(IDENTITY), b"x").unwrap();
        std::fs::write(dir.path().join(IDENTITY_COPY), b"y").unwrap();
        let err = data.identity().unwrap_err();
        assert_eq!(err.code(), "state.identity_lost");
        assert!(err.to_string().contains("--enroll-token"), "{err}");
        assert!(dir.path().join("identity.json.corrupt").exists());
        assert_eq!(data.identity().unwrap(), None);
    }

    // A garbled cached policy counts as none (it is fetched again) and is set aside.
    #[test]
    fn corrupt_policy_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("policy.json"), b"{\"revision\": 3, \"pol").unwrap();
        assert!(data.policy().unwrap().is_none());
        assert!(dir.path().join("policy.json.corrupt").exists());
    }

    // Out of space is its own stable code.
    #[test]
    fn disk_full_has_its_code() {
        let full = StateError::Io {
            path: "last-report.json".into(),
            source: io::Error::from_raw_os_error(28),
        };
        assert_eq!(full.code(), "agent.disk_full");
    }
}
