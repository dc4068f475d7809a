//! The dashboard: clients by state, clients current per category, bytes by where they came
//! from (server vs update agents and URL mirrors: the offload ratio) with a small inline SVG
//! chart by hour, and recent failures. Everything is counted from what exists: the clients'
//! last update reports and the server's `/repo` byte counter since it started; nothing is
//! estimated.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::report::Outcome;

use super::clients::{outcome_text, ClientRow};
use super::session::Session;
use super::view::{bytes, html, maybe_time, Chrome};
use super::ConsoleError;
use crate::routes::admin::Registry;
use crate::state::AppState;
use axum::extract::FromRef;

/// Where bytes came from: server, agents and URL mirrors, upstream.
const KINDS: [&str; 3] = ["server", "update agents and URL mirrors", "ActiveUpdate"];

fn kind(source: &str) -> usize {
    if source == "server" {
        0
    } else if source.starts_with("activeupdate:") {
        2
    } else {
        1
    }
}

/// One failed attempt for the list.
#[derive(Debug, Clone)]
pub struct Failure {
    client_id: String,
    client: String,
    at: String,
    category: String,
    source: String,
    reason: String,
    sort: i64,
}

/// `GET /`.
#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    chrome: Chrome,
    total: usize,
    states: Vec<(&'static str, usize)>,
    compliance: Vec<super::compliance::Row>,
    by_kind: Vec<(&'static str, String)>,
    reported_total: String,
    offload: String,
    repo_bytes: String,
    chart: String,
    convergence: String,
    recovered: (usize, usize),
    failures: Vec<Failure>,
}

/// Bytes per hour (Unix hour → per kind) from the reports' finish times.
fn hourly(clients: &[ClientRow]) -> BTreeMap<i64, [u64; 3]> {
    let mut out: BTreeMap<i64, [u64; 3]> = BTreeMap::new();
    for r in clients.iter().filter_map(|c| c.report.as_ref()) {
        let Some(at) = r.finished_at else { continue };
        for a in &r.attempts {
            if a.bytes > 0 {
                out.entry(at.div_euclid(3600)).or_default()[kind(&a.source)] += a.bytes;
            }
        }
    }
    out
}

/// A stacked bar chart of the last 12 hours that have data, as inline SVG: a y axis in
/// bytes (zero, half and top written), each bar's total written above it, the hour below
/// it and a legend of the three kinds.
#[allow(clippy::cast_precision_loss)]
fn chart(hours: &BTreeMap<i64, [u64; 3]>) -> String {
    const W: f64 = 560.0;
    const H: f64 = 160.0;
    const L: f64 = 62.0;
    const T: f64 = 16.0;
    const COLORS: [&str; 3] = ["#c0504d", "#4f81bd", "#9bbb59"];
    let shown: Vec<_> = hours
        .iter()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if shown.is_empty() {
        return String::new();
    }
    let top = shown
        .iter()
        .map(|(_, v)| v.iter().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let max = top as f64;
    let slot = (W - L) / shown.len().max(6) as f64;
    let mut svg = format!(
        r#"<svg viewBox="0 0 {W} {}" role="img" aria-labelledby="chart-title" class="chart"><title id="chart-title">Bytes received by clients per hour, by source (from last update reports)</title>"#,
        H + 40.0
    );
    let _ = write!(
        svg,
        r##"<line x1="{L}" y1="{T}" x2="{L}" y2="{H}" stroke="#5b6573"/><line x1="{L}" y1="{H}" x2="{W}" y2="{H}" stroke="#5b6573"/>"##
    );
    for (frac, value) in [(0.0, 0), (0.5, top / 2), (1.0, top)] {
        let y = H - frac * (H - T);
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"#,
            L - 4.0,
            y + 3.0,
            bytes(value)
        );
    }
    for (i, (hour, v)) in shown.iter().enumerate() {
        let x = L + i as f64 * slot + slot * 0.15;
        let mut y = H;
        for (k, n) in v.iter().enumerate() {
            let h = *n as f64 / max * (H - T);
            if h > 0.0 {
                y -= h;
                let _ = write!(
                    svg,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                    slot * 0.7,
                    COLORS[k],
                    KINDS[k],
                    bytes(*n)
                );
            }
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
            x + slot * 0.35,
            y - 3.0,
            bytes(v.iter().sum())
        );
        let label = &maybe_time(Some(*hour * 3600))[11..16];
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{label}</text>"#,
            x + slot * 0.35,
            H + 14.0
        );
    }
    let mut lx = L;
    for (k, name) in KINDS.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<path d="M{lx:.1} {}h10v10h-10z" fill="{}"/><text x="{:.1}" y="{}" font-size="10">{name}</text>"#,
            H + 24.0,
            COLORS[k],
            lx + 14.0,
            H + 33.0
        );
        lx += 14.0 + 6.0 * name.len() as f64 + 16.0;
    }
    svg.push_str("</svg>");
    svg
}

/// Clients whose last update succeeded, counted by when it finished (cumulative), around
/// the last notifies (each marked): how fast the fleet converged after each notify.
fn convergence(clients: &[ClientRow], notices: &[(i64, i64)]) -> String {
    let mut done: Vec<i64> = clients
        .iter()
        .filter_map(|c| c.report.as_ref())
        .filter(|r| matches!(r.outcome, Outcome::Ok | Outcome::UpToDate))
        .filter_map(|r| r.finished_at)
        .collect();
    done.sort_unstable();
    let (Some(&first), Some(&last)) = (done.first(), done.last()) else {
        return String::new();
    };
    let start = notices
        .iter()
        .map(|n| n.1)
        .filter(|t| *t <= last)
        .min()
        .map_or(first, |t| t.min(first));
    // At most 60 points: the count after each step of the span.
    let span = (last - start).max(1);
    let step = (span / 60).max(1);
    let mut points = vec![(start, 0.0)];
    let mut t = start;
    let mut i = 0;
    while t < last {
        t = (t + step).min(last);
        while i < done.len() && done[i] <= t {
            i += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        points.push((t, i as f64));
    }
    let markers: Vec<(i64, String)> = notices
        .iter()
        .filter(|n| n.1 >= start && n.1 <= last)
        .map(|n| (n.1, format!("notify {}", n.0)))
        .collect();
    super::chart::lines(
        "convergence",
        "Clients whose last update succeeded, by when it finished, with each notify marked",
        "clients",
        &[super::chart::Series {
            name: "clients updated (cumulative)".to_owned(),
            color: "#2e7d32",
            points,
        }],
        &markers,
        &|x| maybe_time(Some(x))[11..16].to_owned(),
        &|y| format!("{y:.0}"),
    )
}

/// Failed attempts in reports whose update still ended well: fallback recovered them.
fn recovered(clients: &[ClientRow]) -> (usize, usize) {
    let mut attempts = 0;
    let mut who = 0;
    for r in clients.iter().filter_map(|c| c.report.as_ref()) {
        if matches!(r.outcome, Outcome::Ok | Outcome::UpToDate) {
            let n = r
                .attempts
                .iter()
                .filter(|a| a.outcome == Outcome::Failed)
                .count();
            attempts += n;
            who += usize::from(n > 0);
        }
    }
    (attempts, who)
}

fn failures(clients: &[ClientRow]) -> Vec<Failure> {
    let mut out: Vec<Failure> = clients
        .iter()
        .flat_map(|c| {
            c.report.iter().flat_map(move |r| {
                r.attempts
                    .iter()
                    .filter(|a| matches!(a.outcome, Outcome::Failed | Outcome::Quit))
                    .map(move |a| Failure {
                        client_id: c.id.clone(),
                        client: c.name.clone(),
                        at: maybe_time(r.finished_at),
                        category: a
                            .category
                            .map(|k| k.as_str().to_owned())
                            .unwrap_or_default(),
                        source: a.source.clone(),
                        reason: a
                            .reason
                            .as_ref()
                            .map_or_else(|| outcome_text(a.outcome), ToString::to_string),
                        sort: r.finished_at.unwrap_or(0),
                    })
            })
        })
        .collect();
    out.sort_by_key(|f| std::cmp::Reverse(f.sort));
    out.truncate(10);
    out
}

/// `GET /`.
pub async fn page(session: Session, State(st): State<AppState>) -> Result<Response, ConsoleError> {
    // One read of the registry for every figure on the page.
    let views = Registry::from_ref(&st).all(true).await?;
    let compliance = crate::fleet::Catalog::read(&st.repo_dir).compliance(&views, st.clock.now());
    let clients: Vec<ClientRow> = views.into_iter().map(ClientRow::from_view).collect();
    let states = crate::routes::admin::STATES
        .iter()
        .map(|s| (*s, clients.iter().filter(|c| c.state == *s).count()))
        .collect();
    let hours = hourly(&clients);
    let notices: Vec<(i64, i64)> = st
        .store
        .notices_after(0)
        .await?
        .into_iter()
        .rev()
        .take(5)
        .map(|n| (n.id, n.issued_at))
        .collect();
    let mut sums = [0u64; 3];
    for v in hours.values() {
        for (s, n) in sums.iter_mut().zip(v) {
            *s += n;
        }
    }
    // Reports without a finish time still count in the totals.
    for r in clients.iter().filter_map(|c| c.report.as_ref()) {
        if r.finished_at.is_none() {
            for a in &r.attempts {
                sums[kind(&a.source)] += a.bytes;
            }
        }
    }
    let total: u64 = sums.iter().sum();
    let offload = if total == 0 {
        "no bytes reported yet".to_owned()
    } else {
        format!("{:.0} %", offload_percent(sums[1], total))
    };
    let page = DashboardPage {
        chrome: Chrome::load(&st, &session, "dashboard").await,
        total: clients.len(),
        states,
        compliance: compliance
            .categories
            .into_iter()
            .map(|c| super::compliance::Row {
                chart: String::new(),
                c,
            })
            .collect(),
        by_kind: KINDS
            .iter()
            .zip(sums)
            .map(|(k, n)| (*k, bytes(n)))
            .collect(),
        reported_total: bytes(total),
        offload,
        repo_bytes: bytes(st.metrics.repo_bytes()),
        chart: chart(&hours),
        convergence: convergence(&clients, &notices),
        recovered: recovered(&clients),
        failures: failures(&clients),
    };
    Ok(html(StatusCode::OK, page.render()?))
}

#[allow(clippy::cast_precision_loss)]
fn offload_percent(offloaded: u64, total: u64) -> f64 {
    offloaded as f64 * 100.0 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    // Steps are counted as server, offloaded (agents and URL mirrors) or upstream.
    #[test]
    fn sources_by_kind() {
        assert_eq!(kind("server"), 0);
        assert_eq!(kind("agent:10.0.0.5:8443"), 1);
        assert_eq!(kind("url:http://mirror.example/repo"), 1);
        assert_eq!(kind("activeupdate:https://up.example/"), 2);
    }

    // Convergence counts successful updates cumulatively and marks notifies in its span.
    #[test]
    fn convergence_counts_and_marks() {
        let row = |t: i64, outcome| ClientRow {
            id: t.to_string(),
            name: t.to_string(),
            domain: String::new(),
            ip: String::new(),
            versions: Vec::new(),
            last_seen: Some(t),
            state: "ok".into(),
            agent: None,
            report: Some(cascade_core::report::UpdateReport {
                finished_at: Some(t),
                outcome,
                attempts: Vec::new(),
            }),
            relay: None,
        };
        assert_eq!(convergence(&[], &[]), "");
        let svg = convergence(
            &[
                row(1000, Outcome::Ok),
                row(1060, Outcome::UpToDate),
                row(1100, Outcome::Quit),
            ],
            &[(7, 990)],
        );
        assert!(svg.contains("notify 7"), "{svg}");
        assert!(
            svg.contains(">2<"),
            "the top of the axis is 2 clients: {svg}"
        );
    }

    // The chart has one bar segment per non-zero kind and hour, and nothing without data.
    #[test]
    fn chart_segments() {
        assert_eq!(chart(&BTreeMap::new()), "");
        let mut hours = BTreeMap::new();
        hours.insert(472_222, [512, 16_405, 0]);
        hours.insert(472_223, [0, 0, 100]);
        let svg = chart(&hours);
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains("22:00") && svg.contains("23:00"), "{svg}");
    }
}
