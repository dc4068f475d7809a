//! Notices of rollouts: starting or promoting a rollout notifies the ring just reached,
//! uploading its version the rings reached, a roll back everyone. A notice for some rings
//! reaches only their clients: the notice carries them to every replica
//! (`crate::notify::issue_scoped`) and the event streams ask `Notifier::reaches`.

use std::collections::HashSet;

use cascade_core::Category;
use cascade_proto::RolloutState;

use super::rings::{ring_of, Member, Ring};
use crate::state::AppState;
use crate::store::{RingFacts, RolloutRecord};

/// Notifies the clients of `r`'s current ring (and no earlier one) that it reached them.
pub(super) async fn notify_ring(st: &AppState, r: &RolloutRecord, facts: &[RingFacts]) {
    notify_clients(st, r, facts, |ring| ring == r.ring, "ring notified").await;
}

/// After `program` `version` is published: when a rollout of it is rolling or halted, the
/// clients of the rings it reached are notified (a rollout started before the upload notified
/// them when there was nothing to install yet).
pub async fn on_publish(st: &AppState, program: &str, version: &str) {
    let governing = match st.store.governing_rollouts().await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the rollouts after a publish");
            return;
        }
    };
    let Some(r) = governing.into_iter().find(|r| {
        r.program == program
            && r.version == version
            && matches!(r.state, RolloutState::Rolling | RolloutState::Halted)
    }) else {
        return;
    };
    let facts = match st.store.ring_facts().await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the clients after a publish");
            return;
        }
    };
    let reached = |ring| ring <= r.ring;
    notify_clients(
        st,
        &r,
        &facts,
        reached,
        "rings reached notified of the upload",
    )
    .await;
}

/// Issues a notice for rollout `r` scoped to the clients (among `facts`) whose ring
/// (0-based) satisfies `in_scope`, and logs `what` with the notice id and how many clients
/// it reaches.
async fn notify_clients(
    st: &AppState,
    r: &RolloutRecord,
    facts: &[RingFacts],
    in_scope: impl Fn(usize) -> bool,
    what: &str,
) {
    let rings = Ring::all(r);
    let members: HashSet<String> = facts
        .iter()
        .filter(|f| ring_of(&rings, &Member::of_facts(f)).is_some_and(&in_scope))
        .map(|f| f.id.clone())
        .collect();
    let reached = members.len();
    let actor = format!("rollout:{}", r.id);
    let issued = crate::notify::issue_scoped(
        &st.notifier,
        &st.store,
        &actor,
        vec![Category::Programs],
        st.clock.now(),
        Some(members),
    )
    .await;
    match issued {
        Ok((id, _)) => {
            tracing::info!(
                rollout = r.id,
                ring = r.ring + 1,
                notice = id,
                clients = reached,
                "{what}"
            );
        }
        Err(e) => tracing::warn!(rollout = r.id, error = %e, "cannot notify the rollout's clients"),
    }
}

/// Notifies every client (a roll back concerns all of them).
pub(super) async fn notify_all(st: &AppState, r: &RolloutRecord) {
    let actor = format!("rollout:{}", r.id);
    if let Err(e) = crate::notify::issue(
        &st.notifier,
        &st.store,
        &actor,
        vec![Category::Programs],
        st.clock.now(),
    )
    .await
    {
        tracing::warn!(rollout = r.id, error = %e, "cannot notify the fleet");
    }
}
