//! What a client reports to the server after an update: each step it tried, in order, with
//! the source, how it ended, why, and what it cost. One wire format for the agent that sends
//! it, the server that stores it and the console that shows it.

use std::collections::BTreeMap;

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
    /// Why it failed: a stable code and a message (connect, timeout, 404, signature…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes received from this source.
    #[serde(default)]
    pub bytes: u64,
    /// Time spent on this source, milliseconds.
    #[serde(default)]
    pub millis: u64,
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
