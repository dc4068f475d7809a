//! Work done in the background for clients from before a version
//! (`docs/operating.md#filling-in-after-an-upgrade`) and the clients search index
//! (`docs/operating.md#clients-list`). [`fleet_figures_after_upgrade`] and [`search`] run on
//! SQLite here and on PostgreSQL in `postgres`.

use std::path::Path;
use std::time::{Duration, Instant};

use cascade_client::proto::{Outcome, UpdateReport};
use sqlx::{AnyPool, Row};

use crate::fleet_stats::{attempt, check_in, names, page};
use crate::harness::{start_tuned, start_with, TestServer};

/// The server's database, opened beside it as an operator's tool would.
async fn database(s: &TestServer) -> AnyPool {
    sqlx::any::install_default_drivers();
    let url = s
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", s.data_dir.join("cascade.db").display()));
    AnyPool::connect(&url).await.unwrap()
}

async fn count(db: &AnyPool, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db)
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

/// Waits (a bounded number of tries) until `done` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < give_up, "still not {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CLIENTS: usize = 30;

/// 30 clients whose figures were never derived (as before the upgrade that brought them): the
/// server starts and answers while a batch of 10 is done and the next waits; the console
/// says the figures are being filled in. Stopped there and started again, it finishes, and
/// each client's bytes are counted once.
pub async fn fleet_figures_after_upgrade(dir: &Path, url: Option<String>) {
    let s = start_with(dir, url.clone(), None).await;
    let now = s.clock.unix_secs();
    let report = UpdateReport {
        finished_at: Some(now),
        outcome: Outcome::Ok,
        attempts: vec![attempt(1, "server", Outcome::Ok, 1000)],
    };
    for n in 0..CLIENTS {
        let (_, cred) = s.enroll_client(&format!("pc-{n:02}"), None).await;
        check_in(&s, &cred, "127.0.0.9", Some(report.clone())).await;
    }
    // Back to a database from before the figures.
    let db = database(&s).await;
    for sql in [
        "UPDATE clients SET derived = NULL, report_at = NULL, failed_categories = NULL, \
         failed_attempts = NULL, problem_attempts = NULL, ip_key = NULL",
        "DELETE FROM client_sources",
        "DELETE FROM traffic",
    ] {
        sqlx::query(sql).execute(&db).await.unwrap();
    }
    let previous = s.stop().await;

    // Batches of 10, an hour apart: the server answers after the first at most.
    let s = start_tuned(dir, url.clone(), Some(previous), |st| {
        st.backfill_batch = 10;
        st.backfill_pause = Duration::from_secs(3600);
    })
    .await;
    let cookie = crate::sessions::login(&s, &[("token", &s.admin)]).await;
    let dash = page(&s, &cookie, "/").await;
    assert!(
        dash.contains("id=\"filling\"") && dash.contains(&format!("of {CLIENTS} clients done")),
        "{dash}"
    );
    let left = count(&db, "SELECT COUNT(*) FROM clients WHERE derived IS NULL").await;
    assert!(left >= 20, "{left} clients left after one batch of 10");
    until("one batch done", || async {
        count(&db, "SELECT COUNT(*) FROM clients WHERE derived IS NULL").await == 20
    })
    .await;
    // Stopped between two batches (a kill inside one rolls its transaction back).
    let previous = s.stop().await;

    let s = start_tuned(dir, url, Some(previous), |st| {
        st.backfill_batch = 10;
        st.backfill_pause = Duration::from_millis(1);
    })
    .await;
    until("filled in", || async {
        !page(&s, &cookie, "/").await.contains("id=\"filling\"")
    })
    .await;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM clients WHERE derived IS NULL").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT CAST(SUM(bytes) AS BIGINT) FROM traffic").await,
        1000 * i64::try_from(CLIENTS).unwrap(),
        "every client's bytes counted once"
    );
    assert_eq!(
        count(&db, "SELECT CAST(SUM(clients) AS BIGINT) FROM traffic").await,
        i64::try_from(CLIENTS).unwrap()
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM client_sources").await,
        i64::try_from(CLIENTS).unwrap()
    );
    let list = page(&s, &cookie, "/clients?sort=ip").await;
    assert_eq!(names(&list).len(), CLIENTS, "{list}");
    s.stop().await;
    db.close().await;
}

/// Substring search of names, IPs, domains and installed versions through the trigram index
/// once it is complete, kept up to date as clients enroll and change.
pub async fn search(dir: &Path, url: Option<String>) {
    let s = start_with(dir, url, None).await;
    let db = database(&s).await;
    let sqlite = s.database_url.is_none();
    let mut creds = Vec::new();
    for (name, ip) in [
        ("Lab-Alpha-1", "127.0.0.10"),
        ("lab-beta-2", "127.0.1.10"),
        ("kiosk-3", "127.0.2.7"),
        ("100%-kiosk", "127.0.2.8"),
    ] {
        let (_, cred) = s.enroll_client(name, None).await;
        check_in(&s, &cred, ip, None).await;
        creds.push(cred);
    }
    until("search index complete", || async {
        count(&db, "SELECT COUNT(*) FROM client_search_ready").await == 1
    })
    .await;
    if sqlite {
        assert_eq!(count(&db, "SELECT COUNT(*) FROM client_search").await, 4);
    } else {
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 WHERE c.relname = 'clients_search' AND i.indisvalid"
            )
            .await,
            1
        );
    }
    let cookie = crate::sessions::login(&s, &[("token", &s.admin)]).await;
    let found = |q: &'static str| {
        let s = &s;
        let cookie = &cookie;
        async move {
            let mut n = names(&page(s, cookie, &format!("/clients?q={q}")).await);
            n.sort();
            n
        }
    };
    assert_eq!(found("ALPHA").await, ["Lab-Alpha-1"]);
    assert_eq!(found("lab-").await, ["Lab-Alpha-1", "lab-beta-2"]);
    assert_eq!(found(".0.1.1").await, ["lab-beta-2"]);
    assert_eq!(found("0.2.").await, ["100%-kiosk", "kiosk-3"]);
    assert_eq!(found("patterns%201.1").await.len(), 4);
    // Pattern characters are literal; two characters scan instead of using the index.
    assert_eq!(found("0%25-k").await, ["100%-kiosk"]);
    assert_eq!(found("_").await, Vec::<String>::new());
    assert_eq!(found("-3").await, ["kiosk-3"]);
    assert_eq!(found("gamma").await, Vec::<String>::new());
    // Kept up to date: a client enrolled after, and a changed IP.
    let (_, cred) = s.enroll_client("lab-gamma-5", None).await;
    check_in(&s, &cred, "127.0.9.9", None).await;
    assert_eq!(found("gamma").await, ["lab-gamma-5"]);
    check_in(&s, &creds[2], "127.0.7.7", None).await;
    assert_eq!(found("127.0.7.7").await, ["kiosk-3"]);
    assert_eq!(found("127.0.2.").await, ["100%-kiosk"]);
    s.stop().await;
    db.close().await;
}

#[tokio::test]
async fn fleet_figures_after_upgrade_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    fleet_figures_after_upgrade(dir.path(), None).await;
}

#[tokio::test]
async fn search_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    search(dir.path(), None).await;
}
