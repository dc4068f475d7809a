//! What an agent leaves in its data directory: partial downloads waiting to be resumed, and
//! the start-up clean-up of what a killed agent left (`docs/operating.md#crash-debris`).

use std::path::PathBuf;

use cascade_core::TrustDomain;

use crate::state::DataDir;

/// Where broken downloads wait to be resumed, by SHA-256 (`DATA/partial/.partial-SHA256`):
/// outside the stages, which a failed step or a restart removes, so the next source (any
/// source: the hash decides) is asked only for the rest (`docs/operating.md#resumable-downloads`).
pub fn partial_dir(data: &DataDir) -> PathBuf {
    data.root().join("partial")
}

/// A partial download untouched this long is given up (removed at start-up).
pub const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Start-up clean-up of what a killed agent left (`docs/operating.md#crash-debris`): the
/// temporary files of atomic writes (`.tmp-*`) anywhere in the data directory, and partial
/// downloads older than [`PARTIAL_MAX_AGE`]. Call it holding the data directory's lock. Stages
/// of interrupted installs are removed by each cycle, the relay's temporary files by the relay.
/// Returns how many files were removed.
pub fn clean_debris(data: &DataDir, now: std::time::SystemTime) -> usize {
    // The trust scratch copies of loads a kill interrupted (`.load-*`): nothing reads them, and
    // under the data directory's lock no load of ours is running yet.
    let scratch: usize = [TrustDomain::Upstream, TrustDomain::Site]
        .into_iter()
        .map(|d| cascade_repo::fsutil::remove_dirs_with_prefix(&data.trust(d), ".load-"))
        .sum();
    let removed = scratch
        + cascade_repo::fsutil::remove_debris(data.root(), &[".tmp-"])
        + cascade_repo::fsutil::remove_older_than(&partial_dir(data), PARTIAL_MAX_AGE, now);
    if removed > 0 {
        tracing::info!(removed, "removed the temporary files of a killed agent");
    }
    removed
}
