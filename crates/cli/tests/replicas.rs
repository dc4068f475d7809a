//! Three replicas of the server as real `cascade server` processes on one PostgreSQL database
//! (`docs/operating.md#replicas`), with real agents given every replica's URL. The database
//! comes from `CASCADE_TEST_POSTGRES_URL` exactly as for the server's PostgreSQL test
//! (`cascade_testkit::postgres`): these tests fail, never skip, without PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cascade_client::proto::{EnrollRequest, NotifyRequest};
use cascade_testkit::cli::{
    installed_patterns, patterns_upstream, publish_upstream_patterns, replicas_on_postgres,
    PgReplicas,
};
use cascade_testkit::replicas::Replicas;
use cascade_testkit::{pseudo_random, wait_until, Sse, Upstream};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};

const EXE: &str = env!("CARGO_BIN_EXE_cascade");

/// Every client hears a notify at once (no head start for update agents).
fn no_head_start() -> Vec<String> {
    vec!["--agent-head-start".into(), "0".into()]
}

async fn enroll(r: &Replicas, i: usize, name: &str) -> String {
    r.client(i)
        .unwrap()
        .enroll(
            &r.secrets.enroll_token,
            &EnrollRequest {
                name: name.into(),
                domain: None,
                agent_address: None,
            },
        )
        .await
        .unwrap()
        .credential
}

// A notify on replica A reaches clients streaming from B and from C; the delivery time of
// each is printed (BENCHMARKS.md records it), not asserted against a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_on_one_replica_reaches_streams_on_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let r = replicas_on_postgres(EXE, tmp.path(), 3, &no_head_start())
        .await
        .unwrap();
    let http = cascade_client::http_builder(Some(&r.ca_pem))
        .unwrap()
        .build()
        .unwrap();
    let mut streams = Vec::new();
    for i in [1, 2] {
        let cred = enroll(&r, i, &format!("pc-{i}")).await;
        let mut sse = Sse::connect(&http, r.replicas[i].url.as_str(), &cred)
            .await
            .unwrap();
        assert_eq!(sse.next().await.unwrap().0, "hello");
        streams.push((i, sse));
    }
    let admin = r.admin(0).unwrap();
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let sent = Instant::now();
        let notice = admin.notify(&NotifyRequest::default()).await.unwrap();
        for (i, sse) in &mut streams {
            let (event, data) = tokio::time::timeout(Duration::from_secs(30), sse.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("the notice from replica 1 never reached replica {}", *i + 1)
                })
                .unwrap();
            assert_eq!(event, "notify");
            assert_eq!(data["id"], notice.id, "the notice sent on replica 1");
            latencies.push((*i + 1, sent.elapsed()));
        }
    }
    for (replica, took) in &latencies {
        println!("notify on replica 1 reached a stream on replica {replica} after {took:?}");
    }
    let worst = latencies.iter().map(|(_, d)| *d).max().unwrap();
    println!(
        "notify across replicas: worst of {} deliveries {worst:?}",
        latencies.len()
    );
    r.finish().await.unwrap();
}

/// The name=value of the `Set-Cookie` for `name`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("a {name} cookie in {:?}", resp.headers()))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

// A console login on replica A is a session on B and C (sessions live in PostgreSQL); a
// logout on C ends it on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_login_on_one_replica_is_valid_on_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let r = replicas_on_postgres(EXE, tmp.path(), 3, &[]).await.unwrap();
    let http = cascade_client::http_builder(Some(&r.ca_pem))
        .unwrap()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = |i: usize| r.replicas[i].url.as_str().trim_end_matches('/').to_owned();
    let page = http.get(format!("{}/login", base(0))).send().await.unwrap();
    let login_cookie = set_cookie(&page, "cascade_login");
    let html = page.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    let csrf = html[at..].split('"').next().unwrap().to_owned();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", csrf.as_str()),
            ("user", r.secrets.admin_user.as_str()),
            ("password", r.secrets.admin_password.as_str()),
        ])
        .finish();
    let resp = http
        .post(format!("{}/login", base(0)))
        .header(COOKIE, login_cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "login on replica 1");
    let session = set_cookie(&resp, "cascade_session");
    let status_on = |i: usize| {
        let (http, session, url) = (
            http.clone(),
            session.clone(),
            format!("{}/sources", base(i)),
        );
        async move {
            let resp = http.get(url).header(COOKIE, session).send().await.unwrap();
            let to = resp
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), to)
        }
    };
    for i in 0..3 {
        assert_eq!(
            status_on(i).await,
            (200, None),
            "the session made on replica 1, on replica {}",
            i + 1
        );
    }
    // Log out on C: refused on A.
    let page = http
        .get(format!("{}/sources", base(2)))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    let csrf = page[at..].split('"').next().unwrap().to_owned();
    let resp = http
        .post(format!("{}/logout", base(2)))
        .header(COOKIE, &session)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "logout on replica 3");
    let (status, to) = status_on(0).await;
    assert_eq!(
        (status, to.as_deref()),
        (303, Some("/login")),
        "logged out on replica 3, refused on replica 1"
    );
    r.finish().await.unwrap();
}

/// A real agent daemon with every replica's URL (`--server` repeated, in `order`).
fn agent(dir: &Path, k: u8, urls: &[url::Url], token: &str) -> Child {
    let data = dir.join(format!("agent-{k}"));
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::File::create(dir.join(format!("agent-{k}.log"))).unwrap();
    let mut cmd = Command::new(EXE);
    cmd.args([
        "agent",
        "--interval",
        "3600",
        "--self-update",
        "off",
        "--verify-every",
        "0",
    ])
    .arg("--bind-ip")
    .arg(format!("127.0.2.{k}"))
    .arg("--data-dir")
    .arg(&data)
    .arg("--enroll-token")
    .arg(token);
    for u in urls {
        cmd.arg("--server").arg(u.as_str());
    }
    cmd.env("CASCADE_LOG", "warn,cascade=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn installed(dir: &Path, k: u8) -> Option<Vec<u8>> {
    installed_patterns(&dir.join(format!("agent-{k}")))
}

/// Bytes replica `i` has served from `/repo/` (its `/metrics`).
async fn repo_bytes(r: &Replicas, i: usize) -> u64 {
    let Ok(text) = r.client(i).unwrap().metrics().await else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("cascade_repo_bytes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<u64>().ok())
        .sum()
}

struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An upstream publishing `patterns` version 1 (`v1`) and three replicas mirroring it, under
/// a policy that allows no source but the server.
async fn mirroring_replicas(tmp: &Path, v1: &[u8]) -> (Upstream, PgReplicas) {
    let (upstream, root) = patterns_upstream(tmp, v1).await.unwrap();
    let mut extra = no_head_start();
    extra.extend([
        "--upstream-root".into(),
        root.display().to_string(),
        "--mirror-every".into(),
        "0".into(),
    ]);
    let r = replicas_on_postgres(EXE, tmp, 3, &extra).await.unwrap();
    r.apply_policy(
        0,
        &format!(
            "activeupdate_url = \"{}\"\nactiveupdate_fallback = \"never\"\n",
            upstream.url().unwrap()
        ),
    )
    .await
    .unwrap();
    for i in 0..3 {
        r.admin(i).unwrap().mirror_now().await.unwrap();
    }
    (upstream, r)
}

// Six agents, each given all three replicas (two starting on each), install version 1. Version
// 2 is published, mirrored by every replica and announced on replica 1; while the agents
// download it, replica 2 is killed with SIGKILL. Every agent still installs version 2 (the
// policy allows no source but the server, so only the other replicas can have served it),
// and those that were using replica 2 say in their log that they moved on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_update_and_the_fleet_still_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = pseudo_random(64 << 10, 1);
    let v2 = pseudo_random(6 << 20, 2);
    let started = Instant::now();
    let (upstream, mut r) = mirroring_replicas(tmp.path(), &v1).await;
    let admin = r.admin(0).unwrap();
    println!(
        "{:?}: three replicas up, version 1 mirrored",
        started.elapsed()
    );
    let urls = r.urls();
    let mut agents = Agents(Vec::new());
    for k in 1..=6u8 {
        // Agents 1 and 4 start on replica 1, 2 and 5 on replica 2, 3 and 6 on replica 3.
        let first = usize::from(k - 1) % 3;
        let order: Vec<url::Url> = (0..3).map(|j| urls[(first + j) % 3].clone()).collect();
        agents
            .0
            .push(agent(tmp.path(), k, &order, &r.secrets.enroll_token));
    }
    wait_until(Duration::from_secs(120), || async {
        (1..=6u8).all(|k| installed(tmp.path(), k).as_deref() == Some(&v1[..]))
    })
    .await
    .expect("every agent installs version 1");
    println!("{:?}: version 1 installed everywhere", started.elapsed());

    publish_upstream_patterns(&upstream, "2", &v2)
        .await
        .unwrap();
    for i in 0..3 {
        r.admin(i).unwrap().mirror_now().await.unwrap();
    }
    println!("{:?}: version 2 published and mirrored", started.elapsed());
    let before = repo_bytes(&r, 1).await;
    admin.notify(&NotifyRequest::default()).await.unwrap();
    // Kill replica 2 once it is serving version 2 (a part of one copy has gone out).
    let serving = wait_until(Duration::from_secs(60), || async {
        repo_bytes(&r, 1).await > before + (1 << 20)
    })
    .await;
    r.kill(1);
    println!("{:?}: replica 2 killed", started.elapsed());
    assert!(
        serving.is_ok(),
        "replica 2 never served version 2 to its agents"
    );
    wait_until(Duration::from_secs(180), || async {
        (1..=6u8).all(|k| installed(tmp.path(), k).as_deref() == Some(&v2[..]))
    })
    .await
    .unwrap_or_else(|e| {
        let have: Vec<(u8, Option<usize>)> = (1..=6u8)
            .map(|k| (k, installed(tmp.path(), k).map(|b| b.len())))
            .collect();
        panic!(
            "the fleet did not converge after replica 2 was killed: {e}; installed sizes {have:?}"
        )
    });
    println!("{:?}: version 2 installed everywhere", started.elapsed());
    if std::env::var_os("REPLICAS_TEST_LOGS").is_some() {
        for k in 1..=6u8 {
            let log = std::fs::read_to_string(tmp.path().join(format!("agent-{k}.log"))).unwrap();
            println!("--- agent {k}\n{log}");
        }
    }
    for k in [2u8, 5] {
        let log = std::fs::read_to_string(tmp.path().join(format!("agent-{k}.log"))).unwrap();
        assert!(
            log.contains("server down; trying the next one"),
            "agent {k} started on replica 2 and says it moved on: {log}"
        );
    }
    drop(agents);
    r.finish().await.unwrap();
}

// An agent enrolled through replica 2 alone learns every replica from the enrollment answer
// (`--replica-url`), keeps them in its identity, and with replica 2 killed its next cycle
// installs version 2 from another replica (logged as a failover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_enrolled_through_one_replica_learns_the_others_and_fails_over() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = pseudo_random(64 << 10, 1);
    let v2 = pseudo_random(64 << 10, 2);
    let (upstream, mut r) = mirroring_replicas(tmp.path(), &v1).await;
    let data = tmp.path().join("agent-1");
    let token = r.secrets.enroll_token.clone();
    let once = |server: Option<&url::Url>| {
        let mut cmd = Command::new(EXE);
        cmd.args(["agent", "--once", "--bind-ip", "127.0.2.20", "--data-dir"])
            .arg(&data)
            .env("CASCADE_LOG", "warn,cascade=info");
        if let Some(url) = server {
            cmd.arg("--server")
                .arg(url.as_str())
                .arg("--enroll-token")
                .arg(&token);
        }
        cmd.output().unwrap()
    };
    let out = once(Some(&r.replicas[1].url));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(installed(tmp.path(), 1).unwrap(), v1);
    let id: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("identity.json")).unwrap()).unwrap();
    let stored: Vec<&str> = id["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let urls = r.urls();
    assert_eq!(
        stored,
        [urls[1].as_str(), urls[0].as_str(), urls[2].as_str()],
        "the replica enrolled with first, then the others the server advertised"
    );

    r.kill(1);
    publish_upstream_patterns(&upstream, "2", &v2)
        .await
        .unwrap();
    for i in [0, 2] {
        r.admin(i).unwrap().mirror_now().await.unwrap();
    }
    let out = once(None);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(installed(tmp.path(), 1).unwrap(), v2, "{log}");
    assert!(log.contains("server failover: now using"), "{log}");
    r.finish().await.unwrap();
}
