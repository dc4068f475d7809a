//! Applying domain settings (`docs/operating.md#domains-and-their-settings`). The server
//! publishes each domain's settings (and the default's) as the signed target
//! `domain-settings/NAME/VERSION/settings.json`; the agent installs them like any other
//! content, and after each cycle's installs reads the document of its own domain (the
//! default's when its domain has none) and applies it from the next cycle on: the interval
//! and jitter of scheduled cycles, the update windows, the download floor and cap, and its
//! relay's caps and cache budget. A document that cannot be read or is out of bounds is
//! ignored with a warning (the previous one stays in force).

use std::path::Path;
use std::time::Duration;

use cascade_core::settings::{DEFAULT_SETTINGS_NAME, SETTINGS_FILE};
use cascade_core::{Category, DomainSettings, PublishedSettings};

use crate::install::Installer;

/// The settings in force and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The target name they were published under (the domain, or `default`).
    pub name: String,
    /// The document.
    pub settings: DomainSettings,
}

impl Applied {
    /// `NAME VERSION`, as the report says it.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.settings.version)
    }
}

/// The installed settings a client of `domain` applies: its domain's, else the default's;
/// `None` when neither is installed (or readable and valid).
pub fn installed(installer: &Installer, domain: Option<&str>) -> Option<Applied> {
    let names = domain
        .filter(|d| *d != DEFAULT_SETTINGS_NAME)
        .into_iter()
        .chain([DEFAULT_SETTINGS_NAME]);
    for name in names {
        let Ok(Some(dir)) = installer.current_dir(Category::DomainSettings, name) else {
            continue;
        };
        match read(&dir.join(SETTINGS_FILE), name) {
            Ok(settings) => {
                return Some(Applied {
                    name: name.to_owned(),
                    settings,
                })
            }
            Err(why) => {
                tracing::warn!(name, %why, "domain settings ignored");
            }
        }
    }
    None
}

fn read(path: &Path, name: &str) -> Result<DomainSettings, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: PublishedSettings =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if doc.domain != name {
        return Err(format!(
            "{} is for domain `{}`, not `{name}`",
            path.display(),
            doc.domain
        ));
    }
    doc.settings
        .validate("settings")
        .map_err(|e| e.to_string())?;
    Ok(doc.settings)
}

/// When scheduled cycles run: every `interval` plus up to `jitter`, inside the windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Between scheduled cycles.
    pub interval: Duration,
    /// Up to this much is added to each interval (spread per client).
    pub jitter: Duration,
    /// The settings whose windows apply, if any.
    pub settings: Option<DomainSettings>,
}

impl Schedule {
    /// The schedule of `applied`, or the agent's own (`interval` ± 10 %) without settings.
    pub fn of(applied: Option<&Applied>, interval: Duration) -> Self {
        match applied {
            Some(a) => Schedule {
                interval: Duration::from_secs(a.settings.interval_secs),
                jitter: Duration::from_secs(a.settings.jitter_secs),
                settings: Some(a.settings.clone()),
            },
            None => Schedule {
                interval,
                jitter: interval / 10,
                settings: None,
            },
        }
    }

    /// Whether a scheduled cycle may run at `now_unix` (UTC hours); a notify or a manual run
    /// does not ask.
    pub fn may_run(&self, now_unix: i64) -> bool {
        let hour = u8::try_from(now_unix.rem_euclid(86_400) / 3600).unwrap_or(0);
        self.settings.as_ref().is_none_or(|s| s.in_window(hour))
    }
}

/// The throughput floor a download must keep: the settings' minimum rate when set, else the
/// agent's own; never more than half the download cap (a capped download must not be taken
/// for a slow one).
pub fn floor(settings: Option<&DomainSettings>, own: u64) -> u64 {
    let Some(s) = settings else { return own };
    let floor = if s.min_transfer_rate > 0 {
        s.min_transfer_rate
    } else {
        own
    };
    if s.download_cap > 0 {
        floor.min(s.download_cap / 2)
    } else {
        floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_core::UpdateWindow;

    fn publish(root: &Path, name: &str, version: u64, doc: &PublishedSettings) {
        let dir = root.join(format!("domain-settings/{name}/{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SETTINGS_FILE), serde_json::to_vec(doc).unwrap()).unwrap();
        std::os::unix::fs::symlink(
            version.to_string(),
            root.join(format!("domain-settings/{name}/current")),
        )
        .unwrap();
    }

    // The domain's own document wins over the default's; a document naming another domain
    // is ignored; without any, nothing applies.
    #[test]
    fn own_then_default() {
        let tmp = tempfile::tempdir().unwrap();
        let installer = Installer::new(tmp.path().to_path_buf());
        assert_eq!(installed(&installer, Some("sales")), None);
        let s = DomainSettings {
            version: 2,
            interval_secs: 120,
            jitter_secs: 0,
            ..DomainSettings::default()
        };
        publish(
            tmp.path(),
            "default",
            2,
            &PublishedSettings {
                domain: "default".into(),
                settings: s.clone(),
            },
        );
        let a = installed(&installer, Some("sales")).unwrap();
        assert_eq!(
            (a.name.as_str(), a.settings.interval_secs),
            ("default", 120)
        );
        publish(
            tmp.path(),
            "sales",
            1,
            &PublishedSettings {
                domain: "lab".into(),
                settings: s.clone(),
            },
        );
        assert_eq!(
            installed(&installer, Some("sales")).unwrap().name,
            "default"
        );
        std::fs::remove_dir_all(tmp.path().join("domain-settings/sales")).unwrap();
        publish(
            tmp.path(),
            "sales",
            1,
            &PublishedSettings {
                domain: "sales".into(),
                settings: DomainSettings { version: 1, ..s },
            },
        );
        assert_eq!(
            installed(&installer, Some("sales")).unwrap().label(),
            "sales 1"
        );
    }

    #[test]
    fn windows_and_floor() {
        let s = DomainSettings {
            windows: vec![UpdateWindow {
                from_hour: 22,
                to_hour: 6,
            }],
            min_transfer_rate: 10_000,
            download_cap: 8_000,
            ..DomainSettings::default()
        };
        let sched = Schedule::of(
            Some(&Applied {
                name: "default".into(),
                settings: s.clone(),
            }),
            Duration::from_secs(5),
        );
        assert!(sched.may_run(23 * 3600) && !sched.may_run(12 * 3600));
        assert!(Schedule::of(None, Duration::from_secs(5)).may_run(12 * 3600));
        assert_eq!(floor(Some(&s), 4096), 4000);
        assert_eq!(floor(None, 4096), 4096);
    }
}
