//! The repository versions the server announces: the `version` of each trust domain's
//! `timestamp.json` it serves now. Clients use them as a floor
//! (`docs/architecture.md#run-time`): a source serving an older timestamp fails its step, so a
//! stale update agent or mirror cannot hold a client back. A floor is never a reason to accept
//! content; only signatures are.
//!
//! The server sends them with every policy answer, 200 or 304, as the header
//! [`HEADER`] (`cascade-repo-versions: upstream=40, site=12`), and in every notice, so a
//! client learns them from the request it makes each cycle anyway instead of reading both
//! `timestamp.json` files from the server.

use cascade_core::TrustDomain;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The header carrying [`RepoVersions`] on `GET /api/client/policy` answers.
pub const HEADER: &str = "cascade-repo-versions";

/// Per trust domain, the timestamp version the server serves; `None` where it has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RepoVersions {
    /// The site repository's (domain settings, programs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<u64>,
    /// The upstream mirror's (components).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<u64>,
}

impl RepoVersions {
    /// The version announced for `domain`.
    pub fn get(&self, domain: TrustDomain) -> Option<u64> {
        match domain {
            TrustDomain::Site => self.site,
            TrustDomain::Upstream => self.upstream,
        }
    }

    /// Sets the version announced for `domain`.
    pub fn set(&mut self, domain: TrustDomain, version: Option<u64>) {
        match domain {
            TrustDomain::Site => self.site = version,
            TrustDomain::Upstream => self.upstream = version,
        }
    }

    /// Each domain's higher version of the two (floors only rise).
    #[must_use]
    pub fn max(self, other: RepoVersions) -> RepoVersions {
        let hi = |a: Option<u64>, b: Option<u64>| a.max(b);
        RepoVersions {
            site: hi(self.site, other.site),
            upstream: hi(self.upstream, other.upstream),
        }
    }

    /// The header value: `upstream=40, site=12`, absent domains left out.
    pub fn header_value(&self) -> String {
        TrustDomain::ALL
            .iter()
            .filter_map(|d| self.get(*d).map(|v| format!("{d}={v}")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads a header value. Unknown domains and unreadable numbers are left out: a floor
    /// that cannot be read is no floor (it only ever makes sources fail).
    pub fn parse_header(text: &str) -> RepoVersions {
        let mut out = RepoVersions::default();
        for part in text.split(',').take(TrustDomain::ALL.len() * 2) {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            if let (Ok(d), Ok(v)) = (name.trim().parse::<TrustDomain>(), value.trim().parse()) {
                out.set(d, Some(v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_ignores_junk() {
        let v = RepoVersions {
            site: Some(12),
            upstream: Some(40),
        };
        assert_eq!(v.header_value(), "upstream=40, site=12");
        assert_eq!(RepoVersions::parse_header(&v.header_value()), v);
        let only = RepoVersions::parse_header("site=7, bogus=3, upstream=x");
        assert_eq!(only.site, Some(7));
        assert_eq!(only.upstream, None);
        assert_eq!(RepoVersions::parse_header("").header_value(), "");
    }

    #[test]
    fn max_keeps_the_higher_floor() {
        let a = RepoVersions {
            site: Some(3),
            upstream: None,
        };
        let b = RepoVersions {
            site: Some(2),
            upstream: Some(9),
        };
        assert_eq!(
            a.max(b),
            RepoVersions {
                site: Some(3),
                upstream: Some(9)
            }
        );
    }
}
