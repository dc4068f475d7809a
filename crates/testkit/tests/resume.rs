//! Resumable downloads (`docs/operating.md#resumable-downloads`): a transfer cut mid-way (a
//! relay or mirror dying) leaves its bytes in the client's `DATA/partial/`, outside any stage,
//! and whichever source comes next — in the same cycle after a fallback, or in the next run
//! after a kill — is asked only for the rest, with a `Range` request starting at the cut.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cascade_core::report::{Outcome, UpdateReport};
use cascade_core::Category;
use cascade_testkit::{update_once, Fleet, HostileServer, Lie};

/// The blob's directory on the sources (v1 has no delta: the whole file is fetched).
const V1_TARGETS: &str = "/upstream/targets/components/patterns/1/";
const LEN: usize = 1 << 20;

struct World {
    tmp: tempfile::TempDir,
    root: PathBuf,
    fleet: Fleet,
    a: HostileServer,
    b: HostileServer,
    v1: Vec<u8>,
}

fn any_port(host: &str) -> SocketAddr {
    format!("{host}:0").parse().unwrap()
}

/// Upstream with a 1 MiB `patterns` 1, the server mirroring it, and two sources serving the
/// server's tree, `a` then `b`, for 127.0.1.0/24, then the server when `server_fallback` (else
/// a cycle whose two sources fail ends there).
async fn world_with(server_fallback: bool) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = cascade_testkit::pseudo_random(LEN, 7);
    let (upstream, root, fleet) = cascade_testkit::upstream_and_server(tmp.path(), &v1)
        .await
        .unwrap();
    let repo = fleet.data_dir.join("repo");
    let a = HostileServer::start(&repo, any_port("127.0.3.1"))
        .await
        .unwrap();
    let b = HostileServer::start(&repo, any_port("127.0.3.2"))
        .await
        .unwrap();
    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up}\"\n\
         [fallback]\ncomponents_from_server = {server_fallback}\n\
         [[sources]]\nrange = \"127.0.1.0/24\"\nurl = \"{a}\"\n\
         [[sources]]\nrange = \"127.0.1.0/24\"\nurl = \"{b}\"\n",
        up = upstream.url().unwrap(),
        a = a.url(),
        b = b.url(),
    );
    fleet.apply_policy(&policy).await.unwrap();
    fleet.mirror().await.unwrap();
    World {
        tmp,
        root,
        fleet,
        a,
        b,
        v1,
    }
}

async fn world() -> World {
    world_with(false).await
}

async fn cycle(w: &World, name: &str, ip: &str) -> UpdateReport {
    let ip: IpAddr = ip.parse().unwrap();
    let mut cfg = w
        .fleet
        .agent_config(&w.tmp.path().join(name), ip, None, Some(&w.root));
    cfg.limits.window = Duration::from_secs(2);
    update_once(cfg).await.unwrap()
}

fn components(r: &UpdateReport) -> Vec<(String, Outcome)> {
    r.attempts
        .iter()
        .filter(|a| a.category == Some(Category::Components))
        .map(|a| {
            let why = a
                .reason
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            (format!("{} ({why})", a.source), a.outcome)
        })
        .collect()
}

/// The `Range` starts `server` was asked for below [`V1_TARGETS`].
fn blob_requests(server: &HostileServer) -> Vec<Option<u64>> {
    server
        .requests()
        .into_iter()
        .filter(|(p, _)| p.starts_with(V1_TARGETS))
        .map(|(_, r)| r)
        .collect()
}

/// Files in `dir` (none when it is missing).
fn files(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .map(|e| {
            let e = e.unwrap();
            let len = e.metadata().unwrap().len();
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    out.sort();
    out
}

fn installed(w: &World, name: &str) -> Vec<u8> {
    std::fs::read(
        w.tmp
            .path()
            .join(name)
            .join("installed/components/patterns/current/patterns.db"),
    )
    .unwrap()
}

// Source `a` dies 300,000 bytes into the blob; the fallback `b` is asked for the rest only,
// and the file installed is whole.
#[tokio::test]
async fn cut_transfer_resumed_by_the_next_source() {
    let w = world().await;
    w.a.lie(V1_TARGETS, Lie::Cut { after: 300_000 });
    let r = cycle(&w, "c1", "127.0.1.5").await;
    let s = components(&r);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].1, Outcome::Failed, "{s:?}");
    assert_eq!(s[1].1, Outcome::Ok, "{s:?}");
    assert_eq!(blob_requests(&w.a), vec![None]);
    assert_eq!(blob_requests(&w.b), vec![Some(300_000)]);
    assert_eq!(installed(&w, "c1"), w.v1);
    let partial = w.tmp.path().join("c1/partial");
    assert!(files(&partial).is_empty(), "{:?}", files(&partial));
}

// A cycle whose sources both fail keeps what arrived in `DATA/partial/` (content-addressed,
// outside the stage); the next run of the agent (a new process, as after a kill) resumes it
// from the other source.
#[tokio::test]
async fn partial_download_survives_a_failed_cycle_and_a_restart() {
    let w = world().await;
    w.a.lie(V1_TARGETS, Lie::Cut { after: 400_000 });
    w.b.lie(V1_TARGETS, Lie::NotFound);
    let r = cycle(&w, "c2", "127.0.1.6").await;
    assert_eq!(r.outcome, Outcome::Quit, "{:?}", components(&r));
    let partial = w.tmp.path().join("c2/partial");
    let kept = files(&partial);
    assert_eq!(
        kept.len(),
        1,
        "{kept:?} {:?} {:?}",
        components(&r),
        w.a.requests()
    );
    assert!(kept[0].0.starts_with(".partial-"), "{kept:?}");
    assert_eq!(kept[0].1, 400_000);
    assert_eq!(blob_requests(&w.b), vec![Some(400_000)]);

    w.a.tell_truth();
    w.b.tell_truth();
    w.a.lie(V1_TARGETS, Lie::NotFound);
    let r = cycle(&w, "c2", "127.0.1.6").await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", components(&r));
    assert_eq!(blob_requests(&w.b), vec![Some(400_000), Some(400_000)]);
    assert_eq!(installed(&w, "c2"), w.v1);
    assert!(files(&partial).is_empty(), "{:?}", files(&partial));
}

// A relay (here `a`) dying mid-transfer does not make the client fetch the whole file from the
// server: the server, the last step, sends only the rest (a range), as its byte count shows.
#[tokio::test]
async fn server_sends_only_the_rest_after_a_relay_died() {
    let w = world_with(true).await;
    w.a.lie(V1_TARGETS, Lie::Cut { after: 700_000 });
    w.b.lie(V1_TARGETS, Lie::NotFound);
    let r = cycle(&w, "c3", "127.0.1.7").await;
    let server = r
        .attempts
        .iter()
        .find(|a| a.category == Some(Category::Components) && a.source == "server")
        .unwrap();
    assert_eq!(server.outcome, Outcome::Ok, "{:?}", components(&r));
    assert_eq!(installed(&w, "c3"), w.v1);
    // The metadata is a few KiB; the blob's first 700,000 bytes are not fetched again.
    let rest = (LEN - 700_000) as u64;
    assert!(
        server.bytes >= rest && server.bytes < rest + 100_000,
        "the server sent {} bytes",
        server.bytes
    );
}
