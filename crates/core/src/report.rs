//! What a client reports to the server after an update: each step it tried, in order, with
//! the source, how it ended, why, and what it cost. One wire format for the agent that sends
//! it, the server that stores it and the console that shows it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::category::Category;

/// How one update, or one attempt of it, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Verified content was installed.
    Ok,
    /// The source answered with verified metadata and nothing was newer.
    UpToDate,
    /// This source failed (the reason says why).
    Failed,
    /// Every step failed and the client quit this update.
    Quit,
    /// The step was not tried.
    Skipped,
}

/// One step the client tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// The category the step was for.
    #[serde(default)]
    pub category: Option<Category>,
    /// 1-based step number in the plan.
    pub step: u32,
    /// The step's source as in the plan (`agent:…`, `url:…`, `server`, `activeupdate:…`).
    pub source: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it failed (a [`Failure`]: connect, timeout, 404, signature…), or what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<Reason>,
    /// Bytes received from this source.
    #[serde(default)]
    pub bytes: u64,
    /// Time spent on this source, milliseconds.
    #[serde(default)]
    pub millis: u64,
}

/// Why a step failed: a stable, machine-readable code (`tuf.expired`, `source.connect`) and a
/// message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The stable code, dotted lowercase words.
    pub code: String,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The `reason` of an [`Attempt`]: a [`Failure`], or a note (`installed engine 1.2`, `every
/// source failed`). On the wire it is one string, `CODE: MESSAGE` for a failure; a string
/// that does not start with a dotted code is a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Reason {
    /// Why the step failed.
    Failure(Failure),
    /// What the step did, or why the client quit.
    Note(String),
}

impl Reason {
    /// The failure, when the reason is one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Reason::Failure(f) => Some(f),
            Reason::Note(_) => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Failure(failure) => failure.fmt(f),
            Reason::Note(note) => f.write_str(note),
        }
    }
}

impl From<Failure> for Reason {
    fn from(f: Failure) -> Self {
        Reason::Failure(f)
    }
}

impl From<&str> for Reason {
    fn from(s: &str) -> Self {
        Reason::from(s.to_owned())
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> Self {
        r.to_string()
    }
}

impl From<String> for Reason {
    fn from(s: String) -> Self {
        let is_code = |c: &str| {
            c.contains('.')
                && c.split('.').all(|w| {
                    !w.is_empty()
                        && w.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                })
        };
        match s.split_once(": ") {
            Some((code, message)) if is_code(code) => Reason::Failure(Failure {
                code: code.to_owned(),
                message: message.to_owned(),
            }),
            _ => Reason::Note(s),
        }
    }
}

/// A client's report of its last update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateReport {
    /// Unix seconds when it finished (client clock).
    #[serde(default)]
    pub finished_at: Option<i64>,
    /// How it ended overall.
    pub outcome: Outcome,
    /// Each step tried, in order.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

/// The body of a client's check-in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckIn {
    /// The IP address the client resolved its plan for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Installed version per category (the newest installed item of the category).
    #[serde(default)]
    pub installed: BTreeMap<Category, String>,
    /// The last update's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UpdateReport>,
    /// What this client served to its neighbours, when it is an update agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayReport>,
    /// The version of the agent program that sent this check-in (the running build's own,
    /// `docs/operating.md#agent-self-update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// At most this many clients are listed one by one in a [`RelayReport`]; the rest are only
/// counted (a relay serving a whole campus must not send megabytes with each check-in).
pub const MAX_REPORTED_CLIENTS: usize = 1000;

/// What an update agent's relay served since it started. Counters only grow while the relay
/// runs; the server keeps the latest report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayReport {
    /// Unix seconds when the relay started (client clock).
    #[serde(default)]
    pub since: Option<i64>,
    /// Requests answered.
    pub requests: u64,
    /// Response body bytes sent to clients.
    pub bytes_served: u64,
    /// Fetches the relay made from its own upstreams (cache misses).
    pub upstream_fetches: u64,
    /// Bytes received from its upstreams.
    pub upstream_bytes: u64,
    /// Upstream answers refused because their content did not match their name.
    #[serde(default)]
    pub refused: u64,
    /// Distinct client addresses served.
    pub client_count: u64,
    /// The clients served the most bytes, at most [`MAX_REPORTED_CLIENTS`], most first.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub clients: Vec<ServedClient>,
}

/// One neighbour a relay served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServedClient {
    /// The client's address as the relay saw it.
    pub ip: String,
    /// Requests answered for it.
    pub requests: u64,
    /// Response body bytes sent to it.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    // A reason is one string on the wire, read back as the same failure or note, byte for byte.
    #[test]
    fn reasons_round_trip() {
        let failure = Reason::Failure(Failure {
            code: "tuf.expired".into(),
            message: "expired metadata: timestamp: 1: x".into(),
        });
        let json = serde_json::to_string(&failure).unwrap();
        assert_eq!(json, r#""tuf.expired: expired metadata: timestamp: 1: x""#);
        assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), failure);
        for note in [
            "installed engine 1.2",
            "connect: refused",
            "HTTP 404",
            "a.B: c",
            "",
        ] {
            let r: Reason = serde_json::from_str(&serde_json::to_string(note).unwrap()).unwrap();
            assert_eq!(r, Reason::Note(note.to_owned()));
            assert_eq!(r.to_string(), note);
        }
    }
}
