//! A running agent keeps its HTTP clients for its life (`docs/operating.md#tls-session-resumption`):
//! a later cycle reuses its kept-alive connections to the server or resumes their TLS sessions
//! from the server's tickets, so the server makes no full TLS handshake for it; a one-shot
//! cycle (`cascade update-now`: a fresh agent) makes at least one. Counted by the server
//! (`cascade_tls_handshakes_total` in `/metrics`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use cascade_core::Category;
use cascade_testkit::{update_once, wait_until, AgentHandle, Fleet};

/// The server's `/metrics` text.
async fn metrics(fleet: &Fleet) -> String {
    fleet.api().client().metrics().await.unwrap()
}

/// The value of the first metrics line starting with `prefix` (0 when none).
fn value(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Full TLS handshakes the server completed so far.
async fn full_handshakes(fleet: &Fleet) -> u64 {
    value(
        &metrics(fleet).await,
        "cascade_tls_handshakes_total{kind=\"full\"} ",
    )
}

/// Check-ins the server answered so far.
async fn checkins(fleet: &Fleet) -> u64 {
    metrics(fleet)
        .await
        .lines()
        .filter(|l| {
            l.starts_with("cascade_http_request_duration_seconds_count{")
                && l.contains("route=\"/api/client/checkin\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// Event streams of ordinary clients held now.
async fn client_streams(fleet: &Fleet) -> u64 {
    value(
        &metrics(fleet).await,
        "cascade_event_streams{role=\"client\"} ",
    )
}

/// The version `dir`'s agent has installed of `components/patterns`.
fn installed(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("installed/components/patterns/current"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemons_later_cycle_makes_no_full_tls_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, root, fleet) = cascade_testkit::upstream_and_server(tmp.path(), b"one")
        .await
        .unwrap();
    fleet
        .apply_policy(&format!(
            "mode = \"customized\"\nactiveupdate_url = \"{}\"\n",
            upstream.url().unwrap()
        ))
        .await
        .unwrap();
    fleet.mirror().await.unwrap();

    // Cycle 1 (at start): version 1, checked in, the notification stream held.
    let dir = tmp.path().join("c1");
    let cfg = fleet.agent_config(&dir, IpAddr::from([127, 0, 2, 1]), None, Some(&root));
    let mut agent = AgentHandle::spawn(cfg.clone());
    wait_until(Duration::from_secs(60), || async {
        installed(&dir).as_deref() == Some("1")
            && checkins(&fleet).await >= 1
            && client_streams(&fleet).await == 1
    })
    .await
    .unwrap();
    let full_after_first = full_handshakes(&fleet).await;
    let checkins_after_first = checkins(&fleet).await;
    assert!(full_after_first >= 1, "the server counts no full handshake");

    // Cycle 2 (on the notice): version 2 through the same agent.
    upstream
        .publish(
            Category::Components,
            "patterns",
            "2",
            &[("patterns.db", b"two")],
        )
        .await
        .unwrap();
    fleet.mirror().await.unwrap();
    fleet.notify().await.unwrap();
    wait_until(Duration::from_secs(60), || async {
        installed(&dir).as_deref() == Some("2") && checkins(&fleet).await > checkins_after_first
    })
    .await
    .unwrap();
    assert_eq!(
        full_handshakes(&fleet).await,
        full_after_first,
        "the daemon's second cycle made a full TLS handshake"
    );
    agent.stop().await.unwrap();

    // A one-shot cycle is a fresh agent with fresh clients: a full handshake.
    update_once(cfg).await.unwrap();
    assert!(
        full_handshakes(&fleet).await > full_after_first,
        "a one-shot cycle made no full TLS handshake"
    );
}
