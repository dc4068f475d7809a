//! A static file server on a chosen loopback address, the stand-in for nginx, a CDN or the
//! vendor's upstream. It counts bytes served and can be stopped and restarted on the same
//! address, so tests can take a source down and bring it back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::sync::oneshot;
use tower_http::services::ServeDir;
use url::Url;

use crate::{kit, KitError};

/// A running (or stopped) static server of one directory.
#[derive(Debug)]
pub struct StaticServer {
    dir: PathBuf,
    addr: SocketAddr,
    url: Url,
    /// Response bytes served (by Content-Length).
    pub bytes: Arc<AtomicU64>,
    /// Requests answered.
    pub requests: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
}

async fn count(
    State((bytes, requests)): State<(Arc<AtomicU64>, Arc<AtomicU64>)>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    requests.fetch_add(1, Ordering::Relaxed);
    let len = resp
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    bytes.fetch_add(len, Ordering::Relaxed);
    resp
}

impl StaticServer {
    /// Serves `dir` at `http://ADDR/` (`addr` with port 0 picks a free port).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(dir: &Path, addr: SocketAddr) -> Result<Self, KitError> {
        let mut s = StaticServer {
            dir: dir.to_owned(),
            addr,
            url: Url::parse("http://127.0.0.1/").map_err(|e| kit("static server URL")(&e))?,
            bytes: Arc::default(),
            requests: Arc::default(),
            stop: None,
        };
        s.restart().await?;
        Ok(s)
    }

    /// (Re)starts serving on the same address.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn restart(&mut self) -> Result<(), KitError> {
        self.stop();
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|e| kit("bind static server")(&e))?;
        self.addr = listener
            .local_addr()
            .map_err(|e| kit("bind static server")(&e))?;
        self.url = Url::parse(&format!("http://{}/", self.addr))
            .map_err(|e| kit("static server URL")(&e))?;
        let counters = (Arc::clone(&self.bytes), Arc::clone(&self.requests));
        let app = Router::new()
            .fallback_service(ServeDir::new(&self.dir))
            .layer(middleware::from_fn_with_state(counters, count));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        self.stop = Some(tx);
        Ok(())
    }

    /// Stops serving (connections are then refused).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Brings the served tree up to date with the repository tree `src` the way an
    /// operator's rsync of a mirror would: new (immutable, versioned or content-addressed)
    /// files first, then the files TUF changes in place (`timestamp.json`, `root.json`), so
    /// the mirror is never half new. Symlinks are followed: a mirror holds real files.
    ///
    /// # Errors
    /// A file that cannot be read or written.
    pub fn sync_from(&self, src: &Path) -> Result<(), KitError> {
        let mut mutable = Vec::new();
        copy_new(src, &self.dir, &mut mutable).map_err(|e| kit("sync mirror")(&e))?;
        for (from, to) in mutable {
            std::fs::copy(&from, &to).map_err(|e| kit("sync mirror")(&e))?;
        }
        Ok(())
    }

    /// The served directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The base URL, with a trailing slash.
    pub fn url(&self) -> Url {
        self.url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Copies files of `src` missing from `dst`; files changed in place are left in `mutable`.
fn copy_new(src: &Path, dst: &Path, mutable: &mut Vec<(PathBuf, PathBuf)>) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        if std::fs::metadata(&from)?.is_dir() {
            copy_new(&from, &to, mutable)?;
        } else if matches!(e.file_name().to_str(), Some("timestamp.json" | "root.json")) {
            mutable.push((from, to));
        } else if !to.exists() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop();
    }
}
