//! The encrypted PKCS#8 form (`ENCRYPTED PRIVATE KEY` PEM: PBES2, scrypt and AES-256-CBC)
//! of key files and of other secrets, and telling an encrypted key from a plain one.

use std::path::Path;

use pkcs8::der::pem::LineEnding;
use pkcs8::der::SecretDocument;
use pkcs8::pkcs5::pbes2;
use pkcs8::EncryptedPrivateKeyInfo;
use zeroize::Zeroizing;

use super::{KeyError, Passphrase, ENCRYPTED_LABEL};

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

/// The DER of an encrypted key (`None` for a plain one, whose DER is then `bytes` or its PEM
/// contents, see [`load`](super::load)).
pub(super) fn encrypted_der(
    path: &Path,
    bytes: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
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
