//! `cascade domains list|show|set|edit`: client domains, their ActiveUpdate privilege and
//! their settings documents over the admin API (`docs/operating.md#domains-and-their-settings`).
//! `default` names the default settings (and the default privilege). Every write is sent at
//! the policy revision read just before (or `--revision`), so a concurrent change is refused
//! (exit 2, HTTP 409) rather than overwritten.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use cascade_client::proto::{DomainSettingsView, PrivilegeOverrides, SettingsPatch, UpdateWindow};
use cascade_core::settings::DEFAULT_SETTINGS_NAME;
use cascade_core::DomainSettings;
use clap::{Args, Subcommand, ValueEnum};

use crate::server_cmd::{ask, print_json, runtime, table, Conn, Revision};
use crate::BadInput;

/// `cascade domains …`.
#[derive(Debug, Subcommand)]
pub enum DomainsCmd {
    /// The default and every domain: ActiveUpdate privilege and settings.
    List(Conn),
    /// The settings a client of NAME applies (`default`: the default's).
    Show {
        /// The domain's name, or `default`.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change some settings of NAME (the rest keep their value; a domain without settings
    /// of its own starts from the default's).
    Set {
        /// The domain's name, or `default`.
        name: String,
        #[command(flatten)]
        changes: Changes,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
    /// Edit NAME's settings as JSON in `$VISUAL`/`$EDITOR` (default `vi`); checked locally
    /// and by the server before they are stored.
    Edit {
        /// The domain's name, or `default`.
        name: String,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
}

/// The settings `domains set` changes.
#[derive(Debug, Clone, Args)]
pub struct Changes {
    /// Seconds between scheduled update cycles.
    #[arg(long)]
    pub interval: Option<u64>,
    /// Up to this many seconds added at random to each interval.
    #[arg(long)]
    pub jitter: Option<u64>,
    /// An update window `FROM-TO` in UTC hours (e.g. `22-6`); repeat for several; replaces
    /// the windows.
    #[arg(long = "window", value_parser = parse_window)]
    pub windows: Vec<UpdateWindow>,
    /// Remove every update window (scheduled updates at any time).
    #[arg(long, conflicts_with = "windows")]
    pub any_time: bool,
    /// Abandon a download slower than this many bytes/s for the next source (0: off).
    #[arg(long)]
    pub min_rate: Option<u64>,
    /// Cap downloads at this many bytes/s (0: none).
    #[arg(long)]
    pub download_cap: Option<u64>,
    /// Cap an update agent's relay per client, bytes/s (0: none).
    #[arg(long)]
    pub relay_cap_per_client: Option<u64>,
    /// Cap an update agent's relay for all its clients, bytes/s (0: none).
    #[arg(long)]
    pub relay_cap_total: Option<u64>,
    /// An update agent's relay cache budget, bytes.
    #[arg(long)]
    pub relay_cache: Option<u64>,
    /// The ActiveUpdate privilege ("clients download updates from the ActiveUpdate server"):
    /// `on`, `off`, or `inherit` (a domain follows the default).
    #[arg(long, value_enum)]
    pub activeupdate: Option<Privilege>,
}

/// A privilege value on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Privilege {
    /// Granted.
    On,
    /// Not granted.
    Off,
    /// A domain follows the default.
    Inherit,
}

impl Changes {
    fn settings_changed(&self) -> bool {
        self.interval.is_some()
            || self.jitter.is_some()
            || !self.windows.is_empty()
            || self.any_time
            || self.min_rate.is_some()
            || self.download_cap.is_some()
            || self.relay_cap_per_client.is_some()
            || self.relay_cap_total.is_some()
            || self.relay_cache.is_some()
    }

    fn apply(&self, s: &mut DomainSettings) {
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut s.interval_secs, self.interval);
        set(&mut s.jitter_secs, self.jitter);
        set(&mut s.min_transfer_rate, self.min_rate);
        set(&mut s.download_cap, self.download_cap);
        set(&mut s.relay_cap_per_client, self.relay_cap_per_client);
        set(&mut s.relay_cap_total, self.relay_cap_total);
        set(&mut s.relay_cache_bytes, self.relay_cache);
        if self.any_time {
            s.windows.clear();
        } else if !self.windows.is_empty() {
            s.windows.clone_from(&self.windows);
        }
    }
}

fn parse_window(s: &str) -> Result<UpdateWindow, String> {
    let bad = || format!("`{s}` is not a window FROM-TO in hours (e.g. 22-6)");
    let (from, to) = s.split_once('-').ok_or_else(bad)?;
    Ok(UpdateWindow {
        from_hour: from.trim().parse().map_err(|_| bad())?,
        to_hour: to.trim().parse().map_err(|_| bad())?,
    })
}

fn windows(s: &DomainSettings) -> String {
    if s.windows.is_empty() {
        return "any time".into();
    }
    s.windows
        .iter()
        .map(|w| format!("{:02}-{:02}", w.from_hour, w.to_hour))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rate(v: u64) -> String {
    if v == 0 {
        "-".into()
    } else {
        format!("{}/s", indicatif::HumanBytes(v))
    }
}

fn on_off(v: bool) -> &'static str {
    if v {
        "on"
    } else {
        "off"
    }
}

fn print_view(v: &DomainSettingsView) {
    let s = &v.settings;
    let whose = if v.own {
        v.domain.clone()
    } else {
        format!("{} (the default's)", v.domain)
    };
    println!("settings of {whose}");
    println!("  version              {}", s.version);
    println!(
        "  interval             {} s (+ up to {} s jitter)",
        s.interval_secs, s.jitter_secs
    );
    println!("  update windows       {} (UTC)", windows(s));
    println!("  minimum rate         {}", rate(s.min_transfer_rate));
    println!("  download cap         {}", rate(s.download_cap));
    println!("  relay cap per client {}", rate(s.relay_cap_per_client));
    println!("  relay cap total      {}", rate(s.relay_cap_total));
    println!(
        "  relay cache          {}",
        indicatif::HumanBytes(s.relay_cache_bytes)
    );
    println!(
        "  published as         {}",
        v.target.as_deref().unwrap_or("- (never set)")
    );
    println!("revision {}", v.revision);
}

/// Runs `cascade domains list|show|set|edit`.
pub fn run_domains(cmd: DomainsCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            DomainsCmd::List(conn) => list(&conn).await,
            DomainsCmd::Show { name, conn } => {
                let what = format!("GET /api/policy/domain-settings/{name}");
                let v = ask(&conn, &what, |api| async move {
                    api.domain_settings_of(&name).await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    print_view(&v);
                }
                Ok(())
            }
            DomainsCmd::Set {
                name,
                changes,
                at,
                conn,
            } => set(&name, &changes, at, &conn).await,
            DomainsCmd::Edit { name, at, conn } => edit(&name, at, &conn).await,
        }
    })
}

async fn list(conn: &Conn) -> anyhow::Result<()> {
    let v = ask(conn, "GET /api/policy/domain-settings", |api| async move {
        api.domain_settings().await
    })
    .await?;
    if conn.json {
        print_json(&v);
        return Ok(());
    }
    let mut t = table(&[
        "domain",
        "activeupdate",
        "settings",
        "interval",
        "windows (UTC)",
        "download cap",
        "relay caps (client/total)",
        "relay cache",
    ]);
    let mut row = |name: &str, au: String, own: Option<&DomainSettings>, d: &DomainSettings| {
        let s = own.unwrap_or(d);
        let which = match own {
            Some(s) if name == DEFAULT_SETTINGS_NAME && s.version == 0 => "built-in".to_owned(),
            Some(s) => format!("v{}", s.version),
            None => "default's".to_owned(),
        };
        t.add_row(vec![
            name.to_owned(),
            au,
            which,
            format!("{} s ±{} s", s.interval_secs, s.jitter_secs),
            windows(s),
            rate(s.download_cap),
            format!(
                "{} / {}",
                rate(s.relay_cap_per_client),
                rate(s.relay_cap_total)
            ),
            indicatif::HumanBytes(s.relay_cache_bytes).to_string(),
        ]);
    };
    row(
        DEFAULT_SETTINGS_NAME,
        on_off(v.privileges.download_from_activeupdate).to_owned(),
        Some(&v.default),
        &v.default,
    );
    for (name, d) in &v.domains {
        let au = match d.privileges.download_from_activeupdate {
            Some(x) => on_off(x).to_owned(),
            None => format!(
                "{} (default)",
                on_off(d.effective.download_from_activeupdate)
            ),
        };
        row(name, au, d.settings.as_ref(), &v.default);
    }
    println!("{t}\nrevision {}", v.revision);
    Ok(())
}

async fn set(name: &str, changes: &Changes, at: Revision, conn: &Conn) -> anyhow::Result<()> {
    if !changes.settings_changed() && changes.activeupdate.is_none() {
        return Err(BadInput("domains set: nothing to change (see --help)".into()).into());
    }
    let mut revision = at.revision;
    if let Some(p) = changes.activeupdate {
        revision = Some(set_privilege(name, p, revision, conn).await?);
    }
    if !changes.settings_changed() {
        println!("ok: policy revision {}", revision.unwrap_or_default());
        return Ok(());
    }
    let what = format!("GET /api/policy/domain-settings/{name}");
    let cur = ask(conn, &what, |api| {
        let name = name.to_owned();
        async move { api.domain_settings_of(&name).await }
    })
    .await?;
    let mut next = cur.settings.clone();
    changes.apply(&mut next);
    put(name, &next, revision.or(Some(cur.revision)), conn).await
}

async fn set_privilege(
    name: &str,
    p: Privilege,
    at: Option<i64>,
    conn: &Conn,
) -> anyhow::Result<i64> {
    let value = match p {
        Privilege::On => Some(true),
        Privilege::Off => Some(false),
        Privilege::Inherit => None,
    };
    if name == DEFAULT_SETTINGS_NAME {
        let Some(v) = value else {
            return Err(BadInput(
                "--activeupdate: the default cannot inherit; use on or off".into(),
            )
            .into());
        };
        let patch = SettingsPatch {
            privileges: Some(PrivilegeOverrides {
                download_from_activeupdate: Some(v),
            }),
            ..SettingsPatch::default()
        };
        let s = ask(conn, "PATCH /api/policy/settings", |api| async move {
            api.patch_settings(&patch, at).await
        })
        .await?;
        return Ok(s.revision);
    }
    let body = PrivilegeOverrides {
        download_from_activeupdate: value,
    };
    let what = format!("PUT /api/policy/domains/{name}");
    let d = ask(conn, &what, |api| {
        let name = name.to_owned();
        async move { api.put_domain(&name, &body, at).await }
    })
    .await?;
    Ok(d.revision)
}

async fn put(
    name: &str,
    settings: &DomainSettings,
    at: Option<i64>,
    conn: &Conn,
) -> anyhow::Result<()> {
    let what = format!("PUT /api/policy/domain-settings/{name}");
    let v = ask(conn, &what, |api| {
        let (name, settings) = (name.to_owned(), settings.clone());
        async move { api.put_domain_settings(&name, &settings, at).await }
    })
    .await?;
    if conn.json {
        print_json(&v);
    } else {
        println!(
            "ok: {} settings version {} published as {}; policy revision {}",
            v.domain,
            v.settings.version,
            v.target.as_deref().unwrap_or("-"),
            v.revision
        );
    }
    Ok(())
}

async fn edit(name: &str, at: Revision, conn: &Conn) -> anyhow::Result<()> {
    let what = format!("GET /api/policy/domain-settings/{name}");
    let cur = ask(conn, &what, |api| {
        let name = name.to_owned();
        async move { api.domain_settings_of(&name).await }
    })
    .await?;
    let text = serde_json::to_string_pretty(&cur.settings)? + "\n";
    let file = tempfile::Builder::new()
        .prefix("cascade-domain-")
        .suffix(".json")
        .tempfile()
        .context("cannot make a file to edit")?;
    let path: PathBuf = file.path().to_owned();
    file.as_file()
        .write_all(text.as_bytes())
        .context("cannot write the file to edit")?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    // The editor owns the terminal until it exits; nothing else runs meanwhile.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .with_context(|| format!("cannot run the editor `{editor}`"))?;
    if !status.success() {
        return Err(BadInput(format!(
            "the editor `{editor}` failed ({status}); nothing changed"
        ))
        .into());
    }
    let edited = std::fs::read_to_string(&path).context("cannot read the edited file")?;
    let next: DomainSettings = serde_json::from_str(&edited)
        .map_err(|e| BadInput(format!("{}: {e}; nothing changed", path.display())))?;
    if next == cur.settings {
        println!("no change");
        return Ok(());
    }
    next.validate("settings")
        .map_err(|e| BadInput(format!("{e}; nothing changed")))?;
    put(name, &next, at.revision.or(Some(cur.revision)), conn).await
}
