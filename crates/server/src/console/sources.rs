//! The Update sources page (`docs/architecture.md#policy`): standard or customized mode, the
//! ActiveUpdate URL and its fallback rule, the three "… from the server if all customized
//! sources are not available or not found" options, the customized list (one row per entry:
//! checkbox, IP range linking to its edit page, source, up/down arrows), Add/Edit pages,
//! Delete for the checked rows and Notify All Clients. Each write calls the admin API's
//! handler with the revision the page was rendered at.

use std::collections::BTreeSet;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::{Category, EntryDoc, EntryId, Mode, Policy};
use cascade_proto::{Direction, FallbackPatch, SettingsPatch};

use super::form::{self, FieldErrors, Form};
use super::session::{see_other, Session};
use super::view::{html, Chrome};
use super::ConsoleError;
use crate::error::ApiError;
use crate::routes::sources as api;
use crate::state::AppState;

/// The settings form's values (as stored, or as typed when re-shown).
#[allow(clippy::struct_excessive_bools)] // one per checkbox of the form
#[derive(Debug, Clone)]
pub struct SettingsForm {
    customized: bool,
    activeupdate_url: String,
    rule: String,
    components: bool,
    domain_settings: bool,
    programs: bool,
}

impl SettingsForm {
    fn of(p: &Policy) -> Self {
        SettingsForm {
            customized: p.mode == Mode::Customized,
            activeupdate_url: p
                .activeupdate_url
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            rule: p.activeupdate_fallback.to_string(),
            components: p.fallback.components_from_server,
            domain_settings: p.fallback.domain_settings_from_server,
            programs: p.fallback.programs_from_server,
        }
    }

    /// Overlays what the form of `part` (`mode`, `fallback` or `all`) carried.
    fn overlay(&mut self, f: &Form, part: &str) {
        if part == "mode" || part == "all" {
            self.customized = f.get("mode") == "customized";
        }
        if part != "mode" {
            f.get("activeupdate_url")
                .clone_into(&mut self.activeupdate_url);
            f.get("activeupdate_fallback").clone_into(&mut self.rule);
            self.components = f.checked("components_from_server");
            self.domain_settings = f.checked("domain_settings_from_server");
            self.programs = f.checked("programs_from_server");
        }
    }

    /// Whether the fallback rule `r` is selected.
    pub fn rule_is(&self, r: &str) -> bool {
        self.rule == r
    }
}

/// One row of the list.
#[derive(Debug, Clone)]
pub struct Row {
    id: u32,
    range: String,
    kind: &'static str,
    source: String,
    first: bool,
    last: bool,
}

/// `GET /sources`.
#[derive(Template)]
#[template(path = "sources.html")]
pub struct SourcesPage {
    chrome: Chrome,
    revision: i64,
    settings: SettingsForm,
    rows: Vec<Row>,
    upstream_listed: bool,
    errors: FieldErrors,
}

fn rows(p: &Policy) -> Vec<Row> {
    let n = p.sources.len();
    p.sources
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let doc = EntryDoc::from_entry(e);
            let (kind, source) = match (doc.agent, doc.url) {
                (Some(a), _) => ("Update agent", a),
                (None, u) => ("URL", u.unwrap_or_default()),
            };
            Row {
                id: e.id.0,
                range: doc.range,
                kind,
                source,
                first: i == 0,
                last: i + 1 == n,
            }
        })
        .collect()
}

async fn render(
    st: &AppState,
    session: &Session,
    typed: Option<SettingsForm>,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<Response, ConsoleError> {
    let cur = st.store.current().await?;
    let page = SourcesPage {
        chrome: Chrome::load(st, session, "sources").await,
        revision: cur.revision,
        settings: typed.unwrap_or_else(|| SettingsForm::of(&cur.policy)),
        rows: rows(&cur.policy),
        upstream_listed: cur.policy.upstream_in_list(),
        errors,
    };
    Ok(html(status, page.render()?))
}

/// `GET /sources`.
pub async fn page(session: Session, State(st): State<AppState>) -> Result<Response, ConsoleError> {
    render(&st, &session, None, FieldErrors::default(), StatusCode::OK).await
}

/// `POST /sources/settings`: mode, upstream URL and rule, the three fallback options.
pub async fn save_settings(
    session: Session,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let f = session.form(&body)?;
    let part = f.get("part");
    let url = f.get("activeupdate_url").trim();
    let result = async {
        let mode = if part == "mode" || part == "all" {
            Some(form::choice("mode", f.get("mode"))?)
        } else {
            None
        };
        let patch = if part == "mode" {
            SettingsPatch {
                mode,
                ..SettingsPatch::default()
            }
        } else {
            SettingsPatch {
                mode,
                activeupdate_url: Some((!url.is_empty()).then(|| url.to_owned())),
                activeupdate_fallback: Some(form::choice(
                    "activeupdate_fallback",
                    f.get("activeupdate_fallback"),
                )?),
                fallback: Some(FallbackPatch {
                    components_from_server: Some(f.checked("components_from_server")),
                    domain_settings_from_server: Some(f.checked("domain_settings_from_server")),
                    programs_from_server: Some(f.checked("programs_from_server")),
                }),
                ..SettingsPatch::default()
            }
        };
        let expected = form::expected(&f)?;
        Ok::<_, ApiError>(
            st.store
                .patch_settings(expected, &session.actor, patch)
                .await?,
        )
    }
    .await;
    match result {
        Ok(stored) => {
            session.flash(
                "ok",
                format!("Settings saved (policy revision {}).", stored.revision),
            );
            Ok(see_other("/sources"))
        }
        Err(e) if form::is_refusal(&e) => {
            let fields = ["mode", "activeupdate_url", "activeupdate_fallback", "form"];
            let errors = FieldErrors::from_api(&e, &fields);
            let mut shown = SettingsForm::of(&st.store.current().await?.policy);
            shown.overlay(&f, part);
            render(&st, &session, Some(shown), errors, e.status()).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs a list operation and comes back to the list with its outcome as a message.
fn list_op<T>(
    session: &Session,
    done: Result<T, ApiError>,
    ok: impl FnOnce(&T) -> String,
) -> Result<Response, ConsoleError> {
    match done {
        Ok(v) => session.flash("ok", ok(&v)),
        Err(e) if form::is_refusal(&e) => session.flash("error", form::refusal(&e)),
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/sources"))
}

/// `POST /sources/delete` with the checked `ids`.
pub async fn delete(
    session: Session,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let f = session.form(&body)?;
    let done = async {
        let ids = f
            .all("ids")
            .iter()
            .map(|t| {
                t.parse::<u32>().map(EntryId).map_err(|_| {
                    ApiError::bad(
                        "request.id",
                        "ids",
                        format!("ids: `{t}` is not an entry id"),
                    )
                })
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        if ids.is_empty() {
            return Err(ApiError::bad(
                "console.nothing_checked",
                "ids",
                "Nothing was deleted: check the entries to delete first.",
            ));
        }
        let expected = form::expected(&f)?;
        // The 1-based positions the list showed, for the message.
        let before = st.store.current().await?.policy;
        let positions: Vec<usize> = before
            .sources
            .iter()
            .enumerate()
            .filter(|(_, e)| ids.contains(&e.id))
            .map(|(i, _)| i + 1)
            .collect();
        let stored = st
            .store
            .delete_sources(expected, &session.actor, &ids)
            .await?;
        Ok((positions, stored.revision))
    }
    .await;
    list_op(&session, done, |(positions, revision)| {
        let n = positions.len();
        let which: Vec<String> = positions.iter().map(ToString::to_string).collect();
        format!(
            "Deleted {n} {} (list position{} {} before the delete; policy revision {revision}).",
            if n == 1 { "entry" } else { "entries" },
            if n == 1 { "" } else { "s" },
            which.join(", ")
        )
    })
}

async fn move_one(
    session: Session,
    st: AppState,
    id: String,
    direction: Direction,
    body: &[u8],
) -> Result<Response, ConsoleError> {
    let f = session.form(body)?;
    let done = async {
        let expected = form::expected(&f)?;
        let n = api::entry_id(&id)?;
        let stored = st
            .store
            .move_source(expected, &session.actor, n, direction)
            .await?;
        let to = stored
            .policy
            .sources
            .iter()
            .position(|e| e.id == n)
            .map_or(0, |i| i + 1);
        Ok((to, stored.revision))
    }
    .await;
    list_op(&session, done, |(to, revision)| {
        let (word, from) = match direction {
            Direction::Up => ("up", to + 1),
            Direction::Down => ("down", to.saturating_sub(1)),
        };
        format!("Moved entry {from} {word} to {to} (policy revision {revision}).")
    })
}

/// `POST /sources/{id}/up`.
pub async fn move_up(
    session: Session,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    move_one(session, st, id, Direction::Up, &body).await
}

/// `POST /sources/{id}/down`.
pub async fn move_down(
    session: Session,
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    move_one(session, st, id, Direction::Down, &body).await
}

/// `POST /notify`: Notify All Clients, then say how many were reached.
pub async fn notify(
    session: Session,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    session.form(&body)?;
    let (id, fan) = crate::notify::issue(
        &st.notifier,
        &st.store,
        &session.actor,
        Category::ALL.to_vec(),
        st.clock.now(),
    )
    .await?;
    st.metrics.notified();
    session.flash(
        "ok",
        format!(
            "Notify All Clients #{id}: {} connected {} and {} update {} notified (agents \
             first; clients after {} ms). Clients not connected now update at their next poll.",
            fan.clients,
            if fan.clients == 1 {
                "client"
            } else {
                "clients"
            },
            fan.agents,
            if fan.agents == 1 { "agent" } else { "agents" },
            fan.clients_after_ms
        ),
    );
    Ok(see_other("/sources"))
}
