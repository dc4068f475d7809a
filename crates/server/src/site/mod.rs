//! The server's own site repository (`docs/operating.md#the-servers-own-repository`): the
//! signed repository of what the server itself publishes (domain settings, programs), served
//! at `/repo/site/`.
//!
//! On start the server opens the repository in its site directory (default
//! `<data-dir>/site-repo`, `--site-repo DIR` to choose another) and creates it there when the
//! directory holds none: served tree in `DIR/public`, online (snapshot, timestamp) keys in
//! `DIR/online-keys`, root and targets keys in `DIR/offline-keys`, every key file mode 0600
//! (the `cascade repo init` layout, so `cascade repo renew --repo DIR` works on it). The one
//! exception: when no `--site-repo` is given and the operator linked a directory as
//! `<repo-dir>/site` (the set-up before the server had its own repository), that link is
//! served as it is and the server publishes nothing ([`SiteError::Linked`]).
//!
//! Every write goes through the one [`SitePublisher`] of the server: a `tokio` mutex around the
//! repository crate's `Publisher` serializes publishes in this process, and the repository's
//! directory lock still keeps out any other process (a publish that meets it waits and retries
//! for a while, then fails with `publish.busy`). Publishing is atomic: content files are
//! written first and `timestamp.json`, the file clients start from, last, so a client sees the
//! previous version or the new one, never half of one (`docs/architecture.md#repositories`).
//! The short-lived timestamp is re-signed on a schedule by [`refresh_on_schedule`].
//!
//! Every call into the repository crate's keys and init is in this module, so encryption of
//! the keys at rest is wired here alone.
//!
//! On PostgreSQL the repository is shared by every replica (`crate::shared`,
//! `docs/operating.md#shared-repository-and-one-writer`): the first replica creates it and
//! stores its non-root keys and served tree in the database; the others load them. A publish
//! on any replica takes the database's site writer lock (waiting as long as for the directory
//! lock, then `publish.busy`), brings the local tree to the newest stored version, publishes,
//! and stores the result as the next version, which the other replicas then materialize.
//!
//! From a handler (`AppState` holds the [`Site`]; `?` turns a [`SiteError`] into an
//! `ApiError` with its status and stable code):
//!
//! ```ignore
//! let target = st
//!     .site
//!     .publisher()?
//!     .publish_file(Category::Programs, name, version, &received_file)
//!     .await?;
//! // target.name == "programs/NAME/VERSION/FILE", target.length
//! ```
//!
//! - `error`: [`SiteError`], with its stable codes and HTTP statuses;
//! - `open`: opening or creating the repository, and loading or storing it for replicas;
//! - `publish`: every publish, through the one writer;
//! - `domain_settings`: the domains' settings documents as signed targets.

mod domain_settings;
mod error;
mod open;
mod publish;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cascade_repo::{Passphrase, Publisher, Timestamp};

pub use error::SiteError;

use crate::settings::Clock;

/// Where `/repo/site/` comes from.
#[derive(Clone)]
pub enum Site {
    /// The server's own repository, published by the server.
    Own(Arc<SitePublisher>),
    /// A directory the operator linked as `<repo-dir>/site`; served as it is, never written.
    Linked(PathBuf),
}

impl Site {
    /// Opens the site repository for a server: `dir` when the operator chose one, else the
    /// operator's `<repo-dir>/site` link when there is one, else `<data-dir>/site-repo`
    /// (created on first start).
    ///
    /// # Errors
    /// When the repository cannot be created or read.
    pub async fn open(
        chosen: Option<&Path>,
        data_dir: &Path,
        repo_dir: &Path,
        passphrase: Option<Passphrase>,
        clock: Arc<dyn Clock>,
        shared: Option<crate::shared::Shared>,
    ) -> Result<Site, SiteError> {
        let link = repo_dir.join("site");
        let dir = match chosen {
            Some(dir) => dir.to_owned(),
            None if std::fs::symlink_metadata(&link).is_ok() => {
                tracing::info!(link = %link.display(), "serving the operator's site repository link; the server publishes nothing into it");
                return Ok(Site::Linked(link));
            }
            None => data_dir.join("site-repo"),
        };
        if chosen.is_some() && std::fs::symlink_metadata(&link).is_ok() {
            tracing::warn!(link = %link.display(), site = %dir.display(), "--site-repo is given: /repo/site/ serves it, not the link");
        }
        Ok(Site::Own(Arc::new(
            SitePublisher::open_shared(&dir, passphrase, clock, shared).await?,
        )))
    }

    /// The server's publisher, or [`SiteError::Linked`].
    ///
    /// # Errors
    /// [`SiteError::Linked`] when the site is the operator's link.
    pub fn publisher(&self) -> Result<&SitePublisher, SiteError> {
        match self {
            Site::Own(p) => Ok(p),
            Site::Linked(link) => Err(SiteError::Linked(link.clone())),
        }
    }

    /// After a whole-policy write (an import, a restore): publishes the settings documents it
    /// carries that are not published yet; a failure is logged and retried at the next start.
    pub async fn publish_after_write(&self, policy: &cascade_core::Policy) {
        let Site::Own(p) = self else {
            return;
        };
        match p.publish_pending(policy).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(documents = n, "domain settings: published"),
            Err(e) => {
                tracing::warn!(error = %e, code = e.code(), "domain settings: not published; retried at the next start");
            }
        }
    }

    /// The directory `/repo/site/` serves from when it is not under the repository directory.
    pub fn own_public_dir(&self) -> Option<PathBuf> {
        match self {
            Site::Own(p) => Some(p.public_dir()),
            Site::Linked(_) => None,
        }
    }
}

/// The one writer of the server's own repository.
pub struct SitePublisher {
    dir: PathBuf,
    public: PathBuf,
    publisher: tokio::sync::Mutex<Publisher>,
    clock: Arc<dyn Clock>,
    shared: Option<crate::shared::Shared>,
}

impl std::fmt::Debug for SitePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SitePublisher")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Where the site repository's non-root keys are kept among the shared files.
const SHARED_KEYS: &str = "site";

/// How long a publish waits for another process holding the repository's lock.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// The injected clock's now as a repository timestamp.
fn now(clock: &dyn Clock) -> Timestamp {
    Timestamp::from_second(clock.now()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// How often the site repository's timestamp is re-signed: well inside its one-day lifetime.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// Re-signs the site repository's timestamp every `every` until `stop` flips (a failure is
/// logged and retried at the next tick).
pub async fn refresh_on_schedule(
    site: Arc<SitePublisher>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(every) => {}
        }
        match site.refresh_timestamp().await {
            Ok(()) => tracing::debug!("site repository: timestamp re-signed"),
            Err(e) => {
                tracing::warn!(error = %e, code = e.code(), "site repository: timestamp not re-signed");
            }
        }
    }
}
