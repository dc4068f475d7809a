//! Test harness: a tiny HTTP/1.1 server on 127.0.0.1:0 serving a repository directory, with
//! per-path misbehaviour rules, and a fixture that creates and publishes a real repository.

#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_core::Category;
use cascade_repo::{
    Expiries, FailureReason, Fetched, PublishOptions, Publisher, RepoClient, RepoSource,
    TransportLimits,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// Every request a [`Server`] saw: path and the `Range` start it asked for, if any.
pub type RequestLog = Arc<Mutex<Vec<(String, Option<u64>)>>>;

/// How the server answers one path.
#[derive(Clone)]
pub enum Rule {
    /// Serve these bytes.
    Bytes(Vec<u8>),
    /// Answer 200 without a length and never stop sending.
    Endless,
    /// Send the real file `chunk` bytes at a time, pausing `every` between chunks.
    Trickle { chunk: usize, every: Duration },
    /// Answer 404.
    NotFound,
}

/// A misbehaving static server.
pub struct Server {
    pub addr: SocketAddr,
    rules: Arc<Mutex<HashMap<String, Rule>>>,
    /// Every request: path and the `Range` start it asked for, if any.
    pub requests: RequestLog,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serve `root` on 127.0.0.1 with an OS-chosen port.
    pub async fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rules: Arc<Mutex<HashMap<String, Rule>>> = Arc::default();
        let requests: RequestLog = Arc::default();
        let (root, r, log) = (root.to_owned(), rules.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(handle(sock, root.clone(), r.clone(), log.clone()));
            }
        });
        Server {
            addr,
            rules,
            requests,
            task,
        }
    }

    /// Misbehave on `path` (e.g. `/metadata/timestamp.json`).
    pub fn rule(&self, path: &str, rule: Rule) {
        self.rules.lock().unwrap().insert(path.to_owned(), rule);
    }

    pub fn source(&self, label: &str) -> RepoSource {
        RepoSource {
            label: label.to_owned(),
            base: Url::parse(&format!("http://{}/", self.addr)).unwrap(),
        }
    }
}

async fn handle(
    mut sock: TcpStream,
    root: PathBuf,
    rules: Arc<Mutex<HashMap<String, Rule>>>,
    log: RequestLog,
) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let range: Option<u64> = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        let v = v.trim().strip_prefix("bytes=")?.strip_suffix('-')?;
        k.eq_ignore_ascii_case("range").then(|| v.parse().ok())?
    });
    log.lock().unwrap().push((path.clone(), range));
    let rule = rules.lock().unwrap().get(&path).cloned();
    let file = || {
        if path.split('/').any(|s| s == "..") {
            return None;
        }
        std::fs::read(root.join(path.trim_start_matches('/'))).ok()
    };
    match rule {
        Some(Rule::Bytes(b)) => respond(&mut sock, Some(b)).await,
        Some(Rule::NotFound) => respond(&mut sock, None).await,
        None => match (range, file()) {
            (Some(start), Some(body)) if (start as usize) < body.len() => {
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                    body.len() - start as usize,
                    body.len() - 1,
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body[start as usize..]).await;
                let _ = sock.shutdown().await;
            }
            (_, body) => respond(&mut sock, body).await,
        },
        Some(Rule::Endless) => {
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                .await;
            let chunk = vec![b'x'; 64 * 1024];
            while sock.write_all(&chunk).await.is_ok() {}
        }
        Some(Rule::Trickle { chunk, every }) => {
            let Some(body) = file() else {
                return respond(&mut sock, None).await;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            for part in body.chunks(chunk) {
                if sock.write_all(part).await.is_err() || sock.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        }
    }
}

async fn respond(sock: &mut TcpStream, body: Option<Vec<u8>>) {
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(&body).await;
    let _ = sock.shutdown().await;
}

/// Deterministic pseudo-random content that compresses poorly.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// A repository in a temp dir with `components/engine` versions published.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub publisher: Publisher,
    pub root: Vec<u8>,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let publisher = cascade_repo::init(
            &tmp.path().join("repo"),
            &tmp.path().join("keys"),
            Expiries::default(),
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
        let root = std::fs::read(publisher.public_dir().join("metadata/1.root.json")).unwrap();
        Fixture {
            tmp,
            publisher,
            root,
        }
    }

    pub fn public(&self) -> PathBuf {
        self.publisher.public_dir()
    }

    /// Publish `components/engine/VERSION/data.bin` with `bytes`.
    pub async fn publish(&self, version: &str, bytes: &[u8]) {
        let src = self.tmp.path().join("src").join(version);
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("data.bin"), bytes).unwrap();
        self.publisher
            .publish(
                Category::Components,
                "engine",
                version,
                &[src.join("data.bin")],
                PublishOptions::default(),
                jiff::Timestamp::now(),
            )
            .await
            .unwrap();
    }

    /// Copy the served tree as it is now (an old relay's copy).
    pub fn snapshot_public(&self, name: &str) -> PathBuf {
        let dest = self.tmp.path().join(name);
        copy_dir(&self.public(), &dest);
        dest
    }

    pub fn client(&self, limits: TransportLimits) -> RepoClient {
        RepoClient::new(self.root.clone(), &self.tmp.path().join("state"), limits).unwrap()
    }

    /// A fresh, empty staging directory.
    pub fn staging(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join("staging").join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Read a served file.
    pub fn served(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.public().join(rel)).unwrap()
    }

    /// The served path (`/targets/...`) of the full `data.bin` of `version`.
    pub fn blob_path(&self, version: &str) -> String {
        let dir = self
            .public()
            .join("targets/components/engine")
            .join(version);
        let name = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.ends_with(".data.bin"))
            .unwrap();
        format!("/targets/components/engine/{version}/{name}")
    }

    /// Current timestamp's snapshot version.
    pub fn snapshot_version(&self) -> u64 {
        let ts: serde_json::Value =
            serde_json::from_slice(&self.served("metadata/timestamp.json")).unwrap();
        ts["signed"]["meta"]["snapshot.json"]["version"]
            .as_u64()
            .unwrap()
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}

/// Every file below `dir` (relative paths), to prove nothing was left or escaped.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            for f in files_under(&e.path()) {
                out.push(format!("{}/{f}", e.file_name().to_string_lossy()));
            }
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

/// Small windows so slow-retrieval tests run fast.
pub fn fast_limits() -> TransportLimits {
    TransportLimits {
        connect_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(2),
        window: Duration::from_millis(500),
        min_bytes_per_sec: 20_000,
        max_response_bytes: 8 << 20,
    }
}

pub fn v2_of(v1: &[u8]) -> Vec<u8> {
    let mut v2 = v1.to_vec();
    v2[1000..1016].copy_from_slice(b"version-two-here");
    v2.extend_from_slice(b"more data at the end");
    v2
}

pub fn only_code(r: &Result<Fetched, Vec<(String, FailureReason)>>) -> Vec<(String, &'static str)> {
    match r {
        Ok(f) => panic!("expected failure, got {f:?}"),
        Err(list) => list.iter().map(|(s, e)| (s.clone(), e.code())).collect(),
    }
}
