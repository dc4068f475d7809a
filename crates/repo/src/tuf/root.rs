//! Root: the trusted root the client starts from, and one step of the rotation loop — root
//! `N+1` is accepted only when a threshold of the keys of root `N` *and* of its own keys signed
//! it and its version is exactly `N+1`; expiry is checked on the final root only
//! (`docs/architecture.md#trust-model`).

use tough::schema::Root;

use super::envelope::{check_expiry, AsRoot, Envelope};
use super::set::{TrustedSet, Verified};
use super::TufError;

impl TrustedSet {
    /// A set trusting `raw`, the root stored locally (or shipped with the client), which must
    /// be signed by a threshold of its own root keys. Expiry is checked later, on the root the
    /// rotation ends with.
    ///
    /// # Errors
    /// [`TufError::Malformed`] or [`TufError::BadSignature`].
    pub(crate) fn new(raw: &[u8], now: jiff::Timestamp) -> Result<Self, TufError> {
        let env = Envelope::parse(raw, "root", "root")?;
        let root: Root = env.typed()?;
        env.verify::<AsRoot>(&root)?;
        Ok(Self {
            root: Verified {
                meta: root,
                raw: raw.to_vec(),
            },
            new_roots: Vec::new(),
            timestamp: None,
            snapshot: None,
            targets: std::collections::BTreeMap::new(),
            delegators: std::collections::BTreeMap::new(),
            now,
            refused_delegations: Vec::new(),
        })
    }

    /// Accept `raw` as the next root.
    ///
    /// # Errors
    /// [`TufError::BadSignature`] unless both the trusted and the new root keys signed it,
    /// [`TufError::VersionMismatch`] unless it is the next version.
    pub(crate) fn update_root(&mut self, raw: &[u8]) -> Result<(), TufError> {
        let env = Envelope::parse(raw, "root", "root")?;
        let new: Root = env.typed()?;
        env.verify::<AsRoot>(&self.root.meta)?;
        let expected = self.root.meta.version.get().saturating_add(1);
        if new.version.get() != expected {
            return Err(TufError::VersionMismatch {
                role: "root".to_owned(),
                expected,
                got: new.version.get(),
            });
        }
        env.verify::<AsRoot>(&new)?;
        let verified = Verified {
            meta: new,
            raw: raw.to_vec(),
        };
        self.new_roots.push(verified.clone());
        self.root = verified;
        Ok(())
    }

    /// The rotation has ended: the final root must not have expired.
    ///
    /// # Errors
    /// [`TufError::Expired`].
    pub(crate) fn check_final_root(&self) -> Result<(), TufError> {
        check_expiry("root", self.root.meta.expires, self.now)
    }
}
