//! CPU per check-in through `Store::check_in` on a temporary SQLite database
//! (docs/operating.md#group-commit): the whole process's user + system time (all threads:
//! the runtime, the check-in writer, the pool's workers) divided by the check-ins stored, at
//! concurrency 1 (each check-in alone in its batch, as at real rates) and 64.
//!
//! `cargo bench -p cascade-server --bench check_in [-- CHECK_INS_PER_RUN [RUNS]]`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use cascade_core::report::{Attempt, Outcome, UpdateReport};
use cascade_core::Category;
use cascade_server::store::{CheckInRecord, Store};
use cascade_server::SystemClock;

/// This process's user + system time so far, in seconds (`/proc/self/stat` fields 14 and 15,
/// clock ticks of 10 ms: runs are long enough for that).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Field 14 (utime) is the 12th after the name and state.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    #[allow(clippy::cast_precision_loss)]
    let seconds = ticks as f64 / 100.0;
    seconds
}

fn report() -> UpdateReport {
    let attempt = |source: &str, outcome: Outcome, bytes: u64| Attempt {
        category: Some(Category::Components),
        step: 1,
        source: source.to_owned(),
        outcome,
        reason: (outcome == Outcome::Failed).then(|| "connect".into()),
        bytes,
        millis: 3,
    };
    UpdateReport {
        finished_at: Some(1_800_000_000),
        outcome: Outcome::Ok,
        attempts: vec![
            attempt("agent:10.0.0.1:8080", Outcome::Failed, 0),
            attempt("server", Outcome::Ok, 20_000),
        ],
    }
}

async fn setup(dir: &std::path::Path, clients: usize) -> Store {
    let db = cascade_server::db::open(dir, None).await.unwrap();
    let store = Store::new(db.pool.clone(), Arc::new(SystemClock));
    store.initialize(("admin", "x"), &[]).await.unwrap();
    for i in 0..clients {
        sqlx::query(
            "INSERT INTO clients (id, name, credential_hash, enrolled_at, enrolled_from, \
             installed) VALUES ($1, $2, 'x', 1, '127.0.0.1', '{}')",
        )
        .bind(format!("c{i:03}"))
        .bind(format!("pc-{i}"))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    store
}

/// `per_task` check-ins of each of `tasks` clients at once: (µs CPU, µs wall) per check-in.
async fn run(store: &Store, tasks: usize, per_task: usize, new_reports: bool) -> (f64, f64) {
    let installed = BTreeMap::from([
        (Category::Components, "patterns 1042".to_owned()),
        (Category::Programs, "agent 3.1".to_owned()),
    ]);
    let cpu = cpu_seconds();
    let wall = Instant::now();
    let calls = (0..tasks).map(|t| {
        let store = store.clone();
        let installed = installed.clone();
        tokio::spawn(async move {
            let mut r = report();
            for k in 0..per_task {
                if new_reports {
                    r.attempts[1].bytes = 20_000 + k as u64;
                }
                store
                    .check_in(
                        &format!("c{t:03}"),
                        &CheckInRecord {
                            reported_ip: Some("10.1.0.7".into()),
                            peer_ip: "127.0.0.1".into(),
                            installed: &installed,
                            last_update: Some(&r),
                            relay: None,
                            agent_version: Some("0.1.0"),
                        },
                    )
                    .await
                    .unwrap();
            }
        })
    });
    for c in futures::future::join_all(calls).await {
        c.unwrap();
    }
    #[allow(clippy::cast_precision_loss)]
    let n = (tasks * per_task) as f64;
    (
        (cpu_seconds() - cpu) * 1e6 / n,
        wall.elapsed().as_secs_f64() * 1e6 / n,
    )
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(20_000);
    let runs = args.get(1).copied().unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "check-in bench: {total} check-ins a run, {runs} runs, {} cores, load {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    for (name, tasks, new_reports) in [
        ("same report, concurrency 1", 1, false),
        ("new report,  concurrency 1", 1, true),
        ("same report, concurrency 64", 64, false),
        ("new report,  concurrency 64", 64, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = rt.block_on(setup(dir.path(), tasks));
        // Warm up: the writer started, statements prepared.
        rt.block_on(run(&store, tasks, 100 / tasks + 1, new_reports));
        let mut cpu = Vec::new();
        let mut wall = Vec::new();
        for _ in 0..runs {
            let (c, w) = rt.block_on(run(&store, tasks, total / tasks, new_reports));
            cpu.push(c);
            wall.push(w);
        }
        rt.block_on(store.stop_check_ins());
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "{name}: µs CPU per check-in {}; µs wall {}",
            show(&cpu),
            show(&wall)
        );
    }
}
