//! Bodies of the fleet views the console, the CLI and the API share: the health of every
//! update agent and URL source (`GET /api/fleet/health`) and compliance by version per
//! category (`GET /api/fleet/compliance`). Both are computed by one service in the server
//! (`docs/operating.md#console`), so every view says the same thing.

use cascade_core::Category;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a source is doing, from what clients report about it and from its own check-ins.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthLevel {
    /// Clients get their updates from it and nothing failed against it recently.
    Healthy,
    /// Some clients failed against it while others still got updates from it.
    Degraded,
    /// Every client that tried it since its first recent failure failed, or (an update
    /// agent) it stopped checking in.
    Down,
    /// Nothing recent is known: no client tried it and it never checked in.
    Unknown,
}

impl HealthLevel {
    /// The lowercase name used in JSON, CSS classes and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthLevel::Healthy => "healthy",
            HealthLevel::Degraded => "degraded",
            HealthLevel::Down => "down",
            HealthLevel::Unknown => "unknown",
        }
    }
}

/// What kind of source.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A registered update agent (`agent:IP:PORT`).
    Agent,
    /// A URL source of the list (`url:URL`).
    Url,
}

impl SourceKind {
    /// How people call it (`update agent`, `URL source`).
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Agent => "update agent",
            SourceKind::Url => "URL source",
        }
    }
}

/// A client whose last attempt at a source failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AffectedClient {
    /// The client's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Unix seconds of the failed update (its report's finish time, else its check-in).
    pub failed_at: Option<i64>,
    /// Why it failed (`source.connect: …`).
    pub reason: Option<String>,
    /// The source that delivered instead (`url:…`, `server`), when one did.
    pub served_by: Option<String>,
}

/// The health of one update agent or URL source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceHealth {
    /// Update agent or URL source.
    pub kind: SourceKind,
    /// `IP:PORT` of an agent, the URL of a URL source.
    pub address: String,
    /// As clients' reports name it (`agent:IP:PORT`, `url:URL`).
    pub source: String,
    /// How it is doing.
    pub level: HealthLevel,
    /// One line for people (`update agent 127.0.0.3:8443 down: 18 clients on url:… since …`).
    pub summary: String,
    /// Unix seconds of the agent's own last check-in (agents only).
    pub last_check_in: Option<i64>,
    /// Clients whose recent update got content or an up-to-date answer from it.
    pub served: u64,
    /// Clients whose last recent attempt at it failed.
    pub failed: u64,
    /// Unix seconds since when it is down or degraded.
    pub since: Option<i64>,
    /// The clients whose last attempt at it failed, at most 1,000.
    #[schema(max_items = 1000)]
    pub affected: Vec<AffectedClient>,
}

/// `GET /api/fleet/health` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetHealth {
    /// Unix seconds when it was computed (server clock).
    pub checked_at: i64,
    /// Reports older than this many seconds are not counted, and an update agent whose own
    /// last check-in is older is down (two update intervals).
    pub window_s: i64,
    /// Every registered update agent, then every URL source of the list.
    pub sources: Vec<SourceHealth>,
}

/// Where one client stands in one category.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Compliance {
    /// It has the newest published version of everything it installed in the category.
    Current,
    /// It has an older version of something in the category.
    Behind,
    /// It never installed anything of the category.
    NeverInstalled,
    /// Its last update of the category failed and it is not current.
    Failed,
    /// Nothing of the category is published, so no version is newest.
    Unpublished,
}

impl Compliance {
    /// Every state, in display order.
    pub const ALL: [Compliance; 5] = [
        Compliance::Current,
        Compliance::Behind,
        Compliance::NeverInstalled,
        Compliance::Failed,
        Compliance::Unpublished,
    ];

    /// The kebab-case name used in JSON, query strings and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Compliance::Current => "current",
            Compliance::Behind => "behind",
            Compliance::NeverInstalled => "never-installed",
            Compliance::Failed => "failed",
            Compliance::Unpublished => "unpublished",
        }
    }

    /// The state named `s`, if any.
    pub fn parse(s: &str) -> Option<Compliance> {
        Compliance::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// How many clients have one installed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionCount {
    /// `NAME VERSION` as clients report it, or `none`.
    pub version: String,
    /// Whether it is the newest published version of its name.
    pub newest: bool,
    /// How many clients have it.
    pub clients: u64,
}

/// Compliance of one category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CategoryCompliance {
    /// The category.
    pub category: Category,
    /// The newest published version of each name (`patterns 1.2`); empty when none is.
    pub newest: Vec<String>,
    /// Clients with the newest version.
    pub current: u64,
    /// Clients one or more versions behind.
    pub behind: u64,
    /// Clients that never installed anything of it.
    pub never_installed: u64,
    /// Clients whose last update of it failed (and that are not current).
    pub failed: u64,
    /// Clients counted (all enrolled clients).
    pub total: u64,
    /// Installed versions and how many clients have each, most first.
    #[schema(max_items = 1000)]
    pub distribution: Vec<VersionCount>,
}

/// `GET /api/fleet/compliance` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ComplianceResponse {
    /// Unix seconds when it was computed (server clock).
    pub checked_at: i64,
    /// One row per category.
    pub categories: Vec<CategoryCompliance>,
}
