//! What the relay served, and to whom: per-client request and byte counts, kept in memory
//! while the relay runs and turned into the [`RelayReport`] the agent sends with its
//! check-ins. The ledger is bounded: past [`MAX_TRACKED`] distinct addresses new clients are
//! still counted in the totals and the client count, but not one by one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use cascade_core::report::{RelayReport, ServedClient, MAX_REPORTED_CLIENTS};

/// Distinct client addresses tracked one by one.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Default)]
struct Ledger {
    by_ip: HashMap<IpAddr, (u64, u64)>,
    /// Distinct clients seen after the map was full (an upper bound: repeats count again).
    overflow: u64,
}

/// Per-client counts of a relay.
#[derive(Debug, Default)]
pub struct Served {
    ledger: Mutex<Ledger>,
}

impl Served {
    /// Counts one answered request of `bytes` body bytes for `ip`.
    pub fn record(&self, ip: IpAddr, bytes: u64) {
        let Ok(mut l) = self.ledger.lock() else {
            return;
        };
        let full = l.by_ip.len() >= MAX_TRACKED;
        match l.by_ip.get_mut(&ip) {
            Some((requests, total)) => {
                *requests += 1;
                *total += bytes;
            }
            None if full => l.overflow += 1,
            None => {
                l.by_ip.insert(ip, (1, bytes));
            }
        }
    }

    /// Fills the client part of `report`: the distinct count and the clients served the most
    /// bytes (ties by address, so the report is stable).
    pub fn fill(&self, report: &mut RelayReport) {
        let Ok(l) = self.ledger.lock() else {
            return;
        };
        let mut clients: Vec<ServedClient> = l
            .by_ip
            .iter()
            .map(|(ip, (requests, bytes))| ServedClient {
                ip: ip.to_string(),
                requests: *requests,
                bytes: *bytes,
            })
            .collect();
        clients.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.ip.cmp(&b.ip)));
        clients.truncate(MAX_REPORTED_CLIENTS);
        report.client_count = l.by_ip.len() as u64 + l.overflow;
        report.clients = clients;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_per_client_and_orders_by_bytes() {
        let s = Served::default();
        s.record(ip("127.0.1.1"), 100);
        s.record(ip("127.0.1.2"), 5000);
        s.record(ip("127.0.1.1"), 50);
        let mut r = RelayReport::default();
        s.fill(&mut r);
        assert_eq!(r.client_count, 2);
        assert_eq!(r.clients[0].ip, "127.0.1.2");
        assert_eq!((r.clients[0].requests, r.clients[0].bytes), (1, 5000));
        assert_eq!((r.clients[1].requests, r.clients[1].bytes), (2, 150));
    }

    #[test]
    fn report_lists_at_most_the_cap() {
        let s = Served::default();
        for i in 0..(MAX_REPORTED_CLIENTS + 10) {
            let n = u32::try_from(i).unwrap();
            s.record(IpAddr::from((0x7f00_0000 | n).to_be_bytes()), u64::from(n));
        }
        let mut r = RelayReport::default();
        s.fill(&mut r);
        assert_eq!(r.client_count, (MAX_REPORTED_CLIENTS + 10) as u64);
        assert_eq!(r.clients.len(), MAX_REPORTED_CLIENTS);
        // The biggest are kept.
        assert_eq!(r.clients[0].bytes, (MAX_REPORTED_CLIENTS + 9) as u64);
    }
}
