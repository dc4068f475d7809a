//! The background look at rolling rollouts ([`run_on_schedule`], every [`TICK`]): a ring
//! with more failing clients than it tolerates halts the rollout; a ring whose soak is over
//! (its version published) is promoted, or the rollout completed after the last ring. Each
//! automatic change is audited as [`AUTO_ACTOR`] and conditional on the revision read, so
//! replicas sharing the database change a rollout once.

use cascade_core::Category;
use cascade_proto::RolloutState;

use super::actions::promotion;
use super::counts::failing;
use super::notices::notify_ring;
use super::{AUTO_ACTOR, TICK};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ClientRecord, NewAudit, RolloutChange, RolloutRecord};

/// One look at every rolling rollout: halt those with too many failing clients, promote
/// those whose soak is over. Returns how many changed. It reads the rollouts and only the
/// clients whose last report may fail one (`crate::store::Store::rollout_failure_candidates`),
/// not every client: cheap at 100,000 clients (BENCHMARKS.md#rollouts).
///
/// # Errors
/// Database errors.
pub async fn evaluate(st: &AppState) -> Result<usize, ApiError> {
    let rolling: Vec<RolloutRecord> = st
        .store
        .governing_rollouts()
        .await?
        .into_iter()
        .filter(|r| r.state == RolloutState::Rolling)
        .collect();
    let Some(since) = rolling.iter().map(|r| r.ring_started_at).min() else {
        return Ok(0);
    };
    let candidates = st.store.rollout_failure_candidates(since).await?;
    let now = st.clock.now();
    let mut changed = 0;
    for r in &rolling {
        let Some(change) = decide(st, r, &candidates, now).await? else {
            continue;
        };
        let Some(done) = st.store.change_rollout(r.id, r.revision, &change).await? else {
            continue;
        };
        changed += 1;
        audit_auto(st, &done).await?;
        if done.state == RolloutState::Rolling {
            notify_ring(st, &done, &st.store.ring_facts().await?).await;
        }
    }
    Ok(changed)
}

/// What rolling rollout `r` becomes now, if anything: halted with too many failing clients
/// (among `candidates`), promoted when its ring's soak is over (and its version is
/// published).
async fn decide(
    st: &AppState,
    r: &RolloutRecord,
    candidates: &[ClientRecord],
    now: i64,
) -> Result<Option<RolloutChange>, ApiError> {
    let Some(ring) = r.rings.get(r.ring) else {
        return Ok(None);
    };
    let failing: Vec<String> = failing(r, candidates, r.ring_started_at)
        .into_iter()
        .flatten()
        .collect();
    if failing.len() as u64 > ring.max_failures {
        let shown: Vec<&str> = failing.iter().take(5).map(String::as_str).collect();
        return Ok(Some(RolloutChange {
            state: RolloutState::Halted,
            ring: r.ring,
            ring_started_at: r.ring_started_at,
            reason: Some(format!(
                "halted automatically in ring {} (`{}`): {} failing clients, at most {} tolerated ({}{})",
                r.ring + 1,
                ring.name,
                failing.len(),
                ring.max_failures,
                shown.join(", "),
                if failing.len() > shown.len() { ", …" } else { "" }
            )),
        }));
    }
    let soak = i64::try_from(ring.soak_secs).unwrap_or(i64::MAX);
    if now < r.ring_started_at.saturating_add(soak) {
        return Ok(None);
    }
    if !published(st, r).await {
        // Not uploaded yet: the soak counts from when it is (no revision change: no client's
        // pin changes).
        if r.ring_started_at < now {
            st.store.restart_soak(r.id, r.revision, now).await?;
        }
        return Ok(None);
    }
    Ok(Some(promotion(
        r,
        now,
        Some(format!(
            "ring {} (`{}`) soaked {} s with {} failing clients",
            r.ring + 1,
            ring.name,
            ring.soak_secs,
            failing.len()
        )),
    )))
}

/// The audit record of an automatic change (actor [`AUTO_ACTOR`]).
async fn audit_auto(st: &AppState, done: &RolloutRecord) -> Result<(), ApiError> {
    let what = match done.state {
        RolloutState::Halted => "halt",
        RolloutState::Completed => "complete",
        _ => "promote",
    };
    tracing::info!(rollout = done.id, state = %done.state, ring = done.ring + 1, reason = ?done.reason, "rollout changed automatically");
    let after = serde_json::json!({
        "rollout": done.id,
        "program": done.program,
        "version": done.version,
        "state": done.state,
        "ring": done.ring + 1,
        "reason": done.reason,
    });
    let path = format!("/api/rollouts/{}/{what}", done.id);
    st.store
        .append_audit(&NewAudit {
            actor: AUTO_ACTOR,
            source: "-",
            method: "AUTO",
            path: &path,
            status: 200,
            before: None,
            after: Some(after.to_string()),
        })
        .await?;
    Ok(())
}

/// Whether `r`'s version is published in the server's site repository (a linked site is
/// taken as published: the server cannot tell).
async fn published(st: &AppState, r: &RolloutRecord) -> bool {
    let Ok(site) = st.site.publisher() else {
        return true;
    };
    site.listed(Category::Programs).await.is_ok_and(|l| {
        l.iter()
            .any(|t| t.path.name() == r.program && t.path.version() == r.version)
    })
}

/// Looks at rolling rollouts every [`TICK`] until the server stops.
pub async fn run_on_schedule(st: AppState) {
    let mut stop = st.shutdown.subscribe();
    loop {
        if let Err(e) = evaluate(&st).await {
            tracing::warn!(error = %e, "rollout check failed");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(TICK) => {}
        }
    }
}
