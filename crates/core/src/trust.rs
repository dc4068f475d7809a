//! Trust domains: which signed repository, and so which root of trust, serves a category. The
//! upstream signs components; the site (the cascade server's own repository) signs domain
//! settings and programs. The name is also the repository's directory under `/repo/` and in
//! an agent's data directory.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::category::Category;

/// A signed repository with its own root of trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustDomain {
    /// The upstream ("ActiveUpdate") repository, mirrored by the server: components.
    Upstream,
    /// The server's own repository: domain settings and programs.
    Site,
}

impl TrustDomain {
    /// Both domains.
    pub const ALL: [TrustDomain; 2] = [TrustDomain::Upstream, TrustDomain::Site];

    /// The domain whose repository serves `category`.
    pub fn of(category: Category) -> Self {
        match category {
            Category::Components => TrustDomain::Upstream,
            Category::DomainSettings | Category::Programs => TrustDomain::Site,
        }
    }

    /// The name: `upstream` or `site`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustDomain::Upstream => "upstream",
            TrustDomain::Site => "site",
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trust domain `{0}`: expected upstream or site")]
pub struct UnknownTrustDomain(pub String);

impl FromStr for TrustDomain {
    type Err = UnknownTrustDomain;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownTrustDomain(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each category maps to its domain, and names round-trip through text and serde.
    #[test]
    fn domains_and_names() {
        assert_eq!(TrustDomain::of(Category::Components), TrustDomain::Upstream);
        assert_eq!(TrustDomain::of(Category::Programs), TrustDomain::Site);
        assert_eq!(TrustDomain::of(Category::DomainSettings), TrustDomain::Site);
        for d in TrustDomain::ALL {
            assert_eq!(d.to_string().parse::<TrustDomain>(), Ok(d));
        }
        assert_eq!(
            toml::Value::try_from(TrustDomain::Site).unwrap().as_str(),
            Some("site")
        );
        assert!("Site".parse::<TrustDomain>().is_err());
    }
}
