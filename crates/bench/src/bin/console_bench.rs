//! `console-bench`: how long the console's clients list takes with 100,000 clients
//! (`docs/operating.md#clients-list`). The bench starts the server in this process on a
//! fresh SQLite data directory, seeds `--clients` client records straight into its database
//! (one transaction; names, IPs in 10.0.0.0/8, domains, installed versions, last update
//! reports naming an update agent or the server, 2 % failed, 1 % never seen), restarts the
//! server on it as after an upgrade (it answers at once and fills in the console's fleet
//! figures and search index in the background: the bench prints when each is done), logs in to
//! the console and times each page `--runs` times over HTTPS on loopback (so the figure is the
//! server's time plus a loopback round trip). It prints the median and the slowest run per
//! page.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_server::Settings;
use cascade_testkit::{RunningServer, CHEAP_HASHING};
use clap::Parser;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Console pages over a seeded fleet of clients")]
struct Args {
    /// Clients to seed.
    #[arg(long, default_value_t = 100_000)]
    clients: u32,
    /// Times each page is fetched.
    #[arg(long, default_value_t = 7)]
    runs: usize,
}

/// The session cookie after logging in with the bootstrap admin token.
async fn login(http: &reqwest::Client, base: &str, token: &str) -> Result<String> {
    let page = http.get(format!("{base}/login")).send().await?;
    let login_cookie = page
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no login cookie")?
        .to_owned();
    let html = page.text().await?;
    let at = html
        .find("name=\"csrf\" value=\"")
        .context("no csrf field")?
        + 19;
    let csrf = html[at..].split('"').next().unwrap_or_default().to_owned();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &csrf)
        .append_pair("token", token)
        .finish();
    let resp = http
        .post(format!("{base}/login"))
        .header(COOKIE, login_cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    for v in resp.headers().get_all(SET_COOKIE) {
        let v = v.to_str()?;
        if v.starts_with("cascade_session=") {
            return Ok(v.split(';').next().unwrap_or_default().to_owned());
        }
    }
    bail!("login refused: {}", resp.status())
}

/// Seeds `n` clients into the server's SQLite database.
async fn seed(db: &std::path::Path, n: u32, now: i64) -> Result<()> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await?;
    let mut tx = pool.begin().await?;
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        let failed = i % 50 == 7;
        let never = i % 100 == 3;
        let source = if i % 4 == 0 {
            "server"
        } else {
            "agent:10.0.0.5:8443"
        };
        let report = format!(
            r#"{{"finished_at":{},"outcome":"{}","attempts":[{{"category":"components","step":1,"source":"{source}","outcome":"{}","bytes":65536,"millis":40}}]}}"#,
            now - i64::from(i % 3600),
            if failed { "quit" } else { "ok" },
            if failed { "failed" } else { "ok" },
        );
        sqlx::query(
            "INSERT INTO clients (id, name, domain, credential_hash, enrolled_at, enrolled_from, \
             last_seen, reported_ip, peer_ip, installed, last_update, last_outcome) \
             VALUES ($1, $2, $3, 'x', $4, '127.0.0.1', $5, $6, $6, $7, $8, $9)",
        )
        .bind(format!("c{i:07}"))
        .bind(format!("pc-{i:07}"))
        .bind(format!("office-{}", i % 50))
        .bind(now - 86_400)
        .bind(if never {
            None
        } else {
            Some(now - i64::from(i % 3600))
        })
        .bind(ip)
        .bind(format!(r#"{{"components":"patterns 1.{}"}}"#, i % 3))
        .bind(if never { None } else { Some(report) })
        .bind(if never {
            None
        } else if failed {
            Some("quit")
        } else {
            Some("ok")
        })
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

/// The pages timed, with what each shows, for a list of `last_page` pages.
fn pages(last_page: u32) -> Vec<(String, &'static str)> {
    vec![
        ("/clients".to_owned(), "first page, by name"),
        (
            format!("/clients?page={}", last_page / 2),
            "middle page (OFFSET)",
        ),
        (
            "/clients?sort=seen&order=desc".to_owned(),
            "by last check-in, newest first",
        ),
        ("/clients?q=pc-00123".to_owned(), "search a name"),
        ("/clients?q=10.1.2.".to_owned(), "search an IP prefix"),
        (
            "/clients?q=office-7".to_owned(),
            "search a domain (2,000 match)",
        ),
        (
            "/clients?q=PC-0099".to_owned(),
            "search, other case (1,000 match)",
        ),
        (
            "/clients?q=-7".to_owned(),
            "search of two characters (scan)",
        ),
        ("/clients?sort=ip".to_owned(), "by IP, numerically"),
        ("/clients?show=failed".to_owned(), "state filter: failed"),
        ("/clients?source=server".to_owned(), "source filter: server"),
        ("/clients?range=10.0.0.0%2F16".to_owned(), "IP range filter"),
        (
            "/clients?category=components&compliance=behind".to_owned(),
            "compliance filter",
        ),
        ("/".to_owned(), "dashboard"),
        ("/agents".to_owned(), "agents page"),
        ("/compliance".to_owned(), "compliance page"),
    ]
}

/// Waits until the restarted server has filled in the fleet figures, then the search index,
/// printing when each was done (seconds since `t`, the restart).
#[allow(clippy::print_stdout)]
async fn wait_for_backfill(db: &std::path::Path, t: Instant) -> Result<()> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await?;
    let scalar = |sql: &'static str| {
        let db = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&db).await }
    };
    while scalar("SELECT COUNT(*) FROM clients WHERE derived IS NULL").await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "fleet figures filled in {:.1} s after the restart",
        t.elapsed().as_secs_f64()
    );
    while scalar("SELECT COUNT(*) FROM client_search_ready").await? == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "search index complete {:.1} s after the restart",
        t.elapsed().as_secs_f64()
    );
    pool.close().await;
    Ok(())
}

#[allow(clippy::print_stdout)]
#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::new(dir.path());
    settings.hash_cost = CHEAP_HASHING;
    let mut server = RunningServer::start(settings.clone(), "127.0.0.1:0".parse()?).await?;
    let token = server
        .first_start
        .as_ref()
        .context("first start")?
        .admin_token
        .clone();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let t = Instant::now();
    seed(&dir.path().join("cascade.db"), args.clients, now).await?;
    println!(
        "seeded {} clients in {:.1} s",
        args.clients,
        t.elapsed().as_secs_f64()
    );
    // Restart on the seeded database, as after an upgrade: the server answers at once and
    // fills in the console's fleet figures (`migrations/0015_fleet_stats.sql`) of every client
    // seeded without them, then the search index, in the background (`backfill.rs`).
    server.stop().await?;
    let t = Instant::now();
    let server = RunningServer::start(settings, "127.0.0.1:0".parse()?).await?;
    println!(
        "restarted on {} clients without figures: answering after {:.2} s",
        args.clients,
        t.elapsed().as_secs_f64()
    );
    wait_for_backfill(&dir.path().join("cascade.db"), t).await?;
    // The server speaks HTTPS through its own CA (docs/operating.md#tls).
    let base = server.url.as_str().trim_end_matches('/').to_owned();
    // The update agent the seeded reports name, registered, so the agents page has a row,
    // a health and a load chart to compute.
    server
        .client()?
        .admin(token.as_str())
        .add_agent(
            &cascade_core::AgentDoc {
                address: "10.0.0.5:8443".to_owned(),
                capabilities: cascade_core::Category::ALL.to_vec(),
            },
            None,
        )
        .await?;
    let http = server
        .http_builder()?
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = login(&http, &base, &token).await?;
    let last_page = args.clients.div_ceil(50).max(1);
    let pages = pages(last_page);
    println!("| page | what | median | slowest | status |");
    println!("|---|---|---|---|---|");
    for (path, what) in pages {
        let mut times: Vec<Duration> = Vec::new();
        let mut status = 0;
        for _ in 0..args.runs {
            let t = Instant::now();
            let resp = http
                .get(format!("{base}{path}"))
                .header(COOKIE, &cookie)
                .send()
                .await?;
            status = resp.status().as_u16();
            let _ = resp.bytes().await?;
            times.push(t.elapsed());
        }
        times.sort_unstable();
        println!(
            "| `{path}` | {what} | {:.0} ms | {:.0} ms | {status} |",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
