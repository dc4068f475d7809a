//! The console's fleet figures (`docs/operating.md#fleet-charts`), stored at check-in and
//! aggregated in SQL: source health, compliance, bytes per hour by source (a report sent
//! again is not counted twice), the fleet samples around a notify, the dashboard's and the
//! agents page's charts, and the clients list's numeric IP sort and IP-range filter.
//! [`figures`] runs on SQLite here and on PostgreSQL in `postgres`.

use cascade_client::proto::{
    AgentDoc, Attempt, Category, CheckIn, ComplianceResponse, FleetHealth, HealthLevel, Outcome,
    UpdateReport,
};
use reqwest::header::COOKIE;
use reqwest::Method;

use crate::harness::{json, start, TestServer};

const AGENT: &str = "127.0.0.3:8443";

pub(crate) fn attempt(step: u32, source: &str, outcome: Outcome, bytes: u64) -> Attempt {
    Attempt {
        category: Some(Category::Components),
        step,
        source: source.to_owned(),
        outcome,
        reason: (outcome == Outcome::Failed).then(|| "source.connect: refused".into()),
        bytes,
        millis: 5,
    }
}

pub(crate) async fn check_in(s: &TestServer, cred: &str, ip: &str, report: Option<UpdateReport>) {
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(cred),
        &[],
        json(&CheckIn {
            ip: Some(ip.to_owned()),
            installed: [(Category::Components, "patterns 1.1".to_owned())].into(),
            last_update: report,
            ..CheckIn::default()
        }),
    )
    .await
    .expect(200);
}

pub(crate) async fn page(s: &TestServer, cookie: &str, path: &str) -> String {
    let resp = s
        .console_http()
        .get(format!("{}{path}", s.url))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.text().await.unwrap()
}

/// The names in the clients table of a clients page, in order.
pub(crate) fn names(page: &str) -> Vec<String> {
    page.split("<a href=\"/clients/")
        .skip(1)
        .filter_map(|p| p.split('>').nth(1))
        .filter_map(|p| p.split('<').next())
        .map(str::to_owned)
        .collect()
}

/// Three clients fall back from a stopped agent to the server; their figures are stored at
/// check-in and every aggregate agrees with them.
pub async fn figures(s: &TestServer) {
    s.admin(
        Method::POST,
        "/api/agents",
        json(&AgentDoc {
            address: AGENT.into(),
            capabilities: Category::ALL.to_vec(),
        }),
    )
    .await
    .expect(201);
    let cookie = crate::sessions::login(s, &[("token", &s.admin)]).await;
    let now = s.clock.unix_secs();
    let report = UpdateReport {
        finished_at: Some(now),
        outcome: Outcome::Ok,
        attempts: vec![
            attempt(1, &format!("agent:{AGENT}"), Outcome::Failed, 0),
            attempt(2, "server", Outcome::Ok, 1000),
        ],
    };
    let mut creds = Vec::new();
    for (name, ip) in [
        ("pc-a", "127.0.0.10"),
        ("pc-b", "127.0.0.9"),
        ("pc-c", "127.0.1.1"),
    ] {
        let (_, cred) = s.enroll_client(name, None).await;
        check_in(s, &cred, ip, Some(report.clone())).await;
        creds.push((cred, ip));
    }
    // The same report again, and a check-in without one: counted once.
    check_in(s, &creds[0].0, creds[0].1, Some(report.clone())).await;
    check_in(s, &creds[1].0, creds[1].1, None).await;

    let h: FleetHealth = s
        .admin(Method::GET, "/api/fleet/health", None)
        .await
        .typed(200);
    let agent = h.sources.iter().find(|x| x.address == AGENT).unwrap();
    assert_eq!(agent.level, HealthLevel::Down, "{agent:?}");
    assert_eq!((agent.failed, agent.served), (3, 0));
    assert_eq!(
        agent
            .affected
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["pc-a", "pc-b", "pc-c"]
    );
    assert!(
        agent.summary.contains("3 clients on server"),
        "{}",
        agent.summary
    );
    let c: ComplianceResponse = s
        .admin(Method::GET, "/api/fleet/compliance", None)
        .await
        .typed(200);
    let comp = c
        .categories
        .iter()
        .find(|c| c.category == Category::Components)
        .unwrap();
    assert_eq!(comp.total, 3);
    assert_eq!(comp.distribution[0].version, "patterns 1.1");
    assert_eq!(comp.distribution[0].clients, 3);

    // The dashboard: 3,000 bytes from the server (not 4,000: the repeat is not counted),
    // nothing offloaded, three recovered failures, and the charts.
    let dash = page(s, &cookie, "/").await;
    assert!(dash.contains("id=\"offload\">0 %"), "{dash}");
    assert!(dash.contains("2.9 KiB"), "{dash}");
    assert!(
        dash.contains("3 failed attempts by 3 clients were recovered by fallback"),
        "{dash}"
    );
    assert!(dash.contains("id=\"offload-chart\""), "{dash}");
    assert!(dash.contains("id=\"convergence\""), "{dash}");

    // A notify, then the clients' next check-ins: samples around it, the notify marked.
    s.admin(Method::POST, "/api/notify", None).await.expect(200);
    for secs in [6, 6, 60] {
        s.clock.advance(secs);
        page(s, &cookie, "/").await;
    }
    let dash = page(s, &cookie, "/").await;
    assert!(dash.contains("notify 1"), "{dash}");

    // The clients list sorts IPs as numbers and filters a range over the same key.
    let list = page(s, &cookie, "/clients?sort=ip").await;
    assert_eq!(names(&list), ["pc-b", "pc-a", "pc-c"], "{list}");
    let list = page(s, &cookie, "/clients?sort=ip&order=desc").await;
    assert_eq!(names(&list), ["pc-c", "pc-a", "pc-b"]);
    let list = page(s, &cookie, "/clients?range=127.0.0.0%2F24").await;
    assert_eq!(names(&list), ["pc-a", "pc-b"]);
    let list = page(s, &cookie, "/clients?range=127.0.0.10-127.0.1.1&sort=ip").await;
    assert_eq!(names(&list), ["pc-a", "pc-c"]);
    // Nothing is published, so nobody is behind in it.
    let list = page(s, &cookie, "/clients?category=components&compliance=behind").await;
    assert!(names(&list).is_empty(), "{list}");
}

#[tokio::test]
async fn fleet_figures_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    figures(&s).await;
}

// Check-ins with new reports at once, from many clients: each stores its figures in a
// transaction that reads before it writes. On SQLite a deferred transaction that must become
// a writer after another connection committed fails at once ("database is locked", whatever
// the busy timeout): every check-in here must be answered 200, none 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_check_ins_are_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let mut creds = Vec::new();
    for n in 0..40 {
        let (_, cred) = s.enroll_client(&format!("pc-{n}"), None).await;
        creds.push(cred);
    }
    for round in 0..3_u64 {
        let now = s.clock.unix_secs() + i64::try_from(round).unwrap();
        let calls = creds.iter().enumerate().map(|(n, cred)| {
            let report = UpdateReport {
                finished_at: Some(now),
                outcome: Outcome::Ok,
                attempts: vec![attempt(1, "server", Outcome::Ok, 1000 + round)],
            };
            let ip = format!("127.0.2.{}", n + 1);
            let s = &s;
            async move { check_in(s, cred, &ip, Some(report)).await }
        });
        futures::future::join_all(calls).await;
    }
    s.stop().await;
}
