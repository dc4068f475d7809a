//! A static file server on a chosen loopback address, the stand-in for nginx, a CDN or the
//! vendor's upstream. It counts bytes served and requests per path, can be stopped and
//! restarted on the same address, so tests can take a source down and bring it back, and can
//! be told to lie about some paths (other bytes, endless data, a trickle) while it serves the
//! rest truthfully: a hostile mirror or relay.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::Router;
use futures::StreamExt as _;
use tokio::sync::oneshot;
use tower_http::services::ServeDir;
use url::Url;

use crate::{kit, KitError};

/// How a [`StaticServer`] answers the paths under a prefix instead of serving its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lie {
    /// These bytes (with their length) instead of the file.
    Bytes(Vec<u8>),
    /// 200 without a length, then `x` bytes for ever.
    Endless,
    /// The real file with its real length, one byte after each `Duration`.
    Trickle(Duration),
}

/// Counters and lies shared with the serving task.
#[derive(Debug, Default)]
struct Shared {
    bytes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    hits: Mutex<HashMap<String, u64>>,
    lies: Mutex<Vec<(String, Lie)>>,
}

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
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

async fn count(
    State((dir, shared)): State<(PathBuf, Arc<Shared>)>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if let Ok(mut hits) = shared.hits.lock() {
        *hits.entry(path.clone()).or_default() += 1;
    }
    let lie = shared.lies.lock().ok().and_then(|lies| {
        lies.iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, lie)| lie.clone())
    });
    let resp = match lie {
        Some(lie) => tell(&dir, &path, lie),
        None => next.run(req).await,
    };
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

/// The answer a lie gives for `path` (a URL path below `dir`).
fn tell(dir: &Path, path: &str, lie: Lie) -> Response {
    match lie {
        Lie::Bytes(b) => b.into_response(),
        Lie::Endless => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            Body::from_stream(futures::stream::repeat(chunk).map(Ok::<_, Infallible>))
                .into_response()
        }
        Lie::Trickle(every) => {
            let rel = path.trim_start_matches('/');
            let file = (!rel.split('/').any(|s| s == ".."))
                .then(|| std::fs::read(dir.join(rel)).ok())
                .flatten();
            let Some(file) = file else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let len = file.len();
            let bytes = futures::stream::iter(file).then(move |b| async move {
                tokio::time::sleep(every).await;
                Ok::<_, Infallible>(Bytes::copy_from_slice(&[b]))
            });
            ([(header::CONTENT_LENGTH, len)], Body::from_stream(bytes)).into_response()
        }
    }
}

impl StaticServer {
    /// Serves `dir` at `http://ADDR/` (`addr` with port 0 picks a free port).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(dir: &Path, addr: SocketAddr) -> Result<Self, KitError> {
        let shared = Arc::new(Shared::default());
        let mut s = StaticServer {
            dir: dir.to_owned(),
            addr,
            url: Url::parse("http://127.0.0.1/").map_err(|e| kit("static server URL")(&e))?,
            bytes: Arc::clone(&shared.bytes),
            requests: Arc::clone(&shared.requests),
            shared,
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
        let state = (self.dir.clone(), Arc::clone(&self.shared));
        let app = Router::new()
            .fallback_service(ServeDir::new(&self.dir))
            .layer(middleware::from_fn_with_state(state, count));
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

    /// From now on answers every path starting with `prefix` (e.g.
    /// `/upstream/metadata/timestamp.json`) with `lie`; the first matching prefix wins.
    pub fn lie(&self, prefix: &str, lie: Lie) {
        if let Ok(mut lies) = self.shared.lies.lock() {
            lies.push((prefix.to_owned(), lie));
        }
    }

    /// Serves every path truthfully again.
    pub fn tell_truth(&self) {
        if let Ok(mut lies) = self.shared.lies.lock() {
            lies.clear();
        }
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
