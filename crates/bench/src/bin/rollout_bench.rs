//! `rollout-bench`: how long one look at the rolling rollouts takes (`rollout::evaluate`,
//! run every second while a rollout is rolling, `docs/operating.md#rollouts`) with 100,000
//! clients. The bench opens a server in this process on a fresh SQLite data directory (no
//! HTTP, no background tasks), seeds `--clients` client records straight into its database
//! (one transaction; IPs in 10.0.0.0/8, `app 1` installed, last update reports finished after
//! the rollout starts: 1 % with a failed install of `app 2`, 2 % with a failed component),
//! starts a rollout of `app 2` in three rings (10 %, 10.0.0.0/9, 100 %; a long soak and a
//! failure budget no count reaches, so nothing changes), and times `evaluate` `--runs` times
//! after a first run, and the rollout's view (`GET /api/rollouts/{id}` without HTTP). It
//! prints the start's time (the first read of the seeded reports), each run and the median.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use cascade_client::proto::{NewRollout, RingSpec};
use cascade_server::{rollout, Server, Settings};
use cascade_testkit::CHEAP_HASHING;
use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "One rollout evaluation over a seeded fleet of clients")]
struct Args {
    /// Clients to seed.
    #[arg(long, default_value_t = 100_000)]
    clients: u32,
    /// Timed evaluations after the first.
    #[arg(long, default_value_t = 7)]
    runs: usize,
}

/// Seeds `n` clients into the server's SQLite database; their reports finish at `finished`.
async fn seed(db: &std::path::Path, n: u32, finished: i64) -> Result<()> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await?;
    let mut tx = pool.begin().await?;
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        let program = if i % 100 == 11 {
            r#"{"category":"programs","step":1,"source":"server","outcome":"failed","reason":"install.failed: app 2: exit status 1","bytes":4096,"millis":40}"#
        } else {
            r#"{"category":"programs","step":1,"source":"server","outcome":"up-to-date","bytes":0,"millis":10}"#
        };
        let component = if i % 50 == 7 {
            r#"{"category":"components","step":2,"source":"agent:10.0.0.5:8443","outcome":"failed","reason":"source.connect: refused","bytes":0,"millis":40}"#
        } else {
            r#"{"category":"components","step":2,"source":"agent:10.0.0.5:8443","outcome":"ok","bytes":65536,"millis":40}"#
        };
        let report = format!(
            r#"{{"finished_at":{},"outcome":"ok","attempts":[{program},{component}]}}"#,
            finished + i64::from(i % 600)
        );
        sqlx::query(
            "INSERT INTO clients (id, name, domain, credential_hash, enrolled_at, enrolled_from, \
             last_seen, reported_ip, peer_ip, installed, last_update, last_outcome) \
             VALUES ($1, $2, NULL, 'x', $3, '127.0.0.1', $4, $5, $5, $6, $7, 'ok')",
        )
        .bind(format!("c{i:07}"))
        .bind(format!("pc-{i:07}"))
        .bind(finished - 86_400)
        .bind(finished)
        .bind(ip)
        .bind(r#"{"programs":"app 1","components":"patterns 1.1"}"#)
        .bind(report)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    pool.close().await;
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Prints each run and the median of `times`.
#[allow(clippy::print_stdout)]
fn show(what: &str, mut times: Vec<Duration>) {
    let each: Vec<String> = times.iter().map(|t| ms(*t)).collect();
    times.sort_unstable();
    println!(
        "{what}: median {} (runs: {})",
        ms(times[times.len() / 2]),
        each.join(", ")
    );
}

#[allow(clippy::print_stdout)]
#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.runs > 0, "--runs: at least 1");
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::new(dir.path());
    settings.hash_cost = CHEAP_HASHING;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    // Opened once to create and migrate the database, then again on the seeded one.
    drop(Server::open(settings.clone()).await?);
    let t = Instant::now();
    seed(&dir.path().join("cascade.db"), args.clients, now + 60).await?;
    println!(
        "seeded {} clients in {:.1} s",
        args.clients,
        t.elapsed().as_secs_f64()
    );
    let server = Server::open(settings).await?;
    let st = server.state();
    let ring = |name: &str| RingSpec {
        name: name.into(),
        soak_secs: 86_400,
        max_failures: u64::MAX,
        ..RingSpec::default()
    };
    let t = Instant::now();
    let started = rollout::start(
        st,
        &NewRollout {
            program: "app".into(),
            version: "2".into(),
            previous_version: Some("1".into()),
            rings: vec![
                RingSpec {
                    percent: Some(10.0),
                    ..ring("tenth")
                },
                RingSpec {
                    ip_ranges: vec!["10.0.0.0/9".into()],
                    ..ring("half")
                },
                RingSpec {
                    percent: Some(100.0),
                    ..ring("all")
                },
            ],
        },
        "bench",
    )
    .await?;
    // The start's view is the first read of the seeded reports (after an upgrade: where the
    // failure column of each is derived, once).
    println!("start (with its view): {}", ms(t.elapsed()));
    let t = Instant::now();
    let changed = rollout::evaluate(st).await?;
    ensure!(changed == 0, "the rollout changed: {changed}");
    println!("first evaluation: {}", ms(t.elapsed()));
    let mut times = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        rollout::evaluate(st).await?;
        times.push(t.elapsed());
    }
    show("evaluation", times);
    let mut times = Vec::new();
    let mut view = None;
    for _ in 0..args.runs {
        let t = Instant::now();
        view = Some(rollout::one(&st.store, started.id).await?);
        times.push(t.elapsed());
    }
    show("rollout view", times);
    if let Some(v) = view {
        for r in &v.rings {
            println!(
                "ring {} `{}`: {} clients, {} updated, {} failing",
                r.number, r.spec.name, r.clients, r.updated, r.failures
            );
        }
    }
    Ok(())
}
