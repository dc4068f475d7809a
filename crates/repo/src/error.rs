//! The one error type of publishing operations (init, publish, refresh, prune, renew), with a
//! stable code per variant.

use std::path::PathBuf;

use crate::delta;
use crate::keys::KeyError;
use crate::layout::LayoutError;

/// Errors from publishing operations.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Served metadata could not be parsed.
    #[error("repository file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The directory already holds a repository.
    #[error("{0} already holds a repository")]
    AlreadyInitialized(PathBuf),
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A name, version or file name broke the naming rules.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Signing a role failed (missing key, key not in root).
    #[error("signing {role} failed: {reason}")]
    Sign {
        /// The role.
        role: String,
        /// Why.
        reason: String,
    },
    /// This version was already published.
    #[error("{0} is already published")]
    VersionExists(String),
    /// Nothing to publish.
    #[error("no files given")]
    NoFiles,
    /// Two files with the same name in one version.
    #[error("file name `{0}` given twice")]
    DuplicateFile(String),
    /// Expiry arithmetic overflowed.
    #[error("bad expiry time: {0}")]
    Time(String),
    /// A stored file did not match its signed hash.
    #[error("stored file {0} does not match its signed hash")]
    StoredMismatch(PathBuf),
    /// Delta generation failed.
    #[error(transparent)]
    Delta(#[from] delta::DeltaError),
    /// `prune` was asked to keep no version at all.
    #[error("refusing to prune every version: keep at least 1")]
    KeepZero,
    /// A threshold root asked for no keys, or for more signatures than keys.
    #[error("a root threshold of {threshold} with {keys} root key(s): use 1 <= threshold <= keys")]
    BadThreshold {
        /// How many root keys.
        keys: usize,
        /// How many must sign.
        threshold: usize,
    },
    /// Another process is publishing to this repository right now.
    #[error("{0} is locked by another publisher")]
    Busy(PathBuf),
    /// A delegation that cannot be made as asked (role name, paths, keys or threshold).
    #[error("bad delegation: {0}")]
    BadDelegation(String),
    /// The top-level targets role delegates to no role of this name.
    #[error("the targets role delegates to no role `{0}`: add it with `cascade repo delegate`")]
    NotDelegated(String),
    /// Delegated role metadata the repository refuses: not signed by a threshold of the
    /// delegation's keys, older than the one served, expired, or listing a target outside
    /// the delegated paths.
    #[error("delegated role `{role}` refused: {reason}")]
    DelegatedRefused {
        /// The role.
        role: String,
        /// Why.
        reason: String,
    },
    /// A target the delegated role adds has no uploaded content with its length and hash.
    #[error("no uploaded content for {0}: upload the file before the signed role")]
    DelegatedFileMissing(String),
}

impl PublishError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Io { .. } => "publish.io",
            PublishError::Corrupt { .. } => "publish.corrupt",
            PublishError::AlreadyInitialized(_) => "publish.already_initialized",
            PublishError::Key(e) => e.code(),
            PublishError::Layout(e) => e.code(),
            PublishError::Sign { .. } => "publish.sign",
            PublishError::VersionExists(_) => "publish.version_exists",
            PublishError::NoFiles => "publish.no_files",
            PublishError::DuplicateFile(_) => "publish.duplicate_file",
            PublishError::Time(_) => "publish.time",
            PublishError::StoredMismatch(_) => "publish.stored_mismatch",
            PublishError::Delta(e) => e.code(),
            PublishError::Busy(_) => "publish.busy",
            PublishError::KeepZero => "publish.keep_zero",
            PublishError::BadThreshold { .. } => "publish.bad_threshold",
            PublishError::BadDelegation(_) => "delegation.bad",
            PublishError::NotDelegated(_) => "delegation.unknown_role",
            PublishError::DelegatedRefused { .. } => "delegation.refused",
            PublishError::DelegatedFileMissing(_) => "delegation.file_missing",
        }
    }
}
