//! Signing keys: Ed25519, stored as PKCS#8 DER files (mode 0600).
//!
//! The offline keys (root, targets) live in a key directory the operator can keep off the server;
//! the online keys (snapshot, timestamp) live next to the repository so the server can re-sign
//! the short-lived timestamp on a schedule.

use std::io::Write;
use std::path::{Path, PathBuf};

use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::key::Key;
use tough::schema::RoleType;

/// Errors about keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be created (it may already exist).
    #[error("cannot create key file {path}: {source}")]
    Create {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a usable private key.
    #[error("{path} is not an Ed25519/ECDSA PKCS#8 or RSA private key: {reason}")]
    Parse {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Random generation failed.
    #[error("key generation failed")]
    Generate,
}

impl KeyError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Create { .. } => "key.create",
            KeyError::Read { .. } => "key.read",
            KeyError::Parse { .. } => "key.parse",
            KeyError::Generate => "key.generate",
        }
    }
}

/// Where each role's private key file lives.
#[derive(Debug, Clone)]
pub struct KeyPaths {
    /// Offline directory holding `root.pk8` and `targets.pk8`.
    pub offline_dir: PathBuf,
    /// Online directory holding `snapshot.pk8` and `timestamp.pk8`.
    pub online_dir: PathBuf,
}

impl KeyPaths {
    /// The key file for `role`.
    pub fn path(&self, role: RoleType) -> PathBuf {
        match role {
            RoleType::Root => self.offline_dir.join("root.pk8"),
            RoleType::Targets | RoleType::DelegatedTargets => self.offline_dir.join("targets.pk8"),
            RoleType::Snapshot => self.online_dir.join("snapshot.pk8"),
            RoleType::Timestamp => self.online_dir.join("timestamp.pk8"),
        }
    }

    /// Key sources for the given roles, for tough's signing functions.
    pub fn sources(&self, roles: &[RoleType]) -> Vec<Box<dyn KeySource>> {
        roles
            .iter()
            .map(|r| {
                Box::new(LocalKeySource {
                    path: self.path(*r),
                }) as Box<dyn KeySource>
            })
            .collect()
    }
}

/// Generate a new Ed25519 key at `path`; refuses to overwrite an existing file.
///
/// # Errors
/// [`KeyError::Create`] if the file exists or cannot be written.
pub fn generate(path: &Path) -> Result<(), KeyError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| KeyError::Generate)?;
    let create = |source| KeyError::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(create)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(create)?;
    f.write_all(doc.as_ref()).map_err(create)?;
    f.sync_all().map_err(create)
}

/// The public TUF key for the private key file at `path`.
///
/// # Errors
/// [`KeyError::Read`] or [`KeyError::Parse`].
pub fn public_key(path: &Path) -> Result<Key, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let pair = tough::sign::parse_keypair(&bytes).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(tough::sign::Sign::tuf_key(&pair))
}
