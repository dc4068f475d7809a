//! The dashboard: clients by state, compliance per category, bytes by where they came from
//! (server vs update agents vs URL mirrors vs ActiveUpdate: the offload) per hour, clients
//! current over time around each notify, and recent failures. Every figure is an SQL
//! aggregate over what check-ins stored (`docs/operating.md#fleet-charts`): the page reads
//! no client's report except the ten with the newest failures, so it stays fast at 100,000
//! clients. Nothing is estimated.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::report::Outcome;

use super::chart::Series;
use super::clients::{outcome_text, ClientRow};
use super::session::Session;
use super::view::{bytes, html, maybe_time, Chrome};
use super::ConsoleError;
use crate::state::AppState;
use crate::store::FleetSample;

/// Where bytes came from for the offload: server (0), update agents and URL mirrors (1,
/// offloaded), upstream (2).
fn kind(source: &str) -> usize {
    if source == "server" {
        0
    } else if source.starts_with("activeupdate:") {
        2
    } else {
        1
    }
}

/// Where bytes came from, as the hourly chart splits them.
const CHART_KINDS: [&str; 4] = ["server", "update agents", "URL mirrors", "ActiveUpdate"];

fn chart_kind(source: &str) -> usize {
    if source == "server" {
        0
    } else if source.starts_with("agent:") {
        1
    } else if source.starts_with("activeupdate:") {
        3
    } else {
        2
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
    total: u64,
    states: Vec<(&'static str, u64)>,
    compliance: Vec<super::compliance::Row>,
    by_kind: Vec<(&'static str, String)>,
    reported_total: String,
    offload: String,
    repo_bytes: String,
    chart: String,
    convergence: String,
    recovered: (u64, u64),
    failures: Vec<Failure>,
}

/// A stacked bar chart of bytes per hour by kind, as inline SVG: every hour from the first
/// to the last with data (at most the last 24), a y axis in bytes (zero, half and top
/// written), each bar's total above it and its offloaded share below the hour, and a legend.
#[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
fn chart(hours: &BTreeMap<i64, [u64; 4]>) -> String {
    const W: f64 = 560.0;
    const H: f64 = 170.0;
    const L: f64 = 62.0;
    const T: f64 = 16.0;
    const COLORS: [&str; 4] = ["#c0504d", "#4f81bd", "#8064a2", "#9bbb59"];
    let (Some(&first), Some(&last)) = (hours.keys().next(), hours.keys().next_back()) else {
        return String::new();
    };
    // At least the last 12 hours, so a new fleet's first hours read as a time line.
    let first = first.max(last - 23).min(last - 11);
    let shown: Vec<(i64, [u64; 4])> = (first..=last)
        .map(|h| (h, hours.get(&h).copied().unwrap_or_default()))
        .collect();
    let top = shown
        .iter()
        .map(|(_, v)| v.iter().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let max = top as f64;
    let slot = (W - L) / shown.len().max(6) as f64;
    let every = super::chart::label_every(shown.len());
    let mut svg = format!(
        r#"<svg viewBox="0 0 {W} {}" role="img" aria-labelledby="offload-chart-title" class="chart" id="offload-chart"><title id="offload-chart-title">Bytes clients received per hour (UTC, when the report arrived), by source: server, update agents, URL mirrors, ActiveUpdate; the share below each hour is the offload from the server</title>"#,
        H + 58.0
    );
    super::chart::axes(
        &mut svg,
        super::chart::Frame {
            left: L,
            right: W,
            top: T,
            bottom: H,
        },
        "bytes per hour",
        [0, top / 2, top].map(bytes),
    );
    for (i, (hour, v)) in shown.iter().enumerate() {
        let x = L + i as f64 * slot + slot * 0.15;
        let mut y = H;
        for (k, n) in v.iter().enumerate() {
            let h = *n as f64 / max * (H - T);
            if h > 0.0 {
                y -= h;
                let _ = write!(
                    svg,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                    slot * 0.7,
                    COLORS[k],
                    &maybe_time(Some(*hour * 3600))[11..16],
                    CHART_KINDS[k],
                    bytes(*n)
                );
            }
        }
        let total: u64 = v.iter().sum();
        // Hours are labelled counting back from the last; a bar's total and offload are
        // written when the bars are wide enough (up to 12), else when its hour is labelled or
        // no neighbour has data to collide with.
        let labelled = (shown.len() - 1 - i).is_multiple_of(every);
        let has = |j: Option<usize>| {
            j.and_then(|j| shown.get(j))
                .is_some_and(|(_, v)| v.iter().sum::<u64>() > 0)
        };
        let alone = shown.len() <= 12 || (!has(i.checked_sub(1)) && !has(Some(i + 1)));
        if total > 0 && (labelled || alone) {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
                x + slot * 0.35,
                y - 3.0,
                bytes(total)
            );
        }
        let label = &maybe_time(Some(*hour * 3600))[11..16];
        if labelled {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{label}</text>"#,
                x + slot * 0.35,
                H + 13.0
            );
        }
        if total > 0 && (labelled || alone) {
            let off = v[1] + v[2];
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{}" font-size="9" text-anchor="middle" fill="#4f5b6a">{:.0} %</text>"##,
                x + slot * 0.35,
                H + 24.0,
                offload_percent(off, total)
            );
        }
    }
    // The legend, in two rows of two.
    for (k, name) in CHART_KINDS.iter().enumerate() {
        let lx = L + if k % 2 == 0 { 0.0 } else { 200.0 };
        let ly = H + 36.0 + if k < 2 { 0.0 } else { 14.0 };
        let _ = write!(
            svg,
            r#"<path d="M{lx:.1} {:.1}h10v10h-10z" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10">{name}</text>"#,
            ly - 9.0,
            COLORS[k],
            lx + 14.0,
            ly
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#4f5b6a">% = offloaded</text>"##,
        L + 400.0,
        H + 36.0
    );
    svg.push_str("</svg>");
    svg
}

/// Clients current (the newest version of every published category) and failed over time,
/// from the fleet samples, with each notify marked: how fast the fleet converged after it.
fn convergence(samples: &[FleetSample], notices: &[(i64, i64)]) -> String {
    if samples.iter().all(|s| s.total == 0) {
        return String::new();
    }
    // At most 240 points: every k-th sample, and always the last.
    let k = samples.len().div_ceil(240).max(1);
    let picked: Vec<&FleetSample> = samples
        .iter()
        .enumerate()
        .filter(|(i, _)| i % k == 0 || i + 1 == samples.len())
        .map(|(_, s)| s)
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let series = |name: &str, color: &'static str, f: fn(&FleetSample) -> u64| Series {
        name: name.to_owned(),
        color,
        points: picked.iter().map(|s| (s.at, f(s) as f64)).collect(),
    };
    let (x0, x1) = (
        picked.first().map_or(0, |s| s.at),
        picked.last().map_or(0, |s| s.at),
    );
    let markers: Vec<(i64, String)> = notices
        .iter()
        .filter(|n| n.1 >= x0 && n.1 <= x1)
        .map(|n| (n.1, format!("notify {}", n.0)))
        .collect();
    let span = x1 - x0;
    super::chart::lines(
        "convergence",
        "Clients current (the newest version of every published category), failed and in all, over time, with each notify marked",
        "clients",
        &[
            series("in all", "#5b6573", |s| s.total),
            series("current", "#2e7d32", |s| s.current),
            series("failed", "#c62828", |s| s.failed),
        ],
        &markers,
        &|x| {
            let t = maybe_time(Some(x));
            if span > 86_400 {
                t[5..16].to_owned()
            } else if span < 600 {
                t[11..19].to_owned()
            } else {
                t[11..16].to_owned()
            }
        },
        &|y| format!("{y:.0}"),
    )
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

/// How far back the current-over-time chart looks: to 5 minutes before the earliest of the
/// last three notifies of the last day, else 2 hours.
fn chart_start(now: i64, notices: &[(i64, i64)]) -> i64 {
    notices
        .iter()
        .rev()
        .take(3)
        .map(|n| n.1)
        .min()
        .map_or(now - 7200, |t| (t - 300).min(now - 600))
}

/// `GET /`.
pub async fn page(session: Session, State(st): State<AppState>) -> Result<Response, ConsoleError> {
    let now = st.clock.now();
    crate::fleet::sample_if_due(&st).await?;
    let [ok, failed, stale, never] = st
        .store
        .state_counts(now, crate::routes::admin::stale_secs(&st))
        .await?;
    let states = crate::routes::admin::STATES
        .iter()
        .copied()
        .zip([ok, failed, stale, never])
        .collect();
    let compliance = crate::fleet::compliance(&st).await?;
    let traffic = st
        .store
        .traffic_since(now.div_euclid(3600) - crate::store::TRAFFIC_HOURS)
        .await?;
    let mut sums = [0u64; 3];
    let mut by_source = [0u64; 4];
    let mut hours: BTreeMap<i64, [u64; 4]> = BTreeMap::new();
    for t in &traffic {
        sums[kind(&t.source)] += t.bytes;
        by_source[chart_kind(&t.source)] += t.bytes;
        hours.entry(t.hour).or_default()[chart_kind(&t.source)] += t.bytes;
    }
    let notices = st.store.notices_since(now - 86_400).await?;
    let mut samples = st.store.samples_since(chart_start(now, &notices)).await?;
    // The sampler writes only changes (`crate::fleet::sample_if_due`): the last figures
    // still hold now.
    if let Some(last) = samples.last().copied().filter(|l| l.at < now) {
        samples.push(FleetSample { at: now, ..last });
    }
    let total: u64 = sums.iter().sum();
    let offload = if total == 0 {
        "no bytes reported yet".to_owned()
    } else {
        format!("{:.0} %", offload_percent(sums[1], total))
    };
    let cur = st.store.current().await?;
    let problems: Vec<ClientRow> = st
        .store
        .recent_problem_clients(10)
        .await?
        .into_iter()
        .map(|r| {
            ClientRow::from_view(crate::routes::admin::client_view(
                r,
                &cur.policy,
                now,
                crate::routes::admin::stale_secs(&st),
                true,
            ))
        })
        .collect();
    let page = DashboardPage {
        chrome: Chrome::load(&st, &session, "dashboard").await,
        total: ok + failed + stale + never,
        states,
        compliance: compliance
            .categories
            .into_iter()
            .map(|c| super::compliance::Row {
                chart: String::new(),
                c,
            })
            .collect(),
        by_kind: CHART_KINDS
            .iter()
            .zip(by_source)
            .map(|(k, n)| (*k, bytes(n)))
            .collect(),
        reported_total: bytes(total),
        offload,
        repo_bytes: bytes(st.metrics.repo_bytes()),
        chart: chart(&hours),
        convergence: convergence(&samples, &notices),
        recovered: st.store.recovered_attempts().await?,
        failures: failures(&problems),
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

    // The hourly chart keeps update agents and URL mirrors apart.
    #[test]
    fn chart_sources_by_kind() {
        assert_eq!(chart_kind("server"), 0);
        assert_eq!(chart_kind("agent:10.0.0.5:8443"), 1);
        assert_eq!(chart_kind("url:http://mirror.example/repo"), 2);
        assert_eq!(chart_kind("activeupdate:https://up.example/"), 3);
    }

    // The current-over-time chart draws the samples, marks the notifies in its span, and is
    // empty while there are no clients.
    #[test]
    fn convergence_counts_and_marks() {
        let sample = |at, total, current| FleetSample {
            at,
            total,
            current,
            failed: 0,
        };
        assert_eq!(convergence(&[], &[]), "");
        assert_eq!(convergence(&[sample(1000, 0, 0)], &[(1, 1000)]), "");
        let svg = convergence(
            &[sample(1000, 2, 0), sample(1060, 2, 1), sample(1100, 2, 2)],
            &[(7, 1010), (8, 5000)],
        );
        assert!(
            svg.contains("notify 7") && !svg.contains("notify 8"),
            "{svg}"
        );
        assert!(
            svg.contains(">2<"),
            "the top of the axis is 2 clients: {svg}"
        );
        assert!(svg.contains("current") && svg.contains("in all"), "{svg}");
        assert_eq!(chart_start(10_000, &[]), 2_800);
        assert_eq!(chart_start(10_000, &[(1, 5_000), (2, 9_000)]), 4_700);
    }

    // The chart has one bar segment per non-zero kind and hour, and nothing without data.
    #[test]
    fn chart_segments() {
        assert_eq!(chart(&BTreeMap::new()), "");
        let mut hours = BTreeMap::new();
        hours.insert(472_222, [512, 16_405, 0, 0]);
        hours.insert(472_223, [0, 0, 0, 100]);
        let svg = chart(&hours);
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains("22:00") && svg.contains("23:00"), "{svg}");
    }
}
