//! A compiled form of a policy for resolving many clients against one policy
//! (`docs/architecture.md#resolution`): [`Resolver`] answers exactly what [`crate::resolve()`]
//! answers, without scanning the whole source list for each client.
//!
//! The list's ranges cut each address family into elementary intervals (between two
//! consecutive range boundaries every address is matched by the same entries). The index
//! keeps the sorted boundaries and, per interval, the matching entries in list order; a
//! lookup is one binary search. Registered agents are kept in a hash map by address. A
//! 1,024-entry list has at most 2,049 intervals per family, and the entry lists take at most
//! (entries × intervals) × 2 bytes (4 MiB), in practice a few entries per interval.
//!
//! `resolve()` stays the readable statement of the rules; a property test checks that both
//! give the same plan for random policies and addresses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::category::Category;
use crate::policy::{Agent, Policy};
use crate::resolve::{self, Plan};

/// One address family's boundaries and, per elementary interval, the matching entries.
#[derive(Debug, Default)]
struct FamilyIndex {
    /// Sorted, distinct interval starts; the first interval starts at `starts[0]`.
    starts: Vec<u128>,
    /// For interval `i`, `entries[offsets[i]..offsets[i + 1]]` are the matching entries'
    /// positions in the list, ascending.
    offsets: Vec<u32>,
    /// The flattened entry positions.
    entries: Vec<u16>,
}

impl FamilyIndex {
    /// Builds the index of `ranges` (`(position, start, end)`, inclusive ends).
    fn build(ranges: &[(u16, u128, u128)]) -> Self {
        let mut starts: Vec<u128> = ranges
            .iter()
            .flat_map(|&(_, s, e)| [Some(s), e.checked_add(1)])
            .flatten()
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let mut per: Vec<Vec<u16>> = vec![Vec::new(); starts.len()];
        for &(pos, s, e) in ranges {
            let first = starts.partition_point(|&b| b < s);
            let last = starts.partition_point(|&b| b <= e);
            for list in &mut per[first..last] {
                list.push(pos);
            }
        }
        let mut offsets = Vec::with_capacity(per.len() + 1);
        let mut entries = Vec::new();
        offsets.push(0);
        for list in per {
            entries.extend(list);
            offsets.push(u32::try_from(entries.len()).unwrap_or(u32::MAX));
        }
        FamilyIndex {
            starts,
            offsets,
            entries,
        }
    }

    /// The positions of the entries whose range contains `addr`, in list order.
    fn matching(&self, addr: u128) -> &[u16] {
        let after = self.starts.partition_point(|&b| b <= addr);
        let Some(i) = after.checked_sub(1) else {
            return &[];
        };
        let (from, to) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        &self.entries[from..to]
    }
}

/// The address as a number in its family's space, IPv4-mapped IPv6 treated as IPv4 (as
/// [`crate::IpRange::contains`] does), and whether it is IPv4.
fn key(ip: IpAddr) -> (bool, u128) {
    match ip.to_canonical() {
        IpAddr::V4(a) => (true, u128::from(u32::from(a))),
        IpAddr::V6(a) => (false, u128::from(a)),
    }
}

/// A policy compiled for resolving many clients: same answers as [`crate::resolve()`].
#[derive(Debug)]
pub struct Resolver<'p> {
    policy: &'p Policy,
    v4: FamilyIndex,
    v6: FamilyIndex,
    agents: HashMap<SocketAddr, &'p Agent>,
}

impl<'p> Resolver<'p> {
    /// Compiles `policy` (linear in the list for typical lists, at most quadratic).
    pub fn new(policy: &'p Policy) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (pos, e) in policy.sources.iter().enumerate() {
            let Ok(pos) = u16::try_from(pos) else { break };
            let ((is_v4, start), (_, end)) = (key(e.range.start()), key(e.range.end()));
            if is_v4 { &mut v4 } else { &mut v6 }.push((pos, start, end));
        }
        Resolver {
            policy,
            v4: FamilyIndex::build(&v4),
            v6: FamilyIndex::build(&v6),
            agents: policy.agent.iter().map(|a| (a.address, a)).collect(),
        }
    }

    /// The plan for a client at `ip` of `domain` for `category`: exactly
    /// `resolve(policy, ip, domain, category)`.
    pub fn resolve(&self, ip: IpAddr, domain: Option<&str>, category: Category) -> Plan {
        let (is_v4, addr) = key(ip);
        let matching = if is_v4 { &self.v4 } else { &self.v6 }.matching(addr);
        resolve::resolve_with(
            self.policy,
            ip,
            domain,
            category,
            matching.iter().map(|&p| usize::from(p)),
            |a| self.agents.get(&a).copied(),
        )
    }
}
