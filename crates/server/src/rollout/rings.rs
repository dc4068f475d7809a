//! Who is in which ring of a rollout, and the version each client may install (its pins).
//! Membership looks at a client's id, name and IP only ([`Member`]), so the same rules serve
//! a full client record (the policy answer) and the cheap ring facts (the counts).

use std::collections::BTreeMap;
use std::net::IpAddr;

use cascade_core::IpRange;
use cascade_proto::{RingSpec, RolloutState};

use crate::error::ApiError;
use crate::store::{ClientRecord, RingFacts, RolloutRecord, Store};

/// What ring membership looks at: a client's id, name and IP.
pub(super) struct Member<'a> {
    id: &'a str,
    name: &'a str,
    ip: Option<IpAddr>,
}

impl<'a> Member<'a> {
    /// The membership facts of a full client record.
    pub(super) fn of_client(c: &'a ClientRecord) -> Self {
        Member {
            id: &c.id,
            name: &c.name,
            ip: client_ip(
                c.reported_ip.as_deref(),
                c.peer_ip.as_deref(),
                &c.enrolled_from,
            ),
        }
    }

    /// The membership facts of a client's ring facts.
    pub(super) fn of_facts(f: &'a RingFacts) -> Self {
        Member {
            id: &f.id,
            name: &f.name,
            ip: client_ip(
                f.reported_ip.as_deref(),
                f.peer_ip.as_deref(),
                &f.enrolled_from,
            ),
        }
    }
}

/// The client's IP for ring membership: the one it reported, else where its check-in came
/// from, else where it enrolled from.
fn client_ip(reported: Option<&str>, peer: Option<&str>, enrolled_from: &str) -> Option<IpAddr> {
    [reported, peer, Some(enrolled_from)]
        .into_iter()
        .flatten()
        .find_map(|t| t.parse().ok())
}

/// One ring's selectors, parsed.
pub(super) struct Ring<'a> {
    spec: &'a RingSpec,
    ranges: Vec<IpRange>,
}

impl<'a> Ring<'a> {
    fn of(spec: &'a RingSpec) -> Self {
        Ring {
            spec,
            ranges: spec
                .ip_ranges
                .iter()
                .filter_map(|r| IpRange::parse(r).ok())
                .collect(),
        }
    }

    /// The rings of `r`, parsed, in order.
    pub(super) fn all(r: &'a RolloutRecord) -> Vec<Ring<'a>> {
        r.rings.iter().map(Ring::of).collect()
    }

    fn has(&self, m: &Member<'_>) -> bool {
        if self.spec.clients.iter().any(|n| n == m.id || n == m.name) {
            return true;
        }
        if let Some(ip) = m.ip {
            if self.ranges.iter().any(|r| r.contains(ip)) {
                return true;
            }
        }
        self.spec
            .percent
            .is_some_and(|p| f64::from(bucket(m.id)) < p * 10_000.0)
    }
}

/// The client's place in the fleet, 0 to 999,999, from a SHA-256 of its id: stable, so a
/// client in the first 1 % stays there.
pub fn bucket(id: &str) -> u32 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    u32::try_from(u64::from_be_bytes(first) % 1_000_000).unwrap_or(0)
}

/// The first ring (0-based) `m` is in, if any.
pub(super) fn ring_of(rings: &[Ring<'_>], m: &Member<'_>) -> Option<usize> {
    rings.iter().position(|r| r.has(m))
}

/// The version of each rolled-out program client `c` may install (`None`: none), by the
/// newest rollout of each program.
pub fn pins_for(governing: &[RolloutRecord], c: &ClientRecord) -> BTreeMap<String, Option<String>> {
    let member = Member::of_client(c);
    let mut out = BTreeMap::new();
    for r in governing {
        let pin = match r.state {
            RolloutState::Completed => continue,
            RolloutState::RolledBack => r.previous_version.clone(),
            RolloutState::Rolling | RolloutState::Halted => {
                if ring_of(&Ring::all(r), &member).is_some_and(|i| i <= r.ring) {
                    Some(r.version.clone())
                } else {
                    r.previous_version.clone()
                }
            }
        };
        out.insert(r.program.clone(), pin);
    }
    out
}

/// The rollout revision and the pins of client `c`.
///
/// # Errors
/// Database errors.
pub async fn client_pins(
    store: &Store,
    c: &ClientRecord,
) -> Result<(i64, BTreeMap<String, Option<String>>), ApiError> {
    let revision = store.rollout_revision().await?;
    if revision == 0 {
        return Ok((0, BTreeMap::new()));
    }
    let governing = store.governing_rollouts().await?;
    Ok((revision, pins_for(&governing, c)))
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    pub(in crate::rollout) fn client(id: &str, name: &str, ip: &str) -> ClientRecord {
        ClientRecord {
            id: id.into(),
            name: name.into(),
            domain: None,
            agent_address: None,
            enrolled_at: 0,
            enrolled_from: "127.0.0.1".into(),
            last_seen: None,
            reported_ip: Some(ip.into()),
            peer_ip: None,
            installed: BTreeMap::new(),
            last_outcome: None,
            last_update: None,
            relay: None,
            agent_approved_at: None,
            agent_version: None,
        }
    }

    pub(in crate::rollout) fn rollout(
        state: RolloutState,
        ring: usize,
        previous: Option<&str>,
    ) -> RolloutRecord {
        RolloutRecord {
            id: 1,
            program: "app".into(),
            version: "2".into(),
            previous_version: previous.map(str::to_owned),
            rings: vec![
                RingSpec {
                    name: "named".into(),
                    clients: vec!["pc-1".into()],
                    ..RingSpec::default()
                },
                RingSpec {
                    name: "range".into(),
                    ip_ranges: vec!["10.0.0.0/24".into()],
                    ..RingSpec::default()
                },
            ],
            state,
            ring,
            ring_started_at: 0,
            reason: None,
            created_at: 0,
            created_by: "user:admin".into(),
            updated_at: 0,
            revision: 1,
        }
    }

    // A client's place in the fleet is stable, and a smaller share is inside a larger one.
    #[test]
    fn percentages_are_stable_and_nested() {
        let ids: Vec<String> = (0..2000).map(|i| format!("{i:016x}")).collect();
        let share = |p: f64| -> Vec<&String> {
            ids.iter()
                .filter(|id| f64::from(bucket(id)) < p * 10_000.0)
                .collect()
        };
        let (one, ten) = (share(1.0), share(10.0));
        assert!(one.iter().all(|id| ten.contains(id)));
        assert!((5..=40).contains(&one.len()), "{}", one.len());
        assert!((120..=280).contains(&ten.len()), "{}", ten.len());
        assert_eq!(bucket("abc"), bucket("abc"));
        assert_eq!(share(100.0).len(), ids.len());
    }

    // Pins by state: reached rings get the version, the rest the previous one (or none);
    // completed pins nothing; rolled back pins the previous version for everyone.
    #[test]
    fn pins_follow_the_state() {
        let named = client("a", "pc-1", "192.168.0.1");
        let ranged = client("b", "pc-2", "10.0.0.9");
        let outside = client("c", "pc-3", "192.168.0.2");
        let pin = |r: &RolloutRecord, c: &ClientRecord| pins_for(std::slice::from_ref(r), c);
        let one = rollout(RolloutState::Rolling, 0, Some("1"));
        assert_eq!(pin(&one, &named)["app"].as_deref(), Some("2"));
        assert_eq!(pin(&one, &ranged)["app"].as_deref(), Some("1"));
        let halted = rollout(RolloutState::Halted, 1, Some("1"));
        assert_eq!(pin(&halted, &ranged)["app"].as_deref(), Some("2"));
        assert_eq!(pin(&halted, &outside)["app"].as_deref(), Some("1"));
        let first = rollout(RolloutState::Rolling, 0, None);
        assert_eq!(pin(&first, &outside)["app"], None, "nothing to keep: none");
        assert!(pin(&rollout(RolloutState::Completed, 1, Some("1")), &outside).is_empty());
        let back = rollout(RolloutState::RolledBack, 1, Some("1"));
        assert_eq!(pin(&back, &named)["app"].as_deref(), Some("1"));
    }
}
