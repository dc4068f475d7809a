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

use std::path::Path;
use std::time::Duration;

use cascade_client::proto::ProgramUpload;
use cascade_client::Client;
use cascade_core::Category;
use cascade_testkit::cli::{
    patterns_upstream, publish_upstream_patterns, replicas_on_postgres, PgReplicas,
};
use cascade_testkit::replicas::Replicas;
use cascade_testkit::{pseudo_random, wait_until, CountingProxy};

const EXE: &str = env!("CARGO_BIN_EXE_cascade");

/// The replicas' names in messages, in order.
const NAMES: [&str; 3] = ["a", "b", "c"];

/// Polls `check` until it holds or `limit` passes (then panics with `what`).
async fn eventually<F, Fut>(limit: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if let Err(e) = wait_until(limit, check).await {
        panic!("{what}: {e}");
    }
}

/// Whether replica `i` runs and its log says it is the mirror leader.
fn is_leader(r: &PgReplicas, i: usize) -> bool {
    r.replicas[i].pid().is_some() && r.log(i).contains("this replica runs the scheduled mirror")
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

/// The newest `programs/tool` fetched from replica `i`'s site repository by a TUF client that
/// trusts `site_root` (over HTTPS trusting the replicas' CA), with its state in `dir`.
async fn verified_fetch(r: &Replicas, i: usize, site_root: &[u8], dir: &Path) -> Vec<u8> {
    use cascade_repo::{RepoClient, RepoSource, SourceTransport, TransportLimits};
    let transport =
        SourceTransport::new_bound_trusting(TransportLimits::default(), None, Some(&r.ca_pem))
            .unwrap();
    let client =
        RepoClient::with_transport(site_root.to_vec(), &dir.join("trust"), transport, None)
            .unwrap();
    let source = RepoSource::new(r.replicas[i].url.join("repo/site").unwrap());
    let fetched = client
        .fetch_latest(
            &[source],
            Category::Programs,
            "tool",
            None,
            &dir.join("out"),
        )
        .await
        .unwrap_or_else(|e| panic!("replica {}: {e:?}", NAMES[i]));
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
    let tmp = tempfile::tempdir().unwrap();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));

    // The upstream, reached through a proxy that can hold one path's answers.
    let (upstream, root) = patterns_upstream(tmp.path(), &pseudo_random(1 << 16, 1))
        .await
        .unwrap();
    let proxy = CountingProxy::start(upstream.url().unwrap(), loopback)
        .await
        .unwrap();

    // A starts first (and creates the CA, the site repository and the admin); B and C load.
    let extra = [
        "--upstream-root".to_owned(),
        root.display().to_string(),
        "--mirror-every".into(),
        "1".into(),
        "--replica-poll".into(),
        "1".into(),
    ];
    let mut r = replicas_on_postgres(EXE, tmp.path(), 3, &extra)
        .await
        .expect("PostgreSQL for the replicas");
    let token = r.secrets.admin_token.clone();
    let ca = r.ca_pem.clone();
    let clients: Vec<Client> = (0..3).map(|i| r.client(i).unwrap()).collect();
    for (name, c) in NAMES.iter().zip(&clients) {
        // Trusting A's CA is enough to reach every replica: they share it.
        eventually(
            Duration::from_secs(60),
            &format!("replica {name} up"),
            || async { c.health().await.is_ok() },
        )
        .await;
        assert_eq!(c.repo_file("ca.pem").await.unwrap(), ca, "replica {name}");
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
    for (name, replica) in NAMES.iter().zip(&r.replicas).skip(1) {
        let data = &replica.data_dir;
        assert!(
            !data.join("site-repo/root-keys-offline").exists(),
            "replica {name}: the root key never leaves the first replica",
        );
        let key =
            std::fs::read_to_string(data.join("site-repo/online-keys/timestamp.pk8")).unwrap();
        assert!(
            key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "replica {name}",
        );
    }

    // A publish on A is served, byte for byte, by B and C.
    let build = pseudo_random(200_000, 7);
    let target = upload(&clients[0], &token, "tool", "1.0", build.clone()).await;
    assert_eq!(target, "programs/tool/1.0/tool");
    let a_site = tree(&r.replicas[0].data_dir.join("site-repo/public"));
    assert!(a_site.iter().any(|(_, b)| *b == build), "A holds the build");
    for (name, c) in NAMES.iter().zip(&clients).skip(1) {
        eventually(
            Duration::from_secs(30),
            &format!("replica {name} serves A's publish"),
            || serves_all(c, "repo/site", &a_site),
        )
        .await;
    }
    // And it verifies: a TUF client pinned to A's site root fetches it from B and from C.
    for (i, name) in NAMES.iter().enumerate().skip(1) {
        let got = verified_fetch(&r, i, &site_root, &tmp.path().join(format!("tuf-{i}"))).await;
        assert_eq!(got, build, "replica {name}");
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
    r.apply_policy(1, &format!("activeupdate_url = \"{}\"", proxy.url()))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the leader's run reaches the held target",
        || async { proxy.waiting() >= 1 },
    )
    .await;
    let leaders: Vec<usize> = (0..3).filter(|&i| is_leader(&r, i)).collect();
    assert_eq!(leaders.len(), 1, "exactly one mirror leader: {leaders:?}");
    let dead = leaders[0];
    r.kill(dead);
    proxy.release();
    let upstream_tree = mirrored(&upstream.public_dir());
    let alive: Vec<usize> = (0..3).filter(|&i| i != dead).collect();
    for &i in &alive {
        eventually(
            Duration::from_secs(60),
            &format!(
                "replica {} serves the mirror another leader completed",
                NAMES[i]
            ),
            || serves_all(&clients[i], "repo/upstream", &upstream_tree),
        )
        .await;
    }
    assert!(
        alive.iter().any(|&i| is_leader(&r, i)),
        "no replica took the mirror over"
    );

    // While the killed replica is down: a new upstream version and a new site publish.
    publish_upstream_patterns(&upstream, "2", &pseudo_random(1 << 16, 2))
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
    let site_of = |i: usize| tree(&r.replicas[i].data_dir.join("site-repo/public"));
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
    r.restart(dead).await.unwrap();
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

    r.finish().await.unwrap();
}
