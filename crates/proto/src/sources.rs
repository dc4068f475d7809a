//! Bodies of the customized source-list routes (`/api/sources…`) and of the what-if
//! resolution `GET /api/resolve`.

use std::collections::BTreeSet;

use cascade_core::{Category, EntryDoc, EntryId, Plan};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /api/sources` and `PUT /api/sources/{id}` body: a range and exactly one of
/// `agent` or `url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceBody {
    /// CIDR (`10.0.0.0/24`), `start-end` or one address.
    pub range: String,
    /// A registered update agent's `IP:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// An http(s) URL serving a copy of the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `POST /api/sources/delete` body: the entries to delete (all or nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteSources {
    /// Entry ids.
    pub ids: Vec<u32>,
}

/// Which way to move an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// One place towards the top.
    Up,
    /// One place towards the bottom.
    Down,
}

/// `POST /api/sources/{id}/move` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveSource {
    /// `up` or `down`.
    pub direction: Direction,
}

/// Answer of every source-list route: the list after the change, in order, plus what the
/// change touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourcesResponse {
    /// The policy revision.
    pub revision: i64,
    /// The entries, in order (each with its `id`).
    pub sources: Vec<EntryDoc>,
    /// The entry added, edited or moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<EntryId>,
    /// The entries deleted (`POST /api/sources/delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<BTreeSet<EntryId>>,
}

/// `GET /api/resolve` query: `?ip=…[&category=…][&domain=…]` or `?agent=IP:PORT`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResolveQuery {
    /// The client's IP address (required unless `agent` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `components`, `domain-settings` or `programs`; every category when absent or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The client's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// An update agent's `IP:PORT`: the plans it follows for itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// `GET /api/resolve` answer: one plan per category asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResolveResponse {
    /// The policy revision the plans were resolved against.
    pub revision: i64,
    /// The plans, in category order.
    pub plans: Vec<PlanView>,
}

/// The ordered sources for one category, as resolution gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    /// The category.
    pub category: Category,
    /// The sources to try, in order.
    pub steps: Vec<StepView>,
    /// What was considered and left out, and why.
    pub skipped: Vec<String>,
}

/// One source of a plan and why it is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    /// `agent:IP:PORT`, `url:URL`, `server` or `activeupdate:URL`.
    pub source: String,
    /// Why it is in the plan, e.g. `sources[2] 10.0.0.0/24 contains 10.0.0.7`.
    pub why: String,
}

impl From<&Plan> for PlanView {
    fn from(plan: &Plan) -> Self {
        PlanView {
            category: plan.category,
            steps: plan
                .steps
                .iter()
                .map(|s| StepView {
                    source: s.source.to_string(),
                    why: s.why.clone(),
                })
                .collect(),
            skipped: plan.skipped.clone(),
        }
    }
}
