//! Why the TUF client workflow refused metadata or a target, one variant per kind of refusal,
//! each with a stable code (`docs/architecture.md#trust-model`).

use crate::failure::FailureReason;
use crate::transport::SourceFailure;

/// Why a step of the client workflow failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TufError {
    /// The transport failed (not found, timeout, too slow, connection).
    #[error(transparent)]
    Transport(SourceFailure),
    /// A file was longer than its signed length or the download limit for its role.
    #[error("{file} is longer than {limit} bytes")]
    TooLarge {
        /// The file (role or target name).
        file: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// Metadata is not JSON of the expected shape.
    #[error("{role} metadata is malformed: {reason}")]
    Malformed {
        /// The role.
        role: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Fewer valid signatures than the threshold.
    #[error("{role} metadata is not signed by a threshold of its keys: {reason}")]
    BadSignature {
        /// The role.
        role: String,
        /// tough's verification message.
        reason: String,
    },
    /// Metadata older than what is trusted (a rollback or a stale source).
    #[error("rollback of {role}: {reason}")]
    Rollback {
        /// The role.
        role: String,
        /// What went back.
        reason: String,
    },
    /// A version other than the one the referring metadata lists (mix-and-match).
    #[error("{role} has version {got}, {expected} was expected")]
    VersionMismatch {
        /// The role.
        role: String,
        /// The version listed by the referring metadata.
        expected: u64,
        /// The version received.
        got: u64,
    },
    /// Bytes that do not match their signed length or hashes.
    #[error("{file} does not match its signed length or hashes: {reason}")]
    HashMismatch {
        /// The file (role or target name).
        file: String,
        /// What did not match.
        reason: String,
    },
    /// Metadata expired at the trusted time.
    #[error("{role} metadata expired at {expires}, the trusted time is {now}")]
    Expired {
        /// The role.
        role: String,
        /// Its expiry.
        expires: jiff::Timestamp,
        /// The time it was checked at.
        now: jiff::Timestamp,
    },
    /// A role the workflow needs is not listed by the metadata that should list it.
    #[error("{role} is not listed in {listed_by}")]
    NotListed {
        /// The role.
        role: String,
        /// The metadata that should list it.
        listed_by: String,
    },
    /// Writing the trusted metadata locally failed.
    #[error("storing trusted {role}: {reason}")]
    Store {
        /// The role.
        role: String,
        /// The I/O error.
        reason: String,
    },
}

impl TufError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TufError::Transport(f) => f.code(),
            TufError::TooLarge { .. } => "tuf.too_large",
            TufError::Malformed { .. } => "tuf.malformed",
            TufError::BadSignature { .. } => "tuf.bad_signature",
            TufError::Rollback { .. } => "tuf.rollback",
            TufError::VersionMismatch { .. } => "tuf.version_mismatch",
            TufError::HashMismatch { .. } => "tuf.hash_mismatch",
            TufError::Expired { .. } => "tuf.expired",
            TufError::NotListed { .. } => "tuf.not_listed",
            TufError::Store { .. } => "tuf.store",
        }
    }

    /// Shorthand for [`TufError::Malformed`].
    pub(crate) fn malformed(role: &str, reason: impl std::fmt::Display) -> Self {
        TufError::Malformed {
            role: role.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`TufError::Rollback`].
    pub(crate) fn rollback(role: &str, reason: impl std::fmt::Display) -> Self {
        TufError::Rollback {
            role: role.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl From<TufError> for FailureReason {
    /// The source-level classification: a version other than the listed one counts as a hash
    /// mismatch (the bytes are not the ones the referring metadata names).
    fn from(e: TufError) -> Self {
        let msg = e.to_string();
        match e {
            TufError::Transport(f) => FailureReason::Transport(f),
            TufError::TooLarge { .. } => FailureReason::TooLarge(msg),
            TufError::BadSignature { .. } => FailureReason::BadSignature(msg),
            TufError::Rollback { .. } => FailureReason::Rollback(msg),
            TufError::VersionMismatch { .. } | TufError::HashMismatch { .. } => {
                FailureReason::HashMismatch(msg)
            }
            TufError::Expired { .. } => FailureReason::Expired(msg),
            TufError::Store { .. } => FailureReason::Local(msg),
            TufError::Malformed { .. } | TufError::NotListed { .. } => FailureReason::Other(msg),
        }
    }
}
