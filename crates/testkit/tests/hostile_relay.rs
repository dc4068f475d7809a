//! A hostile source in front of full agents (`docs/architecture.md#trust-model`): a URL
//! entry, first in the client's
//! plan, that serves the server's real repository tree from 127.0.3.1 but lies about one
//! path — a correctly signed but expired `timestamp.json`, endless data, or a trickle. The
//! agent's update cycle must refuse it with a reason naming the cause, move on to the next
//! source (the server) and install the genuine new version, and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use cascade_core::report::{Outcome, UpdateReport};
use cascade_core::Category;
use cascade_testkit::{update_once, Fleet, HostileServer, Lie, Upstream};

const V1: &[u8] = b"patterns version one";
const V2: &[u8] = b"patterns version two";

struct World {
    tmp: tempfile::TempDir,
    upstream: Upstream,
    root: PathBuf,
    fleet: Fleet,
    hostile: HostileServer,
}

fn any_port(host: &str) -> SocketAddr {
    format!("{host}:0").parse().unwrap()
}

/// Upstream with `patterns` 1, the server mirroring it, and the hostile source serving the
/// server's repository tree (for now truthfully) as the first entry for 127.0.1.0/24; the
/// server follows by `fallback.components_from_server` (on by default).
async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, root, fleet) = cascade_testkit::upstream_and_server(tmp.path(), V1)
        .await
        .unwrap();
    let hostile = HostileServer::start(&fleet.data_dir.join("repo"), any_port("127.0.3.1"))
        .await
        .unwrap();
    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up}\"\n\
         [[sources]]\nrange = \"127.0.1.0/24\"\nurl = \"{hostile}\"\n",
        up = upstream.url().unwrap(),
        hostile = hostile.url(),
    );
    fleet.apply_policy(&policy).await.unwrap();
    fleet.mirror().await.unwrap();
    World {
        tmp,
        upstream,
        root,
        fleet,
        hostile,
    }
}

/// One update cycle of the client `name` at `addr`, with a 1 s throughput window (2 s in
/// `agent_config`) so a trickle is given up within about a second per file, and a 1 MiB cap per response so endless data
/// cut only by that cap (not by the signed length) would show as `source.too_large`.
async fn client(w: &World, name: &str, addr: &str) -> UpdateReport {
    let ip: IpAddr = addr.parse().unwrap();
    let mut cfg = w
        .fleet
        .agent_config(&w.tmp.path().join(name), ip, None, Some(&w.root));
    cfg.limits.window = Duration::from_secs(1);
    cfg.limits.max_response_bytes = 1 << 20;
    update_once(cfg).await.unwrap()
}

fn components(r: &UpdateReport) -> Vec<(String, Outcome, String)> {
    r.attempts
        .iter()
        .filter(|a| a.category == Some(Category::Components))
        .map(|a| {
            (
                a.source.clone(),
                a.outcome,
                a.reason.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// What the client has under `installed/components/patterns/`: entry names, sorted.
fn installed_entries(w: &World, name: &str) -> Vec<String> {
    let dir = w
        .tmp
        .path()
        .join(name)
        .join("installed/components/patterns");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The URL path (on the hostile source) of v2's content-addressed files: the full blob and
/// the delta from v1 share this directory.
const V2_TARGETS: &str = "/upstream/targets/components/patterns/2/";

/// Cycle 1, while the hostile source tells the truth: v1 comes from it (step 1), so the
/// source is otherwise good and the failure of cycle 2 is the lie's doing.
async fn v1_through_hostile(w: &World, name: &str, addr: &str) {
    let r = client(w, name, addr).await;
    let s = components(&r);
    assert_eq!(s[0].0, format!("url:{}", w.hostile.url()), "{s:?}");
    assert_eq!(s[0].1, Outcome::Ok, "{s:?}");
}

/// Cycle 2, with v2 published and the hostile source lying at `lied_path`: step 1 (the
/// hostile source) failed with a reason containing `code`, step 2 (the server) installed v2,
/// the lie was asked for, and only the genuine v1 and v2 are on disk.
async fn refused_then_server(w: &World, name: &str, addr: &str, lied_path: &str, code: &str) {
    let before = w.hostile.hits(lied_path);
    let r = client(w, name, addr).await;
    let s = components(&r);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].0, format!("url:{}", w.hostile.url()));
    assert_eq!(s[0].1, Outcome::Failed, "{s:?}");
    assert!(s[0].2.contains(code), "step 1 reason: {}", s[0].2);
    assert_eq!(s[1].0, "server");
    assert_eq!(s[1].1, Outcome::Ok, "{s:?}");
    assert_eq!(r.outcome, Outcome::Ok);
    assert!(
        w.hostile.hits(lied_path) > before,
        "the lie at {lied_path} was never asked for"
    );
    let dir = w
        .tmp
        .path()
        .join(name)
        .join("installed/components/patterns");
    assert_eq!(
        std::fs::read_link(dir.join("current")).unwrap(),
        PathBuf::from("2")
    );
    assert_eq!(std::fs::read(dir.join("2/patterns.db")).unwrap(), V2);
    assert_eq!(std::fs::read(dir.join("1/patterns.db")).unwrap(), V1);
    assert_eq!(
        installed_entries(w, name),
        ["1", "2", "current", "previous"],
        "a stage or stray file was left behind"
    );
    assert_eq!(std::fs::read_dir(dir.join("2")).unwrap().count(), 1);
}

/// Publishes v2 upstream; the server mirrors it.
async fn release_v2(w: &World) {
    w.upstream
        .publish(
            Category::Components,
            "patterns",
            "2",
            &[("patterns.db", V2)],
        )
        .await
        .unwrap();
    w.fleet.mirror().await.unwrap();
}

// A hostile source serving a correctly signed but expired timestamp.json is refused as
// expired; the server installs v2. The lie is newer than both the client's timestamp and the
// one the server announces, so the expiry check alone stands between it and the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_timestamp_refused_server_installs() {
    let w = world().await;
    v1_through_hostile(&w, "c1", "127.0.1.10").await;
    release_v2(&w).await;
    // Signed with the real timestamp key as if two days ago (one-day lifetime), after the
    // server mirrored v2; then a valid one on top, as the publisher's schedule would do.
    let two_days_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48);
    w.upstream.refresh_timestamp(two_days_ago).await.unwrap();
    let expired = std::fs::read(w.upstream.public_dir().join("metadata/timestamp.json")).unwrap();
    w.upstream
        .refresh_timestamp(jiff::Timestamp::now())
        .await
        .unwrap();
    let signed: serde_json::Value = serde_json::from_slice(&expired).unwrap();
    let valid_until: jiff::Timestamp = signed["signed"]["expires"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(valid_until < jiff::Timestamp::now(), "{valid_until}");
    let ts = "/upstream/metadata/timestamp.json";
    let announced: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.fleet.data_dir.join("repo").join(&ts[1..])).unwrap(),
    )
    .unwrap();
    assert!(signed["signed"]["version"].as_u64() > announced["signed"]["version"].as_u64());
    w.hostile.lie(ts, Lie::Bytes(expired));
    refused_then_server(&w, "c1", "127.0.1.10", ts, "tuf.expired").await;
}

// A hostile source answering v2's files (full blob and delta) with endless data, no length
// given, is cut off at the signed length (20 bytes) and refused as too large; the server
// installs v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_blob_refused_server_installs() {
    let w = world().await;
    v1_through_hostile(&w, "c2", "127.0.1.11").await;
    release_v2(&w).await;
    w.hostile.lie(V2_TARGETS, Lie::Endless);
    let full = full_blob_path(&w);
    refused_then_server(&w, "c2", "127.0.1.11", &full, "tuf.too_large").await;
}

// A hostile source trickling v2's files one byte per 200 ms is given up as too slow after
// the client's throughput window (lowered to 1 s here); the server installs v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_blob_refused_server_installs() {
    let w = world().await;
    v1_through_hostile(&w, "c3", "127.0.1.12").await;
    release_v2(&w).await;
    w.hostile.lie(
        V2_TARGETS,
        Lie::Trickle {
            chunk: 1,
            every: Duration::from_millis(200),
        },
    );
    let full = full_blob_path(&w);
    refused_then_server(&w, "c3", "127.0.1.12", &full, "source.too_slow").await;
}

/// The URL path of v2's full (not delta) blob on the hostile source.
fn full_blob_path(w: &World) -> String {
    let dir = w
        .fleet
        .data_dir
        .join("repo")
        .join(V2_TARGETS.trim_start_matches('/'));
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".patterns.db"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    format!("{V2_TARGETS}{}", names[0])
}
