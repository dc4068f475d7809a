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
//! [`KeySource`](tough::key_source::KeySource) that holds the decrypted bytes, so a wrong
//! passphrase is a typed [`KeyError::WrongPassphrase`] before any signing starts.
//!
//! The parts: [`passphrase`] (the passphrase, from a file or the environment), [`paths`]
//! (where each role's key files live, and the key sources handed to `tough`), [`files`]
//! (creating, reading and loading key files), [`encryption`] (the encrypted PKCS#8 form,
//! for key files and other secrets).

mod encryption;
mod files;
mod passphrase;
mod paths;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use encryption::{decrypt_bytes, encrypt_bytes, encrypt_key};
pub use files::{create_private_dir, generate, is_encrypted, load, public_key};
pub use passphrase::Passphrase;
pub use paths::{source, KeyPaths};

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
