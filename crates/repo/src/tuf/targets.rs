//! Targets roles, top-level and delegated: listed in the (final) snapshot, the length and
//! hashes it lists when fetched, signed by a threshold of the delegator's keys for the role
//! (root's targets keys, or the delegating role's delegation), exactly the version the snapshot
//! lists, not expired (`docs/architecture.md#trust-model`).

use super::envelope::{check_expiry, delegation_keys, AsTargets, Envelope};
use super::hashes::check_length_and_hashes;
use super::schema::TargetsRole;
use super::set::{TrustedSet, Verified};
use super::TufError;

impl TrustedSet {
    /// Accept `raw` as targets role `name` delegated by `delegator` (`"root"` for the
    /// top-level `targets`); `stored` when it comes from the client's own store.
    ///
    /// # Errors
    /// Expired or mismatched snapshot, not listed, hash mismatch, malformed, bad signature,
    /// version mismatch, expired.
    pub(crate) fn update_targets(
        &mut self,
        name: &str,
        delegator: &str,
        raw: &[u8],
        stored: bool,
    ) -> Result<(), TufError> {
        let listed = self
            .final_snapshot()?
            .meta
            .get(&format!("{name}.json"))
            .cloned()
            .ok_or_else(|| TufError::NotListed {
                role: name.to_owned(),
                listed_by: "snapshot".to_owned(),
            })?;
        if !stored {
            check_length_and_hashes(name, raw, listed.length, listed.hashes.as_ref())?;
        }
        let env = Envelope::parse(raw, name, "targets")?;
        if delegator == "root" {
            env.verify::<AsTargets>(&self.root.meta)?;
        } else {
            let parent = self
                .targets
                .get(delegator)
                .and_then(|t| t.meta.delegations.as_ref())
                .and_then(|d| {
                    let role = d.roles.iter().find(|r| r.name == name)?;
                    Some(delegation_keys(&d.keys, &role.keyids, role.threshold))
                })
                .ok_or_else(|| TufError::NotListed {
                    role: name.to_owned(),
                    listed_by: format!("the delegations of {delegator}"),
                })?;
            env.verify::<AsTargets>(&parent)?;
        }
        let new: TargetsRole = env.typed()?;
        if new.version != listed.version {
            return Err(TufError::VersionMismatch {
                role: name.to_owned(),
                expected: listed.version.get(),
                got: new.version.get(),
            });
        }
        check_expiry(name, new.expires, self.now)?;
        self.delegators
            .insert(name.to_owned(), delegator.to_owned());
        self.targets.insert(
            name.to_owned(),
            Verified {
                meta: new,
                raw: raw.to_vec(),
            },
        );
        Ok(())
    }

    /// Whether targets role `name` is trusted as delegated by `delegator`.
    pub(crate) fn has_targets_via(&self, name: &str, delegator: &str) -> bool {
        self.delegators.get(name).is_some_and(|d| d == delegator)
    }
}
