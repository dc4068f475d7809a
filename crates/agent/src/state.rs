//! The agent's data directory: everything it keeps lives under one root, every file that
//! matters is written atomically (temp file, fsync, rename), and nothing is ever written
//! outside it.
//!
//! ```text
//! DATA/identity.json      server URL, client id and credential (0600)
//! DATA/policy.json        the last policy fetched, with its revision (drives offline updates)
//! DATA/trust/upstream/    TUF state for components (trusted root, last timestamp…)
//! DATA/trust/site/        TUF state for domain settings and programs
//! DATA/installed/         installed content (see `install`)
//! DATA/staging/           downloads in progress
//! DATA/relay-cache/       the relay's cache (update agents only)
//! DATA/last-report.json   the last update's report, kept until the server has it
//! ```

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use cascade_core::{Category, PolicyDoc};
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
            StateError::Io { .. } => "state.io",
            StateError::Corrupt { .. } => "state.corrupt",
        }
    }
}

/// Who this agent is to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The server's base URL.
    pub server: url::Url,
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
}

/// The root of one agent's data.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// Which trust domain (TUF repository) serves a category: the upstream signs components,
/// the server signs domain settings and programs (`docs/architecture.md#repositories`).
pub fn trust_domain(category: Category) -> &'static str {
    match category {
        Category::Components => "upstream",
        Category::DomainSettings | Category::Programs => "site",
    }
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

    /// TUF state for one trust domain (`upstream` or `site`).
    pub fn trust(&self, domain: &str) -> PathBuf {
        self.root.join("trust").join(domain)
    }

    /// The enrolled identity, if any.
    ///
    /// # Errors
    /// An unreadable or corrupt file.
    pub fn identity(&self) -> Result<Option<Identity>, StateError> {
        self.read_json("identity.json")
    }

    /// Stores the identity (readable by the owner only).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save_identity(&self, id: &Identity) -> Result<(), StateError> {
        self.write_json("identity.json", id)?;
        let path = self.root.join("identity.json");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| StateError::Io { path, source })
    }

    /// The cached policy, if any.
    ///
    /// # Errors
    /// An unreadable or corrupt file.
    pub fn policy(&self) -> Result<Option<CachedPolicy>, StateError> {
        self.read_json("policy.json")
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
