//! The one error type of policy handling. Every variant names the field and the value it
//! refuses, and has a stable `code()` that the API and CLI expose to scripts.

use crate::range::RangeError;

/// Why a policy, an edit of it or a source-list operation was refused. Nothing is ever
/// half-applied: every operation that returns this leaves its input unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The document is not valid TOML or has a field of the wrong type or an unknown key.
    #[error("{0}")]
    Syntax(String),
    /// An IP range that does not parse or is not a range.
    #[error("{field}: {source}")]
    Range {
        /// Dotted path of the field, e.g. `sources[1].range`.
        field: String,
        /// What is wrong with the text (it names the text).
        source: RangeError,
    },
    /// A value of the right type that is not acceptable.
    #[error("{field}: `{value}` {reason}")]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A source entry names an update agent that is not registered in `[[agent]]`.
    #[error("{field}: `{value}` is not a registered update agent (add it under [[agent]] first)")]
    UnknownAgent {
        /// Dotted path of the field.
        field: String,
        /// The agent address as given.
        value: String,
    },
    /// The same value appears twice where it must be unique.
    #[error("{field}: `{value}` appears more than once")]
    Duplicate {
        /// Dotted path of the field.
        field: String,
        /// The repeated value.
        value: String,
    },
    /// An agent cannot be removed while source entries still point to it.
    #[error("agent `{agent}` is still used by {field}; delete or edit that entry first")]
    AgentInUse {
        /// The agent address.
        agent: String,
        /// The first entry that references it.
        field: String,
    },
    /// A list operation named an entry id that is not in the list.
    #[error("sources: no entry with id {id}")]
    UnknownEntry {
        /// The id as given.
        id: u32,
    },
    /// Delete was asked with no entry selected.
    #[error("sources: no entry selected to delete")]
    NothingSelected,
    /// Moving the first entry up or the last entry down.
    #[error("sources: entry {id} is already the {edge} entry and cannot move {direction}")]
    CannotMove {
        /// The entry id.
        id: u32,
        /// `first` or `last`.
        edge: &'static str,
        /// `up` or `down`.
        direction: &'static str,
    },
    /// No registered agent has this address.
    #[error("agent: `{0}` is not a registered update agent")]
    NoSuchAgent(String),
    /// A domain name that the policy does not define.
    #[error("domain: `{0}` is not defined in the policy (known: [domains.NAME])")]
    UnknownDomain(String),
}

impl PolicyError {
    /// Stable machine-readable code, e.g. `policy.unknown_agent` or `range.reversed`.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::Syntax(_) => "policy.syntax",
            PolicyError::Range { source, .. } => source.code(),
            PolicyError::Invalid { .. } => "policy.invalid",
            PolicyError::UnknownAgent { .. } => "policy.unknown_agent",
            PolicyError::Duplicate { .. } => "policy.duplicate",
            PolicyError::AgentInUse { .. } => "policy.agent_in_use",
            PolicyError::UnknownEntry { .. } => "list.unknown_id",
            PolicyError::NothingSelected => "list.nothing_selected",
            PolicyError::CannotMove { .. } => "list.cannot_move",
            PolicyError::NoSuchAgent(_) => "agent.unknown",
            PolicyError::UnknownDomain(_) => "domain.unknown",
        }
    }

    /// The dotted field path the error is about, when there is one (for forms and 422s).
    pub fn field(&self) -> Option<&str> {
        match self {
            PolicyError::Range { field, .. }
            | PolicyError::Invalid { field, .. }
            | PolicyError::UnknownAgent { field, .. }
            | PolicyError::Duplicate { field, .. } => Some(field),
            PolicyError::AgentInUse { .. } | PolicyError::NoSuchAgent(_) => Some("agent"),
            PolicyError::UnknownEntry { .. }
            | PolicyError::NothingSelected
            | PolicyError::CannotMove { .. } => Some("sources"),
            PolicyError::UnknownDomain(_) => Some("domain"),
            PolicyError::Syntax(_) => None,
        }
    }
}
