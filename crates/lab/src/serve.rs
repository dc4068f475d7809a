//! A static file server on a chosen loopback address, the stand-in for nginx, a CDN or the
//! vendor's upstream. It counts bytes served and requests per path, and can be stopped and
//! restarted on the same address, so a source can be taken down and brought back. A caller
//! may wrap its router in layers of its own ([`RouterWrap`]); the counters see what those
//! layers answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::sync::oneshot;
use tower_http::services::ServeDir;
use url::Url;

use crate::{kit, KitError};

/// Wraps the router of a [`StaticServer`] (each time it starts) in the caller's own layers.
pub type RouterWrap = Arc<dyn Fn(Router) -> Router + Send + Sync>;

/// Counters shared with the serving task.
#[derive(Debug, Default)]
struct Shared {
    bytes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    hits: Mutex<HashMap<String, u64>>,
}

/// A running (or stopped) static server of one directory.
pub struct StaticServer {
    dir: PathBuf,
    addr: SocketAddr,
    url: Url,
    /// Response bytes served (by Content-Length).
    pub bytes: Arc<AtomicU64>,
    /// Requests answered.
    pub requests: Arc<AtomicU64>,
    shared: Arc<Shared>,
    wrap: Option<RouterWrap>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for StaticServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticServer")
            .field("dir", &self.dir)
            .field("url", &self.url)
            .field("running", &self.stop.is_some())
            .finish_non_exhaustive()
    }
}

async fn count(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if let Ok(mut hits) = shared.hits.lock() {
        *hits.entry(path).or_default() += 1;
    }
    let resp = next.run(req).await;
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let len = resp
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    shared.bytes.fetch_add(len, Ordering::Relaxed);
    resp
}

impl StaticServer {
    /// Serves `dir` at `http://ADDR/` (`addr` with port 0 picks a free port).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(dir: &Path, addr: SocketAddr) -> Result<Self, KitError> {
        Self::start_wrapped(dir, addr, None).await
    }

    /// [`StaticServer::start`], with the router wrapped by `wrap` (inside the counters).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_wrapped(
        dir: &Path,
        addr: SocketAddr,
        wrap: Option<RouterWrap>,
    ) -> Result<Self, KitError> {
        let shared = Arc::new(Shared::default());
        let mut s = StaticServer {
            dir: dir.to_owned(),
            addr,
            url: Url::parse("http://127.0.0.1/").map_err(|e| kit("static server URL")(&e))?,
            bytes: Arc::clone(&shared.bytes),
            requests: Arc::clone(&shared.requests),
            shared,
            wrap,
            stop: None,
        };
        s.restart().await?;
        Ok(s)
    }

    /// (Re)starts serving on the same address.
    ///
    /// # Errors
    /// When the address cannot be bound.
    // Async though nothing is awaited: binding and spawning need the runtime, and callers
    // await it.
    #[allow(clippy::unused_async)]
    pub async fn restart(&mut self) -> Result<(), KitError> {
        self.stop();
        // The fronts' queue of pending connections (docs/operating.md#listen-backlog): a
        // burst of agents and clients at a mirror is queued, not dropped.
        let listener =
            cascade_front::listen(self.addr).map_err(|e| kit("bind static server")(&e))?;
        self.addr = listener
            .local_addr()
            .map_err(|e| kit("bind static server")(&e))?;
        self.url = Url::parse(&format!("http://{}/", self.addr))
            .map_err(|e| kit("static server URL")(&e))?;
        let mut app = Router::new().fallback_service(ServeDir::new(&self.dir));
        if let Some(wrap) = &self.wrap {
            app = wrap(app);
        }
        let app = app.layer(middleware::from_fn_with_state(
            Arc::clone(&self.shared),
            count,
        ));
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

    /// Requests seen for exactly `path` (e.g. `/upstream/metadata/timestamp.json`).
    pub fn hits(&self, path: &str) -> u64 {
        self.shared
            .hits
            .lock()
            .map_or(0, |h| h.get(path).copied().unwrap_or(0))
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
        self.sync_into(src, Path::new(""))
    }

    /// [`StaticServer::sync_from`] into the served tree's subdirectory `sub` (e.g. `site`).
    ///
    /// # Errors
    /// A file that cannot be read or written.
    pub fn sync_into(&self, src: &Path, sub: &Path) -> Result<(), KitError> {
        let mut mutable = Vec::new();
        copy_new(src, &self.dir.join(sub), &mut mutable).map_err(|e| kit("sync mirror")(&e))?;
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
