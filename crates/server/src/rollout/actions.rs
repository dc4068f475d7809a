//! What an admin does with rollouts (the API and the console call the same functions):
//! start one ([`start`], checked by `super::check`), and promote, halt or roll back one
//! ([`act`]). Each change is conditional on the revision read; the clients concerned are
//! notified (`super::notices`).

use cascade_core::Category;
use cascade_proto::{NewRollout, RingSpec, RolloutState, RolloutView};

use super::check::check;
use super::counts::{found, one_view};
use super::notices::{notify_all, notify_ring};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{NewRolloutRecord, RolloutChange, RolloutRecord};

/// Starts a rollout by `actor`; notifies the clients of its first ring.
///
/// # Errors
/// 400 for a bad field, 409 while another rollout of the program is rolling; database errors.
pub async fn start(st: &AppState, n: &NewRollout, actor: &str) -> Result<RolloutView, ApiError> {
    check(n)?;
    let governing = st.store.governing_rollouts().await?;
    let last = governing.iter().find(|r| r.program == n.program);
    if let Some(r) = last.filter(|r| r.state == RolloutState::Rolling) {
        return Err(ApiError::Conflict {
            code: "rollout.active",
            field: Some("program"),
            message: format!(
                "rollout {} of {} {} is rolling: halt, roll back or complete it first",
                r.id, r.program, r.version
            ),
        });
    }
    let previous = match &n.previous_version {
        Some(p) => Some(p.clone()),
        None => match last {
            Some(r) if r.state == RolloutState::Completed => Some(r.version.clone()),
            Some(r) => r.previous_version.clone(),
            None => newest_published_before(st, &n.program, &n.version).await,
        },
    }
    .filter(|p| *p != n.version);
    let rings: Vec<RingSpec> = n
        .rings
        .iter()
        .map(|r| RingSpec {
            name: r.name.trim().to_owned(),
            ..r.clone()
        })
        .collect();
    let r = st
        .store
        .start_rollout(&NewRolloutRecord {
            program: &n.program,
            version: &n.version,
            previous_version: previous.as_deref(),
            rings: &rings,
            created_by: actor,
        })
        .await?;
    tracing::info!(rollout = r.id, program = %r.program, version = %r.version, previous = ?r.previous_version, "rollout started");
    let facts = st.store.ring_facts().await?;
    notify_ring(st, &r, &facts).await;
    one_view(&st.store, &r).await
}

/// The newest published version of `program` other than `version`, if any.
async fn newest_published_before(st: &AppState, program: &str, version: &str) -> Option<String> {
    let site = st.site.publisher().ok()?;
    let listed = site.listed(Category::Programs).await.ok()?;
    listed
        .into_iter()
        .filter(|l| l.path.name() == program && l.path.version() != version)
        .max_by_key(|l| l.meta.seq)
        .map(|l| l.path.version().to_owned())
}

/// What an admin asks of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// To the next ring now (or complete it after the last); also resumes a halted one.
    Promote,
    /// Stop where it is.
    Halt,
    /// Pin the previous version for everyone.
    RollBack,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Promote => "promoted",
            Action::Halt => "halted",
            Action::RollBack => "rolled back",
        }
    }
}

/// Applies `action` to rollout `id` by `actor`.
///
/// # Errors
/// 404, 409 when its state does not allow it or a newer rollout of the program exists;
/// database errors.
pub async fn act(
    st: &AppState,
    id: i64,
    action: Action,
    actor: &str,
    reason: Option<String>,
) -> Result<RolloutView, ApiError> {
    if let Some(r) = &reason {
        cascade_proto::limits::check_text("reason", r, 500)
            .map_err(|e| ApiError::bad("request.reason", "reason", e.to_string()))?;
    }
    let r = found(&st.store, id).await?;
    let governing = st.store.governing_rollouts().await?;
    if let Some(newer) = governing
        .iter()
        .find(|g| g.program == r.program && g.id != r.id)
    {
        return Err(ApiError::Conflict {
            code: "rollout.superseded",
            field: Some("id"),
            message: format!(
                "rollout {} is superseded by rollout {} of {} {}",
                r.id, newer.id, newer.program, newer.version
            ),
        });
    }
    let allowed = match action {
        Action::Promote => matches!(r.state, RolloutState::Rolling | RolloutState::Halted),
        Action::Halt => r.state == RolloutState::Rolling,
        Action::RollBack => r.state != RolloutState::RolledBack,
    };
    if !allowed {
        return Err(ApiError::Conflict {
            code: "rollout.state",
            field: Some("state"),
            message: format!(
                "rollout {} is {}: it cannot be {}",
                r.id,
                r.state,
                action.verb()
            ),
        });
    }
    let reason = Some(reason.unwrap_or_else(|| format!("{} by {actor}", action.verb())));
    let now = st.clock.now();
    let change = match action {
        Action::Promote => promotion(&r, now, reason),
        Action::Halt => RolloutChange {
            state: RolloutState::Halted,
            ring: r.ring,
            ring_started_at: r.ring_started_at,
            reason,
        },
        Action::RollBack => RolloutChange {
            state: RolloutState::RolledBack,
            ring: r.ring,
            ring_started_at: r.ring_started_at,
            reason,
        },
    };
    let changed = st
        .store
        .change_rollout(r.id, r.revision, &change)
        .await?
        .ok_or_else(|| ApiError::Conflict {
            code: "rollout.changed",
            field: Some("id"),
            message: format!(
                "rollout {} changed meanwhile: read it again and retry",
                r.id
            ),
        })?;
    tracing::info!(rollout = r.id, action = action.verb(), actor, state = %changed.state, ring = changed.ring + 1, "rollout changed by hand");
    match action {
        Action::Promote if changed.state == RolloutState::Rolling => {
            notify_ring(st, &changed, &st.store.ring_facts().await?).await;
        }
        Action::RollBack => notify_all(st, &changed).await,
        _ => {}
    }
    one_view(&st.store, &changed).await
}

/// The change that promotes `r` now: its next ring, or completed after the last.
pub(super) fn promotion(r: &RolloutRecord, now: i64, reason: Option<String>) -> RolloutChange {
    if r.ring + 1 < r.rings.len() {
        RolloutChange {
            state: RolloutState::Rolling,
            ring: r.ring + 1,
            ring_started_at: now,
            reason,
        }
    } else {
        RolloutChange {
            state: RolloutState::Completed,
            ring: r.ring,
            ring_started_at: r.ring_started_at,
            reason,
        }
    }
}
