//! Test harness: the kit's hostile server serving a repository directory on 127.0.0.1:0
//! (lies per path), the fetch most tests make, and a fixture that creates and publishes a
//! real repository.

#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade_core::Category;
use cascade_repo::{
    Expiries, FailureReason, Fetched, Installed, PublishOptions, Publisher, RepoClient, RepoSource,
    TransportLimits,
};

pub use cascade_testkit::{pseudo_random as content, HostileServer, Lie};

/// The kit's hostile server, serving `root` on 127.0.0.1 with an OS-chosen port.
pub async fn serve(root: &Path) -> HostileServer {
    HostileServer::start(root, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A served tree as a source the repository client fetches from.
pub trait SourceOf {
    fn source(&self, label: &str) -> RepoSource;
}

impl SourceOf for HostileServer {
    fn source(&self, label: &str) -> RepoSource {
        RepoSource {
            label: label.to_owned(),
            base: self.url(),
        }
    }
}

/// The fetch most tests make: the newest `components/engine` from `sources`, in order, into
/// the staging directory `out`, with `installed` (if any) for a delta.
pub async fn fetch_engine(
    client: &RepoClient,
    sources: &[RepoSource],
    installed: Option<Installed<'_>>,
    out: &Path,
) -> Result<Fetched, Vec<(String, FailureReason)>> {
    client
        .fetch_latest(sources, Category::Components, "engine", installed, out)
        .await
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
        ..TransportLimits::default()
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
