//! Renewing the offline-signed roles before they expire: a new root version (same keys, new
//! expiry) and a new targets version (same content), then snapshot and timestamp.
//!
//! Publishing re-signs targets but nothing else re-signs root, so an operator runs this (with
//! the offline keys) well before `root` expires — `verify` shows every role's expiry.

use jiff::Timestamp;

use crate::error::PublishError;
use crate::meta::{expiry, sign, write, Change, State};
use crate::publish::Publisher;

impl Publisher {
    /// Re-sign root (version + 1) and targets with fresh expiries; returns the new root version.
    ///
    /// # Errors
    /// Signing (offline keys missing) or I/O errors. A crash after the new root is written but
    /// before the rest leaves a consistent repository: the new root lists the same keys.
    pub async fn renew(&self, now: Timestamp) -> Result<u64, PublishError> {
        let _lock = self.lock()?;
        let mut state = State::load(&self.dirs)?;
        let mut root = state.root.signed.clone();
        root.version = root
            .version
            .checked_add(1)
            .ok_or_else(|| PublishError::Time("root version overflow".to_owned()))?;
        root.expires = expiry(now, self.expiries.root)?;
        let signed = sign(root.clone(), &root, &self.keys).await?;
        let md = self.dirs.metadata();
        let v = root.version.get();
        write(
            &self.dirs,
            md.join(format!("{v}.root.json")),
            signed.buffer(),
        )?;
        write(&self.dirs, md.join("root.json"), signed.buffer())?;
        state.root = signed.signed().clone();
        let targets = state.targets.signed.clone();
        self.commit(&state, Change::Targets(Box::new(targets)), now)
            .await?;
        Ok(v)
    }
}
