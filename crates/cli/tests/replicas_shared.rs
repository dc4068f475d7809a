//! Three real `cascade server` processes on one PostgreSQL share one repository
//! (`docs/operating.md#shared-repository-and-one-writer`): they serve the same CA and site
//! root, a program published on one replica is served byte for byte by the others, the
//! mirror leader killed with SIGKILL in the middle of a run is replaced by another replica
//! that completes the mirror, and a replica restarted catches up to the newest trees.
//!
//! The database comes from `CASCADE_TEST_POSTGRES_URL` (a cluster `scripts/test` starts with
//! `scripts/postgres`): the test creates a fresh database there and drops it afterwards.
//! Without the variable it starts a throwaway cluster of its own from Debian's postgresql
//! package. It never skips: with neither, or a cluster it cannot reach, it fails and says why
//! (as `crates/server/tests/api/postgres.rs` does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
#![cfg(unix)]

use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cascade_client::proto::ProgramUpload;
use cascade_client::Client;
use cascade_core::Category;
use cascade_testkit::postgres::Database;
use cascade_testkit::{pseudo_random, CountingProxy, Upstream};
use url::Url;

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `cascade server` process on its own 127.0.0.x address and data directory.
struct Replica {
    name: &'static str,
    ip: Ipv4Addr,
    port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// What every replica is started with.
struct Common {
    database_url: String,
    upstream_root: PathBuf,
    passphrase: PathBuf,
}

impl Replica {
    fn new(tmp: &Path, name: &'static str, last: u8) -> Replica {
        let ip = Ipv4Addr::new(127, 0, 0, last);
        Replica {
            name,
            ip,
            port: free_port(ip),
            data: tmp.join(name),
            log: tmp.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Starts the process; its log goes to `self.log` (appended), its stdout is returned.
    fn start(&mut self, c: &Common) -> std::process::ChildStdout {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cascade"))
            .arg("server")
            .arg("--listen")
            .arg(format!("{}:{}", self.ip, self.port))
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--database-url")
            .arg(&c.database_url)
            .arg("--upstream-root")
            .arg(&c.upstream_root)
            .args(["--mirror-every", "1", "--replica-poll", "1"])
            .arg("--key-passphrase-file")
            .arg(&c.passphrase)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        self.child = Some(child);
        out
    }

    fn url(&self) -> Url {
        Url::parse(&format!("https://{}:{}/", self.ip, self.port)).unwrap()
    }

    fn client(&self, ca: &[u8]) -> Client {
        Client::builder(self.url())
            .trust_ca_pem(Some(ca.to_vec()))
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn is_leader(&self) -> bool {
        self.child.is_some()
            && self
                .log_text()
                .contains("this replica runs the scheduled mirror")
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- replica {} log:\n{}", self.name, self.log_text());
        }
    }
}

/// Polls `check` every 100 ms until it holds or `limit` passes (then panics with `what`).
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every file below `dir` as (path relative to it, bytes), skipping temporary files.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || name.starts_with(".partial-") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// What a mirror of the upstream in `dir` must serve as it is: `timestamp.json` and every
/// full build of `patterns.db`.
fn mirrored(dir: &Path) -> Vec<(String, Vec<u8>)> {
    tree(dir)
        .into_iter()
        .filter(|(p, _)| {
            p == "metadata/timestamp.json"
                || (p.starts_with("targets/") && p.ends_with("patterns.db"))
        })
        .collect()
}

/// Whether the replica behind `client` serves every file of `files` under `prefix` with the
/// same bytes.
async fn serves_all(client: &Client, prefix: &str, files: &[(String, Vec<u8>)]) -> bool {
    for (path, bytes) in files {
        match client.repo_file(&format!("{prefix}/{path}")).await {
            Ok(b) if &b == bytes => {}
            _ => return false,
        }
    }
    true
}

/// Reads a replica's standard output to its end.
fn drain(out: std::process::ChildStdout) {
    std::thread::spawn(move || BufReader::new(out).lines().for_each(drop));
}

/// The admin token from the first start's message on stdout.
fn admin_token(out: std::process::ChildStdout) -> String {
    let mut lines = BufReader::new(out).lines().map_while(Result::ok);
    while let Some(l) = lines.next() {
        if l.starts_with("its API token") {
            let token = lines.next().unwrap().trim().to_owned();
            // The rest of the message is read too: a closed pipe would kill the server.
            std::thread::spawn(move || lines.for_each(drop));
            return token;
        }
    }
    panic!("the first replica printed no admin token");
}

/// The newest `programs/tool` fetched from `r`'s site repository by a TUF client that trusts
/// `site_root` (over HTTPS trusting `ca`), with its state in `dir`.
async fn verified_fetch(r: &Replica, ca: &[u8], site_root: &[u8], dir: &Path) -> Vec<u8> {
    use cascade_repo::{RepoClient, RepoSource, SourceTransport, TransportLimits};
    let transport =
        SourceTransport::new_bound_trusting(TransportLimits::default(), None, Some(ca)).unwrap();
    let client =
        RepoClient::with_transport(site_root.to_vec(), &dir.join("trust"), transport, None)
            .unwrap();
    let source = RepoSource::new(r.url().join("repo/site").unwrap());
    let fetched = client
        .fetch_latest(
            &[source],
            Category::Programs,
            "tool",
            None,
            &dir.join("out"),
        )
        .await
        .unwrap_or_else(|e| panic!("replica {}: {e:?}", r.name));
    std::fs::read(&fetched.files[0].path).unwrap()
}

async fn upload(client: &Client, token: &str, name: &str, version: &str, body: Vec<u8>) -> String {
    let sha = cascade_repo::fsutil::sha256_hex(&body);
    let len = body.len() as u64;
    let view = client
        .admin(token)
        .upload_program(
            name,
            version,
            &ProgramUpload {
                file: "tool".into(),
                hotfix: false,
                sha256: Some(sha.clone()),
            },
            reqwest::Body::from(body),
            len,
        )
        .await
        .unwrap();
    assert_eq!(view.sha256, sha);
    view.target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_repository() {
    let db = Database::new().await.expect("PostgreSQL for the replicas");
    let tmp = tempfile::tempdir().unwrap();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));

    // The upstream, reached through a proxy that can hold one path's answers.
    let upstream = Upstream::create(&tmp.path().join("upstream"), Some(loopback))
        .await
        .unwrap();
    upstream
        .publish(
            Category::Components,
            "patterns",
            "1",
            &[("patterns.db", &pseudo_random(1 << 16, 1))],
        )
        .await
        .unwrap();
    let root = tmp.path().join("upstream-root.json");
    upstream.write_root(&root).unwrap();
    let proxy = CountingProxy::start(upstream.url().unwrap(), loopback)
        .await
        .unwrap();
    let passphrase = tmp.path().join("passphrase");
    std::fs::write(&passphrase, "replicas share one passphrase\n").unwrap();
    let common = Common {
        database_url: db.url.clone(),
        upstream_root: root,
        passphrase,
    };

    // A starts first (and creates the CA, the site repository and the admin); B and C load.
    let mut replicas = [
        Replica::new(tmp.path(), "a", 21),
        Replica::new(tmp.path(), "b", 22),
        Replica::new(tmp.path(), "c", 23),
    ];
    let out = replicas[0].start(&common);
    let token = tokio::task::spawn_blocking(move || admin_token(out))
        .await
        .unwrap();
    let ca = std::fs::read(replicas[0].data.join("tls/ca.pem")).unwrap();
    for r in &mut replicas[1..] {
        drain(r.start(&common));
    }
    let clients: Vec<Client> = replicas.iter().map(|r| r.client(&ca)).collect();
    for (r, c) in replicas.iter().zip(&clients) {
        // Trusting A's CA is enough to reach every replica: they share it.
        eventually(
            Duration::from_secs(60),
            &format!("replica {} up", r.name),
            || async { c.health().await.is_ok() },
        )
        .await;
        assert_eq!(
            c.repo_file("ca.pem").await.unwrap(),
            ca,
            "replica {}",
            r.name
        );
    }
    let site_root = clients[0]
        .repo_file("repo/site/metadata/1.root.json")
        .await
        .unwrap();
    for c in &clients[1..] {
        assert_eq!(
            c.repo_file("repo/site/metadata/1.root.json").await.unwrap(),
            site_root
        );
    }
    for r in &replicas[1..] {
        assert!(
            !r.data.join("site-repo/root-keys-offline").exists(),
            "replica {}: the root key never leaves the first replica",
            r.name
        );
        let key =
            std::fs::read_to_string(r.data.join("site-repo/online-keys/timestamp.pk8")).unwrap();
        assert!(
            key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "replica {}",
            r.name
        );
    }

    // A publish on A is served, byte for byte, by B and C.
    let build = pseudo_random(200_000, 7);
    let target = upload(&clients[0], &token, "tool", "1.0", build.clone()).await;
    assert_eq!(target, "programs/tool/1.0/tool");
    let a_site = tree(&replicas[0].data.join("site-repo/public"));
    assert!(a_site.iter().any(|(_, b)| *b == build), "A holds the build");
    for (r, c) in replicas.iter().zip(&clients).skip(1) {
        eventually(
            Duration::from_secs(30),
            &format!("replica {} serves A's publish", r.name),
            || serves_all(c, "repo/site", &a_site),
        )
        .await;
    }
    // And it verifies: a TUF client pinned to A's site root fetches it from B and from C.
    for (i, r) in replicas.iter().enumerate().skip(1) {
        let got = verified_fetch(r, &ca, &site_root, &tmp.path().join(format!("tuf-{i}"))).await;
        assert_eq!(got, build, "replica {}", r.name);
    }
    // The other replicas list it too (they read the signed targets they materialized).
    let listed = clients[2].admin(&token).programs().await.unwrap();
    assert!(
        listed.programs.iter().any(|p| p.target == target),
        "{listed:?}"
    );

    // The mirror leader is killed with SIGKILL in the middle of a run.
    let held = {
        let files = tree(&upstream.public_dir().join("targets"));
        assert_eq!(files.len(), 1, "{files:?}");
        format!("/targets/{}", files[0].0)
    };
    proxy.hold(&held);
    clients[1]
        .admin(&token)
        .put_policy(
            &cascade_core::PolicyDoc::from_policy(
                &cascade_core::Policy::from_toml(&format!(
                    "activeupdate_url = \"{}\"",
                    proxy.url()
                ))
                .unwrap(),
            ),
            None,
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the leader's run reaches the held target",
        || async { proxy.waiting() >= 1 },
    )
    .await;
    let leaders: Vec<usize> = (0..3).filter(|&i| replicas[i].is_leader()).collect();
    assert_eq!(leaders.len(), 1, "exactly one mirror leader: {leaders:?}");
    let dead = leaders[0];
    replicas[dead].kill();
    proxy.release();
    let upstream_tree = mirrored(&upstream.public_dir());
    let alive: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
    for &i in &alive {
        eventually(
            Duration::from_secs(60),
            &format!(
                "replica {} serves the mirror another leader completed",
                replicas[i].name
            ),
            || serves_all(&clients[i], "repo/upstream", &upstream_tree),
        )
        .await;
    }
    assert!(
        alive.iter().any(|&i| replicas[i].is_leader()),
        "no replica took the mirror over"
    );

    // While the killed replica is down: a new upstream version and a new site publish.
    upstream
        .publish(
            Category::Components,
            "patterns",
            "2",
            &[("patterns.db", &pseudo_random(1 << 16, 2))],
        )
        .await
        .unwrap();
    let upstream_tree = mirrored(&upstream.public_dir());
    // Two publishes at once on the two living replicas: one writer at a time, neither lost.
    let (t1, t2) = tokio::join!(
        upload(
            &clients[alive[0]],
            &token,
            "tool",
            "2.0",
            pseudo_random(150_000, 8)
        ),
        upload(
            &clients[alive[1]],
            &token,
            "other",
            "1.0",
            pseudo_random(90_000, 9)
        ),
    );
    for &i in &alive {
        let api = clients[i].admin(&token);
        eventually(
            Duration::from_secs(30),
            "both publishes listed everywhere",
            || async {
                let listed = api.programs().await.unwrap();
                [&t1, &t2]
                    .iter()
                    .all(|t| listed.programs.iter().any(|p| &&p.target == t))
            },
        )
        .await;
    }
    let site_of = |i: usize| tree(&replicas[i].data.join("site-repo/public"));
    eventually(
        Duration::from_secs(30),
        "the living replicas hold one site tree",
        || {
            let same = site_of(alive[0]) == site_of(alive[1]);
            async move { same }
        },
    )
    .await;
    let newest_site = site_of(alive[0]);
    for &i in &alive {
        eventually(
            Duration::from_secs(60),
            "the living replicas serve the new upstream",
            || serves_all(&clients[i], "repo/upstream", &upstream_tree),
        )
        .await;
    }

    // Restarted, it catches up to the newest trees.
    drain(replicas[dead].start(&common));
    let c = &clients[dead];
    eventually(
        Duration::from_secs(60),
        "the restarted replica is up",
        || async { c.health().await.is_ok() },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the restarted replica serves the newest site tree",
        || serves_all(c, "repo/site", &newest_site),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the restarted replica serves the newest upstream",
        || serves_all(c, "repo/upstream", &upstream_tree),
    )
    .await;
    assert_eq!(c.repo_file("ca.pem").await.unwrap(), ca);

    for r in &mut replicas {
        r.kill();
    }
    db.drop_db().await.unwrap();
}
