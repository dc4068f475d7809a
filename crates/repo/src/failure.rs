//! Why a source was given up: one classification of tough's errors, our transport's failures
//! and our own checks, each with a stable code.

use crate::save::SaveError;
use crate::transport::{find_source_failure, SourceFailure};

/// Why one source was given up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureReason {
    /// The transport failed (not found, timeout, too slow, too large, connection).
    #[error(transparent)]
    Transport(SourceFailure),
    /// Metadata older than what the client already trusts (rollback or a stale relay).
    #[error("rollback refused: {0}")]
    Rollback(String),
    /// Metadata has expired (freeze attack or a stale relay).
    #[error("expired metadata: {0}")]
    Expired(String),
    /// A signature did not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Metadata or a file did not match its signed hash or length.
    #[error("hash mismatch: {0}")]
    HashMismatch(String),
    /// Metadata was longer than allowed.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The repository lists nothing for this `CATEGORY/NAME`.
    #[error("no version of {0} in this repository")]
    NoSuchContent(String),
    /// A target name would escape the destination directory.
    #[error("unsafe target name: {0}")]
    UnsafeName(String),
    /// Local I/O failed.
    #[error("local error: {0}")]
    Local(String),
    /// Anything else the TUF client refused.
    #[error("{0}")]
    Other(String),
}

impl FailureReason {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            FailureReason::Transport(f) => f.code(),
            FailureReason::Rollback(_) => "tuf.rollback",
            FailureReason::Expired(_) => "tuf.expired",
            FailureReason::BadSignature(_) => "tuf.bad_signature",
            FailureReason::HashMismatch(_) => "tuf.hash_mismatch",
            FailureReason::TooLarge(_) => "tuf.too_large",
            FailureReason::NoSuchContent(_) => "repo.no_such_content",
            FailureReason::UnsafeName(_) => "repo.unsafe_name",
            FailureReason::Local(_) => "local.io",
            FailureReason::Other(_) => "tuf.other",
        }
    }
}

/// Classify a tough error (looking through its whole source chain).
pub fn classify(err: &tough::error::Error) -> FailureReason {
    if let Some(f) = find_source_failure(err) {
        return FailureReason::Transport(f);
    }
    let msg = err.to_string();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(te) = e.downcast_ref::<tough::error::Error>() {
            if let Some(r) = classify_one(te, &msg) {
                return r;
            }
        }
        cur = e.source();
    }
    FailureReason::Other(msg)
}

fn classify_one(err: &tough::error::Error, msg: &str) -> Option<FailureReason> {
    use tough::error::Error as E;
    let msg = msg.to_owned();
    Some(match err {
        E::ExpiredMetadata { .. } => FailureReason::Expired(msg),
        E::OlderMetadata { .. }
        | E::OlderSnapshotInTimestamp { .. }
        | E::SnapshotRoleRollback { .. }
        | E::SnapshotRoleMissing { .. }
        | E::SystemTimeSteppedBackward { .. } => FailureReason::Rollback(msg),
        E::VerifyMetadata { .. }
        | E::VerifyTrustedMetadata { .. }
        | E::VerifyRoleMetadata { .. } => FailureReason::BadSignature(msg),
        E::HashMismatch { .. } | E::VersionMismatch { .. } | E::ParseMetadata { .. } => {
            FailureReason::HashMismatch(msg)
        }
        E::MaxSizeExceeded { .. } => FailureReason::TooLarge(msg),
        _ => return None,
    })
}

impl From<SaveError> for FailureReason {
    fn from(e: SaveError) -> Self {
        match e {
            SaveError::Source(f) => FailureReason::Transport(f),
            SaveError::TooLong { .. } => FailureReason::TooLarge(e.to_string()),
            SaveError::HashMismatch { .. } => FailureReason::HashMismatch(e.to_string()),
            SaveError::UnsafeName(n) => FailureReason::UnsafeName(n),
            SaveError::Io { .. } => FailureReason::Local(e.to_string()),
            SaveError::Transport(s) => FailureReason::Other(s),
        }
    }
}
