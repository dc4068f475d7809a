//! What a phase reads and counts: the server's bytes from `/metrics`, the relays'
//! `/relay/stats`, this process's peak RSS, who served a client, percentiles.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cascade_core::report::{Outcome, UpdateReport};
use cascade_core::Category;

use crate::world::World;

pub(crate) fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The server's `cascade_repo_bytes_total`.
pub(crate) async fn server_bytes(w: &World) -> Result<u64> {
    let text = w
        .http
        .get(w.fleet.url.join("metrics")?)
        .bearer_auth(&w.fleet.admin)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("cascade_repo_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("no cascade_repo_bytes_total in /metrics")
}

/// One relay's (`bytes_served`, `upstream_fetches`); zeros when it does not answer.
pub(crate) async fn relay_stats(w: &World, addr: SocketAddr) -> (u64, u64) {
    let Ok(resp) = w
        .http
        .get(format!("http://{addr}/relay/stats"))
        .send()
        .await
    else {
        return (0, 0);
    };
    let Ok(r) = resp.json::<cascade_core::report::RelayReport>().await else {
        return (0, 0);
    };
    (r.bytes_served, r.upstream_fetches)
}

pub(crate) async fn all_relay_stats(w: &World) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (addr, _) in &w.relays {
        out.push(relay_stats(w, *addr).await);
    }
    out
}

/// How a client's components were served: ("relay" | "server" | "other", fell back?).
pub(crate) fn served(report: &UpdateReport) -> (&'static str, bool) {
    let steps: Vec<_> = report
        .attempts
        .iter()
        .filter(|a| a.category == Some(Category::Components))
        .collect();
    let fell_back = steps.iter().any(|a| a.outcome == Outcome::Failed);
    let by = steps
        .iter()
        .find(|a| matches!(a.outcome, Outcome::Ok | Outcome::UpToDate))
        .map_or("other", |a| {
            if a.source.starts_with("agent:") {
                "relay"
            } else if a.source == "server" {
                "server"
            } else {
                "other"
            }
        });
    (by, fell_back)
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
