//! Signing keys: Ed25519 private keys as PKCS#8 files (mode 0600 in directories of mode 0700,
//! whatever the umask), either plain DER or, when a passphrase is given, standard encrypted
//! PKCS#8 (`ENCRYPTED PRIVATE KEY` PEM: PBES2, scrypt and AES-256-CBC; `openssl pkey` reads it).
//!
//! The offline keys (root, targets) live in a key directory the operator keeps off the server;
//! the online keys (snapshot, timestamp) live next to the repository so the server can re-sign
//! the short-lived timestamp on a schedule (`docs/operating.md#keys-and-their-ceremony`).
//! A repository may have several root keys (`root.pk8`, `root-2.pk8`, …) with a threshold.
//!
//! Keys are decrypted here, into memory that is wiped after use, and handed to `tough` through a
//! [`KeySource`] that holds the decrypted bytes, so a wrong passphrase is a typed
//! [`KeyError::WrongPassphrase`] before any signing starts.

use std::io::Write;
use std::path::{Path, PathBuf};

use pkcs8::der::pem::LineEnding;
use pkcs8::der::SecretDocument;
use pkcs8::pkcs5::pbes2;
use pkcs8::EncryptedPrivateKeyInfo;
use tough::key_source::KeySource;
use tough::schema::key::Key;
use tough::schema::RoleType;
use tough::sign::Sign;
use zeroize::Zeroizing;

/// The environment variable a passphrase may come from (`--key-passphrase-file` wins).
pub const PASSPHRASE_ENV: &str = "CASCADE_KEY_PASSPHRASE";

/// The PEM label of an encrypted PKCS#8 key.
const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";
/// The PEM label of a plain PKCS#8 key.
const PLAIN_LABEL: &str = "PRIVATE KEY";

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
    /// The key file is encrypted and no passphrase was given.
    #[error(
        "{path} is encrypted: give its passphrase with --key-passphrase-file or {PASSPHRASE_ENV}"
    )]
    PassphraseNeeded {
        /// The key file.
        path: PathBuf,
    },
    /// The passphrase does not decrypt the key file.
    #[error("wrong passphrase for {path}")]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// The passphrase file could not be read, or the passphrase is empty.
    #[error("bad key passphrase from {from}: {reason}")]
    BadPassphrase {
        /// Where it came from (a file or the environment variable).
        from: String,
        /// Why it is unusable.
        reason: String,
    },
    /// Encrypting a new key failed.
    #[error("cannot encrypt key file {path}: {reason}")]
    Encrypt {
        /// The key file.
        path: PathBuf,
        /// What the encoder said.
        reason: String,
    },
}

impl KeyError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Create { .. } => "key.create",
            KeyError::Read { .. } => "key.read",
            KeyError::Parse { .. } => "key.parse",
            KeyError::Generate => "key.generate",
            KeyError::PassphraseNeeded { .. } => "key.passphrase_needed",
            KeyError::WrongPassphrase { .. } => "key.wrong_passphrase",
            KeyError::BadPassphrase { .. } => "key.bad_passphrase",
            KeyError::Encrypt { .. } => "key.encrypt",
        }
    }
}

/// The passphrase that encrypts key files; its bytes are wiped when dropped and never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Passphrase {
    /// A passphrase from a string.
    ///
    /// # Errors
    /// [`KeyError::BadPassphrase`] when it is empty.
    pub fn new(value: impl Into<String>) -> Result<Self, KeyError> {
        Self::checked(Zeroizing::new(value.into()), "the caller")
    }

    fn checked(value: Zeroizing<String>, from: &str) -> Result<Self, KeyError> {
        if value.is_empty() {
            return Err(KeyError::BadPassphrase {
                from: from.to_owned(),
                reason: "it is empty".to_owned(),
            });
        }
        Ok(Self(value))
    }

    /// The passphrase in `file` (its first line, without the line ending).
    ///
    /// # Errors
    /// [`KeyError::BadPassphrase`] when the file cannot be read or its first line is empty.
    pub fn from_file(file: &Path) -> Result<Self, KeyError> {
        let from = file.display().to_string();
        let text =
            Zeroizing::new(
                std::fs::read_to_string(file).map_err(|e| KeyError::BadPassphrase {
                    from: from.clone(),
                    reason: e.to_string(),
                })?,
            );
        let line = text.lines().next().unwrap_or_default();
        Self::checked(Zeroizing::new(line.to_owned()), &from)
    }

    /// The passphrase from `file` when given, else from [`PASSPHRASE_ENV`] when set, else none.
    ///
    /// # Errors
    /// [`KeyError::BadPassphrase`] for an unreadable file or an empty passphrase.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Option<Self>, KeyError> {
        if let Some(file) = file {
            return Self::from_file(file).map(Some);
        }
        match std::env::var(PASSPHRASE_ENV) {
            Ok(v) => Self::checked(Zeroizing::new(v), PASSPHRASE_ENV).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

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

/// Create `dir` (and missing parents) and make it mode 0700, whatever the umask.
///
/// # Errors
/// The I/O error.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Generate a new Ed25519 key at `path` (encrypted when `passphrase` is given), mode 0600 in a
/// directory of mode 0700; refuses to overwrite an existing file.
///
/// # Errors
/// [`KeyError::Create`] if the file exists or cannot be written, [`KeyError::Encrypt`].
pub fn generate(path: &Path, passphrase: Option<&Passphrase>) -> Result<(), KeyError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| KeyError::Generate)?;
    let bytes = match passphrase {
        None => Zeroizing::new(doc.as_ref().to_vec()),
        Some(p) => Zeroizing::new(encrypt_key(path, doc.as_ref(), p)?.as_bytes().to_vec()),
    };
    let create = |source| KeyError::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(create)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(create)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(create)?;
    }
    f.write_all(&bytes).map_err(create)?;
    f.sync_all().map_err(create)
}

/// `der` (a plain PKCS#8 key) encrypted with `passphrase` as `ENCRYPTED PRIVATE KEY` PEM in
/// the form OpenSSL 3.0 reads (PKCS#8 version 1: the public key is derived from the private
/// one when loaded); `what` names the key in errors.
///
/// # Errors
/// [`KeyError::Encrypt`] when `der` is not PKCS#8, [`KeyError::Generate`].
pub fn encrypt_key(
    what: &Path,
    der: &[u8],
    passphrase: &Passphrase,
) -> Result<Zeroizing<String>, KeyError> {
    let fail = |reason: String| KeyError::Encrypt {
        path: what.to_owned(),
        reason,
    };
    let mut info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| fail(e.to_string()))?;
    info.public_key = None;
    let v1 = Zeroizing::new(pkcs8::der::Encode::to_der(&info).map_err(|e| fail(e.to_string()))?);
    encrypt_bytes(what, &v1, passphrase)
}

/// The one byte-encryption helper of the product: `plain` encrypted with `passphrase` as
/// `ENCRYPTED PRIVATE KEY` PEM (PKCS#8 `EncryptedPrivateKeyInfo`: PBES2 with scrypt
/// (log2 N = 14, r = 8, p = 2) and AES-256-CBC, fresh random salt and IV). Key files are
/// written with it, and so are the secrets the server keeps in its database (the private
/// CA's key of replicas, `docs/operating.md#shared-repository-and-one-writer`); when `plain`
/// is a PKCS#8 key, the result is a standard encrypted key file (`openssl pkey` reads it).
/// [`decrypt_bytes`] reverses it. `what` names the secret in errors.
///
/// # Errors
/// [`KeyError::Encrypt`], [`KeyError::Generate`].
pub fn encrypt_bytes(
    what: &Path,
    plain: &[u8],
    passphrase: &Passphrase,
) -> Result<Zeroizing<String>, KeyError> {
    use aws_lc_rs::rand::SecureRandom;
    let fail = |reason: String| KeyError::Encrypt {
        path: what.to_owned(),
        reason,
    };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let (mut salt, mut iv) = ([0u8; 16], [0u8; 16]);
    rng.fill(&mut salt).map_err(|_| KeyError::Generate)?;
    rng.fill(&mut iv).map_err(|_| KeyError::Generate)?;
    // 16 MiB: OpenSSL refuses scrypt parameters needing more than 32 MiB by default, and
    // log2 N = 15 with r = 8 needs just over that; p = 2 keeps the work of log2 N = 15.
    let cost = pkcs8::pkcs5::scrypt::Params::new(14, 8, 2, 32).map_err(|e| fail(e.to_string()))?;
    let params =
        pbes2::Parameters::scrypt_aes256cbc(cost, &salt, &iv).map_err(|e| fail(e.to_string()))?;
    let encrypted_data = params
        .encrypt(passphrase.bytes(), plain)
        .map_err(|e| fail(e.to_string()))?;
    let doc = SecretDocument::try_from(EncryptedPrivateKeyInfo {
        encryption_algorithm: params.into(),
        encrypted_data: &encrypted_data,
    })
    .map_err(|e| fail(e.to_string()))?;
    let pem = doc
        .to_pem(ENCRYPTED_LABEL, LineEnding::LF)
        .map_err(|e| fail(e.to_string()))?;
    Ok(pem)
}

/// The bytes [`encrypt_bytes`] encrypted, decrypted with `passphrase`; `Ok(None)` when `bytes`
/// are not encrypted (PEM other than `ENCRYPTED PRIVATE KEY`, or anything that is not an
/// `EncryptedPrivateKeyInfo`). A wrong passphrase is caught by the cipher's padding nearly
/// always, not always: the caller checks that the result is what it expects (a key parses)
/// and reports [`KeyError::WrongPassphrase`] when not. `what` names the secret in errors.
///
/// # Errors
/// [`KeyError::PassphraseNeeded`], [`KeyError::WrongPassphrase`], [`KeyError::Parse`].
pub fn decrypt_bytes(
    what: &Path,
    bytes: &[u8],
    passphrase: Option<&Passphrase>,
) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
    let Some(enc) = encrypted_der(what, bytes)? else {
        return Ok(None);
    };
    let Some(passphrase) = passphrase else {
        return Err(KeyError::PassphraseNeeded {
            path: what.to_owned(),
        });
    };
    let info = EncryptedPrivateKeyInfo::try_from(enc.as_slice()).map_err(|e| KeyError::Parse {
        path: what.to_owned(),
        reason: e.to_string(),
    })?;
    let plain = info
        .encryption_algorithm
        .decrypt(passphrase.bytes(), info.encrypted_data)
        .map_err(|_| KeyError::WrongPassphrase {
            path: what.to_owned(),
        })?;
    Ok(Some(Zeroizing::new(plain)))
}

/// Whether the key file at `path` is encrypted.
///
/// # Errors
/// [`KeyError::Read`].
pub fn is_encrypted(path: &Path) -> Result<bool, KeyError> {
    let bytes = read(path)?;
    Ok(encrypted_der(path, &bytes)?.is_some())
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })
}

/// The DER of an encrypted key (`None` for a plain one, whose DER is then `bytes` or its PEM
/// contents, see [`load`]).
fn encrypted_der(path: &Path, bytes: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
    if bytes.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(bytes).map_err(|e| KeyError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let (label, doc) = SecretDocument::from_pem(text).map_err(|e| KeyError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        return Ok((label == ENCRYPTED_LABEL).then(|| Zeroizing::new(doc.as_bytes().to_vec())));
    }
    Ok(EncryptedPrivateKeyInfo::try_from(bytes)
        .is_ok()
        .then(|| Zeroizing::new(bytes.to_vec())))
}

/// The plain PKCS#8 DER of the key file at `path`, decrypted with `passphrase` if encrypted.
///
/// # Errors
/// [`KeyError::Read`], [`KeyError::Parse`], [`KeyError::PassphraseNeeded`],
/// [`KeyError::WrongPassphrase`].
pub fn load(path: &Path, passphrase: Option<&Passphrase>) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let bytes = read(path)?;
    let der = if let Some(plain) = decrypt_bytes(path, &bytes, passphrase)? {
        // CBC padding can check out by chance with a wrong passphrase; the result then is not
        // a key, which is the same mistake.
        tough::sign::parse_keypair(&plain).map_err(|_| KeyError::WrongPassphrase {
            path: path.to_owned(),
        })?;
        plain
    } else if bytes.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(&bytes).unwrap_or_default();
        let (label, doc) = SecretDocument::from_pem(text).map_err(|e| KeyError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if label != PLAIN_LABEL {
            return Err(KeyError::Parse {
                path: path.to_owned(),
                reason: format!("unexpected PEM label `{label}`"),
            });
        }
        Zeroizing::new(doc.as_bytes().to_vec())
    } else {
        bytes
    };
    tough::sign::parse_keypair(&der).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(der)
}

/// The public TUF key for the private key file at `path`.
///
/// # Errors
/// What [`load`] returns.
pub fn public_key(path: &Path, passphrase: Option<&Passphrase>) -> Result<Key, KeyError> {
    let der = load(path, passphrase)?;
    let pair = tough::sign::parse_keypair(&der).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(tough::sign::Sign::tuf_key(&pair))
}

#[cfg(test)]
mod tests {
    use super::*;

    // An encrypted key is PEM `ENCRYPTED PRIVATE KEY`, mode 0600, and loads back to the same
    // public key with its passphrase; without one, or with a wrong one, it is a typed error.
    #[test]
    fn encrypted_key_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("k/timestamp.pk8");
        let pass = Passphrase::new("correct horse").unwrap();
        generate(&path, Some(&pass)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{text}"
        );
        assert!(is_encrypted(&path).unwrap());
        let key = public_key(&path, Some(&pass)).unwrap();
        let again = public_key(&path, Some(&pass)).unwrap();
        assert_eq!(key, again);
        let err = load(&path, Some(&Passphrase::new("wrong horse").unwrap())).unwrap_err();
        assert_eq!(err.code(), "key.wrong_passphrase");
        assert_eq!(
            load(&path, None).unwrap_err().code(),
            "key.passphrase_needed"
        );
        assert_eq!(
            Passphrase::new("").unwrap_err().code(),
            "key.bad_passphrase"
        );
        // A plain key still loads, with or without a passphrase.
        let plain = tmp.path().join("k/plain.pk8");
        generate(&plain, None).unwrap();
        assert!(!is_encrypted(&plain).unwrap());
        load(&plain, Some(&pass)).unwrap();
        load(&plain, None).unwrap();
    }

    // The byte helper: encrypted bytes name no plain byte of the secret, decrypt back with the
    // passphrase, need one, refuse a wrong one; plain bytes are `None`. A PKCS#8 key
    // encrypted with it is a key file `load` opens.
    #[test]
    fn encrypted_bytes_round_trip() {
        let what = Path::new("database row tls/ca.key");
        let pass = Passphrase::new("correct horse").unwrap();
        let secret = b"secret bytes of a CA key\n".repeat(4);
        let sealed = encrypt_bytes(what, &secret, &pass).unwrap();
        assert!(sealed.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        assert!(!sealed.contains("secret bytes"), "{}", *sealed);
        let back = decrypt_bytes(what, sealed.as_bytes(), Some(&pass)).unwrap();
        assert_eq!(back.as_deref().map(Vec::as_slice), Some(secret.as_slice()));
        let err = decrypt_bytes(what, sealed.as_bytes(), None).unwrap_err();
        assert_eq!(err.code(), "key.passphrase_needed");
        assert!(err.to_string().contains("tls/ca.key"), "{err}");
        let wrong = Passphrase::new("wrong horse").unwrap();
        if let Ok(plain) = decrypt_bytes(what, sealed.as_bytes(), Some(&wrong)) {
            // CBC padding checked out by chance: the result is not the secret.
            assert_ne!(plain.as_deref().map(Vec::as_slice), Some(secret.as_slice()));
        }
        assert!(decrypt_bytes(what, &secret, Some(&pass)).unwrap().is_none());
        // A key encrypted by the helper opens as a key file.
        let tmp = tempfile::tempdir().unwrap();
        let plain_key = tmp.path().join("plain.pk8");
        generate(&plain_key, None).unwrap();
        let der = std::fs::read(&plain_key).unwrap();
        let file = tmp.path().join("sealed.pk8");
        std::fs::write(&file, encrypt_key(&file, &der, &pass).unwrap().as_bytes()).unwrap();
        assert_eq!(
            public_key(&file, Some(&pass)).unwrap(),
            public_key(&plain_key, None).unwrap()
        );
    }
}
