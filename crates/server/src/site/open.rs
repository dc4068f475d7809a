//! Opening the site repository, creating it on the first start; on PostgreSQL, loading it
//! from the database or storing it there for the other replicas
//! (`docs/operating.md#shared-repository-and-one-writer`).

use std::path::Path;
use std::sync::Arc;

use cascade_repo::{InitOptions, Passphrase, Publisher};

use super::error::io;
use super::{now, SiteError, SitePublisher, SHARED_KEYS};
use crate::settings::Clock;

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
