//! What `cascade demo` shows: live progress per client group (indicatif bars on a terminal,
//! plain lines otherwise) and, after each act, a summary table of who is current, which
//! source served each group, the bytes served by the server, the update agents and the
//! mirror (the offload ratio), and failures seen on the way.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use cascade_client::proto::NotifyResponse;
use cascade_core::report::{Outcome, RelayReport, UpdateReport};
use cascade_core::Category;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Where a demo client sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// 127.0.1.x, behind update agent 1.
    Office1,
    /// 127.0.2.x, behind update agent 2.
    Office2,
    /// Outside every range: the server, through the fallback.
    Outside,
}

impl Group {
    fn label(self) -> &'static str {
        match self {
            Group::Office1 => "office 1 (127.0.1.x)",
            Group::Office2 => "office 2 (127.0.2.x)",
            Group::Outside => "outside (127.0.9.x)",
        }
    }
    const ALL: [Group; 3] = [Group::Office1, Group::Office2, Group::Outside];
}

/// One demo client.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its group.
    pub group: Group,
    /// Its address (also its data directory's name).
    pub ip: IpAddr,
}

/// A client's state as read from its data directory.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// It has the wanted version installed.
    pub current: bool,
    /// The source of its last successful components step.
    pub source: Option<String>,
    /// Failed steps in its last report.
    pub failures: usize,
}

/// Reads every client's state from disk (its installed link and its last report).
pub fn statuses(dir: &Path, clients: &[Client], item: &str, version: &str) -> Vec<Status> {
    clients
        .iter()
        .map(|c| {
            let home = dir.join("clients").join(c.ip.to_string());
            let link = home.join("installed").join(Category::Components.as_str()).join(item).join("current");
            // Current once the version is switched in *and* the cycle that did it has written
            // its report (which happens after the switch), so the table shows who served it.
            let switched = std::fs::read_link(&link).is_ok_and(|v| v.as_os_str() == version);
            let mtime = |p: &Path| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok();
            let reported = matches!((mtime(&link), mtime(&home.join("last-report.json"))), (Some(l), Some(r)) if r >= l);
            let current = switched && reported;
            let report: Option<UpdateReport> =
                std::fs::read(home.join("last-report.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let (source, failures) = report.map_or((None, 0), |r| {
                let source = r
                    .attempts
                    .iter()
                    .filter(|a| a.category == Some(Category::Components))
                    .find(|a| matches!(a.outcome, Outcome::Ok | Outcome::UpToDate))
                    .map(|a| a.source.clone());
                (source, r.attempts.iter().filter(|a| a.outcome == Outcome::Failed).count())
            });
            Status { current, source, failures }
        })
        .collect()
}

/// Progress bars per group.
pub struct Progress {
    tty: bool,
    /// Keeps the bars drawn together.
    _multi: Option<MultiProgress>,
    bars: Vec<(Group, ProgressBar, usize)>,
    groups: Vec<Group>,
    last: std::cell::Cell<usize>,
}

impl Progress {
    /// One bar per group that has clients.
    pub fn new(clients: &[Client]) -> Self {
        let tty = std::io::stderr().is_terminal();
        let multi = tty.then(MultiProgress::new);
        let style = ProgressStyle::with_template("  {prefix:22} [{bar:30}] {pos}/{len} current")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bars = Group::ALL
            .into_iter()
            .filter_map(|g| {
                let n = clients.iter().filter(|c| c.group == g).count();
                (n > 0).then(|| {
                    let bar = ProgressBar::new(n as u64)
                        .with_style(style.clone())
                        .with_prefix(g.label());
                    let bar = if let Some(m) = &multi {
                        m.add(bar)
                    } else {
                        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
                        bar
                    };
                    (g, bar, n)
                })
            })
            .collect();
        Progress {
            tty,
            _multi: multi,
            bars,
            groups: clients.iter().map(|c| c.group).collect(),
            last: std::cell::Cell::new(usize::MAX),
        }
    }

    /// Updates the bars (or prints a line when the count changed and there is no terminal).
    pub fn update(&self, statuses: &[Status]) {
        let mut per_group: BTreeMap<Group, usize> = BTreeMap::new();
        for (s, g) in statuses.iter().zip(&self.groups) {
            if s.current {
                *per_group.entry(*g).or_default() += 1;
            }
        }
        for (g, bar, _) in &self.bars {
            bar.set_position(per_group.get(g).copied().unwrap_or(0) as u64);
        }
        let total: usize = per_group.values().sum();
        if !self.tty && self.last.get() != total {
            self.last.set(total);
            let parts: Vec<String> = self
                .bars
                .iter()
                .map(|(g, _, n)| {
                    format!(
                        "{} {}/{n}",
                        g.label(),
                        per_group.get(g).copied().unwrap_or(0)
                    )
                })
                .collect();
            println!("  current: {}", parts.join(", "));
        }
    }

    /// Leaves the bars on screen.
    pub fn finish(&self) {
        for (_, bar, _) in &self.bars {
            bar.abandon();
        }
    }
}

/// Bytes served, by the server, each update agent and the mirror.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// The server's repository bytes.
    pub server: u64,
    /// Each update agent's relay bytes (`None` when it is down).
    pub relays: Vec<Option<u64>>,
    /// The URL mirror's bytes.
    pub mirror: u64,
}

impl Totals {
    /// The difference `self - before` (an agent down at either end counts as 0).
    pub fn minus(&self, before: &Totals) -> Totals {
        Totals {
            server: self.server.saturating_sub(before.server),
            relays: self
                .relays
                .iter()
                .zip(&before.relays)
                .map(|(a, b)| Some(a.unwrap_or(0).saturating_sub(b.unwrap_or(0))))
                .collect(),
            mirror: self.mirror.saturating_sub(before.mirror),
        }
    }
}

/// The server's `cascade_repo_bytes_total` from `/metrics`.
pub async fn server_bytes(api: &cascade_client::Client) -> u64 {
    let text = api.metrics().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cascade_repo_bytes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// An update agent's `bytes_served` from `/relay/stats`, `None` when it does not answer.
pub async fn relay_bytes(addr: SocketAddr) -> Option<u64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .ok()?;
    let report: RelayReport = client
        .get(format!("http://{addr}/relay/stats"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(report.bytes_served)
}

/// "N clients" from the notify answer.
pub fn notified(answer: &NotifyResponse) -> String {
    let fan = &answer.fan_out;
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} connected ({} first, then {})",
        fan.agents + fan.clients,
        count(fan.agents, "update agent", "update agents"),
        count(fan.clients, "client", "clients")
    )
}

#[allow(clippy::cast_precision_loss)] // for display only
fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
}

/// Prints the act's summary table.
#[allow(clippy::cast_precision_loss)] // the offload percentage is for display only
pub fn summary(clients: &[Client], statuses: &[Status], bytes: &Totals, took: Duration) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "group",
        "clients",
        "current",
        "served by",
        "failed steps",
    ]);
    for g in Group::ALL {
        let members: Vec<&Status> = clients
            .iter()
            .zip(statuses)
            .filter(|(c, _)| c.group == g)
            .map(|(_, s)| s)
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for s in &members {
            *by.entry(s.source.clone().unwrap_or_else(|| "-".into()))
                .or_default() += 1;
        }
        let by: Vec<String> = by.into_iter().map(|(s, n)| format!("{s} ×{n}")).collect();
        t.add_row([
            g.label().to_owned(),
            members.len().to_string(),
            members.iter().filter(|s| s.current).count().to_string(),
            by.join("\n"),
            members
                .iter()
                .map(|s| s.failures)
                .sum::<usize>()
                .to_string(),
        ]);
    }
    println!("{t}");
    let relays: u64 = bytes.relays.iter().map(|r| r.unwrap_or(0)).sum();
    let total = bytes.server + relays + bytes.mirror;
    let offload = if total == 0 {
        0.0
    } else {
        (relays + bytes.mirror) as f64 * 100.0 / total as f64
    };
    let per_relay: Vec<String> = bytes.relays.iter().map(|r| mib(r.unwrap_or(0))).collect();
    println!(
        "  bytes: server {}, update agents {} [{}], mirror {}; offload {offload:.0}%; converged in {:.1} s",
        mib(bytes.server),
        mib(relays),
        per_relay.join(", "),
        mib(bytes.mirror),
        took.as_secs_f64()
    );
}
