//! The three kinds of content a client updates, each resolved on its own
//! (`docs/architecture.md#vocabulary`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A category of update content. Each has its own fallback option and its own plan.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Patterns and engines: versioned content packages ("components").
    Components,
    /// The per-domain configuration clients apply.
    DomainSettings,
    /// New builds of the endpoint software itself ("client programs and hot fixes").
    Programs,
}

impl Category {
    /// Every category, in the order plans are printed.
    pub const ALL: [Category; 3] = [
        Category::Components,
        Category::DomainSettings,
        Category::Programs,
    ];

    /// The stable lowercase name used in files, URLs and JSON (`domain-settings`).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Components => "components",
            Category::DomainSettings => "domain-settings",
            Category::Programs => "programs",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `components`, `domain-settings`, `programs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown category `{0}`: expected components, domain-settings or programs")]
pub struct UnknownCategory(pub String);

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Names round-trip through Display/FromStr and unknown names are refused with the value.
    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
        }
        let err = "patterns".parse::<Category>().unwrap_err();
        assert!(err.to_string().contains("`patterns`"));
    }
}
