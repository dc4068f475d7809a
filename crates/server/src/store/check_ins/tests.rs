//! Tests of the group commit of check-ins (docs/operating.md#group-commit): batched and
//! one-by-one storage agree, answers come after the commit, a refused check-in loses no other,
//! on SQLite (the writer thread) and PostgreSQL (the pool), and stop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use cascade_core::report::{Attempt, Outcome, RelayReport, ServedClient, UpdateReport};
use cascade_core::Category;
use sqlx::{AnyPool, Connection as _, Row as _};

use crate::settings::TestClock;
use crate::store::{CheckInRecord, Store, StoreError};

/// A store on a fresh database: SQLite in `dir`, or the PostgreSQL `url`.
struct Fixture {
    store: Store,
    pool: AnyPool,
    clock: Arc<TestClock>,
    /// A URL to open a connection of its own (not the store's pool).
    url: String,
}

async fn fixture(dir: &std::path::Path, pg: Option<&str>) -> Fixture {
    let db = crate::db::open(dir, pg).await.unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(1_800_000)));
    let store = Store::new(db.pool.clone(), clock.clone());
    store.initialize(("admin", "x"), &[]).await.unwrap();
    let url = pg.map_or_else(
        || format!("sqlite://{}", dir.join("cascade.db").display()),
        str::to_owned,
    );
    Fixture {
        store,
        pool: db.pool,
        clock,
        url,
    }
}

const CLIENTS: usize = 12;

fn client_id(i: usize) -> String {
    format!("c{i:02}")
}

/// Forgets every client's check-ins and figures: the clients as enrolled, c00..c03 the
/// approved update agents at their addresses.
async fn reset(pool: &AnyPool) {
    for table in ["client_sources", "traffic", "clients"] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(pool)
            .await
            .unwrap();
    }
    for i in 0..CLIENTS {
        let agent = (i < 4).then(|| format!("10.0.0.{i}:8080"));
        sqlx::query(
            "INSERT INTO clients (id, name, credential_hash, enrolled_at, enrolled_from, \
             installed, agent_address, agent_approved_at) \
             VALUES ($1, $2, 'x', 1, '127.0.0.1', '{}', $3, $4)",
        )
        .bind(client_id(i))
        .bind(format!("pc-{i}"))
        .bind(agent.clone())
        .bind(agent.map(|_| 1_i64))
        .execute(pool)
        .await
        .unwrap();
    }
}

fn attempt(category: Category, source: &str, outcome: Outcome, bytes: u64) -> Attempt {
    Attempt {
        category: Some(category),
        step: 1,
        source: source.to_owned(),
        outcome,
        reason: (outcome == Outcome::Failed).then(|| "connect".into()),
        bytes,
        millis: 0,
    }
}

fn report(i: usize, k: u64) -> UpdateReport {
    let i64_i = i64::try_from(i).unwrap();
    let n = u64::try_from(i).unwrap();
    UpdateReport {
        finished_at: (!i.is_multiple_of(4)).then_some(1_799_000 + i64_i),
        outcome: if i.is_multiple_of(5) {
            Outcome::Failed
        } else {
            Outcome::Ok
        },
        attempts: vec![
            attempt(
                Category::Components,
                "agent:10.0.0.1:8080",
                Outcome::Failed,
                n * 10,
            ),
            attempt(Category::Components, "server", Outcome::Ok, 1000 * k + n),
            attempt(
                Category::Programs,
                "url:http://m.example/",
                if i.is_multiple_of(2) {
                    Outcome::Quit
                } else {
                    Outcome::Ok
                },
                if i.is_multiple_of(3) { 0 } else { 50 * k },
            ),
        ],
    }
}

/// One planned check-in: when, who, what.
#[derive(Clone)]
struct Planned {
    now: i64,
    id: String,
    reported_ip: Option<String>,
    report: Option<UpdateReport>,
    relay: Option<RelayReport>,
    agent_version: Option<String>,
    installed: BTreeMap<Category, String>,
}

/// Waves of check-ins (each wave at most 30, sent at once): new reports, the same
/// report again, none, clients twice in a wave, a client that is not there, relay
/// reports from agents and from a client that is not one, an hour boundary crossed.
fn waves() -> Vec<Vec<Planned>> {
    let plan = |now: i64, i: usize, report: Option<UpdateReport>| Planned {
        now,
        id: client_id(i),
        reported_ip: (!i.is_multiple_of(3)).then(|| format!("10.1.0.{i}")),
        report,
        relay: (i < 5).then(|| RelayReport {
            since: Some(1),
            requests: 10 + u64::try_from(i).unwrap(),
            bytes_served: 100,
            upstream_fetches: 1,
            upstream_bytes: 10,
            refused: 0,
            client_count: 1,
            clients: vec![ServedClient {
                ip: "10.2.0.1".into(),
                requests: 1,
                bytes: 100,
            }],
        }),
        agent_version: (i.is_multiple_of(2)).then(|| format!("1.{i}")),
        installed: BTreeMap::from([(Category::Components, format!("patterns {i}"))]),
    };
    let hour = 500 * 3600;
    let mut one = Vec::new();
    for i in 0..CLIENTS {
        one.push(plan(
            hour - 6 + i64::try_from(i).unwrap(),
            i,
            Some(report(i, 1)),
        ));
    }
    for i in 0..6 {
        one.push(plan(hour + 7, i, Some(report(i, 1))));
    }
    for i in 6..9 {
        one.push(plan(hour + 8, i, Some(report(i, 2))));
    }
    let mut gone = plan(hour + 9, 0, Some(report(0, 9)));
    gone.id = "gone".into();
    one.push(gone);
    let mut two = Vec::new();
    for i in 0..CLIENTS {
        let r = match i % 3 {
            0 => None,
            1 => Some(report(i, if (6..9).contains(&i) { 2 } else { 1 })),
            _ => Some(report(i, 3)),
        };
        two.push(plan(hour + 60, i, r));
    }
    for i in 0..4 {
        two.push(plan(hour + 61, i, Some(report(i, 4))));
    }
    let three = (0..CLIENTS)
        .map(|i| plan(hour + 3600, i, Some(report(i, 5))))
        .collect();
    vec![one, two, three]
}

async fn check_in(f: &Fixture, p: &Planned) -> Result<(i64, i64), StoreError> {
    f.clock.0.store(p.now, Ordering::SeqCst);
    f.store
        .check_in(
            &p.id,
            &CheckInRecord {
                reported_ip: p.reported_ip.clone(),
                peer_ip: "127.0.0.1".into(),
                installed: &p.installed,
                last_update: p.report.as_ref(),
                relay: p.relay.as_ref(),
                agent_version: p.agent_version.as_deref(),
            },
        )
        .await
}

/// Every stored fact a check-in writes: the clients' rows, their per-source rows, the
/// traffic.
async fn stored(pool: &AnyPool) -> Vec<String> {
    let mut out = Vec::new();
    for (sql, texts, ints) in [
        (
            "SELECT * FROM clients ORDER BY id",
            &[
                "id",
                "reported_ip",
                "peer_ip",
                "installed",
                "last_update",
                "last_outcome",
                "relay_report",
                "agent_version",
                "failed_categories",
                "ip_key",
            ][..],
            &[
                "last_seen",
                "program_trouble_at",
                "report_at",
                "failed_attempts",
                "problem_attempts",
                "derived",
            ][..],
        ),
        (
            "SELECT * FROM client_sources ORDER BY client_id, source",
            &["client_id", "source", "reason", "served_by"][..],
            &["ok", "seen", "at", "bytes"][..],
        ),
        (
            "SELECT * FROM traffic ORDER BY hour, source",
            &["source"][..],
            &["hour", "bytes", "clients"][..],
        ),
    ] {
        for r in sqlx::query(sql).fetch_all(pool).await.unwrap() {
            let mut line = Vec::new();
            for c in texts {
                line.push(format!(
                    "{c}={:?}",
                    r.try_get::<Option<String>, _>(*c).unwrap()
                ));
            }
            for c in ints {
                line.push(format!(
                    "{c}={:?}",
                    r.try_get::<Option<i64>, _>(*c).unwrap()
                ));
            }
            out.push(line.join(" "));
        }
    }
    out
}

/// The same check-ins one at a time and all at once (in batches): the same rows, the
/// same fleet figures, and the concurrent ones took fewer transactions than check-ins.
async fn batched_equals_sequential(f: &Fixture) {
    reset(&f.pool).await;
    for wave in waves() {
        for p in &wave {
            check_in(f, p).await.unwrap();
        }
    }
    let one_by_one = stored(&f.pool).await;
    assert!(
        one_by_one
            .iter()
            .any(|l| l.starts_with("source=Some(\"server\")")),
        "traffic was stored: {one_by_one:#?}"
    );
    reset(&f.pool).await;
    let before = f.store.check_ins.batches();
    let mut sent = 0;
    for wave in waves() {
        sent += wave.len();
        let answers = futures::future::join_all(wave.iter().map(|p| check_in(f, p))).await;
        for (p, a) in wave.iter().zip(answers) {
            assert_eq!(a.unwrap(), (1, 0), "check-in of {}", p.id);
        }
    }
    let batches = f.store.check_ins.batches() - before;
    assert!(
        batches < u64::try_from(sent).unwrap(),
        "{sent} check-ins took {batches} transactions"
    );
    assert_eq!(stored(&f.pool).await, one_by_one);
}

/// Each check-in, once answered, is there for a connection of its own.
async fn answered_after_commit(f: &Fixture) {
    reset(&f.pool).await;
    let wave = &waves()[0];
    let calls = wave.iter().filter(|p| p.id != "gone").map(|p| async move {
        check_in(f, p).await.unwrap();
        let mut own = sqlx::AnyConnection::connect(&f.url).await.unwrap();
        let seen: Option<i64> = sqlx::query("SELECT last_seen FROM clients WHERE id = $1")
            .bind(&p.id)
            .fetch_one(&mut own)
            .await
            .unwrap()
            .try_get("last_seen")
            .unwrap();
        own.close().await.unwrap();
        assert!(
            seen >= Some(p.now),
            "{} answered but its check-in is not readable",
            p.id
        );
    });
    futures::future::join_all(calls).await;
}

/// A check-in the database refuses fails alone: the others sent with it are stored.
async fn one_refused_check_in_loses_no_other(f: &Fixture, refuse: &[&str]) {
    reset(&f.pool).await;
    for sql in refuse {
        sqlx::query(sql).execute(&f.pool).await.unwrap();
    }
    let wave: Vec<Planned> = waves()[2].clone();
    let answers = futures::future::join_all(wave.iter().map(|p| check_in(f, p))).await;
    let now = wave[0].now;
    for (p, a) in wave.iter().zip(answers) {
        let seen: Option<i64> = sqlx::query("SELECT last_seen FROM clients WHERE id = $1")
            .bind(&p.id)
            .fetch_one(&f.pool)
            .await
            .unwrap()
            .try_get("last_seen")
            .unwrap();
        let sources: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM client_sources WHERE client_id = $1")
                .bind(&p.id)
                .fetch_one(&f.pool)
                .await
                .unwrap()
                .try_get("n")
                .unwrap();
        if p.id == "c05" {
            assert!(a.is_err(), "the refused check-in is answered with an error");
            assert_eq!((seen, sources), (None, 0), "nothing of it is stored");
        } else {
            assert_eq!(a.unwrap(), (1, 0), "{}", p.id);
            assert_eq!((seen, sources), (Some(now), 3), "{} is stored", p.id);
        }
    }
}

/// The writer and the pool see each other's writes: an approval, a policy write and a
/// deletion made through the pool count for the next check-in, and each check-in is
/// there for the pool once answered.
async fn writer_and_pool_see_each_other(f: &Fixture) {
    reset(&f.pool).await;
    let mut p = waves()[0].iter().find(|p| p.id == "c04").unwrap().clone();
    let relay_report = |pool: AnyPool| async move {
        sqlx::query("SELECT relay_report, last_seen FROM clients WHERE id = 'c04'")
            .fetch_optional(&pool)
            .await
            .unwrap()
            .map(|r| {
                (
                    r.try_get::<Option<String>, _>("relay_report").unwrap(),
                    r.try_get::<Option<i64>, _>("last_seen").unwrap(),
                )
            })
    };
    assert!(p.relay.is_some());
    assert_eq!(check_in(f, &p).await.unwrap(), (1, 0));
    assert_eq!(
        relay_report(f.pool.clone()).await,
        Some((None, Some(p.now))),
        "not an approved agent: its relay report is not kept"
    );
    sqlx::query("UPDATE clients SET agent_approved_at = 1 WHERE id = 'c04'")
        .execute(&f.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE policy SET revision = 2 WHERE id = 1")
        .execute(&f.pool)
        .await
        .unwrap();
    p.now += 1;
    assert_eq!(
        check_in(f, &p).await.unwrap(),
        (2, 0),
        "the policy written through the pool"
    );
    let (relay, seen) = relay_report(f.pool.clone()).await.unwrap();
    assert!(relay.is_some(), "approved through the pool: kept");
    assert_eq!(seen, Some(p.now));
    assert!(f.store.delete_client("c04").await.unwrap());
    p.now += 1;
    assert_eq!(check_in(f, &p).await.unwrap(), (2, 0));
    assert_eq!(
        relay_report(f.pool.clone()).await,
        None,
        "deleted through the pool: nothing stored"
    );
    sqlx::query("UPDATE policy SET revision = 1 WHERE id = 1")
        .execute(&f.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn sqlite_batched_check_ins_store_what_sequential_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    batched_equals_sequential(&fixture(dir.path(), None).await).await;
}

#[tokio::test]
async fn sqlite_check_in_is_answered_after_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    answered_after_commit(&fixture(dir.path(), None).await).await;
}

#[tokio::test]
async fn sqlite_writer_thread_and_pool_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(dir.path(), None).await;
    assert!(
        f.store.check_ins.on_own_thread(),
        "SQLite file: its own thread"
    );
    writer_and_pool_see_each_other(&f).await;
}

// Check-ins that wait for the writer's thread go in together: while another connection
// holds the write lock, none is stored, and once it is released they take fewer
// transactions than check-ins.
#[tokio::test]
async fn sqlite_writer_thread_stores_a_batch_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(dir.path(), None).await;
    reset(&f.pool).await;
    let wave = waves()[2].clone();
    // The first check-in starts the writer; it then waits for the lock held here.
    check_in(&f, &wave[0]).await.unwrap();
    let mut lock = sqlx::AnyConnection::connect(&f.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();
    let before = f.store.check_ins.batches();
    let release = async {
        // Wait (bounded) until the writer has taken a batch: it waits for the lock.
        for _ in 0..300 {
            if f.store.check_ins.batches() > before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let seen: i64 = sqlx::query("SELECT COUNT(*) AS n FROM clients WHERE last_seen = $1")
            .bind(wave[1].now)
            .fetch_one(&mut lock)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(
            seen, 1,
            "only the first check-in is stored while the lock is held"
        );
        sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    };
    let (answers, ()) = tokio::join!(
        futures::future::join_all(wave.iter().skip(1).map(|p| check_in(&f, p))),
        release
    );
    for a in answers {
        assert_eq!(a.unwrap(), (1, 0));
    }
    let batches = f.store.check_ins.batches() - before;
    assert!(
        batches < u64::try_from(wave.len() - 1).unwrap(),
        "{} check-ins took {batches} transactions",
        wave.len() - 1
    );
    let seen: i64 = sqlx::query("SELECT COUNT(*) AS n FROM clients WHERE last_seen = $1")
        .bind(wave[1].now)
        .fetch_one(&f.pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(seen, i64::try_from(wave.len()).unwrap());
}

#[tokio::test]
async fn sqlite_refused_check_in_loses_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(dir.path(), None).await;
    one_refused_check_in_loses_no_other(
        &f,
        &[
            "CREATE TRIGGER refuse_c05 BEFORE UPDATE ON clients WHEN NEW.id = 'c05' \
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ],
    )
    .await;
}

// The same on PostgreSQL (one database for the three: crates/testkit's postgres).
#[tokio::test]
async fn postgres_batched_check_ins() {
    let pg = cascade_testkit::postgres::Database::new()
        .await
        .expect("PostgreSQL for the test");
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(dir.path(), Some(&pg.url)).await;
    batched_equals_sequential(&f).await;
    assert!(
        !f.store.check_ins.on_own_thread(),
        "PostgreSQL: through the pool"
    );
    answered_after_commit(&f).await;
    writer_and_pool_see_each_other(&f).await;
    one_refused_check_in_loses_no_other(
        &f,
        &[
            "CREATE FUNCTION refuse_c05() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_c05 BEFORE UPDATE ON clients FOR EACH ROW \
             WHEN (NEW.id = 'c05') EXECUTE FUNCTION refuse_c05()",
        ],
    )
    .await;
    f.store.stop_check_ins().await;
    f.pool.close().await;
    pg.drop_db().await.expect("dropping the test database");
}

// Stopping stores what is queued, then refuses.
#[tokio::test]
async fn stop_stores_queued_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(dir.path(), None).await;
    reset(&f.pool).await;
    let wave = &waves()[2];
    let (answers, ()) = tokio::join!(
        futures::future::join_all(wave.iter().map(|p| check_in(&f, p))),
        f.store.stop_check_ins()
    );
    for (p, a) in wave.iter().zip(answers) {
        a.unwrap_or_else(|e| panic!("{} queued before the stop: {e}", p.id));
    }
    let late = check_in(&f, &wave[0]).await;
    assert!(
        matches!(late, Err(StoreError::Db(sqlx::Error::PoolClosed))),
        "{late:?}"
    );
}
