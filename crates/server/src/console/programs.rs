//! The Programs page (`docs/operating.md#rollouts`): every published program build and hotfix
//! (hotfixes flagged), and every rollout with its rings: who is in each, its soak and
//! threshold, its state, clients, updated and failing counts, and the buttons to promote,
//! halt or roll it back (each asks for confirmation and carries the session's CSRF token;
//! each calls the same code as the API, `crate::rollout::act`).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use cascade_core::Category;
use cascade_proto::{RingState, RolloutState, RolloutView};

use super::form;
use super::session::{see_other, Session};
use super::view::{bytes, html, maybe_time, Chrome};
use super::ConsoleError;
use crate::error::ApiError;
use crate::rollout::Action;
use crate::state::AppState;

/// One published build.
#[derive(Debug, Clone)]
pub struct BuildRow {
    name: String,
    version: String,
    file: String,
    size: String,
    hotfix: bool,
}

/// One ring of a rollout, for people.
#[derive(Debug, Clone)]
pub struct RingRow {
    number: u32,
    name: String,
    selects: String,
    soak: String,
    max_failures: u64,
    state: &'static str,
    clients: u64,
    updated: u64,
    failures: u64,
    failing: String,
}

/// One rollout, for people.
#[derive(Debug, Clone)]
pub struct RolloutRow {
    id: i64,
    program: String,
    version: String,
    previous: String,
    state: &'static str,
    ring: String,
    reason: String,
    started: String,
    next: String,
    rings: Vec<RingRow>,
    can_promote: bool,
    can_halt: bool,
    can_roll_back: bool,
}

/// `GET /programs`.
#[derive(Template)]
#[template(path = "programs.html")]
pub struct ProgramsPage {
    chrome: Chrome,
    builds: Vec<BuildRow>,
    /// Why the builds cannot be listed (an operator-linked site), if so.
    builds_note: String,
    rollouts: Vec<RolloutRow>,
}

fn ring_state(s: RingState) -> &'static str {
    match s {
        RingState::Waiting => "waiting",
        RingState::Soaking => "soaking",
        RingState::Promoted => "promoted",
        RingState::Halted => "halted",
    }
}

fn row(v: RolloutView, superseded: bool) -> RolloutRow {
    let current = v
        .rings
        .get((v.ring as usize).saturating_sub(1))
        .map_or_else(String::new, |r| r.spec.name.clone());
    let live = !superseded;
    RolloutRow {
        id: v.id,
        program: v.program,
        version: v.version,
        previous: v.previous_version.unwrap_or_else(|| "nothing".into()),
        state: match v.state {
            RolloutState::Rolling => "rolling",
            RolloutState::Halted => "halted",
            RolloutState::Completed => "completed",
            RolloutState::RolledBack => "rolled back",
        },
        ring: format!("{} of {} ({current})", v.ring, v.rings.len()),
        reason: v.reason.unwrap_or_default(),
        started: maybe_time(Some(v.created_at)),
        next: if v.state == RolloutState::Rolling {
            maybe_time(Some(v.promote_at))
        } else {
            "-".into()
        },
        can_promote: live && matches!(v.state, RolloutState::Rolling | RolloutState::Halted),
        can_halt: live && v.state == RolloutState::Rolling,
        can_roll_back: live && v.state != RolloutState::RolledBack,
        rings: v
            .rings
            .into_iter()
            .map(|r| {
                let mut selects = Vec::new();
                if let Some(p) = r.spec.percent {
                    selects.push(format!("{p} % of the fleet"));
                }
                if !r.spec.clients.is_empty() {
                    selects.push(format!("clients {}", r.spec.clients.join(", ")));
                }
                if !r.spec.ip_ranges.is_empty() {
                    selects.push(format!("IPs {}", r.spec.ip_ranges.join(", ")));
                }
                RingRow {
                    number: r.number,
                    name: r.spec.name,
                    selects: selects.join("; "),
                    soak: crate::human::duration(
                        i64::try_from(r.spec.soak_secs).unwrap_or(i64::MAX),
                    ),
                    max_failures: r.spec.max_failures,
                    state: ring_state(r.state),
                    clients: r.clients,
                    updated: r.updated,
                    failures: r.failures,
                    failing: r.failing.join(", "),
                }
            })
            .collect(),
    }
}

/// `GET /programs`.
pub async fn page(session: Session, State(st): State<AppState>) -> Result<Response, ConsoleError> {
    let (builds, builds_note) = match st.site.publisher() {
        Ok(site) => (
            site.listed(Category::Programs)
                .await
                .map_err(ApiError::from)?
                .into_iter()
                .map(|l| BuildRow {
                    name: l.path.name().to_owned(),
                    version: l.path.version().to_owned(),
                    file: l.path.file().to_owned(),
                    size: bytes(l.length),
                    hotfix: l.meta.hotfix,
                })
                .collect(),
            String::new(),
        ),
        Err(e) => (Vec::new(), e.to_string()),
    };
    let listed = crate::rollout::list(&st.store).await?;
    let mut newest = std::collections::HashMap::new();
    for r in &listed.rollouts {
        newest.entry(r.program.clone()).or_insert(r.id);
    }
    let rollouts = listed
        .rollouts
        .into_iter()
        .map(|r| {
            let superseded = newest.get(&r.program) != Some(&r.id);
            row(r, superseded)
        })
        .collect();
    let page = ProgramsPage {
        chrome: Chrome::load(&st, &session, "programs").await,
        builds,
        builds_note,
        rollouts,
    };
    Ok(html(StatusCode::OK, page.render()?))
}

/// `POST /programs/rollouts/{id}/{action}` (`promote`, `halt`, `rollback`).
pub async fn act(
    session: Session,
    State(st): State<AppState>,
    Path((id, action)): Path<(i64, String)>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let f = session.form(&body)?;
    let action = match action.as_str() {
        "promote" => Action::Promote,
        "halt" => Action::Halt,
        "rollback" => Action::RollBack,
        other => {
            return Err(ApiError::NotFound {
                what: "rollout action",
                id: other.to_owned(),
            }
            .into())
        }
    };
    let reason = Some(f.get("reason").trim().to_owned()).filter(|r| !r.is_empty());
    match crate::rollout::act(&st, id, action, &session.actor, reason).await {
        Ok(v) => session.flash(
            "ok",
            format!(
                "Rollout {id} of {} {}: {}, ring {} of {}.",
                v.program,
                v.version,
                v.state,
                v.ring,
                v.rings.len()
            ),
        ),
        Err(e) if form::is_refusal(&e) => session.flash("error", form::refusal(&e)),
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/programs"))
}
