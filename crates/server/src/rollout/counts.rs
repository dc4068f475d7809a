//! What a rollout's rings hold: members, clients that updated, failing clients; and the
//! views the API and the console show. Ring counts come from every client's ring facts
//! (no report); failing clients only from the clients whose last report may fail a rollout
//! (`crate::store::Store::rollout_failure_candidates`), which [`failed`] then decides.

use std::collections::BTreeMap;

use cascade_core::report::Outcome;
use cascade_core::Category;
use cascade_proto::{RingState, RingView, RolloutState, RolloutView, RolloutsResponse};

use super::rings::{ring_of, Member, Ring};
use crate::error::ApiError;
use crate::store::{ClientRecord, RingFacts, RolloutRecord, Store};

/// Whether `c`'s last report, finished at or after `since`, says `program` `version` failed.
/// Only a report whose `crate::store::program_trouble_at` is at or after `since` can.
pub fn failed(c: &ClientRecord, program: &str, version: &str, since: i64) -> bool {
    let Some(report) = &c.last_update else {
        return false;
    };
    if report.finished_at.is_none_or(|t| t < since) {
        return false;
    }
    let spaced = format!("{program} {version}");
    let slashed = format!("{program}/{version}");
    let programs = || {
        report
            .attempts
            .iter()
            .filter(|a| a.category == Some(Category::Programs))
    };
    let named = programs().any(|a| {
        a.reason
            .as_ref()
            .and_then(|r| r.failure())
            .is_some_and(|f| f.message.contains(&spaced) || f.message.contains(&slashed))
    });
    // Every source failed for programs while the version is not installed: its install
    // failed (a corrupt or unfetchable build fails at every source).
    let quit =
        programs().any(|a| a.outcome == Outcome::Quit) && !updated(&c.installed, program, version);
    named || quit
}

/// Whether `installed` (a client's installed version per category) lists `program`
/// `version`.
fn updated(installed: &BTreeMap<Category, String>, program: &str, version: &str) -> bool {
    let want = format!("{program} {version}");
    installed
        .get(&Category::Programs)
        .is_some_and(|s| s.split(", ").any(|item| item == want))
}

/// Counts of one ring.
#[derive(Default)]
struct Counts {
    /// Clients in this ring (and no earlier one).
    clients: u64,
    /// Of those, clients that report the version installed.
    updated: u64,
    /// Failing clients (rings reached only), by name then id.
    failing: Vec<String>,
}

/// The ids of `r`'s failing clients among `candidates` (by name then id), per ring
/// (0-based; empty past the current ring); failures from reports finished at or after
/// `since`.
pub(super) fn failing(
    r: &RolloutRecord,
    candidates: &[ClientRecord],
    since: i64,
) -> Vec<Vec<String>> {
    let rings = Ring::all(r);
    let mut out = vec![Vec::new(); rings.len()];
    for c in candidates {
        let Some(i) = ring_of(&rings, &Member::of_client(c)) else {
            continue;
        };
        if i > r.ring || !failed(c, &r.program, &r.version, since) {
            continue;
        }
        if let Some(slot) = out.get_mut(i) {
            slot.push(c.id.clone());
        }
    }
    out
}

/// Counts `r`'s clients per ring among `facts`, its failing ones among `candidates`.
fn count(
    r: &RolloutRecord,
    facts: &[RingFacts],
    candidates: &[ClientRecord],
    since: i64,
) -> Vec<Counts> {
    let rings = Ring::all(r);
    let mut out: Vec<Counts> = rings.iter().map(|_| Counts::default()).collect();
    for f in facts {
        let Some(slot) = ring_of(&rings, &Member::of_facts(f)).and_then(|i| out.get_mut(i)) else {
            continue;
        };
        slot.clients += 1;
        if updated(&f.installed, &r.program, &r.version) {
            slot.updated += 1;
        }
    }
    for (slot, ids) in out.iter_mut().zip(failing(r, candidates, since)) {
        slot.failing = ids;
    }
    out
}

/// The view of `r` with its clients counted among `facts` (every client's ring facts) and
/// its failing ones among `candidates` (read since `r.created_at` or earlier).
pub fn view(r: &RolloutRecord, facts: &[RingFacts], candidates: &[ClientRecord]) -> RolloutView {
    let counts = count(r, facts, candidates, r.created_at);
    let soak = r
        .rings
        .get(r.ring)
        .map_or(0, |s| i64::try_from(s.soak_secs).unwrap_or(i64::MAX));
    RolloutView {
        id: r.id,
        program: r.program.clone(),
        version: r.version.clone(),
        previous_version: r.previous_version.clone(),
        state: r.state,
        ring: u32::try_from(r.ring + 1).unwrap_or(u32::MAX),
        ring_started_at: r.ring_started_at,
        promote_at: r.ring_started_at.saturating_add(soak),
        reason: r.reason.clone(),
        rings: r
            .rings
            .iter()
            .zip(counts)
            .enumerate()
            .map(|(i, (spec, c))| RingView {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                spec: spec.clone(),
                state: ring_state(r, i),
                clients: c.clients,
                updated: c.updated,
                failures: c.failing.len() as u64,
                failing: c.failing.into_iter().take(20).collect(),
            })
            .collect(),
        created_at: r.created_at,
        created_by: r.created_by.clone(),
        updated_at: r.updated_at,
    }
}

fn ring_state(r: &RolloutRecord, i: usize) -> RingState {
    match r.state {
        RolloutState::Completed => RingState::Promoted,
        _ if i < r.ring => RingState::Promoted,
        _ if i > r.ring => RingState::Waiting,
        RolloutState::Rolling => RingState::Soaking,
        RolloutState::Halted | RolloutState::RolledBack => RingState::Halted,
    }
}

/// The views of `rollouts`, read from `store`.
///
/// # Errors
/// Database errors.
pub(super) async fn views(
    store: &Store,
    rollouts: &[RolloutRecord],
) -> Result<Vec<RolloutView>, ApiError> {
    let Some(since) = rollouts.iter().map(|r| r.created_at).min() else {
        return Ok(Vec::new());
    };
    let facts = store.ring_facts().await?;
    let candidates = store.rollout_failure_candidates(since).await?;
    Ok(rollouts
        .iter()
        .map(|r| view(r, &facts, &candidates))
        .collect())
}

/// Every rollout, newest first, with its counts.
///
/// # Errors
/// Database errors.
pub async fn list(store: &Store) -> Result<RolloutsResponse, ApiError> {
    let rollouts = store.rollouts().await?;
    Ok(RolloutsResponse {
        rollouts: views(store, &rollouts).await?,
    })
}

/// One rollout with its counts.
///
/// # Errors
/// 404 when there is none; database errors.
pub async fn one(store: &Store, id: i64) -> Result<RolloutView, ApiError> {
    let r = found(store, id).await?;
    one_view(store, &r).await
}

/// The view of `r`, read from `store`.
///
/// # Errors
/// Database errors.
pub(super) async fn one_view(store: &Store, r: &RolloutRecord) -> Result<RolloutView, ApiError> {
    let mut v = views(store, std::slice::from_ref(r)).await?;
    v.pop()
        .ok_or_else(|| ApiError::Internal(format!("rollout {}: no view", r.id)))
}

/// Rollout `id`; 404 when there is none.
pub(super) async fn found(store: &Store, id: i64) -> Result<RolloutRecord, ApiError> {
    store.rollout(id).await?.ok_or_else(|| ApiError::NotFound {
        what: "rollout",
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cascade_core::report::{Attempt, Failure, Reason, UpdateReport};

    use super::*;
    use crate::rollout::rings::tests::{client, rollout};
    use crate::store::program_trouble_at;

    fn attempt(category: Category, outcome: Outcome, reason: Option<&str>) -> Attempt {
        Attempt {
            category: Some(category),
            step: 1,
            source: "server".into(),
            outcome,
            reason: reason.map(Reason::from),
            bytes: 0,
            millis: 0,
        }
    }

    fn reporting(attempts: Vec<Attempt>, finished_at: Option<i64>) -> ClientRecord {
        let mut c = client("a", "pc-1", "10.0.0.1");
        c.last_update = Some(UpdateReport {
            finished_at,
            outcome: Outcome::Ok,
            attempts,
        });
        c
    }

    // Every report `failed` counts is one whose stored `program_trouble_at` is at or after
    // the time counted from: reading only those clients finds every failing one.
    #[test]
    fn failing_reports_are_the_troubled_ones() {
        let rolled_back = Attempt {
            outcome: Outcome::Skipped,
            reason: Some(Reason::Failure(Failure {
                code: "selfupdate.rolled_back".into(),
                message: "app 2 was rolled back: unhealthy".into(),
            })),
            ..attempt(Category::Programs, Outcome::Skipped, None)
        };
        let cases = vec![
            (
                vec![attempt(
                    Category::Programs,
                    Outcome::Failed,
                    Some("install.failed: app 2: exit 1"),
                )],
                true,
            ),
            (
                vec![attempt(
                    Category::Programs,
                    Outcome::Quit,
                    Some("every source failed"),
                )],
                true,
            ),
            (vec![rolled_back], true),
            (
                vec![attempt(
                    Category::Programs,
                    Outcome::Failed,
                    Some("install.failed: app/2 broken"),
                )],
                true,
            ),
            (
                vec![attempt(
                    Category::Programs,
                    Outcome::Failed,
                    Some("install.failed: other 2"),
                )],
                false,
            ),
            (
                vec![attempt(
                    Category::Components,
                    Outcome::Quit,
                    Some("every source failed"),
                )],
                false,
            ),
            (
                vec![attempt(
                    Category::Programs,
                    Outcome::Ok,
                    Some("installed app 2"),
                )],
                false,
            ),
            (
                vec![attempt(Category::Programs, Outcome::UpToDate, None)],
                false,
            ),
        ];
        for (attempts, failing) in cases {
            let c = reporting(attempts.clone(), Some(500));
            assert_eq!(failed(&c, "app", "2", 400), failing, "{attempts:?}");
            let at = program_trouble_at(c.last_update.as_ref().unwrap());
            if failing {
                assert_eq!(at, 500, "{attempts:?}");
            }
            assert!(!failed(&c, "app", "2", 501), "finished before: not failing");
            let late = reporting(attempts, None);
            assert!(!failed(&late, "app", "2", 0), "no finish time: not failing");
        }
        let ok = reporting(
            vec![attempt(Category::Programs, Outcome::Ok, None)],
            Some(500),
        );
        assert_eq!(program_trouble_at(ok.last_update.as_ref().unwrap()), 0);
    }

    // Ring counts come from the ring facts, failures from the candidates in reached rings.
    #[test]
    fn views_count_rings_and_failures() {
        let r = rollout(RolloutState::Rolling, 0, Some("1"));
        let facts = |id: &str, name: &str, ip: &str, installed: &str| RingFacts {
            id: id.into(),
            name: name.into(),
            reported_ip: Some(ip.into()),
            peer_ip: None,
            enrolled_from: "127.0.0.1".into(),
            installed: [(Category::Programs, installed.to_owned())].into(),
        };
        let all = vec![
            facts("a", "pc-1", "192.168.0.1", "app 2"),
            facts("b", "pc-2", "10.0.0.9", "app 1"),
            facts("c", "pc-3", "10.0.0.10", "app 1, app 2"),
            facts("d", "pc-4", "192.168.0.2", "app 1"),
        ];
        let quit = vec![attempt(Category::Programs, Outcome::Quit, None)];
        let mut named = reporting(quit.clone(), Some(10));
        named.id = "a".into();
        named.installed = [(Category::Programs, "app 2".to_owned())].into();
        let mut ranged = reporting(quit, Some(10));
        ranged.id = "b".into();
        ranged.name = "pc-2".into();
        ranged.reported_ip = Some("10.0.0.9".into());
        let v = view(&r, &all, &[named.clone(), ranged.clone()]);
        let got: Vec<(u64, u64, Vec<String>)> = v
            .rings
            .iter()
            .map(|g| (g.clients, g.updated, g.failing.clone()))
            .collect();
        // `a` has 2 installed: its quit is not a failure; `b` fails but ring 2 is not reached.
        assert_eq!(got, vec![(1, 1, vec![]), (2, 1, vec![])]);
        named.installed.clear();
        let v = view(&r, &all, &[named, ranged]);
        assert_eq!(v.rings[0].failing, vec!["a".to_owned()]);
        assert_eq!(v.rings[1].failures, 0);
    }
}
