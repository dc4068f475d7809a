//! Why a self-update step failed: typed errors with stable codes.

use std::path::{Path, PathBuf};

/// Why a self-update step failed.
#[derive(Debug, thiserror::Error)]
pub enum SelfUpdateError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The installed new binary changed since the trial began.
    #[error("{path} changed since the trial began (SHA-256 {found}, expected {expected})")]
    Changed {
        /// The binary.
        path: PathBuf,
        /// What it hashes to now.
        found: String,
        /// What it hashed to at the start of the trial.
        expected: String,
    },
    /// The marker or the refusal list could not be written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The installer could not say what is installed.
    #[error(transparent)]
    Install(#[from] crate::install::InstallError),
}

impl SelfUpdateError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SelfUpdateError::Io { .. } => "selfupdate.io",
            SelfUpdateError::Changed { .. } => "selfupdate.changed",
            SelfUpdateError::State(e) => e.code(),
            SelfUpdateError::Install(e) => e.code(),
        }
    }
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SelfUpdateError + 'a {
    move |source| SelfUpdateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}
