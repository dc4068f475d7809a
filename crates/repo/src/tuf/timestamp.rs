//! Timestamp: signed by root's timestamp keys, never older than the trusted timestamp, never
//! listing an older snapshot; one with the trusted version is ignored (nothing changed, so
//! snapshot and targets are not fetched again) (`docs/architecture.md#trust-model`).

use super::envelope::{check_expiry, AsTimestamp, Envelope};
use super::schema::TimestampRole;
use super::set::{TrustedSet, Verified};
use super::TufError;

/// What a timestamp update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUpdate {
    /// A newer timestamp is now trusted.
    Updated,
    /// The timestamp has the trusted version; the trusted one is kept.
    Unchanged,
}

impl TrustedSet {
    /// Accept `raw` as the timestamp. A newer, correctly signed timestamp that has expired is
    /// still kept as trusted (its versions keep protecting against rollback), and the update
    /// then fails as expired.
    ///
    /// # Errors
    /// Malformed, bad signature, rollback (of the timestamp or of the snapshot it lists), expired.
    pub(crate) fn update_timestamp(&mut self, raw: &[u8]) -> Result<TimestampUpdate, TufError> {
        let env = Envelope::parse(raw, "timestamp", "timestamp")?;
        env.verify::<AsTimestamp>(&self.root.meta)?;
        let new: TimestampRole = env.typed()?;
        let Some(new_snapshot) = new.snapshot_meta() else {
            return Err(TufError::malformed(
                "timestamp",
                "meta lists no snapshot.json",
            ));
        };
        if let Some(old) = &self.timestamp {
            let (have, got) = (old.meta.version.get(), new.version.get());
            if got < have {
                return Err(TufError::rollback(
                    "timestamp",
                    format!("version {got} is older than the trusted {have}"),
                ));
            }
            if got == have {
                return Ok(TimestampUpdate::Unchanged);
            }
            if let Some(old_snapshot) = old.meta.snapshot_meta() {
                if new_snapshot.version < old_snapshot.version {
                    return Err(TufError::rollback(
                        "snapshot",
                        format!(
                            "timestamp lists snapshot version {}, older than the trusted {}",
                            new_snapshot.version, old_snapshot.version
                        ),
                    ));
                }
            }
        }
        let expires = new.expires;
        self.timestamp = Some(Verified {
            meta: new,
            raw: raw.to_vec(),
        });
        check_expiry("timestamp", expires, self.now)?;
        Ok(TimestampUpdate::Updated)
    }

    /// The trusted timestamp, which must not have expired.
    ///
    /// # Errors
    /// [`TufError::Expired`], or [`TufError::NotListed`] before a timestamp is trusted.
    pub(crate) fn final_timestamp(&self) -> Result<&TimestampRole, TufError> {
        let ts = self.timestamp.as_ref().ok_or_else(|| TufError::NotListed {
            role: "timestamp".to_owned(),
            listed_by: "the trusted metadata".to_owned(),
        })?;
        check_expiry("timestamp", ts.meta.expires, self.now)?;
        Ok(&ts.meta)
    }
}
