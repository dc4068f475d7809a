//! Where each role's private key files live ([`KeyPaths`]: offline root and targets keys,
//! online snapshot and timestamp keys, several root keys), and the key sources handed to
//! `tough` for signing, each key decrypted once into wiped-on-drop memory.

use std::path::{Path, PathBuf};

use tough::key_source::KeySource;
use tough::schema::RoleType;
use tough::sign::Sign;
use zeroize::Zeroizing;

use super::{load, KeyError, Passphrase};

/// Where each role's private key file lives, and the passphrase that opens them.
#[derive(Debug, Clone)]
pub struct KeyPaths {
    /// Offline directory holding `root.pk8` (and `root-N.pk8`) and `targets.pk8`.
    pub offline_dir: PathBuf,
    /// Online directory holding `snapshot.pk8` and `timestamp.pk8`.
    pub online_dir: PathBuf,
    /// The passphrase of encrypted key files.
    pub passphrase: Option<Passphrase>,
}

impl KeyPaths {
    /// The key file for `role` (for root, its first key).
    pub fn path(&self, role: RoleType) -> PathBuf {
        match role {
            RoleType::Root => self.root_path(1),
            RoleType::Targets | RoleType::DelegatedTargets => self.offline_dir.join("targets.pk8"),
            RoleType::Snapshot => self.online_dir.join("snapshot.pk8"),
            RoleType::Timestamp => self.online_dir.join("timestamp.pk8"),
        }
    }

    /// The file of root key number `n` (1-based): `root.pk8`, then `root-2.pk8`, …
    pub fn root_path(&self, n: usize) -> PathBuf {
        if n <= 1 {
            self.offline_dir.join("root.pk8")
        } else {
            self.offline_dir.join(format!("root-{n}.pk8"))
        }
    }

    /// The key files present for `role` (root: every `root.pk8` / `root-N.pk8` in the offline
    /// directory, so an operator brings as many root keys as the threshold asks).
    pub fn present(&self, role: RoleType) -> Vec<PathBuf> {
        if role != RoleType::Root {
            let p = self.path(role);
            return if p.is_file() { vec![p] } else { Vec::new() };
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.offline_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n == "root.pk8"
                        || n.strip_prefix("root-")
                            .and_then(|r| r.strip_suffix(".pk8"))
                            .is_some_and(|d| d.parse::<usize>().is_ok())
                })
            })
            .collect();
        found.sort();
        found
    }

    /// Key sources for `role`, each key read and decrypted now; an empty list when no key
    /// file for `role` is present.
    ///
    /// # Errors
    /// [`KeyError::Read`], [`KeyError::Parse`], [`KeyError::PassphraseNeeded`] or
    /// [`KeyError::WrongPassphrase`].
    pub fn sources(&self, role: RoleType) -> Result<Vec<Box<dyn KeySource>>, KeyError> {
        self.present(role)
            .iter()
            .map(|p| source(p, self.passphrase.as_ref()))
            .collect()
    }
}

/// The key in `path` (decrypted with `passphrase` when it is encrypted), for signing.
///
/// # Errors
/// As [`KeyPaths::sources`].
pub fn source(
    path: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<Box<dyn KeySource>, KeyError> {
    let der = load(path, passphrase)?;
    Ok(Box::new(Decrypted { der }))
}

/// A key already read (and decrypted) into wiped-on-drop memory, for `tough`'s signing.
struct Decrypted {
    der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decrypted(<key>)")
    }
}

#[async_trait::async_trait]
impl KeySource for Decrypted {
    async fn as_sign(
        &self,
    ) -> Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(Box::new(tough::sign::parse_keypair(&self.der)?))
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Err("cascade writes key files itself".into())
    }
}
