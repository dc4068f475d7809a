//! The trusted metadata set: what the client trusts right now, each role with the exact bytes it
//! was verified from. Only the `update_*` steps of the workflow (root.rs, timestamp.rs,
//! snapshot.rs, targets.rs) change it, each after its checks, called by the `Updater` in the
//! workflow's order (`docs/architecture.md#trust-model`).

use std::collections::BTreeMap;

use tough::schema::Root;

use super::schema::{SnapshotRole, TargetFile, TargetsRole, TimestampRole};

/// A role's typed view and the bytes it was verified from.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    /// The typed view.
    pub meta: T,
    /// The bytes as received and verified.
    pub raw: Vec<u8>,
}

/// The metadata the client trusts.
#[derive(Debug, Clone)]
pub struct TrustedSet {
    /// The current root.
    pub(crate) root: Verified<Root>,
    /// Every root accepted by this update's rotation, oldest first (for mirrors).
    pub(crate) new_roots: Vec<Verified<Root>>,
    pub(crate) timestamp: Option<Verified<TimestampRole>>,
    pub(crate) snapshot: Option<Verified<SnapshotRole>>,
    /// `targets` and every delegated role loaded so far, by role name.
    pub(crate) targets: BTreeMap<String, Verified<TargetsRole>>,
    /// The delegator each loaded targets role was verified through.
    pub(crate) delegators: BTreeMap<String, String>,
    /// The time expiry is checked at.
    pub(crate) now: jiff::Timestamp,
    /// Delegated roles that could not be loaded or verified, with why (none of their
    /// targets is trusted).
    pub(crate) refused_delegations: Vec<super::RefusedRole>,
}

impl TrustedSet {
    /// The trusted root.
    pub fn root(&self) -> &Verified<Root> {
        &self.root
    }

    /// Roots accepted by this update's rotation, oldest first.
    pub fn new_roots(&self) -> &[Verified<Root>] {
        &self.new_roots
    }

    /// The trusted timestamp, once loaded.
    pub fn timestamp(&self) -> Option<&Verified<TimestampRole>> {
        self.timestamp.as_ref()
    }

    /// The trusted snapshot, once loaded.
    pub fn snapshot(&self) -> Option<&Verified<SnapshotRole>> {
        self.snapshot.as_ref()
    }

    /// The trusted top-level targets role, once loaded.
    pub fn top_targets(&self) -> Option<&Verified<TargetsRole>> {
        self.targets.get("targets")
    }

    /// A trusted targets role (top-level or delegated) by name, once loaded.
    pub fn targets_role(&self, name: &str) -> Option<&Verified<TargetsRole>> {
        self.targets.get(name)
    }

    /// The top-level targets role's files (empty before it is loaded).
    pub fn top_target_files(&self) -> impl Iterator<Item = (&String, &TargetFile)> {
        self.top_targets()
            .into_iter()
            .flat_map(|t| t.meta.targets.iter())
    }

    /// The time expiry is checked at.
    pub fn now(&self) -> jiff::Timestamp {
        self.now
    }

    /// Every delegated targets role loaded, by name, with the role that delegated to it.
    pub fn delegated_roles(&self) -> impl Iterator<Item = (&String, &Verified<TargetsRole>)> {
        self.targets.iter().filter(|(name, _)| *name != "targets")
    }

    /// Delegated roles that could not be loaded or verified, with why.
    pub fn refused_delegations(&self) -> &[super::RefusedRole] {
        &self.refused_delegations
    }
}
