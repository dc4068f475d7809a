//! Delegated program builds (`docs/operating.md#delegated-program-builds`): the site
//! repository's targets role delegates `programs/...` paths to a build team's key, which the
//! server never holds (`PUT /api/delegations/{role}`, signed with the targets key the server
//! holds, through the one writer of the site repository, so replicas store it). The team uploads a build's content
//! (`PUT /api/delegations/{role}/files/{sha256}`, streamed, size-limited and hashed like a
//! program upload, staged in `DATA_DIR/delegated-incoming/ROLE/SHA256`), then the role's next
//! version, signed offline (`POST /api/delegations/{role}`). The server checks that version
//! against the delegation (a threshold of the delegated keys, newer than the one served, not
//! expired, every target inside the delegated paths, every new target's content staged with
//! its signed length and hash), places the content and signs a new snapshot and timestamp
//! (`crate::site`). A refusal publishes nothing.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::Json;
#[allow(unused_imports)] // named by the OpenAPI description
use cascade_proto::DelegatedMetadata;
use cascade_proto::{Delegated, DelegatedFile, DelegatedPublished, NewDelegation};
use cascade_repo::PublishError;

use crate::auth::Admin;
use crate::error::{ApiError, ApiJson};
use crate::openapi::{NotFound, Refusals, TooLarge};
use crate::routes::programs::{internal, parse_sha256, receive};
use crate::site::SiteError;
use crate::state::AppState;

/// Whether a request uploads a delegated build's content (a program upload's size limit and
/// body time apply).
pub fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::PUT && path.starts_with("/api/delegations/")
}

/// Where the content for `role`'s next version is staged.
fn incoming(st: &AppState, role: &str) -> std::path::PathBuf {
    st.data_dir.join("delegated-incoming").join(role)
}

fn check_role(role: &str) -> Result<(), ApiError> {
    cascade_repo::check_segment("role", role)
        .map_err(|e| ApiError::bad("delegation.role", "role", e.to_string()))
}

/// `PUT /api/delegations/{role}`: delegate program paths to a build team's keys.
#[utoipa::path(put, path = "/api/delegations/{role}", tag = "programs",
    summary = "Delegate program paths to a build team's keys (replaces the role's keys and paths)",
    security(("admin" = [])),
    params(("role" = String, Path, description = "The delegated role, e.g. `build-team`")),
    request_body(content = NewDelegation, content_type = "application/json"),
    responses((status = 201, description = "The targets role now delegates to it", body = Delegated),
        Refusals, TooLarge))]
pub async fn delegate(
    Admin(_): Admin,
    State(st): State<AppState>,
    Path(role): Path<String>,
    ApiJson(body): ApiJson<NewDelegation>,
) -> Result<(StatusCode, Json<Delegated>), ApiError> {
    check_role(&role)?;
    let d =
        cascade_repo::Delegation::from_json_keys(&role, &body.keys, body.threshold, &body.paths)
            .map_err(|e| ApiError::bad(e.code(), "body", e.to_string()))?;
    st.site.publisher()?.delegate(&d).await?;
    tracing::info!(role, paths = ?body.paths, threshold = body.threshold, "delegated");
    Ok((
        StatusCode::CREATED,
        Json(Delegated {
            role,
            keys: body.keys.len() as u64,
            threshold: body.threshold,
            paths: body.paths,
        }),
    ))
}

/// `PUT /api/delegations/{role}/files/{sha256}`: stage a delegated build's content.
#[utoipa::path(put, path = "/api/delegations/{role}/files/{sha256}", tag = "programs",
    summary = "Upload a delegated build's content, published when the role's signed version lists it",
    security(("admin" = [])),
    params(
        ("role" = String, Path, description = "The delegated role, e.g. `build-team`"),
        ("sha256" = String, Path, description = "The content's SHA-256 (lowercase hex); a body that hashes otherwise is refused"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The build's bytes, streamed (at most `--max-program-bytes`)"),
    responses((status = 201, description = "Staged", body = DelegatedFile),
        Refusals, TooLarge))]
pub async fn stage_file(
    Admin(_): Admin,
    State(st): State<AppState>,
    Path((role, sha256)): Path<(String, String)>,
    body: Body,
) -> Result<(StatusCode, Json<DelegatedFile>), ApiError> {
    check_role(&role)?;
    let want = parse_sha256(&sha256)?;
    let dir = incoming(&st, &role);
    std::fs::create_dir_all(&dir).map_err(internal("create", &dir))?;
    let dest = dir.join(hex::encode(&want));
    receive(&st, body, &dest, Some(&want)).await?;
    let length = std::fs::metadata(&dest)
        .map_err(internal("read", &dest))?
        .len();
    Ok((
        StatusCode::CREATED,
        Json(DelegatedFile {
            role,
            sha256: hex::encode(want),
            length,
        }),
    ))
}

/// `POST /api/delegations/{role}`: publish the role's next version, signed by the team.
#[utoipa::path(post, path = "/api/delegations/{role}", tag = "programs",
    summary = "Publish a delegated role's next version, signed offline by the build team",
    security(("admin" = [])),
    params(("role" = String, Path, description = "The delegated role, e.g. `build-team`")),
    request_body(content = DelegatedMetadata, content_type = "application/json",
        description = "The role's TUF metadata as `cascade publish --delegated-key` signs it"),
    responses((status = 201, description = "Checked and published", body = DelegatedPublished),
        Refusals, NotFound, TooLarge))]
pub async fn publish(
    Admin(_): Admin,
    State(st): State<AppState>,
    Path(role): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<DelegatedPublished>), ApiError> {
    check_role(&role)?;
    let version = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("signed")?.get("version")?.as_u64())
        .ok_or_else(|| {
            ApiError::bad(
                "delegation.metadata",
                "body",
                "the body is not TUF targets metadata with signed.version",
            )
        })?;
    let dir = incoming(&st, &role);
    let added = st
        .site
        .publisher()?
        .publish_delegated(&role, &body, &dir)
        .await
        .map_err(|e| refusal(&role, e))?;
    // The staged content is in the repository now (or was there before).
    let _ = std::fs::remove_dir_all(&dir);
    tracing::info!(
        role,
        version,
        added = added.len(),
        "delegated role published"
    );
    Ok((
        StatusCode::CREATED,
        Json(DelegatedPublished {
            role,
            version,
            added: added.into_iter().map(|t| t.name).collect(),
        }),
    ))
}

/// The API error of a refused delegated publish: the team's input is at fault (400), an
/// unknown role is 404, anything else is the site's.
fn refusal(role: &str, e: SiteError) -> ApiError {
    match e {
        SiteError::Publish(PublishError::NotDelegated(_)) => ApiError::NotFound {
            what: "delegated role",
            id: role.to_owned(),
        },
        SiteError::Publish(
            e @ (PublishError::DelegatedRefused { .. }
            | PublishError::DelegatedFileMissing(_)
            | PublishError::Layout(_)),
        ) => ApiError::bad(e.code(), "body", e.to_string()),
        other => other.into(),
    }
}
