//! The private CA's key on disk and in the database of replicas (`docs/operating.md#tls`,
//! `docs/operating.md#shared-repository-and-one-writer`): `DATA/tls/ca.key` encrypted with
//! the key passphrase when one is given (PKCS#8, `cascade_repo::encrypt_bytes`), PEM in clear
//! with a warning otherwise; a replica's CA shared through the database, its key encrypted.

use std::io::Write as _;
use std::path::Path;

use rcgen::KeyPair;

use super::{io, Tls, TlsError, TlsMode, CA_CERT_ROW, CA_KEY_ROW};

/// [`Tls::open`] for a replica sharing `shared` (call it under the start-up lock,
/// [`crate::shared::Writer::Startup`]): with the private CA, the CA stored in the database is
/// written to `DATA/tls/` and used; when none is stored (the first replica), this replica's
/// CA (its own, or created now) is stored, its key encrypted with `passphrase`. A key stored
/// unencrypted by an earlier version is encrypted in place. Other modes are [`Tls::open`].
///
/// # Errors
/// [`TlsError::PassphraseNeeded`] without a passphrase, [`TlsError::WrongPassphrase`] when it
/// does not decrypt the stored key, and [`Tls::open`]'s errors.
pub async fn open_shared(
    data_dir: &Path,
    mode: &TlsMode,
    shared: &crate::shared::Shared,
    passphrase: Option<&cascade_repo::Passphrase>,
) -> Result<Tls, TlsError> {
    if !matches!(mode, TlsMode::PrivateCa { .. }) {
        return Tls::open(data_dir, mode, passphrase);
    }
    let Some(passphrase) = passphrase else {
        return Err(TlsError::PassphraseNeeded);
    };
    let row = Path::new(CA_KEY_ROW);
    let dir = data_dir.join("tls");
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca.key");
    let stored = (
        shared.file(CA_CERT_ROW).await?,
        shared.file(CA_KEY_ROW).await?,
    );
    let (Some(cert), Some(stored_key)) = stored else {
        // The first replica: its CA becomes everyone's.
        let tls = Tls::open(data_dir, mode, Some(passphrase))?;
        let key = tls.ca_key.as_ref().ok_or_else(|| {
            TlsError::BadStoredKey("this replica has no private CA key to store".into())
        })?;
        let sealed = seal_ca_key(row, key, passphrase)?;
        let cert = tls.ca_pem.clone().unwrap_or_default();
        shared
            .put_files(&[
                (CA_CERT_ROW, cert.as_slice()),
                (CA_KEY_ROW, sealed.as_bytes()),
            ])
            .await?;
        tracing::info!("private CA stored for the other replicas (its key encrypted)");
        return Ok(tls);
    };
    let key = match cascade_repo::decrypt_bytes(row, &stored_key, Some(passphrase)) {
        Ok(Some(der)) => {
            // A wrong passphrase whose padding checked out by chance gives no key.
            KeyPair::try_from(der.as_slice()).map_err(|_| TlsError::WrongPassphrase)?
        }
        Ok(None) => {
            // Stored unencrypted by an earlier version: encrypted in place now.
            let text = std::str::from_utf8(&stored_key)
                .map_err(|e| TlsError::BadStoredKey(e.to_string()))?;
            let key = KeyPair::from_pem(text).map_err(|e| TlsError::BadStoredKey(e.to_string()))?;
            let sealed = seal_ca_key(row, &key, passphrase)?;
            shared
                .replace_file(CA_KEY_ROW, &stored_key, sealed.as_bytes())
                .await?;
            tracing::warn!(
                "the private CA's key was stored in the database unencrypted (an earlier \
                 version); it is encrypted with the key passphrase now"
            );
            key
        }
        Err(cascade_repo::KeyError::WrongPassphrase { .. }) => {
            return Err(TlsError::WrongPassphrase)
        }
        Err(e) => return Err(TlsError::BadStoredKey(e.to_string())),
    };
    private_dir(&dir)?;
    // This replica's copy, encrypted with the passphrase as well: rewritten unless it already
    // decrypts to the stored key (a copy in clear from an earlier version is replaced).
    let der = zeroize::Zeroizing::new(key.serialize_der());
    let held = std::fs::read(&key_path)
        .ok()
        .and_then(|b| cascade_repo::decrypt_bytes(&key_path, &b, Some(passphrase)).ok())
        .flatten();
    if held.as_deref().map(Vec::as_slice) != Some(der.as_slice()) {
        write_ca_key(&key_path, &key, Some(passphrase))?;
    }
    if std::fs::read(&cert_path).ok().as_deref() != Some(cert.as_slice()) {
        cascade_repo::fsutil::write_atomic(&cert_path, &cert).map_err(io(&cert_path))?;
    }
    Tls::open(data_dir, mode, Some(passphrase))
}

/// The private CA's key from its file: PKCS#8 encrypted with `passphrase`, or PEM in clear
/// (made without a passphrase, or by an earlier version), which is encrypted in place when a
/// passphrase is given and otherwise comes with a warning.
pub(super) fn read_ca_key(
    path: &Path,
    passphrase: Option<&cascade_repo::Passphrase>,
) -> Result<KeyPair, TlsError> {
    let shown = || path.display().to_string();
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(io(path))?);
    match cascade_repo::decrypt_bytes(path, &bytes, passphrase) {
        // A wrong passphrase whose padding checked out by chance gives no key.
        Ok(Some(der)) => KeyPair::try_from(der.as_slice())
            .map_err(|_| TlsError::KeyFileWrongPassphrase { path: shown() }),
        Ok(None) => {
            let text = std::str::from_utf8(&bytes).map_err(|e| TlsError::BadFile {
                path: shown(),
                what: e.to_string(),
            })?;
            let key = KeyPair::from_pem(text).map_err(|e| TlsError::BadFile {
                path: shown(),
                what: e.to_string(),
            })?;
            if passphrase.is_some() {
                write_ca_key(path, &key, passphrase)?;
                tracing::warn!(
                    path = %path.display(),
                    "the private CA's key file was not encrypted; it is encrypted with the key \
                     passphrase now"
                );
            } else {
                warn_in_clear(path);
            }
            Ok(key)
        }
        Err(cascade_repo::KeyError::PassphraseNeeded { .. }) => {
            Err(TlsError::KeyFileLocked { path: shown() })
        }
        Err(cascade_repo::KeyError::WrongPassphrase { .. }) => {
            Err(TlsError::KeyFileWrongPassphrase { path: shown() })
        }
        Err(e) => Err(TlsError::BadFile {
            path: shown(),
            what: e.to_string(),
        }),
    }
}

/// Writes the private CA's key file (mode `0600`, atomically): encrypted with `passphrase`,
/// else PEM in clear with a warning.
pub(super) fn write_ca_key(
    path: &Path,
    key: &KeyPair,
    passphrase: Option<&cascade_repo::Passphrase>,
) -> Result<(), TlsError> {
    if let Some(p) = passphrase {
        let der = zeroize::Zeroizing::new(key.serialize_der());
        let sealed = cascade_repo::encrypt_bytes(path, &der, p).map_err(|e| TlsError::BadFile {
            path: path.display().to_string(),
            what: e.to_string(),
        })?;
        write_private(path, sealed.as_bytes())
    } else {
        warn_in_clear(path);
        write_private(
            path,
            zeroize::Zeroizing::new(key.serialize_pem()).as_bytes(),
        )
    }
}

fn warn_in_clear(path: &Path) {
    tracing::warn!(
        path = %path.display(),
        "the private CA's key file is not encrypted: start the server with \
         --key-passphrase-file or {} (docs/operating.md#tls)",
        cascade_repo::PASSPHRASE_ENV
    );
}

/// The CA key `key` as the database keeps it: its PKCS#8 encrypted with `passphrase`.
fn seal_ca_key(
    row: &Path,
    key: &KeyPair,
    passphrase: &cascade_repo::Passphrase,
) -> Result<zeroize::Zeroizing<String>, TlsError> {
    let der = zeroize::Zeroizing::new(key.serialize_der());
    cascade_repo::encrypt_bytes(row, &der, passphrase)
        .map_err(|e| TlsError::BadStoredKey(e.to_string()))
}

/// Creates `dir` `0700` whatever the umask.
pub(super) fn private_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically through a temporary file created `0600`.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        open.mode(0o600);
    }
    let mut f = open.open(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}
