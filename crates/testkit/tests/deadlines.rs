//! Deadlines against a source that accepts connections and never answers (an HTTP cache
//! stopped with SIGSTOP), `docs/operating.md#deadlines`: one attempt waits on it once, for
//! the header timeout its failure names; the next categories only probe it briefly; and a
//! whole cycle ends at its deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cascade_core::report::{Outcome, UpdateReport};
use cascade_testkit::Fleet;

struct World {
    tmp: tempfile::TempDir,
    root: PathBuf,
    fleet: Fleet,
    /// How many connections the hung source accepted.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

/// A listener on 127.0.3.3 that accepts every connection and holds it, never answering.
async fn hung_source() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.3.3:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (addr, accepted)
}

/// Upstream with `patterns` 1, the server mirroring it, and the hung source first in the plan
/// of 127.0.1.0/24 (every category); the server follows when `server_fallback`.
async fn world(server_fallback: bool) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, root, fleet) = cascade_testkit::upstream_and_server(tmp.path(), b"v1")
        .await
        .unwrap();
    let (hung, accepted) = hung_source().await;
    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up}\"\n\
         [fallback]\ncomponents_from_server = {server_fallback}\n\
         [[sources]]\nrange = \"127.0.1.0/24\"\nurl = \"http://{hung}/repo/\"\n",
        up = upstream.url().unwrap(),
    );
    fleet.apply_policy(&policy).await.unwrap();
    fleet.mirror().await.unwrap();
    World {
        tmp,
        root,
        fleet,
        accepted,
    }
}

async fn cycle(w: &World, header: Duration, probe: Duration, deadline: Duration) -> UpdateReport {
    let ip: IpAddr = "127.0.1.9".parse().unwrap();
    let mut cfg = w
        .fleet
        .agent_config(&w.tmp.path().join("c"), ip, None, Some(&w.root));
    cfg.limits.header_timeout = header;
    cfg.limits.probe_timeout = probe;
    cfg.limits.cycle_deadline = deadline;
    cascade_testkit::update_once(cfg).await.unwrap()
}

fn reason(a: &cascade_core::report::Attempt) -> String {
    a.reason
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

// The first category waits on the hung source once (not once per file it asks for: the
// next-root probe, then `timestamp.json`), and its failure names that one timeout; later
// categories only probe it; the server then delivers.
#[tokio::test]
async fn hung_source_waited_on_once_per_cycle() {
    let w = world(true).await;
    let header = Duration::from_millis(1500);
    let probe = Duration::from_millis(200);
    let r = cycle(&w, header, probe, Duration::from_secs(120)).await;
    let hung: Vec<_> = r
        .attempts
        .iter()
        .filter(|a| a.source.starts_with("url:"))
        .collect();
    assert!(hung.len() >= 2, "{:?}", r.attempts);
    assert!(
        hung.iter().all(|a| a.outcome == Outcome::Failed),
        "{hung:?}"
    );
    let first = hung[0];
    assert!(
        reason(first).contains("no response within 1.5s"),
        "{}",
        reason(first)
    );
    // One timeout, not two in a row (each is 1.5 s).
    assert!(
        first.millis >= 1500 && first.millis < 2 * 1500,
        "first attempt took {} ms",
        first.millis
    );
    for later in &hung[1..] {
        assert!(
            reason(later).contains("no response within 200ms"),
            "{}",
            reason(later)
        );
        assert!(
            later.millis < 1500,
            "a later category waited {} ms",
            later.millis
        );
    }
    let components: Vec<_> = r
        .attempts
        .iter()
        .filter(|a| a.category == Some(cascade_core::Category::Components))
        .collect();
    assert_eq!(
        components.last().unwrap().source,
        "server",
        "{components:?}"
    );
    assert_eq!(components.last().unwrap().outcome, Outcome::Ok);
    // One connection per category at most: nothing asked twice within an attempt.
    assert!(
        w.accepted.load(std::sync::atomic::Ordering::SeqCst) <= hung.len(),
        "{} connections for {} attempts",
        w.accepted.load(std::sync::atomic::Ordering::SeqCst),
        hung.len()
    );
}

// A cycle is bounded as a whole: with a header timeout far longer than the cycle deadline,
// the cycle ends at its deadline and every category quits saying so.
#[tokio::test]
async fn a_cycle_ends_at_its_deadline() {
    let w = world(false).await;
    let started = std::time::Instant::now();
    let r = cycle(
        &w,
        Duration::from_secs(60),
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.outcome, Outcome::Quit);
    let quits: Vec<_> = r
        .attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Quit)
        .collect();
    assert!(!quits.is_empty(), "{:?}", r.attempts);
    assert!(
        quits
            .iter()
            .all(|a| reason(a).contains("deadline of 1s passed")),
        "{quits:?}"
    );
}
