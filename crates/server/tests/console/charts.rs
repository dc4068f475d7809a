//! The console's charts and the clients list's filters in a real headless chromium
//! (`docs/operating.md#fleet-charts`): bytes per hour by source (server, update agents, URL
//! mirrors) with the offload, clients current over time around a notify, each update agent's
//! bytes and clients per hour; the clients list sorted by IP as numbers, filtered by an IP
//! range typed in the form and by compliance from the dashboard's link. Screenshots land in
//! `target/screenshots/3*.png`.

use std::path::Path;

use cascade_client::proto::{AgentDoc, Attempt, Category, CheckIn, Outcome, UpdateReport};
use cascade_testkit::Upstream;
use reqwest::Method;

use crate::harness::{json, start, start_tuned, TestServer};
use crate::webdriver::Browser;

const AGENT_A: &str = "127.0.0.3:8443";
const AGENT_B: &str = "127.0.0.4:8443";
const MIRROR: &str = "url:http://127.0.0.5:8080/cascade";
const MIB: u64 = 1024 * 1024;

/// One check-in of `cred` from `ip` with `installed` and a report of one successful
/// attempt at `source` that got `bytes`, after a failed one at agent A when `fell_back`.
async fn check_in(
    s: &TestServer,
    cred: &str,
    ip: &str,
    installed: &str,
    source: &str,
    bytes: u64,
    fell_back: bool,
) {
    let mut attempts = Vec::new();
    if fell_back {
        attempts.push(Attempt {
            category: Some(Category::Components),
            step: 1,
            source: format!("agent:{AGENT_A}"),
            outcome: Outcome::Failed,
            reason: Some("source.connect: connection refused".into()),
            bytes: 0,
            millis: 3,
        });
    }
    attempts.push(Attempt {
        category: Some(Category::Components),
        step: 2,
        source: source.to_owned(),
        outcome: Outcome::Ok,
        reason: None,
        bytes,
        millis: 40,
    });
    let body = CheckIn {
        ip: Some(ip.into()),
        installed: [(Category::Components, installed.to_owned())].into(),
        last_update: Some(UpdateReport {
            finished_at: Some(s.clock.unix_secs()),
            outcome: Outcome::Ok,
            attempts,
        }),
        relay: None,
        agent_version: None,
    };
    s.api(cred, Method::POST, "/api/client/checkin", json(&body), 200)
        .await;
}

fn land(upstream: &Upstream, data_dir: &Path) {
    let to = data_dir.join("repo/upstream/metadata");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(upstream.public_dir().join("metadata")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The client names in the clients table, top to bottom.
async fn names(b: &Browser) -> Vec<String> {
    let v = b
        .execute(
            "return Array.from(document.querySelectorAll('#clients tbody td:first-child a')).map(a => a.textContent.trim())",
        )
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

// Every chart carries its figures, and the filters work on what the browser sends.
#[tokio::test]
#[ignore = "needs chromium and chromium-driver: scripts/browser-tests installs them and runs this"]
async fn charts_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("server")).await;
    let Some(b) = Browser::start(&s.ca_spki_sha256).await else {
        return;
    };
    let at = |path: &str| format!("{}{path}", s.url);

    let upstream = Upstream::create(&dir.path().join("upstream"), None)
        .await
        .unwrap();
    upstream
        .publish(
            Category::Components,
            "patterns",
            "1.1",
            &[("patterns.db", b"v11")],
        )
        .await
        .unwrap();
    land(&upstream, &dir.path().join("server"));
    for agent in [AGENT_A, AGENT_B] {
        s.api(
            &s.admin,
            Method::POST,
            "/api/agents",
            json(&AgentDoc {
                address: agent.into(),
                capabilities: Category::ALL.to_vec(),
            }),
            201,
        )
        .await;
    }

    // Hour 1: six clients on patterns 1.0, from both agents, the mirror and the server.
    let clients = [
        ("pc-1", "127.0.0.10"),
        ("pc-2", "127.0.0.9"),
        ("pc-3", "127.0.1.5"),
        ("pc-4", "127.0.0.100"),
        ("pc-5", "127.0.0.2"),
        ("pc-6", "10.1.0.1"),
    ];
    let sources = [
        format!("agent:{AGENT_A}"),
        format!("agent:{AGENT_A}"),
        format!("agent:{AGENT_B}"),
        MIRROR.to_owned(),
        "server".to_owned(),
        format!("agent:{AGENT_B}"),
    ];
    let mut creds = Vec::new();
    for ((name, ip), source) in clients.iter().zip(&sources) {
        let (_, cred) = s.enroll_client(name).await;
        check_in(&s, &cred, ip, "patterns 1.0", source, 8 * MIB, false).await;
        creds.push(cred);
    }
    b.goto(&at("/login")).await;
    b.fill("#token", &s.admin).await;
    b.click("form button[type=submit]").await;
    b.wait_url(&format!("{}/", s.url)).await;

    // An hour later, a notify; the clients update to 1.1 over the next minute, agent A
    // stopped: its two clients fall back to the server.
    s.clock.advance(3600);
    b.goto(&at("/")).await;
    s.api(&s.admin, Method::POST, "/api/notify", None, 200)
        .await;
    b.goto(&at("/")).await;
    for (i, ((cred, (_, ip)), source)) in creds.iter().zip(&clients).zip(&sources).enumerate() {
        if i % 2 == 0 {
            s.clock.advance(6);
            b.goto(&at("/")).await;
        }
        let (source, fell_back) = if source == &format!("agent:{AGENT_A}") {
            ("server", true)
        } else {
            (source.as_str(), false)
        };
        check_in(&s, cred, ip, "patterns 1.1", source, 2 * MIB, fell_back).await;
    }
    s.clock.advance(6);
    b.goto(&at("/")).await;
    s.clock.advance(60);
    b.goto(&at("/")).await;

    // Bytes per hour by source, with the offload under each hour.
    let offload = b.text("#offload-chart").await;
    for needle in [
        "server",
        "update agents",
        "URL mirrors",
        "ActiveUpdate",
        "21:00",
        "23:00",
        "83 %",
        "50 %",
        "12.0 MiB",
        "48.0 MiB",
    ] {
        assert!(offload.contains(needle), "{needle}: {offload}");
    }
    let bars = b
        .execute("return document.querySelectorAll('#offload-chart rect').length")
        .await;
    assert_eq!(bars, 6, "three kinds of source in each hour");
    let title = b
        .execute("return document.querySelector('#offload-chart rect title').textContent")
        .await;
    assert_eq!(title, "22:00 server: 8.0 MiB");
    // Clients current over time: none before the notify, all six a minute after it.
    let over_time = b.text("#convergence").await;
    for needle in ["notify 1", "current", "in all", "failed", ">6<"] {
        let html = b
            .execute("return document.getElementById('convergence').outerHTML")
            .await;
        let html = html.as_str().unwrap();
        assert!(
            over_time.contains(needle) || html.contains(needle),
            "{needle}: {html}"
        );
    }
    let dots = b
        .execute("return Array.from(document.querySelectorAll('#convergence circle title')).map(t => t.textContent)")
        .await;
    let dots: Vec<&str> = dots
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        dots.iter()
            .any(|d| d.starts_with("current at") && d.ends_with(": 0")),
        "{dots:?}"
    );
    assert!(
        dots.iter()
            .any(|d| d.starts_with("current at") && d.ends_with(": 2")),
        "{dots:?}"
    );
    assert!(
        dots.iter()
            .any(|d| d.starts_with("current at") && d.ends_with(": 6")),
        "{dots:?}"
    );
    b.screenshot("30-dashboard-charts").await;

    // Each agent's load per hour: agent A served nothing in hour 2 (it stopped).
    b.goto(&at("/agents")).await;
    let bytes = b.text("#agent-bytes").await;
    assert!(
        bytes.contains(AGENT_A) && bytes.contains(AGENT_B),
        "{bytes}"
    );
    let points = b
        .execute("return Array.from(document.querySelectorAll('#agent-bytes rect title')).map(t => t.textContent)")
        .await;
    let points: Vec<&str> = points
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    for want in [
        format!("{AGENT_A} at 22:00: 16.0 MiB"),
        format!("{AGENT_A} at 23:00: 0 B"),
        format!("{AGENT_B} at 22:00: 16.0 MiB"),
        format!("{AGENT_B} at 23:00: 4.0 MiB"),
    ] {
        assert!(points.contains(&want.as_str()), "{want}: {points:?}");
    }
    let clients_per_hour = b
        .execute("return Array.from(document.querySelectorAll('#agent-clients rect title')).map(t => t.textContent)")
        .await;
    assert!(
        clients_per_hour
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str() == Some(&format!("{AGENT_B} at 23:00: 2"))),
        "{clients_per_hour}"
    );
    b.screenshot("31-agents-load").await;

    // The clients list by IP, numerically: 127.0.0.9 before 127.0.0.10 before 127.0.0.100.
    b.goto(&at("/clients")).await;
    b.click("#clients thead a[href*='sort=ip']").await;
    b.wait_url("sort=ip").await;
    assert_eq!(
        names(&b).await,
        ["pc-6", "pc-5", "pc-2", "pc-1", "pc-4", "pc-3"]
    );
    b.screenshot("32-clients-by-ip").await;
    // An IP range typed in the form.
    b.fill("#range", "127.0.0.0/24").await;
    b.click("#client-filters button[type=submit]").await;
    b.wait_url("&compliance=").await;
    let url = b.url().await;
    assert!(
        url.contains("range=127.0.0.0%2F24") && url.contains("sort=ip"),
        "{url}"
    );
    assert_eq!(names(&b).await, ["pc-5", "pc-2", "pc-1", "pc-4"]);
    b.screenshot("33-clients-range").await;
    // Compliance from the dashboard: all six are current now.
    b.goto(&at("/")).await;
    b.click("#current a[href='/clients?category=components&compliance=current']")
        .await;
    b.wait_text("#clients", "pc-6").await;
    assert_eq!(names(&b).await.len(), 6);
    b.goto(&at("/clients?category=components&compliance=behind"))
        .await;
    b.wait_text("#clients", "No clients match").await;

    // Charts fit a phone-sized window.
    b.resize(400, 844).await;
    for page in ["/", "/agents"] {
        b.goto(&at(page)).await;
        let out = b.overflowing().await;
        assert!(out.is_empty(), "{page} overflows a 400 px window: {out:?}");
    }
    b.goto(&at("/")).await;
    b.screenshot("34-dashboard-charts-400").await;
    b.resize(1280, 900).await;
    b.quit().await;
}

// After an upgrade the server answers while it fills in the fleet figures of older clients,
// and every page says so (`docs/operating.md#filling-in-after-an-upgrade`).
#[tokio::test]
#[ignore = "needs chromium and chromium-driver: scripts/browser-tests installs them and runs this"]
async fn filling_in_after_an_upgrade_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let s = start(&data).await;
    let (admin, clock) = (s.admin.clone(), s.clock.clone());
    for n in 0..30 {
        let (_, cred) = s.enroll_client(&format!("pc-{n:02}")).await;
        check_in(&s, &cred, "127.0.0.9", "patterns 1.0", "server", MIB, false).await;
    }
    s.stop().await;
    // Back to a database from before the figures.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("cascade.db").display()))
        .await
        .unwrap();
    for sql in [
        "UPDATE clients SET derived = NULL",
        "DELETE FROM client_sources",
        "DELETE FROM traffic",
    ] {
        sqlx::query(sql).execute(&db).await.unwrap();
    }
    db.close().await;
    // Batches of 10 an hour apart: the first page is served with 20 or 30 clients to go.
    let s = start_tuned(&data, clock, |st| {
        st.backfill_batch = 10;
        st.backfill_pause = std::time::Duration::from_secs(3600);
    })
    .await;
    let Some(b) = Browser::start(&s.ca_spki_sha256).await else {
        return;
    };
    b.goto(&format!("{}/login", s.url)).await;
    b.fill("#token", &admin).await;
    b.click("form button[type=submit]").await;
    b.wait_url(&format!("{}/", s.url)).await;
    let text = b.text("#filling").await;
    assert!(
        text.contains("still being filled in") && text.contains("of 30 clients done"),
        "{text}"
    );
    b.screenshot("35-filling-in").await;
    b.quit().await;
}
