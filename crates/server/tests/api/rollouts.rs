//! Rollouts through the API (`docs/operating.md#rollouts`), by the server's injected clock:
//! bad rollouts refused naming the field (rings 1-based) with nothing stored; each client's
//! program pin in its policy answer, whose revision folds in the rollout revision (a client
//! holding the old one gets the new answer, not 304); the start notice reaching ring 1 only;
//! promotion after the soak (audit record), an automatic halt on a failure report, a
//! promotion by hand resuming it, completion, roll back. [`scenario`] runs on SQLite here
//! and on PostgreSQL in `postgres.rs`.

use std::time::Duration;

use cascade_client::proto::{
    Attempt, CheckIn, ClientPolicy, NewRollout, Outcome, RingSpec, RolloutState, RolloutView,
    UpdateReport,
};
use cascade_core::report::{Failure, Reason};
use cascade_core::Category;
use reqwest::Method;

use crate::harness::{json, raw, start, Sse, TestServer};

fn ring(name: &str) -> RingSpec {
    RingSpec {
        name: name.into(),
        soak_secs: 600,
        ..RingSpec::default()
    }
}

fn rollout(rings: Vec<RingSpec>) -> NewRollout {
    NewRollout {
        program: "app".into(),
        version: "2".into(),
        previous_version: None,
        rings,
    }
}

async fn upload(s: &TestServer, version: &str) {
    s.admin(
        Method::POST,
        &format!("/api/programs/app/{version}?file=app.bin"),
        raw(&format!("build {version}")),
    )
    .await
    .expect(201);
}

async fn check_in(s: &TestServer, cred: &str, ip: &str, report: Option<UpdateReport>) {
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(cred),
        &[],
        json(&CheckIn {
            ip: Some(ip.into()),
            installed: [(Category::Programs, "app 1".to_owned())].into(),
            last_update: report,
            ..CheckIn::default()
        }),
    )
    .await
    .expect(200);
}

/// The client's policy answer (200), sent with `If-None-Match` of `held` when given.
async fn policy(s: &TestServer, cred: &str, held: Option<i64>) -> ClientPolicy {
    let tag = held.map(|r| format!("\"{r}\""));
    let headers: Vec<(&str, &str)> = tag.iter().map(|t| ("if-none-match", t.as_str())).collect();
    s.call(
        Method::GET,
        "/api/client/policy",
        Some(cred),
        &headers,
        None,
    )
    .await
    .typed(200)
}

/// The client's pin for `app`: its version, `hold` (install none), or `-` (no pin: newest).
fn pin(p: &ClientPolicy) -> String {
    match p.program_pins.get("app") {
        None => "-".into(),
        Some(None) => "hold".into(),
        Some(Some(v)) => v.clone(),
    }
}

async fn wait_for(
    s: &TestServer,
    id: i64,
    what: &str,
    ok: impl Fn(&RolloutView) -> bool,
) -> RolloutView {
    for _ in 0..100 {
        let v: RolloutView = s
            .admin(Method::GET, &format!("/api/rollouts/{id}"), None)
            .await
            .typed(200);
        if ok(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rollout {id} never {what}");
}

pub async fn scenario(s: &TestServer) {
    let (_, c1) = s.enroll_client("pc-1", None).await;
    let (_, c2) = s.enroll_client("pc-2", None).await;
    let (_, c3) = s.enroll_client("pc-3", None).await;
    for (c, ip) in [(&c1, "10.0.0.1"), (&c2, "10.0.0.2"), (&c3, "10.0.0.3")] {
        check_in(s, c, ip, None).await;
    }
    upload(s, "1").await;
    let before = policy(s, &c1, None).await;
    assert!(before.program_pins.is_empty());
    assert_eq!(before.rollout_revision, 0);
    assert_eq!(
        before.revision,
        s.revision().await,
        "no rollout: the policy revision"
    );

    // Refusals name the field, rings 1-based; nothing is stored.
    for (body, code, field) in [
        (rollout(vec![]), "rollout.rings", "rings"),
        (
            rollout(vec![
                RingSpec {
                    percent: Some(1.0),
                    ..ring("a")
                },
                RingSpec {
                    percent: Some(101.0),
                    ..ring("b")
                },
            ]),
            "rollout.percent",
            "rings[2].percent",
        ),
        (
            rollout(vec![RingSpec {
                ip_ranges: vec!["10.0.0.300".into()],
                ..ring("a")
            }]),
            "rollout.ip_range",
            "rings[1].ip_ranges[1]",
        ),
        (
            rollout(vec![ring("nobody")]),
            "rollout.ring_empty",
            "rings[1]",
        ),
        (
            rollout(vec![
                RingSpec {
                    percent: Some(1.0),
                    ..ring("twice")
                },
                RingSpec {
                    percent: Some(2.0),
                    ..ring("twice")
                },
            ]),
            "rollout.ring_name",
            "rings[2].name",
        ),
        (
            NewRollout {
                version: "../x".into(),
                ..rollout(vec![RingSpec {
                    percent: Some(1.0),
                    ..ring("a")
                }])
            },
            "rollout.program",
            "version",
        ),
    ] {
        s.admin(Method::POST, "/api/rollouts", json(&body))
            .await
            .expect_error(400, code, field);
    }
    let none = s
        .admin(Method::GET, "/api/rollouts", None)
        .await
        .expect(200);
    assert_eq!(none["rollouts"], serde_json::json!([]));

    // Start: ring 1 is pc-1 by name, ring 2 an IP range, ring 3 everyone.
    let mut sse1 = Sse::connect(&s.http, &s.url, &c1).await.unwrap();
    let mut sse2 = Sse::connect(&s.http, &s.url, &c2).await.unwrap();
    assert_eq!(sse1.next().await.unwrap().0, "hello");
    assert_eq!(sse2.next().await.unwrap().0, "hello");
    let started: RolloutView = s
        .admin(
            Method::POST,
            "/api/rollouts",
            json(&rollout(vec![
                RingSpec {
                    clients: vec!["pc-1".into()],
                    ..ring("canary")
                },
                RingSpec {
                    ip_ranges: vec!["10.0.0.2-10.0.0.2".into()],
                    ..ring("lab")
                },
                RingSpec {
                    percent: Some(100.0),
                    soak_secs: 0,
                    ..ring("everyone")
                },
            ])),
        )
        .await
        .typed(201);
    assert_eq!(started.state, RolloutState::Rolling);
    assert_eq!(started.previous_version.as_deref(), Some("1"));
    assert_eq!(
        started.rings.iter().map(|r| r.clients).collect::<Vec<_>>(),
        [1, 1, 1]
    );
    // The start notice reaches ring 1 only.
    let (event, _) = tokio::time::timeout(Duration::from_secs(5), sse1.next())
        .await
        .expect("ring 1 is notified")
        .unwrap();
    assert_eq!(event, "notify");
    let other = tokio::time::timeout(Duration::from_millis(800), sse2.next()).await;
    assert!(other.is_err(), "pc-2 is outside ring 1: {other:?}");

    // The held revision is stale now: pins arrive with a new revision.
    let p1 = policy(s, &c1, Some(before.revision)).await;
    assert!(p1.rollout_revision > 0);
    assert_eq!(p1.revision, before.revision + p1.rollout_revision);
    assert_eq!(pin(&p1), "2");
    assert_eq!(pin(&policy(s, &c2, None).await), "1");
    let held = s
        .call(
            Method::GET,
            "/api/client/policy",
            Some(&c1),
            &[("if-none-match", &format!("\"{}\"", p1.revision))],
            None,
        )
        .await;
    assert_eq!(held.status.as_u16(), 304);
    s.admin(
        Method::POST,
        "/api/rollouts",
        json(&rollout(vec![ring("x")])),
    )
    .await
    .expect_error(400, "rollout.ring_empty", "rings[1]");
    s.admin(
        Method::POST,
        "/api/rollouts",
        json(&rollout(vec![RingSpec {
            percent: Some(5.0),
            ..ring("again")
        }])),
    )
    .await
    .expect_error(409, "rollout.active", "program");

    // Not promoted before its soak, nor before the version is published.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v: RolloutView = s
        .admin(Method::GET, &format!("/api/rollouts/{}", started.id), None)
        .await
        .typed(200);
    assert_eq!(v.ring, 1);
    upload(s, "2").await;
    s.clock.advance(601);
    let promoted = wait_for(s, started.id, "reached ring 2", |v| v.ring == 2).await;
    assert_eq!(promoted.state, RolloutState::Rolling);
    // The audit record is written just after the change it records.
    let path = format!("/api/rollouts/{}/promote", started.id);
    let mut recorded = false;
    for _ in 0..100 {
        let audit = s.admin(Method::GET, "/api/audit", None).await.expect(200);
        recorded = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "server:rollouts" && e["path"] == path.as_str());
        if recorded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recorded, "the promotion is in the audit log");
    assert_eq!(pin(&policy(s, &c2, None).await), "2");
    assert_eq!(pin(&policy(s, &c3, None).await), "1");

    // pc-2 reports that app 2 failed: ring 2 tolerates none, so the rollout halts.
    let failed = UpdateReport {
        finished_at: Some(s.clock.unix_secs()),
        outcome: Outcome::Quit,
        attempts: vec![Attempt {
            category: Some(Category::Programs),
            step: 1,
            source: "server".into(),
            outcome: Outcome::Failed,
            reason: Some(Reason::Failure(Failure {
                code: "tuf.hash_mismatch".into(),
                message: "programs/app/2/app.bin: hash mismatch".into(),
            })),
            bytes: 0,
            millis: 1,
        }],
    };
    check_in(s, &c2, "10.0.0.2", Some(failed)).await;
    let halted = wait_for(s, started.id, "halted", |v| v.state == RolloutState::Halted).await;
    assert_eq!(halted.ring, 2);
    assert_eq!(halted.rings[1].failures, 1);
    assert!(halted.reason.as_deref().unwrap().contains("ring 2 (`lab`)"));
    assert_eq!(pin(&policy(s, &c3, None).await), "1");
    s.admin(
        Method::POST,
        &format!("/api/rollouts/{}/halt", started.id),
        None,
    )
    .await
    .expect_error(409, "rollout.state", "state");

    // Promoted by hand: ring 3 has no soak and completes by itself; no pin is left.
    s.clock.advance(1);
    let resumed: RolloutView = s
        .admin(
            Method::POST,
            &format!("/api/rollouts/{}/promote", started.id),
            raw(r#"{"reason": "the failure was the lab's network"}"#),
        )
        .await
        .typed(200);
    assert_eq!(
        resumed.reason.as_deref(),
        Some("the failure was the lab's network")
    );
    wait_for(s, started.id, "completed", |v| {
        v.state == RolloutState::Completed
    })
    .await;
    assert_eq!(pin(&policy(s, &c3, None).await), "-");

    // Roll back: everyone is pinned to the previous version again.
    let back: RolloutView = s
        .admin(
            Method::POST,
            &format!("/api/rollouts/{}/rollback", started.id),
            None,
        )
        .await
        .typed(200);
    assert_eq!(back.state, RolloutState::RolledBack);
    for c in [&c1, &c2, &c3] {
        assert_eq!(pin(&policy(s, c, None).await), "1");
    }
    s.admin(
        Method::POST,
        &format!("/api/rollouts/{}/rollback", started.id),
        None,
    )
    .await
    .expect_error(409, "rollout.state", "state");
    s.admin(Method::GET, "/api/rollouts/99", None)
        .await
        .expect_error(404, "not_found", "id");
    s.admin(Method::POST, "/api/rollouts/x/promote", None)
        .await
        .expect_error(400, "request.id", "id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_pin_promote_halt_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    scenario(&s).await;
    s.stop().await;
}

/// The database of `s`, opened beside the server.
async fn database(s: &TestServer) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = s
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", s.data_dir.join("cascade.db").display()));
    sqlx::AnyPool::connect(&url).await.unwrap()
}

/// Each client's stored `program_trouble_at`, by name.
async fn trouble(db: &sqlx::AnyPool) -> Vec<(String, Option<i64>)> {
    use sqlx::Row;
    sqlx::query("SELECT name, program_trouble_at FROM clients ORDER BY name")
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("name"), r.get("program_trouble_at")))
        .collect()
}

/// Reports stored before the evaluation's failure column existed (`program_trouble_at` NULL,
/// as after the upgrade to `0018_rollout_failures.sql`) still count: a failing one halts the
/// rollout, and the column is derived once from each report.
pub async fn upgraded_reports_count(s: &TestServer) {
    let (id1, c1) = s.enroll_client("pc-1", None).await;
    let (_, c2) = s.enroll_client("pc-2", None).await;
    let (_, c3) = s.enroll_client("pc-3", None).await;
    upload(s, "1").await;
    // pc-1's report (its clock a little ahead) says app 2 failed to install; pc-2's that
    // everything is up to date; pc-3 sent none.
    let at = s.clock.unix_secs() + 10;
    let report = |outcome, reason: Option<&str>| UpdateReport {
        finished_at: Some(at),
        outcome,
        attempts: vec![Attempt {
            category: Some(Category::Programs),
            step: 1,
            source: "server".into(),
            outcome,
            reason: reason.map(Reason::from),
            bytes: 0,
            millis: 1,
        }],
    };
    check_in(
        s,
        &c1,
        "10.0.0.1",
        Some(report(
            Outcome::Failed,
            Some("install.failed: app 2: exit status 1"),
        )),
    )
    .await;
    check_in(s, &c2, "10.0.0.2", Some(report(Outcome::UpToDate, None))).await;
    check_in(s, &c3, "10.0.0.3", None).await;
    let db = database(s).await;
    assert_eq!(
        trouble(&db).await,
        [
            ("pc-1".to_owned(), Some(at)),
            ("pc-2".to_owned(), Some(0)),
            ("pc-3".to_owned(), None)
        ],
        "each check-in with a report keeps the column"
    );
    sqlx::query("UPDATE clients SET program_trouble_at = NULL")
        .execute(&db)
        .await
        .unwrap();
    let started: RolloutView = s
        .admin(
            Method::POST,
            "/api/rollouts",
            json(&rollout(vec![RingSpec {
                percent: Some(100.0),
                ..ring("everyone")
            }])),
        )
        .await
        .typed(201);
    let halted = wait_for(s, started.id, "halted", |v| v.state == RolloutState::Halted).await;
    assert_eq!(halted.rings[0].clients, 3);
    assert_eq!(halted.rings[0].failing, [id1]);
    assert_eq!(halted.rings[0].failures, 1);
    assert_eq!(
        trouble(&db).await,
        [
            ("pc-1".to_owned(), Some(at)),
            ("pc-2".to_owned(), Some(0)),
            ("pc-3".to_owned(), Some(0))
        ],
        "derived once from the stored reports"
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_count_reports_stored_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    upgraded_reports_count(&s).await;
    s.stop().await;
}
