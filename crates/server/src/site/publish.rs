//! Every publish into the site repository, as its one writer: under the publisher mutex and,
//! on replicas, under the database's site lock on the newest stored tree
//! (`docs/operating.md#shared-repository-and-one-writer`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade_core::Category;
use cascade_repo::{PublishError, PublishOptions, PublishedTarget, Publisher};

use super::error::io;
use super::{now, SiteError, SitePublisher, BUSY_WAIT};

impl SitePublisher {
    /// Brings the served tree to the newest version stored by any replica (nothing to do for
    /// a single server).
    ///
    /// # Errors
    /// The shared store's errors.
    pub async fn sync_shared(&self) -> Result<(), SiteError> {
        let Some(sh) = &self.shared else {
            return Ok(());
        };
        let _p = self.publisher.lock().await;
        sh.materialize(crate::shared::Tree::Site, &self.public)
            .await?;
        Ok(())
    }

    /// Runs `op` as the one writer of the repository: on a replica, under the database's site
    /// lock (waiting up to [`BUSY_WAIT`], then `publish.busy`), on the newest stored tree, and
    /// stores the result as the next version; on a single server, just `op`. The caller holds
    /// the publisher mutex.
    async fn as_writer<T, F, Fut>(&self, op: F) -> Result<T, SiteError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, SiteError>>,
    {
        use crate::shared::{Tree, Writer};
        let Some(sh) = &self.shared else {
            return op().await;
        };
        let Some(lock) = sh.lock(Writer::Site, Some(BUSY_WAIT)).await? else {
            return Err(PublishError::Busy(self.dir.clone()).into());
        };
        let out = async {
            sh.materialize(Tree::Site, &self.public).await?;
            let out = op().await?;
            sh.publish_tree(Tree::Site, &self.public, "site").await?;
            Ok(out)
        }
        .await;
        if out.is_err() {
            // What this replica half-made is not stored: the stored tree is put back (or at
            // the next catch-up).
            sh.forget(Tree::Site);
            if let Err(e) = sh.materialize(Tree::Site, &self.public).await {
                tracing::warn!(error = %e, "site repository: stored tree not put back yet");
            }
        }
        lock.release().await;
        out
    }

    /// The repository directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The served tree (`DIR/public`, served at `/repo/site/`).
    pub fn public_dir(&self) -> PathBuf {
        self.public.clone()
    }

    /// The first trusted root (`metadata/1.root.json`) agents pin with `--site-root`.
    pub fn root_path(&self) -> PathBuf {
        self.public.join("metadata/1.root.json")
    }

    /// Publishes `version` of `category/name` made of `files` (each published under its file
    /// name; deltas from the two versions before are added where smaller) and returns every
    /// target added. The served repository is unchanged on error.
    ///
    /// # Errors
    /// [`PublishError`]s, e.g. `publish.version_exists`, `layout.*` for a bad name or
    /// version, `publish.busy` when another process held the lock for too long.
    pub async fn publish(
        &self,
        category: Category,
        name: &str,
        version: &str,
        files: &[PathBuf],
    ) -> Result<Vec<PublishedTarget>, SiteError> {
        let p = self.publisher.lock().await;
        self.publish_locked(
            &p,
            category,
            name,
            version,
            files,
            PublishOptions::default(),
        )
        .await
    }

    /// Publishes the program build `file` (an uploaded file, published under its file name)
    /// as `version` of `programs/name`, marked as a hotfix when `hotfix`
    /// (`docs/operating.md#programs-and-hotfixes`); returns its full target.
    ///
    /// # Errors
    /// As [`SitePublisher::publish`].
    pub async fn publish_program(
        &self,
        name: &str,
        version: &str,
        file: &Path,
        hotfix: bool,
    ) -> Result<PublishedTarget, SiteError> {
        let p = self.publisher.lock().await;
        let options = PublishOptions {
            hotfix,
            ..PublishOptions::default()
        };
        let added = self
            .publish_locked(
                &p,
                Category::Programs,
                name,
                version,
                &[file.to_owned()],
                options,
            )
            .await?;
        first_full(added)
    }

    /// The full targets of `category` served now (delegated roles' too), by name, newest
    /// first.
    ///
    /// # Errors
    /// The served metadata cannot be read.
    pub async fn listed(&self, category: Category) -> Result<Vec<cascade_repo::Listed>, SiteError> {
        let p = self.publisher.lock().await;
        Ok(p.listed(category)?)
    }

    /// Publishes one file as `version` of `category/name` and returns its target (not the
    /// deltas made beside it).
    ///
    /// # Errors
    /// As [`SitePublisher::publish`].
    pub async fn publish_file(
        &self,
        category: Category,
        name: &str,
        version: &str,
        file: &Path,
    ) -> Result<PublishedTarget, SiteError> {
        let added = self
            .publish(category, name, version, &[file.to_owned()])
            .await?;
        first_full(added)
    }

    /// Publishes `bytes` as the file `file_name` of `version` of `category/name` (staged in
    /// the repository's private `server-incoming/` directory, removed afterwards) and returns its
    /// target.
    ///
    /// # Errors
    /// As [`SitePublisher::publish`], or [`SiteError::Io`] when staging fails.
    pub async fn publish_bytes(
        &self,
        category: Category,
        name: &str,
        version: &str,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<PublishedTarget, SiteError> {
        if !cascade_repo::is_safe_file_name(file_name) {
            return Err(
                PublishError::Layout(cascade_repo::LayoutError::BadTargetName(
                    file_name.to_owned(),
                ))
                .into(),
            );
        }
        let p = self.publisher.lock().await;
        let staging = self.dir.join("server-incoming");
        // Under the mutex: whatever is here is a killed publish's debris.
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let file = staging.join(file_name);
        std::fs::write(&file, bytes).map_err(io(&file))?;
        let out = self
            .publish_locked(
                &p,
                category,
                name,
                version,
                std::slice::from_ref(&file),
                PublishOptions::default(),
            )
            .await;
        let _ = std::fs::remove_dir_all(&staging);
        first_full(out?)
    }

    async fn publish_locked(
        &self,
        p: &Publisher,
        category: Category,
        name: &str,
        version: &str,
        files: &[PathBuf],
        options: PublishOptions,
    ) -> Result<Vec<PublishedTarget>, SiteError> {
        self.as_writer(|| async {
            let added = retry_busy(|| {
                let at = now(self.clock.as_ref());
                p.publish(category, name, version, files, options, at)
            })
            .await?;
            tracing::info!(%category, name, version, targets = added.len(), "site repository: published");
            Ok(added)
        })
        .await
    }

    /// Publishes `metadata`, the next version of delegated role `role` as the build team
    /// signed it offline, with new targets' content from `incoming/SHA256`; the server checks
    /// it against the delegation and signs only snapshot and timestamp, never holding the
    /// team's key (`docs/operating.md#delegated-program-builds`). Returns the targets added.
    ///
    /// # Errors
    /// The repository's refusals (`delegation.*`), signing and I/O errors.
    pub async fn publish_delegated(
        &self,
        role: &str,
        metadata: &[u8],
        incoming: &Path,
    ) -> Result<Vec<PublishedTarget>, SiteError> {
        let p = self.publisher.lock().await;
        // Through the one writer, like every other publish: on replicas the result is stored
        // as the site tree's next version.
        self.as_writer(|| async {
            retry_busy(|| {
                let at = now(self.clock.as_ref());
                p.publish_delegated(role, metadata, incoming, at)
            })
            .await
            .map_err(SiteError::from)
        })
        .await
    }

    /// Delegates `d.paths` to `d.role` in the targets role (signed with the targets key the
    /// server holds), as the one writer: on replicas the result is stored as the site tree's
    /// next version, so it survives every later publish on any replica
    /// (`docs/operating.md#delegated-program-builds`).
    ///
    /// # Errors
    /// A bad delegation (`delegation.bad`), signing and I/O errors, `publish.busy`.
    pub async fn delegate(&self, d: &cascade_repo::Delegation) -> Result<(), SiteError> {
        let p = self.publisher.lock().await;
        self.as_writer(|| async {
            retry_busy(|| p.delegate(d, now(self.clock.as_ref())))
                .await
                .map_err(SiteError::from)
        })
        .await
    }

    /// Re-signs the timestamp (and the snapshot when half its lifetime has passed).
    ///
    /// # Errors
    /// Signing or I/O errors; `publish.busy` while another process holds the lock.
    pub async fn refresh_timestamp(&self) -> Result<(), SiteError> {
        let p = self.publisher.lock().await;
        self.as_writer(|| async {
            p.refresh_timestamp(now(self.clock.as_ref()))
                .await
                .map_err(SiteError::from)
        })
        .await
    }
}

/// Runs `op` again while the repository's directory lock is held by another process
/// (`publish.busy`), every 50 ms for up to [`BUSY_WAIT`]; then its answer, whatever it is.
async fn retry_busy<T, F, Fut>(mut op: F) -> Result<T, PublishError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PublishError>>,
{
    let waited = tokio::time::Instant::now();
    loop {
        match op().await {
            Err(PublishError::Busy(_)) if waited.elapsed() < BUSY_WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// The full target of a publish (the first one added; deltas follow it).
fn first_full(added: Vec<PublishedTarget>) -> Result<PublishedTarget, SiteError> {
    added
        .into_iter()
        .find(|t| t.delta_from.is_none())
        .ok_or(SiteError::Publish(PublishError::NoFiles))
}
