//! One update agent relaying for 200 full agents (`docs/architecture.md#data-flow`): the relay is
//! the agent in relay mode (`cascade_agent::daemon::run`), it reaches the server through a counting
//! proxy, and each client is a real update cycle (`update_once`) with its own data directory and
//! its own 127.0.2.x address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cascade_agent::daemon::AgentConfig;
use cascade_core::report::{Outcome, RelayReport};
use cascade_core::Category;
use cascade_testkit::{
    pseudo_random, update_once, wait_until, AgentHandle, CountingProxy, Fleet, Upstream,
};

const CLIENTS: u8 = 200;

fn any_port(host: &str) -> SocketAddr {
    format!("{host}:0").parse().unwrap()
}

/// Whether the client in `dir` is inside its components install (a stage exists): it has
/// loaded the metadata and is fetching the blob.
fn staged(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("installed/components/patterns")).is_ok_and(|rd| {
        rd.filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(".stage-"))
    })
}

/// The relay's `/relay/stats` counters.
async fn relay_stats(http: &reqwest::Client, relay: SocketAddr) -> Option<RelayReport> {
    let resp = http
        .get(format!("http://{relay}/relay/stats"))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

/// One office: an upstream with version 1 of `components/patterns`, the server mirroring it,
/// a counting proxy in front of the server, and the address the update agent will serve at.
struct Office {
    upstream: Upstream,
    root: std::path::PathBuf,
    fleet: Fleet,
    proxy: CountingProxy,
    relay_addr: SocketAddr,
}

impl Office {
    async fn open(dir: &Path) -> Office {
        let (upstream, root, fleet) = cascade_testkit::upstream_and_server(dir, b"one")
            .await
            .unwrap();
        let proxy =
            CountingProxy::start_trusting(fleet.url.clone(), any_port("127.0.4.1"), fleet.ca_pem())
                .await
                .unwrap();
        let relay_addr = {
            let l = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
            l.local_addr().unwrap()
        };
        Office {
            upstream,
            root,
            fleet,
            proxy,
            relay_addr,
        }
    }

    /// Applies `policy`, mirrors, and starts the update agent in `dir`, reaching the server
    /// (its upstream fetches included) through the proxy; `tune` adjusts its config.
    async fn start_relay(
        &self,
        dir: &Path,
        policy: &str,
        tune: impl FnOnce(AgentConfig) -> AgentConfig,
    ) -> AgentHandle {
        self.fleet.apply_policy(policy).await.unwrap();
        self.fleet.mirror().await.unwrap();
        let mut cfg = tune(self.fleet.agent_config(
            dir,
            "127.0.0.2".parse().unwrap(),
            Some(self.relay_addr),
            Some(&self.root),
        ));
        cfg.server = Some(self.proxy.url());
        AgentHandle::spawn(cfg)
    }

    /// Publishes version 2 with `bytes`, mirrors it, and returns the blob's server path.
    async fn publish_v2(&self, bytes: &[u8]) -> String {
        self.upstream
            .publish(
                Category::Components,
                "patterns",
                "2",
                &[("patterns.db", bytes)],
            )
            .await
            .unwrap();
        self.fleet.mirror().await.unwrap();
        let dir = self
            .fleet
            .data_dir
            .join("repo/upstream/targets/components/patterns/2");
        let name = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with(".patterns.db"))
            .unwrap();
        format!("/repo/upstream/targets/components/patterns/2/{name}")
    }

    /// The components attempts of a report, as (source, outcome).
    fn steps(r: &cascade_core::report::UpdateReport) -> Vec<(String, Outcome)> {
        r.attempts
            .iter()
            .filter(|a| a.category == Some(Category::Components))
            .map(|a| (a.source.clone(), a.outcome))
            .collect()
    }
}

/// Plain HTTP on loopback only, so one TLS root instead of the system bundle (see
/// `one_tls_root`), and the agents' files on tmpfs when there is one (`scratch_dir`); the
/// test runs on its own runtime, started after that.
#[test]
fn two_hundred_agents_one_upstream_fetch() {
    let tmp = cascade_testkit::scratch_dir().unwrap();
    cascade_testkit::one_tls_root(tmp.path()).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(two_hundred_agents(&tmp));
}

// 200 clients behind one relay all install a newly published and notified version through
// it, and the relay fetches the new blob from upstream exactly once. The server holds the
// blob until every client is waiting on the relay for it, so all 200 (and the relay's own
// cache warming) meet the same cache miss. The clients reach the server through a counting
// proxy of their own: in their cycle after the notify they ask it for their policy and
// report, and for no repository file at all, metadata included (the relay serves every file;
// the version floor comes with the policy answer: `docs/operating.md#relays-serve-all-metadata`).
async fn two_hundred_agents(tmp: &tempfile::TempDir) {
    let o = Office::open(tmp.path()).await;
    let relay_addr = o.relay_addr;
    // Clients: [relay, upstream]. The relay itself (`[agents] source = "customized"`, no
    // entry for 127.0.0.2, components neither from the server nor from ActiveUpdate) does not
    // install components, while its cache fetches from the server (its domain-settings and
    // programs plans): so the blob reaches the relay only as a cache fetch. (An agent that
    // installs the blob itself seeds its cache from that install instead; see the next test.)
    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up}\"\n\
         activeupdate_fallback = \"never\"\n\
         [agents]\nsource = \"customized\"\n\
         [fallback]\ncomponents_from_server = false\n\
         [[agent]]\naddress = \"{relay_addr}\"\n\
         [[sources]]\nrange = \"127.0.2.0/24\"\nagent = \"{relay_addr}\"\n",
        up = o.upstream.url().unwrap(),
    );
    // Patient limits: clients and the relay wait on the held blob, and connect on a busy
    // machine, without giving up.
    let patient = |mut cfg: AgentConfig| {
        cfg.limits.connect_timeout = Duration::from_secs(30);
        cfg.limits.header_timeout = Duration::from_secs(300);
        cfg
    };
    let mut relay = o
        .start_relay(&tmp.path().join("relay"), &policy, patient)
        .await;
    let relay_cache = tmp
        .path()
        .join("relay/relay-cache/upstream/metadata/timestamp.json");
    wait_until(Duration::from_secs(30), || async {
        std::net::TcpStream::connect(relay_addr).is_ok() && relay_cache.exists()
    })
    .await
    .unwrap();

    let v2 = pseudo_random(64 * 1024, 2);
    let blob = o.publish_v2(&v2).await;
    o.proxy.hold(&blob);
    o.fleet.notify().await.unwrap();
    let clients_proxy =
        CountingProxy::start_trusting(o.fleet.url.clone(), any_port("127.0.4.2"), o.fleet.ca_pem())
            .await
            .unwrap();
    let relay_served_before = relay_stats(&reqwest::Client::new(), relay_addr)
        .await
        .unwrap();

    let dirs: Vec<_> = (1..=CLIENTS)
        .map(|i| tmp.path().join(format!("c{i}")))
        .collect();
    let clients: Vec<_> = dirs
        .iter()
        .zip(1..=CLIENTS)
        .map(|(dir, i)| {
            let ip = IpAddr::from([127, 0, 2, i]);
            let mut cfg = patient(o.fleet.agent_config(dir, ip, None, Some(&o.root)));
            cfg.server = Some(clients_proxy.url());
            tokio::spawn(update_once(cfg))
        })
        .collect();

    // Release the blob once every client is inside its install and the relay has answered no
    // request for 300 ms: all of them are then waiting on it.
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let (mut seen, mut since) = (None, tokio::time::Instant::now());
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "clients inside their install: {} of {CLIENTS}",
            dirs.iter().filter(|d| staged(d)).count()
        );
        let now = relay_stats(&http, relay_addr).await.map(|r| r.requests);
        if now != seen {
            (seen, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= Duration::from_millis(300) && dirs.iter().all(|d| staged(d)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = o.proxy.waiting();
    o.proxy.release();

    for (c, dir) in clients.into_iter().zip(&dirs) {
        let r = c.await.unwrap().unwrap();
        assert_eq!(
            Office::steps(&r),
            [(format!("agent:{relay_addr}"), Outcome::Ok)],
            "{}: {:?}",
            dir.display(),
            r.attempts
        );
        let installed = dir.join("installed/components/patterns");
        assert_eq!(
            std::fs::read_link(installed.join("current")).unwrap(),
            Path::new("2")
        );
        assert_eq!(std::fs::read(installed.join("2/patterns.db")).unwrap(), v2);
    }
    assert_eq!(held, 1, "relay fetches of the blob waiting at the server");
    assert_eq!(o.proxy.hits(&blob), 1, "relay fetches of {blob}");
    let stats = relay_stats(&http, relay_addr).await;
    assert_eq!(stats.as_ref().map(|r| r.refused), Some(0), "{stats:?}");

    // Offload: what the clients got from the relay against what they got from the server.
    let stats = stats.unwrap();
    let from_relay = |r: &RelayReport| -> (u64, u64) {
        r.clients
            .iter()
            .filter(|c| c.ip.starts_with("127.0.2."))
            .fold((0, 0), |(q, b), c| (q + c.requests, b + c.bytes))
    };
    let (after_q, after_b) = from_relay(&stats);
    let (before_q, before_b) = from_relay(&relay_served_before);
    let (relay_requests, relay_bytes) = (after_q - before_q, after_b - before_b);
    let (server_repo_requests, server_repo_bytes) = (
        clients_proxy.hits_under("/repo/"),
        clients_proxy.bytes_under("/repo/"),
    );
    let (server_requests, server_bytes) = (
        clients_proxy.hits_under("/"),
        clients_proxy.bytes_under("/"),
    );
    println!(
        "offload for {CLIENTS} relay clients, one cycle after notify: repository requests \
         {relay_requests} relay / {server_repo_requests} server, repository bytes \
         {relay_bytes} relay / {server_repo_bytes} server; the server answered {server_requests} \
         requests ({server_bytes} body bytes) in all (policy, reports)"
    );
    assert_eq!(
        server_repo_requests, 0,
        "relay clients asked the server's /repo/ {server_repo_requests} times"
    );
    assert!(relay_requests >= u64::from(CLIENTS) * 4, "{relay_requests}");
    assert!(
        relay_bytes >= u64::from(CLIENTS) * v2.len() as u64,
        "{relay_bytes}"
    );
    relay.stop().await.unwrap();
}

// An update agent with the default policy installs a new version from the server and then
// fills its relay cache from that verified install: the blob crosses the server's link once,
// not once for the install and again for the cache. A client then gets it from the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_caches_its_own_install_instead_of_fetching_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Office::open(tmp.path()).await;
    let relay_addr = o.relay_addr;
    // Default agent policy: the relay installs from the server, as its cache fetches.
    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up}\"\n\
         [[agent]]\naddress = \"{relay_addr}\"\n\
         [[sources]]\nrange = \"127.0.2.0/24\"\nagent = \"{relay_addr}\"\n",
        up = o.upstream.url().unwrap(),
    );
    let relay_dir = tmp.path().join("relay");
    let mut relay = o.start_relay(&relay_dir, &policy, |c| c).await;
    let current = relay_dir.join("installed/components/patterns/current");
    // Ready: serving, version 1 installed, and holding the event stream (to hear the notify).
    wait_until(Duration::from_secs(30), || async {
        std::net::TcpStream::connect(relay_addr).is_ok()
            && current.exists()
            && o.fleet.agent_streams().await.unwrap() == 1
    })
    .await
    .unwrap();

    let v2 = pseudo_random(256 * 1024, 7);
    let blob = o.publish_v2(&v2).await;
    o.fleet.notify().await.unwrap();
    let cached = relay_dir.join(format!("relay-cache{}", blob.trim_start_matches("/repo")));
    let ready = wait_until(Duration::from_secs(30), || async {
        std::fs::read_link(&current).is_ok_and(|v| v == Path::new("2")) && cached.is_file()
    })
    .await;
    assert!(
        ready.is_ok(),
        "relay installed {:?}, blob cached: {}, its last report: {}",
        std::fs::read_link(&current),
        cached.is_file(),
        std::fs::read_to_string(relay_dir.join("last-report.json")).unwrap_or_default()
    );

    let c = tmp.path().join("c1");
    let cfg = o
        .fleet
        .agent_config(&c, IpAddr::from([127, 0, 2, 1]), None, Some(&o.root));
    let r = update_once(cfg).await.unwrap();
    assert_eq!(
        Office::steps(&r),
        [(format!("agent:{relay_addr}"), Outcome::Ok)]
    );
    assert_eq!(
        std::fs::read(c.join("installed/components/patterns/2/patterns.db")).unwrap(),
        v2
    );
    assert_eq!(std::fs::read(&cached).unwrap(), v2);
    assert_eq!(o.proxy.hits(&blob), 1, "fetches of {blob} from the server");
    relay.stop().await.unwrap();
}

// A relay whose cached `timestamp.json` is still inside its reuse window when a new version is
// published (its clock stands still here, so the window never ends) serves the client the new
// one all the same: the client sends the floor the server announced with its policy, and the
// relay fetches the timestamp again for it. The client installs version 2 from the relay, has
// no server step to fall back to, and asks the server for no repository file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_floor_makes_the_relay_revalidate() {
    use cascade_agent::relay::{Relay, RelayConfig};
    use cascade_repo::{SourceTransport, TransportLimits};

    let tmp = tempfile::tempdir().unwrap();
    let o = Office::open(tmp.path()).await;
    let relay_addr = o.relay_addr;
    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{up}\"\n\
         activeupdate_fallback = \"never\"\n\
         [fallback]\ncomponents_from_server = false\n\
         [[agent]]\naddress = \"{relay_addr}\"\n\
         [[sources]]\nrange = \"127.0.2.0/24\"\nagent = \"{relay_addr}\"\n",
        up = o.upstream.url().unwrap(),
    );
    o.fleet.apply_policy(&policy).await.unwrap();
    o.fleet.mirror().await.unwrap();
    let transport =
        SourceTransport::new_bound_trusting(TransportLimits::default(), None, o.fleet.ca_pem())
            .unwrap();
    let relay = Relay::new(
        RelayConfig {
            cache_dir: tmp.path().join("relay-cache"),
            max_concurrent_fetches: 4,
            max_cache_bytes: u64::MAX,
            clock: Arc::new(cascade_testkit::ManualClock::at(1_700_000_000)),
        },
        transport,
        1_700_000_000,
    );
    relay.set_upstreams(vec![o.fleet.url.join("repo/").unwrap()]);
    let listener = tokio::net::TcpListener::bind(relay_addr).await.unwrap();
    tokio::spawn(Arc::clone(&relay).serve(listener, std::future::pending()));

    let clients_proxy =
        CountingProxy::start_trusting(o.fleet.url.clone(), any_port("127.0.4.3"), o.fleet.ca_pem())
            .await
            .unwrap();
    let dir = tmp.path().join("c1");
    let cycle = || {
        let mut cfg = o
            .fleet
            .agent_config(&dir, IpAddr::from([127, 0, 2, 1]), None, Some(&o.root));
        cfg.server = Some(clients_proxy.url());
        update_once(cfg)
    };
    let r = cycle().await.unwrap();
    assert_eq!(
        Office::steps(&r),
        [(format!("agent:{relay_addr}"), Outcome::Ok)]
    );
    let v2 = pseudo_random(4096, 3);
    o.publish_v2(&v2).await;
    let r = cycle().await.unwrap();
    assert_eq!(
        Office::steps(&r),
        [(format!("agent:{relay_addr}"), Outcome::Ok)],
        "{:?}",
        r.attempts
    );
    assert_eq!(
        std::fs::read(dir.join("installed/components/patterns/2/patterns.db")).unwrap(),
        v2
    );
    assert_eq!(clients_proxy.hits_under("/repo/"), 0);
}
