//! The fallback chain (`docs/architecture.md#fallback-chain`) at run time, with every piece real: a
//! signed upstream on 127.0.0.1, the server mirroring it, static URL mirrors that go down or lie,
//! update agents relaying, and clients bound to their own 127.0.x.y address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use cascade_client::proto::ClientsQuery;
use cascade_core::report::{Outcome, UpdateReport};
use cascade_core::Category;
use cascade_testkit::{update_once, AgentHandle, Fleet, StaticServer, Upstream};

struct World {
    tmp: tempfile::TempDir,
    upstream: Upstream,
    root: PathBuf,
    fleet: Fleet,
    a: StaticServer,
    b: StaticServer,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn any_port(host: &str) -> SocketAddr {
    format!("{host}:0").parse().unwrap()
}

/// Refreshes a URL mirror from the server's repository tree.
fn sync_mirror(fleet: &Fleet, mirror: &StaticServer) {
    fleet.sync_mirror(mirror).unwrap();
}

/// Publishes version 2 upstream, mirrors it to the server and refreshes one URL mirror
/// (the other keeps version 1).
async fn release_v2(w: &World, fresh: &StaticServer) {
    w.upstream
        .publish(
            Category::Components,
            "patterns",
            "2",
            &[("patterns.db", b"patterns version two")],
        )
        .await
        .unwrap();
    w.fleet.mirror().await.unwrap();
    sync_mirror(&w.fleet, fresh);
}

fn policy(w: &World, extra: &str) -> String {
    format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up}\"\n{extra}\n\
         [[sources]]\nrange = \"127.0.1.0/24\"\nurl = \"{a}\"\n\
         [[sources]]\nrange = \"127.0.1.0-127.0.1.255\"\nurl = \"{b}\"\n",
        up = w.upstream.url().unwrap(),
        a = w.a.url(),
        b = w.b.url(),
    )
}

async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, root, fleet) =
        cascade_testkit::upstream_and_server(tmp.path(), b"patterns version one")
            .await
            .unwrap();
    fleet
        .site
        .publish(
            Category::DomainSettings,
            "settings",
            "1",
            &[("settings.toml", b"scan = true")],
        )
        .await
        .unwrap();
    let a = StaticServer::start(&tmp.path().join("mirror-a"), any_port("127.0.0.1"))
        .await
        .unwrap();
    let b = StaticServer::start(&tmp.path().join("mirror-b"), any_port("127.0.0.1"))
        .await
        .unwrap();
    let w = World {
        tmp,
        upstream,
        root,
        fleet,
        a,
        b,
    };
    w.fleet.apply_policy(&policy(&w, "")).await.unwrap();
    w.fleet.mirror().await.unwrap();
    sync_mirror(&w.fleet, &w.a);
    sync_mirror(&w.fleet, &w.b);
    w
}

async fn client(w: &World, name: &str, addr: &str) -> UpdateReport {
    let cfg = w
        .fleet
        .agent_config(&w.tmp.path().join(name), ip(addr), None, Some(&w.root));
    update_once(cfg).await.unwrap()
}

fn steps(r: &UpdateReport, c: Category) -> Vec<(String, Outcome, String)> {
    r.attempts
        .iter()
        .filter(|a| a.category == Some(c))
        .map(|a| {
            (
                a.source.clone(),
                a.outcome,
                a.reason
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn installed(w: &World, name: &str, c: Category, item: &str) -> Option<String> {
    let dir = w
        .tmp
        .path()
        .join(name)
        .join("installed")
        .join(c.as_str())
        .join(item)
        .join("current");
    std::fs::read_link(dir)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

// Row 1: the first entry is down, so the client updates from the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_entry_down_second_serves() {
    let mut w = world().await;
    w.a.stop();
    let r = client(&w, "c1", "127.0.1.10").await;
    let s = steps(&r, Category::Components);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(s[0].0, format!("url:{}", w.a.url()));
    assert_eq!(s[0].1, Outcome::Failed);
    assert!(s[0].2.contains("source.connect"), "{}", s[0].2);
    assert_eq!(s[1].0, format!("url:{}", w.b.url()));
    assert_eq!(s[1].1, Outcome::Ok);
    assert_eq!(r.outcome, Outcome::Ok);
    let ok = r
        .attempts
        .iter()
        .find(|a| a.category == Some(Category::Components) && a.outcome == Outcome::Ok)
        .unwrap();
    assert!(
        ok.bytes >= b"patterns version one".len() as u64,
        "bytes counted: {}",
        ok.bytes
    );
    assert_eq!(
        installed(&w, "c1", Category::Components, "patterns").as_deref(),
        Some("1")
    );
    assert_eq!(
        installed(&w, "c1", Category::DomainSettings, "settings").as_deref(),
        Some("1")
    );
    let body = std::fs::read(
        w.tmp
            .path()
            .join("c1/installed/components/patterns/current/patterns.db"),
    )
    .unwrap();
    assert_eq!(body, b"patterns version one");
}

// Row 2: every entry is down, and components_from_server is on: the server serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_entries_down_server_serves() {
    let mut w = world().await;
    w.a.stop();
    w.b.stop();
    let r = client(&w, "c2", "127.0.1.11").await;
    let s = steps(&r, Category::Components);
    let outcomes: Vec<Outcome> = s.iter().map(|x| x.1).collect();
    assert_eq!(
        outcomes,
        [Outcome::Failed, Outcome::Failed, Outcome::Ok],
        "{s:?}"
    );
    assert_eq!(s[2].0, "server");
    assert_eq!(
        installed(&w, "c2", Category::Components, "patterns").as_deref(),
        Some("1")
    );
}

// Row 3: server option off, the upstream is not in the list ("any" rule): the client goes to
// ActiveUpdate directly; with activeupdate_fallback = "never" it quits instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_off_then_upstream_then_quit() {
    let mut w = world().await;
    w.a.stop();
    w.b.stop();
    let off = "[fallback]\ncomponents_from_server = false";
    w.fleet.apply_policy(&policy(&w, off)).await.unwrap();
    let r = client(&w, "c3", "127.0.1.12").await;
    let s = steps(&r, Category::Components);
    assert_eq!(
        s.last().unwrap().0,
        format!("activeupdate:{}", w.upstream.url().unwrap())
    );
    assert_eq!(s.last().unwrap().1, Outcome::Ok, "{s:?}");
    assert_eq!(
        installed(&w, "c3", Category::Components, "patterns").as_deref(),
        Some("1")
    );

    let never = format!("activeupdate_fallback = \"never\"\n{off}");
    w.fleet.apply_policy(&policy(&w, &never)).await.unwrap();
    let r = client(&w, "c4", "127.0.1.13").await;
    let s = steps(&r, Category::Components);
    assert_eq!(s.last().unwrap().1, Outcome::Quit, "{s:?}");
    assert_eq!(r.outcome, Outcome::Quit);
    assert_eq!(installed(&w, "c4", Category::Components, "patterns"), None);
}

// A mirror that serves a tampered blob is refused with a hash error; the client moves on to
// the next entry and installs the genuine bytes; nothing lands outside its data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_mirror_is_refused() {
    let w = world().await;
    let mut tampered = 0;
    let targets = w.a.dir().join("upstream/targets/components/patterns/1");
    for e in std::fs::read_dir(&targets).unwrap() {
        let p = e.unwrap().path();
        std::fs::write(&p, b"patterns version EVIL").unwrap();
        tampered += 1;
    }
    assert!(tampered > 0);
    let r = client(&w, "c5", "127.0.1.14").await;
    let s = steps(&r, Category::Components);
    assert_eq!(s[0].1, Outcome::Failed, "{s:?}");
    assert!(
        s[0].2.contains("hash") || s[0].2.contains("length"),
        "{}",
        s[0].2
    );
    assert_eq!(s[1].1, Outcome::Ok);
    let body = std::fs::read(
        w.tmp
            .path()
            .join("c5/installed/components/patterns/current/patterns.db"),
    )
    .unwrap();
    assert_eq!(body, b"patterns version one");
}

// A stale mirror (an old snapshot) cannot hold a client back: the server announces its
// current timestamp version, metadata older than that fails the source, and the next entry
// brings the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_mirror_does_not_hold_back() {
    let w = world().await;
    let r = client(&w, "c6", "127.0.1.15").await;
    assert_eq!(r.outcome, Outcome::Ok);
    release_v2(&w, &w.b).await;
    let r = client(&w, "c6", "127.0.1.15").await;
    let s = steps(&r, Category::Components);
    assert_eq!(s[0].1, Outcome::Failed, "{s:?}");
    assert!(
        s[0].2.contains("rollback") || s[0].2.contains("stale") || s[0].2.contains("older"),
        "{}",
        s[0].2
    );
    assert_eq!(s[1].1, Outcome::Ok, "{s:?}");
    assert_eq!(
        installed(&w, "c6", Category::Components, "patterns").as_deref(),
        Some("2")
    );
}

/// Responses the server's `/repo/` has sent (`/metrics`).
async fn repo_responses(w: &World) -> u64 {
    let text = w.fleet.api().client().metrics().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cascade_repo_responses_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

// A client whose list gives it mirrors reads nothing from the server's repository: the
// version floor comes with the policy answer (`cascade-repo-versions`), not from the server's
// `timestamp.json` files, and still holds a stale mirror back (the first entry, refreshed
// too late, fails as older than announced; the second brings version 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_comes_with_the_policy_not_from_the_repository() {
    let w = world().await;
    assert_eq!(client(&w, "c9", "127.0.1.18").await.outcome, Outcome::Ok);
    release_v2(&w, &w.b).await;
    let before = repo_responses(&w).await;
    let r = client(&w, "c9", "127.0.1.18").await;
    let after = repo_responses(&w).await;
    let s = steps(&r, Category::Components);
    assert_eq!(s[0].1, Outcome::Failed, "{s:?}");
    assert!(
        s[0].2.contains("rollback") || s[0].2.contains("older"),
        "{}",
        s[0].2
    );
    assert_eq!(s[1].1, Outcome::Ok, "{s:?}");
    assert_eq!(
        after, before,
        "the server's /repo/ answered the client's cycle"
    );
}

// With the server down, the cached policy still drives updates through the mirrors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_cached_policy_still_works() {
    let mut w = world().await;
    assert_eq!(client(&w, "c7", "127.0.1.16").await.outcome, Outcome::Ok);
    release_v2(&w, &w.a).await;
    w.fleet.stop().await;
    let r = client(&w, "c7", "127.0.1.16").await;
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.attempts);
    assert_eq!(
        installed(&w, "c7", Category::Components, "patterns").as_deref(),
        Some("2")
    );
}

// An update agent relays to its office; when it is stopped, its clients fall back to the
// next entry. The relay fetched from the server, and the client's report reached the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_serves_then_falls_back_when_stopped() {
    let w = world().await;
    let relay_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap()
    };
    let toml = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up}\"\n\
         [[agent]]\naddress = \"{relay_addr}\"\n\
         [[sources]]\nrange = \"127.0.1.0/24\"\nagent = \"{relay_addr}\"\n\
         [[sources]]\nrange = \"127.0.1.0/24\"\nurl = \"{b}\"\n",
        up = w.upstream.url().unwrap(),
        b = w.b.url(),
    );
    w.fleet.apply_policy(&toml).await.unwrap();
    let cfg = w.fleet.agent_config(
        &w.tmp.path().join("relay"),
        ip("127.0.0.2"),
        Some(relay_addr),
        Some(&w.root),
    );
    let mut relay = AgentHandle::spawn(cfg);
    cascade_testkit::wait_until(Duration::from_secs(20), || async {
        std::net::TcpStream::connect(relay_addr).is_ok()
            && w.tmp
                .path()
                .join("relay/installed/components/patterns/current")
                .exists()
    })
    .await
    .unwrap();
    let r = client(&w, "c8", "127.0.1.17").await;
    let s = steps(&r, Category::Components);
    assert_eq!(s[0].0, format!("agent:{relay_addr}"));
    assert_eq!(s[0].1, Outcome::Ok, "{s:?}");
    // The relay reports what it served, to whom, and what it took upstream; the server
    // shows it on the agent.
    let served_bytes: u64 = r
        .attempts
        .iter()
        .filter(|a| a.step == 1)
        .map(|a| a.bytes)
        .sum();
    let relay_seen = cascade_testkit::wait_until(Duration::from_secs(10), || async {
        let agents = w.fleet.api().agents().await.unwrap();
        // Reports go out while clients download: wait for the one that counts it all.
        agents.agents[0].relay.as_ref().is_some_and(|r| {
            r.clients
                .iter()
                .any(|c| c.ip == "127.0.1.17" && c.bytes >= served_bytes)
        })
    })
    .await;
    assert!(
        relay_seen.is_ok(),
        "no relay report with the {served_bytes} bytes 127.0.1.17 received reached the server"
    );
    let agents = w.fleet.api().agents().await.unwrap();
    let report = agents.agents[0].relay.as_ref().unwrap();
    assert!(report.client_count >= 1, "{report:?}");
    assert!(report.upstream_fetches > 0, "{report:?}");
    relay.stop().await.unwrap();
    release_v2(&w, &w.b).await;
    let r = client(&w, "c8", "127.0.1.17").await;
    let s = steps(&r, Category::Components);
    assert_eq!(s[0].1, Outcome::Failed, "{s:?}");
    assert_eq!(s[1].1, Outcome::Ok, "{s:?}");
    assert_eq!(
        installed(&w, "c8", Category::Components, "patterns").as_deref(),
        Some("2")
    );
    let clients = w
        .fleet
        .api()
        .clients(&ClientsQuery::default())
        .await
        .unwrap();
    let text = serde_json::to_string(&clients).unwrap();
    assert!(text.contains("127.0.1.17"), "{text}");
}
