//! The Domains page (`docs/operating.md#domains-and-their-settings`): the default and every
//! client domain with its ActiveUpdate privilege (a control per row: on/off for the default;
//! on, off or the default for a domain) and a summary of the settings its clients apply; and
//! one page per domain to edit its settings document. Writes go through the same store
//! methods and publishing as the admin API (`routes::domains::store_and_publish`), at the
//! page's policy revision.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::settings::DEFAULT_SETTINGS_NAME;
use cascade_core::{DomainSettings, PrivilegeOverrides, UpdateWindow};
use cascade_proto::SettingsPatch;

use super::form::{self, FieldErrors, Form};
use super::session::{see_other, Session};
use super::view::{bytes, html, Chrome};
use super::ConsoleError;
use crate::error::ApiError;
use crate::state::AppState;

/// One row of the list.
#[derive(Debug, Clone)]
pub struct DomainRow {
    name: String,
    /// `on`, `off` or `inherit` (domains only).
    privilege: &'static str,
    /// The effective privilege, for a domain that inherits it.
    effective: &'static str,
    /// `vN`, `built-in` or `default's`.
    which: String,
    summary: String,
}

/// `GET /domains`.
#[derive(Template)]
#[template(path = "domains.html")]
pub struct DomainsPage {
    chrome: Chrome,
    revision: i64,
    rows: Vec<DomainRow>,
}

/// `GET /domains/{name}`.
#[derive(Template)]
#[template(path = "domain.html")]
pub struct DomainPage {
    chrome: Chrome,
    revision: i64,
    name: String,
    own: bool,
    version: u64,
    target: String,
    inputs: Vec<Input>,
    errors: FieldErrors,
}

/// One field of the settings form.
#[derive(Debug, Clone)]
pub struct Input {
    id: &'static str,
    label: &'static str,
    value: String,
    numeric: bool,
}

/// The form's values as text (as typed, when a refusal shows them again).
#[derive(Debug, Clone, Default)]
pub struct Fields {
    interval_secs: String,
    jitter_secs: String,
    windows: String,
    min_transfer_rate: String,
    download_cap: String,
    relay_cap_per_client: String,
    relay_cap_total: String,
    relay_cache_bytes: String,
}

fn on_off(v: bool) -> &'static str {
    if v {
        "on"
    } else {
        "off"
    }
}

fn rate(v: u64) -> String {
    if v == 0 {
        "none".into()
    } else {
        format!("{}/s", bytes(v))
    }
}

fn windows_text(s: &DomainSettings) -> String {
    s.windows
        .iter()
        .map(|w| format!("{}-{}", w.from_hour, w.to_hour))
        .collect::<Vec<_>>()
        .join(", ")
}

fn summary(s: &DomainSettings) -> String {
    let windows = if s.windows.is_empty() {
        "any time".to_owned()
    } else {
        format!("{} UTC", windows_text(s))
    };
    format!(
        "every {} s (+{} s), {windows}; downloads {}; relay {} per client, {} total, cache {}",
        s.interval_secs,
        s.jitter_secs,
        rate(s.download_cap),
        rate(s.relay_cap_per_client),
        rate(s.relay_cap_total),
        bytes(s.relay_cache_bytes)
    )
}

impl Fields {
    fn inputs(self) -> Vec<Input> {
        let n = |id, label, value| Input {
            id,
            label,
            value,
            numeric: true,
        };
        vec![
            n(
                "interval_secs",
                "Interval between scheduled updates (seconds)",
                self.interval_secs,
            ),
            n(
                "jitter_secs",
                "Jitter: up to this many seconds added (seconds)",
                self.jitter_secs,
            ),
            Input {
                id: "windows",
                label: "Update windows (UTC hours, e.g. 22-6, 12-13; empty: any time)",
                value: self.windows,
                numeric: false,
            },
            n(
                "min_transfer_rate",
                "Minimum transfer rate (bytes/s; a slower download tries the next source)",
                self.min_transfer_rate,
            ),
            n(
                "download_cap",
                "Download bandwidth cap per client (bytes/s)",
                self.download_cap,
            ),
            n(
                "relay_cap_per_client",
                "Update agent relay: cap per client (bytes/s)",
                self.relay_cap_per_client,
            ),
            n(
                "relay_cap_total",
                "Update agent relay: cap for all its clients (bytes/s)",
                self.relay_cap_total,
            ),
            n(
                "relay_cache_bytes",
                "Update agent relay: cache size (bytes)",
                self.relay_cache_bytes,
            ),
        ]
    }

    fn of(s: &DomainSettings) -> Fields {
        Fields {
            interval_secs: s.interval_secs.to_string(),
            jitter_secs: s.jitter_secs.to_string(),
            windows: windows_text(s),
            min_transfer_rate: s.min_transfer_rate.to_string(),
            download_cap: s.download_cap.to_string(),
            relay_cap_per_client: s.relay_cap_per_client.to_string(),
            relay_cap_total: s.relay_cap_total.to_string(),
            relay_cache_bytes: s.relay_cache_bytes.to_string(),
        }
    }

    fn read(f: &Form) -> Fields {
        Fields {
            interval_secs: f.get("interval_secs").trim().to_owned(),
            jitter_secs: f.get("jitter_secs").trim().to_owned(),
            windows: f.get("windows").trim().to_owned(),
            min_transfer_rate: f.get("min_transfer_rate").trim().to_owned(),
            download_cap: f.get("download_cap").trim().to_owned(),
            relay_cap_per_client: f.get("relay_cap_per_client").trim().to_owned(),
            relay_cap_total: f.get("relay_cap_total").trim().to_owned(),
            relay_cache_bytes: f.get("relay_cache_bytes").trim().to_owned(),
        }
    }

    /// The document the form describes (its version is the server's to set).
    fn parse(&self) -> Result<DomainSettings, ApiError> {
        let num = |field: &str, text: &str| {
            text.parse::<u64>().map_err(|_| {
                ApiError::bad(
                    "console.number",
                    field,
                    format!(
                        "{field}: `{}` is not a whole number",
                        cascade_core::limits::cut(text)
                    ),
                )
            })
        };
        let mut windows = Vec::new();
        for (i, w) in self
            .windows
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .enumerate()
        {
            let bad = || {
                ApiError::bad(
                    "console.window",
                    "windows",
                    format!(
                        "windows: window {} `{}` is not FROM-TO in hours (e.g. 22-6)",
                        i + 1,
                        cascade_core::limits::cut(w)
                    ),
                )
            };
            let (from, to) = w.split_once('-').ok_or_else(bad)?;
            windows.push(UpdateWindow {
                from_hour: from.trim().parse().map_err(|_| bad())?,
                to_hour: to.trim().parse().map_err(|_| bad())?,
            });
        }
        Ok(DomainSettings {
            version: 0,
            interval_secs: num("interval_secs", &self.interval_secs)?,
            jitter_secs: num("jitter_secs", &self.jitter_secs)?,
            windows,
            min_transfer_rate: num("min_transfer_rate", &self.min_transfer_rate)?,
            download_cap: num("download_cap", &self.download_cap)?,
            relay_cap_per_client: num("relay_cap_per_client", &self.relay_cap_per_client)?,
            relay_cap_total: num("relay_cap_total", &self.relay_cap_total)?,
            relay_cache_bytes: num("relay_cache_bytes", &self.relay_cache_bytes)?,
        })
    }
}

/// `GET /domains`.
pub async fn page(session: Session, State(st): State<AppState>) -> Result<Response, ConsoleError> {
    let cur = st.store.current().await?;
    let p = &cur.policy;
    let mut rows = vec![DomainRow {
        name: DEFAULT_SETTINGS_NAME.to_owned(),
        privilege: on_off(p.privileges.download_from_activeupdate),
        effective: on_off(p.privileges.download_from_activeupdate),
        which: if p.settings.version == 0 {
            "built-in".to_owned()
        } else {
            format!("v{}", p.settings.version)
        },
        summary: summary(&p.settings),
    }];
    for (name, d) in &p.domains {
        let (which, s) = match &d.settings {
            Some(s) => (format!("v{}", s.version), s),
            None => ("default's".to_owned(), &p.settings),
        };
        rows.push(DomainRow {
            name: name.clone(),
            privilege: d
                .privileges
                .download_from_activeupdate
                .map_or("inherit", on_off),
            effective: on_off(p.privileges_for(Some(name)).download_from_activeupdate),
            which,
            summary: summary(s),
        });
    }
    let page = DomainsPage {
        chrome: Chrome::new(&session, "domains"),
        revision: cur.revision,
        rows,
    };
    Ok(html(StatusCode::OK, page.render()?))
}

/// `POST /domain-privilege` with `name` and `privilege` (`on`, `off`, `inherit`).
pub async fn set_privilege(
    session: Session,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let f = session.form(&body)?;
    let name = f.get("name").to_owned();
    let value = match f.get("privilege") {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    };
    let done: Result<i64, ApiError> = async {
        let expected = form::expected(&f)?;
        if name == DEFAULT_SETTINGS_NAME {
            let Some(v) = value else {
                return Err(ApiError::bad(
                    "console.privilege",
                    "privilege",
                    "privilege: the default is on or off",
                ));
            };
            let patch = SettingsPatch {
                privileges: Some(PrivilegeOverrides {
                    download_from_activeupdate: Some(v),
                }),
                ..SettingsPatch::default()
            };
            Ok(st
                .store
                .patch_settings(expected, &session.actor, patch)
                .await?
                .revision)
        } else {
            let body = PrivilegeOverrides {
                download_from_activeupdate: value,
            };
            Ok(st
                .store
                .set_domain(expected, &session.actor, &name, body)
                .await?
                .revision)
        }
    }
    .await;
    match done {
        Ok(revision) => session.flash(
            "ok",
            format!("ActiveUpdate privilege of {name} saved (policy revision {revision})."),
        ),
        Err(e) if form::is_refusal(&e) => session.flash("error", form::refusal(&e)),
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/domains"))
}

async fn render_one(
    st: &AppState,
    session: &Session,
    name: String,
    fields: Option<Fields>,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let cur = st.store.current().await?;
    let v = crate::routes::domains::view(cur.revision, &cur.policy, &name);
    let page = DomainPage {
        chrome: Chrome::new(session, "domains"),
        revision: cur.revision,
        inputs: fields.unwrap_or_else(|| Fields::of(&v.settings)).inputs(),
        own: v.own,
        version: v.settings.version,
        target: v.target.unwrap_or_default(),
        name,
        errors,
    };
    Ok(html(status, page.render()?))
}

/// `GET /domains/{name}`: the settings form (a domain without settings of its own starts
/// from the default's; a new name makes a new domain when saved).
pub async fn edit_page(
    session: Session,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ConsoleError> {
    render_one(
        &st,
        &session,
        name,
        None,
        FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// `GET /domain-open?name=NAME`: the settings page of NAME (the list's "another domain" form).
pub async fn open(
    _session: Session,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let name = q.get("name").map_or("", |n| n.trim());
    if name.is_empty() {
        return see_other("/domains");
    }
    let seg: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
    see_other(&format!("/domains/{}", seg.replace('+', "%20")))
}

/// The fields a refusal may name, as the form calls them.
const FIELDS: [&str; 9] = [
    "interval_secs",
    "jitter_secs",
    "windows",
    "min_transfer_rate",
    "download_cap",
    "relay_cap_per_client",
    "relay_cap_total",
    "relay_cache_bytes",
    "form",
];

/// `POST /domains/{name}`: store and publish the settings.
pub async fn save(
    session: Session,
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let f = session.form(&body)?;
    let fields = Fields::read(&f);
    let done = async {
        let expected = form::expected(&f)?;
        let settings = fields.parse()?;
        crate::routes::domains::store_and_publish(&st, &session.actor, expected, &name, settings)
            .await
    }
    .await;
    match done {
        Ok(v) => {
            session.flash(
                "ok",
                format!(
                    "Settings of {name} saved as version {} and published as {} (policy revision {}).",
                    v.settings.version,
                    v.target.as_deref().unwrap_or("-"),
                    v.revision
                ),
            );
            Ok(see_other("/domains"))
        }
        Err(e) if form::is_refusal(&e) => {
            let mut errors = FieldErrors::from_api(&e, &FIELDS);
            // The store names `…settings.FIELD` (or `…windows[N].…`): show it by its field.
            if let Some(field) = e.field() {
                if let Some(short) = FIELDS.iter().find(|f| {
                    field.ends_with(&format!(".{f}")) || field.contains(&format!(".{f}["))
                }) {
                    errors = FieldErrors::default();
                    errors.set(short, form::refusal(&e));
                }
            }
            render_one(&st, &session, name, Some(fields), errors, e.status()).await
        }
        Err(e) => Err(e.into()),
    }
}
