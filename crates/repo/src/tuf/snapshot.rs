//! Snapshot: the length and hashes the timestamp lists (when fetched, not when read back from
//! the client's own store), root's snapshot keys, no targets role missing or older than in the
//! trusted snapshot, and finally the version the timestamp lists and expiry
//! (`docs/architecture.md#trust-model`).

use super::envelope::{check_expiry, AsSnapshot, Envelope};
use super::hashes::check_length_and_hashes;
use super::schema::SnapshotRole;
use super::set::{TrustedSet, Verified};
use super::TufError;

impl TrustedSet {
    /// Accept `raw` as the snapshot; `stored` when it comes from the client's own store (its
    /// hashes were checked when it was fetched). A snapshot that passes the rollback checks is
    /// kept as trusted even when the final checks (version, expiry) then fail, as the
    /// specification's workflow does.
    ///
    /// # Errors
    /// Expired timestamp, hash mismatch, malformed, bad signature, rollback, version
    /// mismatch, expired.
    pub(crate) fn update_snapshot(&mut self, raw: &[u8], stored: bool) -> Result<(), TufError> {
        let listed = self
            .final_timestamp()?
            .snapshot_meta()
            .cloned()
            .ok_or_else(|| TufError::malformed("timestamp", "meta lists no snapshot.json"))?;
        if !stored {
            check_length_and_hashes("snapshot", raw, listed.length, listed.hashes.as_ref())?;
        }
        let env = Envelope::parse(raw, "snapshot", "snapshot")?;
        env.verify::<AsSnapshot>(&self.root.meta)?;
        let new: SnapshotRole = env.typed()?;
        if let Some(old) = &self.snapshot {
            for (name, was) in &old.meta.meta {
                let Some(now) = new.meta.get(name) else {
                    return Err(TufError::rollback(
                        name.trim_end_matches(".json"),
                        "no longer listed in snapshot",
                    ));
                };
                if now.version < was.version {
                    return Err(TufError::rollback(
                        name.trim_end_matches(".json"),
                        format!(
                            "snapshot lists version {}, older than the trusted {}",
                            now.version, was.version
                        ),
                    ));
                }
            }
        }
        self.snapshot = Some(Verified {
            meta: new,
            raw: raw.to_vec(),
        });
        self.final_snapshot().map(|_| ())
    }

    /// The trusted snapshot, which must not have expired and must have the version the
    /// timestamp lists.
    ///
    /// # Errors
    /// [`TufError::Expired`], [`TufError::VersionMismatch`], or [`TufError::NotListed`]
    /// before a snapshot is trusted.
    pub(crate) fn final_snapshot(&self) -> Result<&SnapshotRole, TufError> {
        let snapshot = self.snapshot.as_ref().ok_or_else(|| TufError::NotListed {
            role: "snapshot".to_owned(),
            listed_by: "the trusted metadata".to_owned(),
        })?;
        check_expiry("snapshot", snapshot.meta.expires, self.now)?;
        let expected = self
            .final_timestamp()?
            .snapshot_meta()
            .map_or(0, |m| m.version.get());
        if snapshot.meta.version.get() != expected {
            return Err(TufError::VersionMismatch {
                role: "snapshot".to_owned(),
                expected,
                got: snapshot.meta.version.get(),
            });
        }
        Ok(&snapshot.meta)
    }
}
