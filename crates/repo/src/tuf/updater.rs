//! The update workflow over a transport and a store of trusted metadata: root rotation,
//! timestamp, snapshot, top-level targets, each read back from the store first and fetched
//! only when what is stored is no longer the current version, every download bounded
//! (`docs/architecture.md#trust-model`).

use futures::StreamExt;
use url::Url;

use super::set::TrustedSet;
use super::timestamp::TimestampUpdate;
use super::{quote_role, Limits, TufError};
use crate::transport::{find_source_failure, SourceFailure};

/// Where the client keeps the metadata it trusts, by role name (`root`, `timestamp`,
/// `snapshot`, `targets`, delegated role names).
pub trait MetaStore: Send {
    /// The stored bytes of `role`, if any.
    fn load(&self, role: &str) -> Option<Vec<u8>>;
    /// Store `raw` as the trusted `role` (called right after it was verified).
    ///
    /// # Errors
    /// [`TufError::Store`].
    fn store(&mut self, role: &str, raw: &[u8]) -> Result<(), TufError>;
}

/// One client update against one repository: a [`TrustedSet`] grown by the workflow's steps.
pub struct Updater<'a, T: ?Sized, S> {
    transport: &'a T,
    metadata: String,
    store: &'a mut S,
    limits: Limits,
    set: TrustedSet,
}

impl<'a, T: tough::Transport + ?Sized, S: MetaStore> Updater<'a, T, S> {
    /// An update starting from `trusted_root` (the stored or shipped root), checking expiry at
    /// `now`, fetching metadata from `metadata_url` through `transport`.
    ///
    /// # Errors
    /// The trusted root does not parse or is not signed by its own keys.
    pub fn new(
        trusted_root: &[u8],
        now: jiff::Timestamp,
        transport: &'a T,
        metadata_url: &Url,
        store: &'a mut S,
        limits: Limits,
    ) -> Result<Self, TufError> {
        let mut metadata = metadata_url.to_string();
        if !metadata.ends_with('/') {
            metadata.push('/');
        }
        Ok(Self {
            transport,
            metadata,
            store,
            limits,
            set: TrustedSet::new(trusted_root, now)?,
        })
    }

    /// What is trusted so far.
    pub fn trusted(&self) -> &TrustedSet {
        &self.set
    }

    /// What is trusted, to change (crate-internal steps only).
    pub(crate) fn set_mut(&mut self) -> &mut TrustedSet {
        &mut self.set
    }

    /// What is trusted, ending the update.
    pub fn into_trusted(self) -> TrustedSet {
        self.set
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Fetch metadata file `file` (already quoted), refusing more than `limit` bytes.
    async fn fetch(&self, file: &str, limit: u64) -> Result<Vec<u8>, TufError> {
        let url = Url::parse(&format!("{}{file}", self.metadata))
            .map_err(|e| TufError::malformed(file, e))?;
        let transport_err = |e: &tough::TransportError| {
            TufError::Transport(find_source_failure(e).unwrap_or_else(|| {
                if matches!(e.kind(), tough::TransportErrorKind::FileNotFound) {
                    SourceFailure::NotFound(404)
                } else {
                    SourceFailure::Broken(e.to_string())
                }
            }))
        };
        let mut stream = self
            .transport
            .fetch(url)
            .await
            .map_err(|e| transport_err(&e))?;
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transport_err(&e))?;
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(TufError::TooLarge {
                    file: file.to_owned(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Update the top-level metadata: root rotation, timestamp, snapshot, targets.
    ///
    /// # Errors
    /// The first check that failed; what was verified before it stays stored.
    pub async fn refresh(&mut self) -> Result<(), TufError> {
        self.rotate_root().await?;
        self.load_timestamp().await?;
        self.load_snapshot().await?;
        self.load_targets("targets", "root").await
    }

    /// Fetch `N+1.root.json` until there is none (404/403), at most
    /// [`Limits::max_root_rotations`] times; the final root must not have expired.
    async fn rotate_root(&mut self) -> Result<(), TufError> {
        let first = self.set.root().meta.version.get().saturating_add(1);
        for version in first..first.saturating_add(self.limits.max_root_rotations) {
            let raw = match self
                .fetch(&format!("{version}.root.json"), self.limits.root)
                .await
            {
                Ok(raw) => raw,
                Err(TufError::Transport(
                    SourceFailure::NotFound(_) | SourceFailure::Status(403),
                )) => break,
                Err(e) => return Err(e),
            };
            self.set.update_root(&raw)?;
            self.store.store("root", &raw)?;
        }
        self.set.check_final_root()
    }

    /// The stored timestamp (for its rollback floor, when it still verifies), then the
    /// repository's; an unchanged one is not stored again.
    async fn load_timestamp(&mut self) -> Result<(), TufError> {
        if let Some(raw) = self.store.load("timestamp") {
            // A stored timestamp that no longer verifies (rotated keys) or has expired is
            // only a floor, never the final one.
            let _ = self.set.update_timestamp(&raw);
        }
        let raw = self.fetch("timestamp.json", self.limits.timestamp).await?;
        if self.set.update_timestamp(&raw)? == TimestampUpdate::Updated {
            self.store.store("timestamp", &raw)?;
        }
        Ok(())
    }

    /// The stored snapshot when it is the one the timestamp lists, else the repository's.
    async fn load_snapshot(&mut self) -> Result<(), TufError> {
        if let Some(raw) = self.store.load("snapshot") {
            if self.set.update_snapshot(&raw, true).is_ok() {
                return Ok(());
            }
        }
        let listed = self
            .set
            .final_timestamp()?
            .snapshot_meta()
            .cloned()
            .ok_or_else(|| TufError::malformed("timestamp", "meta lists no snapshot.json"))?;
        let file = if self.set.root().meta.consistent_snapshot {
            format!("{}.snapshot.json", listed.version)
        } else {
            "snapshot.json".to_owned()
        };
        let raw = self
            .fetch(&file, listed.length.unwrap_or(self.limits.snapshot))
            .await?;
        self.set.update_snapshot(&raw, false)?;
        self.store.store("snapshot", &raw)
    }

    /// Targets role `name` as delegated by `delegator`: already trusted through that same
    /// delegator, else the stored copy verified through it, else the repository's.
    pub(crate) async fn load_targets(
        &mut self,
        name: &str,
        delegator: &str,
    ) -> Result<(), TufError> {
        if self.set.has_targets_via(name, delegator) {
            return Ok(());
        }
        let known = self
            .set
            .targets_role(name)
            .map(|v| v.raw.clone())
            .or_else(|| self.store.load(name));
        if let Some(raw) = known {
            if self.set.update_targets(name, delegator, &raw, true).is_ok() {
                return Ok(());
            }
        }
        let listed = self
            .set
            .final_snapshot()?
            .meta
            .get(&format!("{name}.json"))
            .cloned()
            .ok_or_else(|| TufError::NotListed {
                role: name.to_owned(),
                listed_by: "snapshot".to_owned(),
            })?;
        let quoted = quote_role(name);
        let file = if self.set.root().meta.consistent_snapshot {
            format!("{}.{quoted}.json", listed.version)
        } else {
            format!("{quoted}.json")
        };
        let raw = self
            .fetch(&file, listed.length.unwrap_or(self.limits.targets))
            .await?;
        self.set.update_targets(name, delegator, &raw, false)?;
        self.store.store(name, &raw)
    }
}
