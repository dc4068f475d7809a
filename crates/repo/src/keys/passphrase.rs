//! The passphrase that encrypts key files: from the caller, a file, or
//! [`PASSPHRASE_ENV`]; wiped when dropped, never printed.

use std::path::Path;

use zeroize::Zeroizing;

use super::{KeyError, PASSPHRASE_ENV};

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

    pub(super) fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
