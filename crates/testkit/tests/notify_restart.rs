//! A notify survives a server restart (`docs/architecture.md#notify-across-restarts`): the
//! server is stopped and started again on the same data directory, a notify is posted before
//! the agents' event streams are back, and the agents still hear it when they reconnect,
//! install the new version and report it at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use cascade_core::Category;
use cascade_testkit::{wait_until, AgentHandle, CountingProxy, Fleet};

const EVENTS: &str = "/api/client/events";
const CHECKIN: &str = "/api/client/checkin";

/// Event streams of ordinary clients held now (`/metrics`).
async fn client_streams(fleet: &Fleet) -> u64 {
    let text = fleet.api().client().metrics().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cascade_event_streams{role=\"client\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The version `dir`'s agent has installed of `components/patterns`.
fn installed(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("installed/components/patterns/current"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// What the server shows `client` has installed of `components/patterns`.
async fn reported(fleet: &Fleet, client: &str) -> Option<String> {
    let view = fleet.api().client_record(client).await.ok()?;
    view.installed.get(&Category::Components).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_posted_while_streams_are_down_reaches_agents_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, root, mut fleet) = cascade_testkit::upstream_and_server(tmp.path(), b"one")
        .await
        .unwrap();
    // The agents reach the server through a proxy, so the test decides when their event
    // streams come back after the restart.
    let proxy = CountingProxy::start_trusting(
        fleet.url.clone(),
        SocketAddr::from(([127, 0, 4, 1], 0)),
        fleet.ca_pem(),
    )
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

    let dirs: Vec<_> = (1..=2u8)
        .map(|i| tmp.path().join(format!("c{i}")))
        .collect();
    let mut agents: Vec<_> = dirs
        .iter()
        .zip(1..=2u8)
        .map(|(dir, i)| {
            let mut cfg = fleet.agent_config(dir, IpAddr::from([127, 0, 2, i]), None, Some(&root));
            cfg.server = Some(proxy.url());
            AgentHandle::spawn(cfg)
        })
        .collect();
    wait_until(Duration::from_secs(30), || async {
        dirs.iter().all(|d| installed(d).as_deref() == Some("1"))
            && client_streams(&fleet).await == 2
    })
    .await
    .unwrap();

    // Version 2 is published while the server is down; it comes back, mirrors and notifies
    // while the agents' streams are still away.
    proxy.hold(EVENTS);
    fleet.stop().await;
    upstream
        .publish(
            Category::Components,
            "patterns",
            "2",
            &[("patterns.db", b"two")],
        )
        .await
        .unwrap();
    fleet.restart().await.unwrap();
    fleet.mirror().await.unwrap();
    let sent = fleet.notify().await.unwrap();
    assert_eq!(
        (sent.fan_out.agents, sent.fan_out.clients),
        (0, 0),
        "no stream was connected when the notify was posted"
    );
    assert!(sent.fan_out.replay_window_s > 0, "{sent:?}");

    // Both agents try to reconnect; then their streams come back.
    wait_until(Duration::from_secs(30), || async { proxy.waiting() == 2 })
        .await
        .unwrap();
    proxy.release();
    let ids: Vec<String> = dirs
        .iter()
        .map(|d| {
            let text = std::fs::read_to_string(d.join("identity.json")).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["client_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let updated = wait_until(Duration::from_secs(30), || async {
        let mut all = dirs.iter().all(|d| installed(d).as_deref() == Some("2"));
        for id in &ids {
            all &= reported(&fleet, id).await.as_deref() == Some("patterns 2");
        }
        all
    })
    .await;
    let mut seen = Vec::new();
    for (d, id) in dirs.iter().zip(&ids) {
        seen.push((installed(d), reported(&fleet, id).await));
    }
    assert!(updated.is_ok(), "(installed, reported) per agent: {seen:?}");
    for a in &mut agents {
        a.stop().await.unwrap();
    }
}

// An agent that installs while the server is down reports the new version as soon as the
// server is back (its event stream reconnects), not at its next scheduled cycle an hour later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_while_the_server_is_down_is_reported_when_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, root, mut fleet) = cascade_testkit::upstream_and_server(tmp.path(), b"one")
        .await
        .unwrap();
    // Components straight from the upstream, so the agent can install without the server.
    fleet
        .apply_policy(&format!(
            "mode = \"customized\"\nactiveupdate_url = \"{}\"\n\
             [fallback]\ncomponents_from_server = false\n",
            upstream.url().unwrap()
        ))
        .await
        .unwrap();
    let proxy = CountingProxy::start_trusting(
        fleet.url.clone(),
        SocketAddr::from(([127, 0, 4, 1], 0)),
        fleet.ca_pem(),
    )
    .await
    .unwrap();
    let dir = tmp.path().join("c1");
    let mut cfg = fleet.agent_config(&dir, IpAddr::from([127, 0, 2, 1]), None, Some(&root));
    cfg.server = Some(proxy.url());
    cascade_testkit::update_once(cfg.clone()).await.unwrap();
    assert_eq!(installed(&dir).as_deref(), Some("1"));
    let text = std::fs::read_to_string(dir.join("identity.json")).unwrap();
    let id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(reported(&fleet, &id).await.as_deref(), Some("patterns 1"));

    proxy.hold(CHECKIN);
    fleet.stop().await;
    upstream
        .publish(
            Category::Components,
            "patterns",
            "2",
            &[("patterns.db", b"two")],
        )
        .await
        .unwrap();
    // The agent starts while the server is down: its first cycle installs version 2 from the
    // upstream, and its check-in (held until then, so it cannot meet the restarted server)
    // fails.
    let mut agent = AgentHandle::spawn(cfg);
    wait_until(Duration::from_secs(30), || async { proxy.waiting() == 1 })
        .await
        .unwrap();
    assert_eq!(installed(&dir).as_deref(), Some("2"));
    proxy.release();
    // The released check-in meets the closed port at once (502); give it a moment to.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.restart().await.unwrap();
    let back = wait_until(Duration::from_secs(30), || async {
        reported(&fleet, &id).await.as_deref() == Some("patterns 2")
    })
    .await;
    let now = reported(&fleet, &id).await;
    assert!(back.is_ok(), "the server shows {now:?}");
    agent.stop().await.unwrap();
}
