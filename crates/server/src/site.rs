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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cascade_core::settings::{DEFAULT_SETTINGS_NAME, SETTINGS_FILE};
use cascade_core::{Category, DomainSettings, PublishedSettings};
use cascade_repo::{
    InitOptions, Passphrase, PublishError, PublishOptions, PublishedTarget, Publisher, Timestamp,
};

use crate::settings::Clock;

/// Why the site repository could not be opened or published to.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// `/repo/site` is a directory the operator linked; the server does not publish into it.
    #[error(
        "the site repository is the operator's link {0}; start the server with --site-repo DIR \
         (or remove the link) to let it publish"
    )]
    Linked(PathBuf),
    /// The repository refused or failed the operation (its code says which).
    #[error("site repository: {0}")]
    Publish(#[from] PublishError),
    /// The shared repository of the replicas failed.
    #[error(transparent)]
    Shared(#[from] crate::shared::SharedError),
    /// A staging file or directory could not be used.
    #[error("site repository: {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl SiteError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SiteError::Linked(_) => "site.linked",
            SiteError::Publish(e) => e.code(),
            SiteError::Io { .. } => "site.io",
            SiteError::Shared(e) => e.code(),
        }
    }

    /// The HTTP status of an API request that failed with this error.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            SiteError::Linked(_) | SiteError::Publish(PublishError::VersionExists(_)) => {
                StatusCode::CONFLICT
            }
            SiteError::Publish(
                PublishError::Layout(_) | PublishError::NoFiles | PublishError::DuplicateFile(_),
            ) => StatusCode::BAD_REQUEST,
            SiteError::Publish(PublishError::Busy(_)) => StatusCode::SERVICE_UNAVAILABLE,
            SiteError::Publish(_) | SiteError::Io { .. } | SiteError::Shared(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The request field at fault, when a person's input caused it.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SiteError::Publish(PublishError::VersionExists(_)) => Some("version"),
            SiteError::Publish(PublishError::Layout(_)) => Some("name"),
            SiteError::Publish(PublishError::NoFiles | PublishError::DuplicateFile(_)) => {
                Some("file")
            }
            _ => None,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SiteError + '_ {
    move |source| SiteError::Io {
        path: path.to_owned(),
        source,
    }
}

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

impl SitePublisher {
    /// Opens the repository in `dir`, creating it (keys and the first signed metadata) when
    /// `dir` holds none.
    ///
    /// # Errors
    /// When the repository cannot be created.
    pub async fn open_or_create(
        dir: &Path,
        passphrase: Option<Passphrase>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SiteError> {
        Self::open_shared(dir, passphrase, clock, None).await
    }

    /// [`SitePublisher::open_or_create`] for a replica sharing `shared` (none: a single
    /// server). Call it under the start-up lock ([`crate::shared::Writer::Startup`]): when the
    /// database holds the repository already, its keys and newest tree are loaded into `dir`;
    /// else the repository is opened or created in `dir` as a single server does and its
    /// non-root keys and tree are stored for the other replicas.
    ///
    /// # Errors
    /// When the repository cannot be created, loaded or stored.
    pub async fn open_shared(
        dir: &Path,
        passphrase: Option<Passphrase>,
        clock: Arc<dyn Clock>,
        shared: Option<crate::shared::Shared>,
    ) -> Result<Self, SiteError> {
        use crate::shared::Tree;
        let keys = dir.join("offline-keys");
        let public = dir.join("public");
        let stored = match &shared {
            Some(sh) => sh.newest(Tree::Site).await?.is_some(),
            None => false,
        };
        if let (Some(sh), true) = (&shared, stored) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            restrict(dir)?;
            if let Some(pass) = &passphrase {
                encrypt_stored_keys(sh, pass).await?;
            }
            let n = sh.restore_files(SHARED_KEYS, dir).await?;
            sh.materialize(Tree::Site, &public).await?;
            tracing::info!(site = %dir.display(), keys = n, "site repository: loaded from the shared store");
        }
        let publisher = if public.join("metadata/root.json").is_file() {
            Publisher::open(dir, &keys).with_passphrase(passphrase)
        } else {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            restrict(dir)?;
            let options = InitOptions {
                passphrase: passphrase.clone(),
                ..InitOptions::new(&keys)
            };
            let p = cascade_repo::init_with(dir, &options, now(clock.as_ref()))
                .await?
                .with_passphrase(passphrase);
            // The server signs targets, snapshot and timestamp, never a root: the root key
            // goes where the operator is told to take it off the machine.
            let away = dir.join("root-keys-offline");
            p.move_root_keys(&away)?;
            tracing::warn!(
                site = %dir.display(),
                root_keys = %away.display(),
                "first start: the server's site repository was created; MOVE {} OFF THIS MACHINE \
                 (it is needed only to rotate the repository's keys: docs/operating.md#the-servers-own-repository)",
                away.display()
            );
            p
        };
        for key in publisher.unencrypted_keys() {
            tracing::warn!(
                key = %key.display(),
                "site repository key file is not encrypted: start the server with \
                 --key-passphrase-file or CASCADE_KEY_PASSPHRASE (docs/operating.md#keys-and-their-ceremony)"
            );
        }
        if let (Some(sh), false) = (&shared, stored) {
            // The first replica: its keys (never a root key) and tree become everyone's.
            for sub in ["online-keys", "offline-keys"] {
                sh.put_dir(&format!("{SHARED_KEYS}/{sub}"), &dir.join(sub), |name| {
                    !name.starts_with("root") && !name.starts_with(".tmp-")
                })
                .await?;
            }
            if !publisher.unencrypted_keys().is_empty() {
                tracing::warn!("site repository: its keys are stored in the database UNENCRYPTED; give every replica --key-passphrase-file (docs/operating.md#shared-repository-and-one-writer)");
            }
            sh.publish_tree(Tree::Site, &public, "first-start").await?;
        }
        Ok(SitePublisher {
            dir: dir.to_owned(),
            public,
            publisher: tokio::sync::Mutex::new(publisher),
            clock,
            shared,
        })
    }

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
            let waited = tokio::time::Instant::now();
            loop {
                let at = now(self.clock.as_ref());
                match p.publish(category, name, version, files, options, at).await {
                    Err(PublishError::Busy(_)) if waited.elapsed() < BUSY_WAIT => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(added) => {
                        tracing::info!(%category, name, version, targets = added.len(), "site repository: published");
                        return Ok(added);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
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
            let waited = tokio::time::Instant::now();
            loop {
                let at = now(self.clock.as_ref());
                match p.publish_delegated(role, metadata, incoming, at).await {
                    Err(PublishError::Busy(_)) if waited.elapsed() < BUSY_WAIT => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => return other.map_err(SiteError::from),
                }
            }
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
            let waited = tokio::time::Instant::now();
            loop {
                match p.delegate(d, now(self.clock.as_ref())).await {
                    Err(PublishError::Busy(_)) if waited.elapsed() < BUSY_WAIT => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => return other.map_err(SiteError::from),
                }
            }
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

impl SitePublisher {
    /// Publishes the settings document of `name` (a domain, or `default`) as the signed target
    /// `domain-settings/NAME/VERSION/settings.json` and returns the target's name. A version
    /// already published is left as it is (a retry after a crash republishes nothing).
    ///
    /// # Errors
    /// As [`SitePublisher::publish`].
    pub async fn publish_settings(
        &self,
        name: &str,
        settings: &DomainSettings,
    ) -> Result<String, SiteError> {
        let version = settings.version.to_string();
        let target = format!(
            "{}/{name}/{version}/{SETTINGS_FILE}",
            Category::DomainSettings
        );
        let doc = PublishedSettings {
            domain: name.to_owned(),
            settings: settings.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| SiteError::Io {
            path: PathBuf::from(&target),
            source: std::io::Error::other(e),
        })?;
        match self
            .publish_bytes(
                Category::DomainSettings,
                name,
                &version,
                SETTINGS_FILE,
                &bytes,
            )
            .await
        {
            Ok(_) | Err(SiteError::Publish(PublishError::VersionExists(_))) => Ok(target),
            Err(e) => Err(e),
        }
    }

    /// Publishes every settings document of `policy` (the default once set, and each domain's
    /// own) whose version is not in the repository yet: what a write stored but could not
    /// publish (a crash, a full disk) goes out at the next start.
    ///
    /// # Errors
    /// The first failure; the documents before it are published.
    pub async fn publish_pending(&self, policy: &cascade_core::Policy) -> Result<usize, SiteError> {
        let mut docs: Vec<(&str, &DomainSettings)> = Vec::new();
        if policy.settings.version > 0 {
            docs.push((DEFAULT_SETTINGS_NAME, &policy.settings));
        }
        for (name, d) in &policy.domains {
            if let Some(s) = &d.settings {
                docs.push((name, s));
            }
        }
        let mut published = 0;
        for (name, settings) in docs {
            let target = format!(
                "{}/{name}/{}/{SETTINGS_FILE}",
                Category::DomainSettings,
                settings.version
            );
            if self.has_target(&target) {
                continue;
            }
            self.publish_settings(name, settings).await?;
            published += 1;
        }
        Ok(published)
    }

    /// Whether the served targets metadata lists `target`: followed from `timestamp.json`
    /// to the snapshot it names and the targets version that names, as a client would (no
    /// signature check: these are the server's own files). `false` when anything cannot be
    /// read, so the caller publishes, and the publish itself refuses a version that exists.
    fn has_target(&self, target: &str) -> bool {
        let md = self.public.join("metadata");
        let read = |name: &str| -> Option<serde_json::Value> {
            serde_json::from_slice(&std::fs::read(md.join(name)).ok()?).ok()
        };
        let version =
            |v: &serde_json::Value, file: &str| v["signed"]["meta"][file]["version"].as_u64();
        let found = || -> Option<bool> {
            let ts = read("timestamp.json")?;
            let snap = read(&format!("{}.snapshot.json", version(&ts, "snapshot.json")?))?;
            let targets = read(&format!("{}.targets.json", version(&snap, "targets.json")?))?;
            Some(targets["signed"]["targets"].get(target).is_some())
        };
        found().unwrap_or(false)
    }
}

/// The full target of a publish (the first one added; deltas follow it).
fn first_full(added: Vec<PublishedTarget>) -> Result<PublishedTarget, SiteError> {
    added
        .into_iter()
        .find(|t| t.delta_from.is_none())
        .ok_or(SiteError::Publish(PublishError::NoFiles))
}

/// Encrypts with `passphrase` the site keys an earlier replica stored in the database
/// unencrypted (started without a passphrase), each in place.
async fn encrypt_stored_keys(
    sh: &crate::shared::Shared,
    passphrase: &Passphrase,
) -> Result<(), SiteError> {
    for (name, bytes) in sh.files_under(SHARED_KEYS).await? {
        let what = Path::new(&name);
        if cascade_repo::decrypt_bytes(what, &bytes, None).is_err() {
            continue; // encrypted already
        }
        let sealed = match cascade_repo::encrypt_key(what, &bytes, passphrase) {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!(key = name, error = %e, "site repository key stored unencrypted, left as it is");
                continue;
            }
        };
        if sh.replace_file(&name, &bytes, sealed.as_bytes()).await? {
            tracing::warn!(key = name, "site repository key was stored in the database unencrypted; it is encrypted with the key passphrase now");
        }
    }
    Ok(())
}

/// Only the server's user may enter the site directory (it holds keys).
fn restrict(dir: &Path) -> Result<(), SiteError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> i64 {
            1_800_000_000
        }
    }

    fn passphrase() -> Passphrase {
        Passphrase::new("correct horse battery staple").unwrap()
    }

    // First open creates the repository with private, encrypted keys and takes the root key
    // out of the server's key directory; the second opens it as it is; a publish adds a
    // signed target; the same version again is refused with its code; without the passphrase
    // nothing can be signed.
    #[tokio::test]
    async fn created_once_then_published_to() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site-repo");
        let site = SitePublisher::open_or_create(&dir, Some(passphrase()), Arc::new(Fixed))
            .await
            .unwrap();
        let root = std::fs::read(site.root_path()).unwrap();
        assert!(
            !dir.join("offline-keys/root.pk8").exists(),
            "root key left online"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for key in [
                "root-keys-offline/root.pk8",
                "offline-keys/targets.pk8",
                "online-keys/timestamp.pk8",
            ] {
                let mode = std::fs::metadata(dir.join(key))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
                let text = std::fs::read_to_string(dir.join(key)).unwrap();
                assert!(
                    text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
                    "{key}"
                );
            }
        }
        drop(site);
        let locked = SitePublisher::open_or_create(&dir, None, Arc::new(Fixed))
            .await
            .unwrap();
        let refused = locked
            .publish_bytes(
                Category::DomainSettings,
                "default",
                "1",
                "settings.json",
                b"{}",
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "key.passphrase_needed", "{refused}");
        drop(locked);
        let site = SitePublisher::open_or_create(&dir, Some(passphrase()), Arc::new(Fixed))
            .await
            .unwrap();
        assert_eq!(std::fs::read(site.root_path()).unwrap(), root);
        let t = site
            .publish_bytes(
                Category::DomainSettings,
                "default",
                "1",
                "settings.json",
                b"{}",
            )
            .await
            .unwrap();
        assert_eq!(t.name, "domain-settings/default/1/settings.json");
        let again = site
            .publish_bytes(
                Category::DomainSettings,
                "default",
                "1",
                "settings.json",
                b"{}",
            )
            .await
            .unwrap_err();
        assert_eq!(again.code(), "publish.version_exists");
        assert!(!dir.join("server-incoming").exists());
        site.refresh_timestamp().await.unwrap();
    }
}
