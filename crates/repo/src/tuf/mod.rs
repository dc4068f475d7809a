//! The TUF client workflow of the specification's "Detailed client workflow", written here
//! because no maintained Rust crate implements it conformantly (`tough`'s client loads every
//! delegated role eagerly, requires sha256 and re-fetches unchanged metadata; `tuf`/rust-tuf is
//! unmaintained). `tough` still provides the root and delegation schema, the key types and the
//! threshold signature check (`Root::verify_role`). See `docs/architecture.md#trust-model`.
//!
//! - [`Updater::refresh`]: root rotation (`N+1.root.json` until none, each signed by the old
//!   and the new root keys), timestamp (rollback of itself and of the snapshot it lists; an
//!   unchanged one ends the fetching), snapshot (length/hashes from the timestamp, no role
//!   missing or older than trusted, version listed by the timestamp), top-level targets.
//! - [`Updater::find_target`]: the pre-order depth-first search through delegations, loading
//!   roles lazily.
//! - Every role is checked for expiry against the time the update runs at; every download is
//!   bounded by its signed length or a per-role [`Limits`] value.

mod delegation;
mod envelope;
mod error;
mod hashes;
mod root;
mod schema;
mod set;
mod snapshot;
mod targets;
#[cfg(test)]
mod tests;
mod timestamp;
mod updater;

pub(crate) use delegation::is_delegated as is_delegated_path;
pub use delegation::RefusedRole;
pub use error::TufError;
pub use hashes::{check_length_and_hashes, MultiHasher};
pub use schema::{MetaFile, SnapshotRole, TargetFile, TargetsRole, TimestampRole};
pub use set::{TrustedSet, Verified};
pub use timestamp::TimestampUpdate;
pub use updater::{MetaStore, Updater};

/// Download limits for metadata whose length is not signed, and the workflow's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one root file.
    pub root: u64,
    /// Bytes of `timestamp.json`.
    pub timestamp: u64,
    /// Bytes of a snapshot whose length the timestamp does not list.
    pub snapshot: u64,
    /// Bytes of a targets role whose length the snapshot does not list.
    pub targets: u64,
    /// Root versions fetched in one update at most.
    pub max_root_rotations: u64,
    /// Targets roles visited by one target search at most.
    pub max_delegations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            root: 512 * 1024,
            timestamp: 16 * 1024,
            snapshot: 10 << 20,
            targets: 10 << 20,
            max_root_rotations: 256,
            max_delegations: 32,
        }
    }
}

/// A role name as one URL path segment and one file name: everything but `A-Za-z0-9_.-~`
/// percent-encoded (Python's `urllib.parse.quote(name, safe="")`), so no role name can name
/// another directory.
pub fn quote_role(name: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'~' | b'.') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Targets metadata `raw` of `role` as received, for the publisher's checks of a delegated
/// role (`crate::delegate`).
pub(crate) fn parse_targets(raw: &[u8], role: &str) -> Result<envelope::Envelope, TufError> {
    envelope::Envelope::parse(raw, role, "targets")
}

/// The key holder a delegation makes for its role: `keys` with `keyids` and `threshold`.
pub(crate) fn delegation_root(
    keys: &std::collections::HashMap<
        tough::schema::decoded::Decoded<tough::schema::decoded::Hex>,
        tough::schema::key::Key,
    >,
    keyids: &[tough::schema::decoded::Decoded<tough::schema::decoded::Hex>],
    threshold: std::num::NonZeroU64,
) -> tough::schema::Root {
    envelope::delegation_keys(keys, keyids, threshold)
}

/// The key holder of a role signed by `key` (ID `id`) alone.
pub(crate) fn delegation_keys_for(
    key: &tough::schema::key::Key,
    id: &tough::schema::decoded::Decoded<tough::schema::decoded::Hex>,
) -> tough::schema::Root {
    let keys = std::collections::HashMap::from([(id.clone(), key.clone())]);
    envelope::delegation_keys(&keys, std::slice::from_ref(id), std::num::NonZeroU64::MIN)
}
