//! Key files: private directories (mode 0700) and new keys (mode 0600, encrypted when a
//! passphrase is given), reading a key file, plain or encrypted, back to its PKCS#8 DER and
//! its public TUF key.

use std::io::Write;
use std::path::Path;

use pkcs8::der::SecretDocument;
use tough::schema::key::Key;
use zeroize::Zeroizing;

use super::encryption::encrypted_der;
use super::{decrypt_bytes, encrypt_key, KeyError, Passphrase, PLAIN_LABEL};

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
