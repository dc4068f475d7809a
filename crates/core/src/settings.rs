//! Domain settings (`docs/operating.md#domains-and-their-settings`): the document the server
//! keeps for the default and for each client domain, publishes as the signed target
//! `domain-settings/NAME/VERSION/settings.json`, and agents apply: when scheduled updates run
//! (interval, jitter, update windows), how fast downloads must be and may be, and what an
//! update agent's relay may spend (bandwidth per client and in total, cache size).
//!
//! Every field has a bound ([`DomainSettings::validate`] names the field and the value);
//! `0` means "no limit" for the rate and cap fields.

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// The target name the default settings are published under (a domain of that name cannot
/// carry settings of its own).
pub const DEFAULT_SETTINGS_NAME: &str = "default";

/// The file name of a settings target: `domain-settings/NAME/VERSION/settings.json`.
pub const SETTINGS_FILE: &str = "settings.json";

/// The shortest interval between scheduled updates, seconds.
pub const MIN_INTERVAL_SECS: u64 = 10;
/// The longest interval between scheduled updates, seconds (a week).
pub const MAX_INTERVAL_SECS: u64 = 7 * 24 * 3600;
/// The most update windows a document may list.
pub const MAX_WINDOWS: usize = 24;
/// The largest byte rate or cache size a field accepts (1 TiB, per second for rates).
pub const MAX_BYTES: u64 = 1 << 40;
/// The smallest relay cache (1 MiB): a relay must hold at least metadata.
pub const MIN_RELAY_CACHE: u64 = 1 << 20;

/// One span of hours (UTC) when scheduled updates may run: from `from_hour:00` up to (not
/// including) `to_hour:00`; `from_hour > to_hour` spans midnight (22 → 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWindow {
    /// First hour of the window, 0–23 (UTC).
    pub from_hour: u8,
    /// Hour the window ends, 1–24 (UTC), not included; differs from `from_hour`.
    pub to_hour: u8,
}

impl UpdateWindow {
    /// Whether the hour `hour` (0–23, UTC) is inside the window.
    pub fn contains(&self, hour: u8) -> bool {
        let (from, to) = (self.from_hour, self.to_hour % 24);
        if from < to {
            (from..to).contains(&hour)
        } else {
            hour >= from || hour < to
        }
    }
}

/// A domain's (or the default's) settings document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DomainSettings {
    /// Set by the server: 1 for the first document stored, one more at every change. The
    /// published target is `domain-settings/NAME/VERSION/settings.json`. Ignored in a request
    /// body.
    pub version: u64,
    /// Seconds between scheduled update cycles (10 s to a week).
    pub interval_secs: u64,
    /// Up to this many seconds added at random to each interval (at most the interval).
    pub jitter_secs: u64,
    /// Hours (UTC) when scheduled cycles may run; empty: any time. A notify or a manual run
    /// updates at any time.
    pub windows: Vec<UpdateWindow>,
    /// A download slower than this (bytes/s, averaged over the transfer after its first
    /// seconds) is abandoned for the next source; 0: no floor.
    pub min_transfer_rate: u64,
    /// Bandwidth cap of a client's downloads, bytes/s; 0: none.
    pub download_cap: u64,
    /// An update agent's relay: bandwidth cap per client connection, bytes/s; 0: none.
    pub relay_cap_per_client: u64,
    /// An update agent's relay: bandwidth cap for all its clients together, bytes/s; 0: none.
    pub relay_cap_total: u64,
    /// An update agent's relay cache budget, bytes (at least 1 MiB).
    pub relay_cache_bytes: u64,
}

impl Default for DomainSettings {
    /// What an agent does with no settings: hourly, up to a minute of jitter, any time, the
    /// transport's own floor, no caps, a 1 GiB relay cache.
    fn default() -> Self {
        DomainSettings {
            version: 0,
            interval_secs: 3600,
            jitter_secs: 60,
            windows: Vec::new(),
            min_transfer_rate: 0,
            download_cap: 0,
            relay_cap_per_client: 0,
            relay_cap_total: 0,
            relay_cache_bytes: 1 << 30,
        }
    }
}

fn invalid(field: &str, value: &dyn std::fmt::Display, reason: &str) -> PolicyError {
    PolicyError::Invalid {
        field: field.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    }
}

impl DomainSettings {
    /// Checks every bound; `prefix` names the document in errors (e.g.
    /// `domains.sales.settings`), windows are counted from 1.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] naming the first field out of bounds and its value.
    pub fn validate(&self, prefix: &str) -> Result<(), PolicyError> {
        let f = |name: &str| format!("{prefix}.{name}");
        if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&self.interval_secs) {
            return Err(invalid(
                &f("interval_secs"),
                &self.interval_secs,
                &format!("must be {MIN_INTERVAL_SECS} to {MAX_INTERVAL_SECS} seconds"),
            ));
        }
        if self.jitter_secs > self.interval_secs {
            return Err(invalid(
                &f("jitter_secs"),
                &self.jitter_secs,
                &format!("must be at most interval_secs ({})", self.interval_secs),
            ));
        }
        if self.windows.len() > MAX_WINDOWS {
            return Err(invalid(
                &f("windows"),
                &self.windows.len(),
                &format!("at most {MAX_WINDOWS} windows"),
            ));
        }
        for (i, w) in self.windows.iter().enumerate() {
            let at = |name: &str| f(&format!("windows[{}].{name}", i + 1));
            if w.from_hour > 23 {
                return Err(invalid(&at("from_hour"), &w.from_hour, "must be 0 to 23"));
            }
            if w.to_hour == 0 || w.to_hour > 24 {
                return Err(invalid(&at("to_hour"), &w.to_hour, "must be 1 to 24"));
            }
            if w.from_hour == w.to_hour % 24 {
                return Err(invalid(
                    &at("to_hour"),
                    &w.to_hour,
                    "must differ from from_hour (an empty or whole-day window; leave windows empty for any time)",
                ));
            }
        }
        for (name, v) in [
            ("min_transfer_rate", self.min_transfer_rate),
            ("download_cap", self.download_cap),
            ("relay_cap_per_client", self.relay_cap_per_client),
            ("relay_cap_total", self.relay_cap_total),
            ("relay_cache_bytes", self.relay_cache_bytes),
        ] {
            if v > MAX_BYTES {
                return Err(invalid(
                    &f(name),
                    &v,
                    &format!("must be at most {MAX_BYTES}"),
                ));
            }
        }
        if self.relay_cache_bytes < MIN_RELAY_CACHE {
            return Err(invalid(
                &f("relay_cache_bytes"),
                &self.relay_cache_bytes,
                &format!("must be at least {MIN_RELAY_CACHE} (1 MiB)"),
            ));
        }
        if self.download_cap != 0
            && self.min_transfer_rate != 0
            && self.min_transfer_rate > self.download_cap
        {
            return Err(invalid(
                &f("min_transfer_rate"),
                &self.min_transfer_rate,
                &format!(
                    "must not exceed download_cap ({}): every capped download would be abandoned",
                    self.download_cap
                ),
            ));
        }
        Ok(())
    }

    /// Whether this is the untouched built-in default (never stored by the server).
    pub fn is_unset(&self) -> bool {
        self.version == 0 && *self == DomainSettings::default()
    }

    /// Whether a scheduled cycle may run at `hour` (0–23, UTC): always when no window is set.
    pub fn in_window(&self, hour: u8) -> bool {
        self.windows.is_empty() || self.windows.iter().any(|w| w.contains(hour))
    }
}

/// Whether `name` can be a settings target's NAME: 1 to 128 letters, digits, `.`, `_`, `+`,
/// `~`, `-`, not starting with `.`, and not [`DEFAULT_SETTINGS_NAME`] (how a domain named like
/// that is told it cannot carry settings).
///
/// # Errors
/// [`PolicyError::Invalid`] naming `field` and the name.
pub fn check_publishable_name(field: &str, name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'~' | b'-'));
    if !ok {
        return Err(invalid(
            field,
            &crate::limits::cut(name),
            "a domain with settings needs a name of 1 to 128 letters, digits, `.`, `_`, `+`, `~`, `-` (not starting with `.`)",
        ));
    }
    if name == DEFAULT_SETTINGS_NAME {
        return Err(invalid(
            field,
            &name,
            "is the name the default settings are published under; set the default instead",
        ));
    }
    Ok(())
}

/// Gives the settings documents of `next` (a whole policy about to replace `previous`: an
/// import or a restore) versions that keep publishing monotonic: a document equal to the one
/// it replaces keeps that version, a changed one gets one more than the larger of the two
/// versions, a new one keeps its own (at least 1). So a restored old document is published
/// as a new version, never hidden behind the newer one agents already have.
pub fn renumber(previous: &crate::Policy, next: &mut crate::Policy) {
    fn fix(prev: Option<&DomainSettings>, doc: &mut DomainSettings) {
        match prev {
            Some(p) if p.version > 0 => {
                let same = DomainSettings {
                    version: p.version,
                    ..doc.clone()
                } == *p;
                doc.version = if same {
                    p.version
                } else {
                    p.version.max(doc.version).saturating_add(1)
                };
            }
            _ => {}
        }
    }
    if !next.settings.is_unset() {
        fix(Some(&previous.settings), &mut next.settings);
        next.settings.version = next.settings.version.max(1);
    }
    for (name, d) in &mut next.domains {
        if let Some(doc) = &mut d.settings {
            let prev = previous.domains.get(name).and_then(|p| p.settings.as_ref());
            fix(prev, doc);
            doc.version = doc.version.max(1);
        }
    }
}

/// The signed file `domain-settings/NAME/VERSION/settings.json`: whose settings they are and
/// the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishedSettings {
    /// The domain, or [`DEFAULT_SETTINGS_NAME`] for the default.
    pub domain: String,
    /// The settings (their `version` is the target's VERSION).
    pub settings: DomainSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_name_field_and_value() {
        DomainSettings::default().validate("settings").unwrap();
        let bad = |s: DomainSettings| s.validate("settings").unwrap_err().to_string();
        let e = bad(DomainSettings {
            interval_secs: 5,
            jitter_secs: 0,
            ..DomainSettings::default()
        });
        assert!(
            e.contains("settings.interval_secs") && e.contains('5'),
            "{e}"
        );
        let e = bad(DomainSettings {
            jitter_secs: 7200,
            ..DomainSettings::default()
        });
        assert!(
            e.contains("settings.jitter_secs") && e.contains("7200"),
            "{e}"
        );
        let e = bad(DomainSettings {
            windows: vec![
                UpdateWindow {
                    from_hour: 1,
                    to_hour: 2,
                },
                UpdateWindow {
                    from_hour: 24,
                    to_hour: 2,
                },
            ],
            ..DomainSettings::default()
        });
        assert!(
            e.contains("settings.windows[2].from_hour") && e.contains("24"),
            "{e}"
        );
        let e = bad(DomainSettings {
            relay_cache_bytes: 10,
            ..DomainSettings::default()
        });
        assert!(e.contains("relay_cache_bytes"), "{e}");
        let e = bad(DomainSettings {
            download_cap: 1000,
            min_transfer_rate: 2000,
            ..DomainSettings::default()
        });
        assert!(e.contains("min_transfer_rate") && e.contains("2000"), "{e}");
    }

    #[test]
    fn windows_wrap_midnight() {
        let night = UpdateWindow {
            from_hour: 22,
            to_hour: 6,
        };
        assert!(night.contains(23) && night.contains(0) && night.contains(5));
        assert!(!night.contains(6) && !night.contains(12) && !night.contains(21));
        let day = UpdateWindow {
            from_hour: 9,
            to_hour: 24,
        };
        assert!(day.contains(9) && day.contains(23) && !day.contains(0));
        let s = DomainSettings {
            windows: vec![night],
            ..DomainSettings::default()
        };
        assert!(s.in_window(1) && !s.in_window(12));
        assert!(DomainSettings::default().in_window(12));
    }
}
