//! A signed repository with its publisher, served over HTTP: the vendor's "ActiveUpdate"
//! upstream in tests and the demo, or the server's own site repository when `serve` is off.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cascade_core::Category;
use cascade_repo::{Expiries, PublishOptions, Publisher};
use url::Url;

use crate::serve::StaticServer;
use crate::{kit, KitError};

/// A repository being published to, optionally served.
#[derive(Debug)]
pub struct Upstream {
    dir: PathBuf,
    publisher: Publisher,
    root: Vec<u8>,
    server: Option<StaticServer>,
}

impl Upstream {
    /// Creates a new repository in `dir` (keys under `dir/offline-keys`) and, when `addr` is
    /// given, serves its public tree there.
    ///
    /// # Errors
    /// When the repository cannot be created or the address bound.
    pub async fn create(dir: &Path, addr: Option<SocketAddr>) -> Result<Self, KitError> {
        let publisher = cascade_repo::init(
            dir,
            &dir.join("offline-keys"),
            Expiries::default(),
            jiff::Timestamp::now(),
        )
        .await
        .map_err(|e| kit("create repository")(&e))?;
        let public = publisher.public_dir();
        let root =
            std::fs::read(public.join("metadata/1.root.json")).map_err(|e| kit("read root")(&e))?;
        let server = match addr {
            Some(a) => Some(StaticServer::start(&public, a).await?),
            None => None,
        };
        Ok(Upstream {
            dir: dir.to_owned(),
            publisher,
            root,
            server,
        })
    }

    /// Opens the existing repository in `dir` (keys under `dir/offline-keys`), not served.
    ///
    /// # Errors
    /// When its trusted root cannot be read.
    pub fn open(dir: &Path) -> Result<Self, KitError> {
        let publisher = Publisher::open(dir, &dir.join("offline-keys"));
        let root = std::fs::read(publisher.public_dir().join("metadata/1.root.json"))
            .map_err(|e| kit("read root")(&e))?;
        Ok(Upstream {
            dir: dir.to_owned(),
            publisher,
            root,
            server: None,
        })
    }

    /// Publishes `version` of `category/name` with the given files (name, bytes).
    ///
    /// # Errors
    /// When publishing fails.
    pub async fn publish(
        &self,
        category: Category,
        name: &str,
        version: &str,
        files: &[(&str, &[u8])],
    ) -> Result<(), KitError> {
        self.publish_with(category, name, version, files, PublishOptions::default())
            .await
    }

    /// [`Upstream::publish`] with `options` (e.g. no deltas, for large random content).
    ///
    /// # Errors
    /// When publishing fails.
    pub async fn publish_with(
        &self,
        category: Category,
        name: &str,
        version: &str,
        files: &[(&str, &[u8])],
        options: PublishOptions,
    ) -> Result<(), KitError> {
        let src = self.dir.join("incoming").join(version);
        std::fs::create_dir_all(&src).map_err(|e| kit("stage files")(&e))?;
        let mut paths = Vec::new();
        for (file, bytes) in files {
            let p = src.join(file);
            std::fs::write(&p, bytes).map_err(|e| kit("stage files")(&e))?;
            paths.push(p);
        }
        self.publisher
            .publish(
                category,
                name,
                version,
                &paths,
                options,
                jiff::Timestamp::now(),
            )
            .await
            .map_err(|e| kit("publish")(&e))?;
        let _ = std::fs::remove_dir_all(&src);
        Ok(())
    }

    /// Re-signs the timestamp as if the time were `now` (it then expires one timestamp
    /// lifetime after `now`; a `now` in the past gives a correctly signed, expired one).
    ///
    /// # Errors
    /// When signing fails.
    pub async fn refresh_timestamp(&self, now: jiff::Timestamp) -> Result<(), KitError> {
        self.publisher
            .refresh_timestamp(now)
            .await
            .map_err(|e| kit("refresh timestamp")(&e))
    }

    /// The trusted root (`1.root.json`) clients pin.
    pub fn root(&self) -> &[u8] {
        &self.root
    }

    /// Writes the trusted root to `path` (for `--upstream-root`).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn write_root(&self, path: &Path) -> Result<(), KitError> {
        std::fs::write(path, &self.root).map_err(|e| kit("write root")(&e))
    }

    /// The served public tree (what mirrors copy).
    pub fn public_dir(&self) -> PathBuf {
        self.publisher.public_dir()
    }

    /// The HTTP server, when served.
    pub fn server(&mut self) -> Option<&mut StaticServer> {
        self.server.as_mut()
    }

    /// The base URL, when served.
    pub fn url(&self) -> Option<Url> {
        self.server.as_ref().map(StaticServer::url)
    }
}
