//! Bodies of the program routes (`docs/api.md#programs`): builds of client programs and
//! hotfixes uploaded to the server, which signs and publishes them in its site repository as
//! `programs/NAME/VERSION/FILE` targets.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /api/programs/{name}/{version}` query: what the uploaded body (the build's bytes,
/// `application/octet-stream`) is published as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProgramUpload {
    /// The file name inside the version (`programs/NAME/VERSION/FILE`), e.g. `cascade`.
    pub file: String,
    /// Publish the build as a hotfix (kept in the target's custom metadata).
    #[serde(default)]
    pub hotfix: bool,
    /// The SHA-256 (lowercase hex) the sender computed; a body that hashes otherwise is
    /// refused and nothing is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One published program build (its full file; deltas are not listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramView {
    /// The program's name, e.g. `cascade-agent-linux-x86_64`.
    pub name: String,
    /// The version.
    pub version: String,
    /// The file inside the version.
    pub file: String,
    /// The signed target's name (`programs/NAME/VERSION/FILE`).
    pub target: String,
    /// Bytes.
    pub length: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Published as a hotfix.
    pub hotfix: bool,
    /// Publish order within the program; larger is newer.
    pub seq: u64,
}

/// `GET /api/programs` answer: every published program build, by name, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramsResponse {
    /// The builds.
    pub programs: Vec<ProgramView>,
}
