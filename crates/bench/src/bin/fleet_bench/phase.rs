//! One measured phase: publish, mirror, notify, every client's update cycle through a pool
//! of `--concurrency` (one relay stopped half-way if asked), retries, and the figures.

use std::time::Instant;

use anyhow::{Context as _, Result};
use cascade_core::report::UpdateReport;
use cascade_core::Category;
use cascade_testkit::update_once;
use futures::StreamExt as _;

use crate::measure::{
    all_relay_stats, millis, percentile, proc_status, relay_stats, served, server_bytes,
};
use crate::report::Phase;
use crate::world::{client_dir, client_ip, installed, payload, World};
use crate::ITEM;

/// One client's cycle: (k, started, ended, report or error text).
pub(crate) type Done = (usize, Instant, Instant, Result<UpdateReport, String>);

/// Runs the cycles of `ks` through the pool; calls `on_done(n_done)` after each.
pub(crate) async fn run_pool(
    w: &mut World,
    ks: Vec<usize>,
    kill_at: Option<usize>,
    killed: &mut Option<(usize, (u64, u64))>,
) -> Result<Vec<Done>> {
    let cfgs: Vec<_> = ks
        .iter()
        .map(|&k| {
            Ok((
                k,
                w.fleet.agent_config(
                    &client_dir(w, k),
                    client_ip(k, w.args.relays)?,
                    None,
                    Some(&w.root),
                ),
            ))
        })
        .collect::<Result<_>>()?;
    let mut stream = futures::stream::iter(cfgs)
        .map(|(k, cfg)| {
            tokio::spawn(async move {
                let start = Instant::now();
                let r = update_once(cfg).await.map_err(|e| e.to_string());
                (k, start, Instant::now(), r)
            })
        })
        .buffer_unordered(w.args.concurrency.max(1));
    let mut done = Vec::with_capacity(ks.len());
    while let Some(joined) = stream.next().await {
        done.push(joined.context("client task")?);
        if kill_at == Some(done.len()) && killed.is_none() {
            let i = 0;
            let addr = w.relays[i].0;
            let stats = relay_stats(w, addr).await;
            if let Some(mut h) = w.relays[i].1.take() {
                let _ = h.stop().await;
            }
            eprintln!(
                "  stopped relay {addr} after {} of {} clients",
                done.len(),
                ks.len()
            );
            *killed = Some((i, stats));
        }
    }
    Ok(done)
}

/// Publishes `version` (unless it is "1", published at start), mirrors, notifies, runs every
/// client, retries the ones left behind, and measures.
#[allow(clippy::too_many_lines)]
pub(crate) async fn phase(w: &mut World, name: &str, version: u32, kill: bool) -> Result<Phase> {
    let v = version.to_string();
    if version > 1 {
        let body = payload(w.args.payload_kib, version);
        w.upstream
            .publish(Category::Components, ITEM, &v, &[("patterns.db", &body)])
            .await?;
        w.fleet.mirror().await.context("mirror")?;
    }
    let server0 = server_bytes(w).await?;
    let relay0 = all_relay_stats(w).await;
    if version > 1 {
        w.fleet.notify().await.context("notify")?;
    }
    let t0 = Instant::now();
    let n = w.args.clients;
    let mut killed = None;
    let kill_at = kill.then_some(n / 2).filter(|&h| h > 0);
    let first = run_pool(w, (0..n).collect(), kill_at, &mut killed).await?;

    let mut cycle_ms = Vec::with_capacity(n);
    let mut since_ms = Vec::with_capacity(n);
    let (mut by_relay, mut by_server, mut by_other, mut fell_back) = (0, 0, 0, 0);
    let mut behind = Vec::new();
    let mut last_done = t0;
    let mut errors: Vec<String> = Vec::new();
    for (k, start, end, r) in &first {
        let current = installed(&client_dir(w, *k)).as_deref() == Some(v.as_str());
        match r {
            Ok(report) if current => {
                cycle_ms.push(millis(end.duration_since(*start)));
                since_ms.push(millis(end.duration_since(t0)));
                last_done = last_done.max(*end);
                let (by, fb) = served(report);
                match by {
                    "relay" => by_relay += 1,
                    "server" => by_server += 1,
                    _ => by_other += 1,
                }
                fell_back += usize::from(fb);
            }
            Ok(report) => {
                if errors.len() < 5 {
                    errors.push(format!("client {k}: not current: {:?}", report.attempts));
                }
                behind.push(*k);
            }
            Err(e) => {
                if errors.len() < 5 {
                    errors.push(format!("client {k}: {e}"));
                }
                behind.push(*k);
            }
        }
    }
    for e in &errors {
        eprintln!("  {e}");
    }
    let failed_first_pass = behind.len();
    let mut retry_passes = 0;
    while !behind.is_empty() && retry_passes < w.args.retries {
        retry_passes += 1;
        let again = run_pool(w, std::mem::take(&mut behind), None, &mut killed).await?;
        for (k, _, end, r) in again {
            if r.is_ok() && installed(&client_dir(w, k)).as_deref() == Some(v.as_str()) {
                since_ms.push(millis(end.duration_since(t0)));
                last_done = last_done.max(end);
                by_other += 1;
            } else {
                behind.push(k);
            }
        }
    }
    let wall = last_done.duration_since(t0).as_secs_f64();
    let server_bytes = server_bytes(w).await?.saturating_sub(server0);
    let relay1 = all_relay_stats(w).await;
    let (mut relay_bytes, mut relay_fetches) = (0u64, 0u64);
    for (i, (b0, f0)) in relay0.iter().enumerate() {
        let (b1, f1) = match killed {
            Some((ki, stats)) if ki == i => stats,
            _ => relay1.get(i).copied().unwrap_or((0, 0)),
        };
        relay_bytes += b1.saturating_sub(*b0);
        relay_fetches += f1.saturating_sub(*f0);
    }
    cycle_ms.sort_unstable();
    since_ms.sort_unstable();
    let current = (0..n)
        .filter(|&k| installed(&client_dir(w, k)).as_deref() == Some(v.as_str()))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let offload = if relay_bytes + server_bytes == 0 {
        0.0
    } else {
        relay_bytes as f64 / (relay_bytes + server_bytes) as f64
    };
    #[allow(clippy::cast_precision_loss)]
    let clients_per_second = if wall > 0.0 { n as f64 / wall } else { 0.0 };
    Ok(Phase {
        name: name.to_owned(),
        version: v,
        clients: n,
        current,
        wall_seconds: (wall * 1000.0).round() / 1000.0,
        clients_per_second: clients_per_second.round(),
        cycle_p50_ms: percentile(&cycle_ms, 0.50),
        cycle_p99_ms: percentile(&cycle_ms, 0.99),
        cycle_max_ms: cycle_ms.last().copied().unwrap_or(0),
        since_notify_p50_ms: percentile(&since_ms, 0.50),
        since_notify_p99_ms: percentile(&since_ms, 0.99),
        failed_first_pass,
        retry_passes,
        served_by_relay: by_relay,
        served_by_server: by_server,
        served_by_other: by_other,
        fell_back,
        server_bytes,
        relay_bytes,
        relay_upstream_fetches: relay_fetches,
        offload: (offload * 1000.0).round() / 1000.0,
        killed_relay: killed.map(|(i, _)| w.relays[i].0.to_string()),
        process_peak_rss_kib: proc_status("VmHWM:"),
    })
}
