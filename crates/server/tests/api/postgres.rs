//! The same store on PostgreSQL. The database comes from `CASCADE_TEST_POSTGRES_URL` (a
//! cluster `scripts/test` starts with `scripts/postgres`): the test creates a fresh database
//! there and drops it afterwards. Without the variable it starts a throwaway cluster of its
//! own from Debian's postgresql package (in a temporary directory, on a 127.0.0.1 port). It
//! never skips: with neither, or a cluster it cannot reach, it fails and says why.

use cascade_client::proto::{CheckIn, SourceBody};
use cascade_core::Category;
use reqwest::Method;

use std::time::Duration;

use crate::harness::{customized, json, start_tuned, start_with, Sse};

fn mirror_entry(range: &str) -> SourceBody {
    SourceBody {
        range: range.to_owned(),
        agent: None,
        url: Some("http://m.example/".into()),
    }
}

/// A database for one test run (`cascade_testkit::postgres::Database`, which the replica tests
/// use too); a test fails, never skips, when there is no PostgreSQL.
pub(crate) struct Database {
    pub url: String,
    db: cascade_testkit::postgres::Database,
}

impl Database {
    pub(crate) async fn new() -> Database {
        let db = cascade_testkit::postgres::Database::new()
            .await
            .expect("PostgreSQL for the test");
        Database {
            url: db.url.clone(),
            db,
        }
    }

    pub(crate) async fn drop_db(self) {
        self.db.drop_db().await.expect("dropping the test database");
    }
}

// On PostgreSQL: writes, 409 on a stale revision, 422 on bad input, clients, and a restart.
#[tokio::test]
async fn postgres_store_round_trip() {
    let pg = Database::new().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), Some(pg.url.clone()), None).await;
    assert!(s.first_start_seen);
    assert!(
        !dir.path().join("cascade.db").exists(),
        "no SQLite file with a postgres URL"
    );
    let rev = s.revision().await;
    s.admin_at(
        rev,
        Method::PATCH,
        "/api/policy/settings",
        json(&customized()),
    )
    .await
    .expect(200);
    s.admin_at(
        rev,
        Method::POST,
        "/api/sources",
        json(&mirror_entry("10.0.0.0/8")),
    )
    .await
    .expect_error(409, "policy.stale_revision", "If-Match");
    s.admin(
        Method::POST,
        "/api/sources",
        json(&mirror_entry("10.0.0.0/8")),
    )
    .await
    .expect(201);
    s.admin(
        Method::POST,
        "/api/sources",
        json(&mirror_entry("10.9.0.0-10.1.0.0")),
    )
    .await
    .expect_error(422, "range.reversed", "range");
    let (id, cred) = s.enroll_client("pc-pg", None).await;
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&cred),
        &[],
        json(&CheckIn {
            agent_version: None,
            ip: Some("10.0.0.1".into()),
            installed: [(Category::Programs, "2".to_owned())].into(),
            ..CheckIn::default()
        }),
    )
    .await
    .expect(200);
    // Lockout counts live in the store too (`docs/operating.md#rate-limits-and-lockout`):
    // 10 wrong secrets for an id lock it out, and the lock ends after its period.
    let wrong = "cascade_cli_00000000000000ff_00ff";
    for _ in 0..10 {
        s.call(Method::GET, "/api/client/policy", Some(wrong), &[], None)
            .await
            .expect(401);
    }
    s.call(Method::GET, "/api/client/policy", Some(wrong), &[], None)
        .await
        .expect_error(429, "auth.locked_out", "Authorization");
    s.clock.advance(901);
    s.call(Method::GET, "/api/client/policy", Some(wrong), &[], None)
        .await
        .expect(401);
    let policy = s.policy().await;
    let clients = s.admin(Method::GET, "/api/clients", None).await.expect(200);
    assert_eq!(clients["clients"][0]["id"], id.as_str());
    assert_eq!(clients["clients"][0]["state"], "ok");
    let prev = s.stop().await;
    let s = start_with(dir.path(), Some(pg.url.clone()), Some(prev)).await;
    assert!(!s.first_start_seen);
    assert_eq!(s.policy().await, policy);
    assert_eq!(
        s.admin(Method::GET, "/api/clients", None).await.expect(200),
        clients
    );
    s.stop().await;
    pg.drop_db().await;
}

// Replicas on one PostgreSQL database hear each other's notices through LISTEN/NOTIFY: with
// polling set to an hour, a notify on replica a still reaches a stream held by replica b,
// and b's own notify reaches it once.
#[tokio::test]
async fn postgres_notify_reaches_other_replicas_without_polling() {
    let pg = Database::new().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let no_polling = |s: &mut cascade_server::Settings| s.notify_poll = Duration::from_secs(3600);
    let a = start_tuned(dir_a.path(), Some(pg.url.clone()), None, no_polling).await;
    let tokens = (a.admin.clone(), a.enroll.clone(), a.clock.clone());
    let b = start_tuned(dir_b.path(), Some(pg.url.clone()), Some(tokens), no_polling).await;
    let (_, c) = a.enroll_client("pc-pg", None).await;
    let mut sse = Sse::connect(&b.http, &b.url, &c).await.unwrap();
    assert_eq!(sse.next().await.unwrap().0, "hello");
    for _ in 0..2 {
        let v = a.admin(Method::POST, "/api/notify", None).await.expect(200);
        assert_eq!(v["fan_out"]["clients"], 0, "no stream is held by replica a");
        let (event, data) = tokio::time::timeout(Duration::from_secs(5), sse.next())
            .await
            .expect("the notice from replica a, long before the next poll")
            .unwrap();
        assert_eq!(event, "notify");
        assert_eq!(data["id"], v["id"]);
    }
    let w = b.admin(Method::POST, "/api/notify", None).await.expect(200);
    let (_, data) = sse.next().await.unwrap();
    assert_eq!(data["id"], w["id"]);
    let again = tokio::time::timeout(Duration::from_millis(600), sse.next()).await;
    assert!(
        again.is_err(),
        "b's own notice is not sent twice: {again:?}"
    );
    b.stop().await;
    a.stop().await;
    pg.drop_db().await;
}

// Replicas on one PostgreSQL database: a policy write on replica a is not seen by replica b
// while b holds the revisions (an hour here; a second by default), and b reads them again when
// it hears a's notify, before its streams do: the client told to update gets the new policy
// from b, not a 304 (`docs/operating.md#policy-revisions-in-memory`).
#[tokio::test]
async fn postgres_notify_ends_the_304_on_other_replicas() {
    let pg = Database::new().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tune = |s: &mut cascade_server::Settings| {
        s.notify_poll = Duration::from_secs(3600);
        crate::revisions::held_an_hour(s);
    };
    let a = start_tuned(dir_a.path(), Some(pg.url.clone()), None, tune).await;
    let tokens = (a.admin.clone(), a.enroll.clone(), a.clock.clone());
    let b = start_tuned(dir_b.path(), Some(pg.url.clone()), Some(tokens), tune).await;
    let (_, c) = a.enroll_client("pc-pg", None).await;
    let first = crate::revisions::fetch(&b, &c, None).await.unwrap();
    assert_eq!(
        crate::revisions::fetch(&b, &c, Some(first.revision)).await,
        None
    );
    let mut sse = Sse::connect(&b.http, &b.url, &c).await.unwrap();
    assert_eq!(sse.next().await.unwrap().0, "hello");
    a.admin(Method::PATCH, "/api/policy/settings", json(&customized()))
        .await
        .expect(200);
    assert_eq!(
        crate::revisions::fetch(&b, &c, Some(first.revision)).await,
        None,
        "b holds the revisions it read: a's write is not seen yet"
    );
    let v = a.admin(Method::POST, "/api/notify", None).await.expect(200);
    let (event, data) = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .expect("a's notice on b's stream")
        .unwrap();
    assert_eq!(event, "notify");
    assert_eq!(data["id"], v["id"]);
    let next = crate::revisions::fetch(&b, &c, Some(first.revision))
        .await
        .expect("a 200 from b after the notify, not a 304");
    assert_eq!(next.revision, first.revision + 1);
    b.stop().await;
    a.stop().await;
    pg.drop_db().await;
}

// Replicas on one PostgreSQL database share console sessions: a login on one is a session on
// the other; logout, user deletion, role change and token revocation end it on both
// (`docs/operating.md#console-sessions`).
#[tokio::test]
async fn postgres_console_sessions_are_shared_by_replicas() {
    let pg = Database::new().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_with(dir_a.path(), Some(pg.url.clone()), None).await;
    let tokens = (a.admin.clone(), a.enroll.clone(), a.clock.clone());
    let b = start_with(dir_b.path(), Some(pg.url.clone()), Some(tokens)).await;
    crate::sessions::shared_by_replicas(&a, &b).await;
    b.stop().await;
    a.stop().await;
    pg.drop_db().await;
}

// Replicas on PostgreSQL: a ring's notice reaches the ring only, on every replica (the same
// scenario as on SQLite, `notify.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ring_notice_reaches_the_ring_only_on_every_replica() {
    let pg = Database::new().await;
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    crate::notify::ring_notice_scenario(
        [dirs[0].path(), dirs[1].path(), dirs[2].path()],
        Some(pg.url.clone()),
    )
    .await;
    pg.drop_db().await;
}

// Rollouts on PostgreSQL: the same scenario as on SQLite (`rollouts.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rollouts() {
    let pg = Database::new().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), Some(pg.url.clone()), None).await;
    crate::rollouts::scenario(&s).await;
    s.stop().await;
    pg.drop_db().await;
}

// The console's fleet figures, aggregated in SQL, on PostgreSQL (`fleet_stats`).
#[tokio::test]
async fn postgres_fleet_figures() {
    let pg = Database::new().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), Some(pg.url.clone()), None).await;
    crate::fleet_stats::figures(&s).await;
    s.stop().await;
    pg.drop_db().await;
}

// Rollouts on PostgreSQL: reports stored before the failure column existed (`rollouts.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rollouts_count_reports_stored_before_the_upgrade() {
    let pg = Database::new().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), Some(pg.url.clone()), None).await;
    crate::rollouts::upgraded_reports_count(&s).await;
    s.stop().await;
    pg.drop_db().await;
}

// Fleet figures filled in the background after an upgrade, on PostgreSQL (`backfill`).
#[tokio::test]
async fn postgres_fleet_figures_after_upgrade() {
    let pg = Database::new().await;
    let dir = tempfile::tempdir().unwrap();
    crate::backfill::fleet_figures_after_upgrade(dir.path(), Some(pg.url.clone())).await;
    pg.drop_db().await;
}

// The clients search through pg_trgm (`backfill`).
#[tokio::test]
async fn postgres_client_search() {
    let pg = Database::new().await;
    let dir = tempfile::tempdir().unwrap();
    crate::backfill::search(dir.path(), Some(pg.url.clone())).await;
    pg.drop_db().await;
}
