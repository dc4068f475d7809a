//! Program builds and hotfixes (`docs/operating.md#programs-and-hotfixes`): an admin uploads a
//! build (`POST /api/programs/{name}/{version}`, the body is the file's bytes), the server
//! streams it to a temporary file in its data directory, counting it against
//! `--max-program-bytes` (413 beyond) and hashing it while it arrives, then signs and
//! publishes it through the site repository's one publisher as `programs/NAME/VERSION/FILE`,
//! atomically (`crate::site`). `GET /api/programs` lists what is published.
//!
//! A version is never replaced (409 `publish.version_exists`): an upload creates, so it takes
//! no `If-Match`. The audit middleware records every upload, refused or not.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use cascade_core::Category;
use cascade_proto::{ProgramUpload, ProgramView, ProgramsResponse};
use cascade_repo::fsutil::{LandError, Landing};
use futures::StreamExt as _;

use crate::auth::{Admin, Viewer};
use crate::error::{ApiError, ApiQuery};
use crate::openapi::{Refusals, Taken, TooLarge};
use crate::site::SiteError;
use crate::state::AppState;

/// Whether a request is a program upload (its own size limit and body time).
pub fn is_upload(method: &Method, path: &str) -> bool {
    (method == Method::POST && path.starts_with("/api/programs/"))
        || crate::routes::delegations::is_upload(method, path)
}

/// Where uploads are received: `DATA_DIR/uploads/.upload-*/FILE` (each removed after its
/// publish, refused or not).
fn uploads_dir(st: &AppState) -> std::path::PathBuf {
    st.data_dir.join("uploads")
}

fn view(l: cascade_repo::Listed) -> ProgramView {
    ProgramView {
        name: l.path.name().to_owned(),
        version: l.path.version().to_owned(),
        file: l.path.file().to_owned(),
        target: l.path.to_string(),
        length: l.length,
        sha256: l.sha256,
        hotfix: l.meta.hotfix,
        seq: l.meta.seq,
    }
}

/// `GET /api/programs`: every published program build.
#[utoipa::path(get, path = "/api/programs", tag = "programs",
    summary = "Published program builds and hotfixes, by name, newest first",
    security(("admin" = [])),
    responses((status = 200, description = "The builds", body = ProgramsResponse), Refusals))]
pub async fn list(
    Viewer(_): Viewer,
    State(st): State<AppState>,
) -> Result<Json<ProgramsResponse>, ApiError> {
    let listed = st.site.publisher()?.listed(Category::Programs).await?;
    Ok(Json(ProgramsResponse {
        programs: listed.into_iter().map(view).collect(),
    }))
}

/// `POST /api/programs/{name}/{version}`: upload a build and publish it.
#[utoipa::path(post, path = "/api/programs/{name}/{version}", tag = "programs",
    summary = "Upload a program build (or a hotfix); the server signs and publishes it",
    security(("admin" = [])),
    params(
        ("name" = String, Path, description = "The program, e.g. `cascade-agent-linux-x86_64`"),
        ("version" = String, Path, description = "The new version (never published before)"),
        ProgramUpload,
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The build's bytes, streamed (at most `--max-program-bytes`)"),
    responses((status = 201, description = "Signed and published", body = ProgramView),
        Refusals, TooLarge, Taken))]
pub async fn upload(
    Admin(_): Admin,
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ProgramUpload>,
    body: Body,
) -> Result<(StatusCode, Json<ProgramView>), ApiError> {
    // Everything that can be refused before the body is read is refused first.
    let target = cascade_repo::TargetPath::new(Category::Programs, &name, &version, &q.file)
        .map_err(|e| {
            let field = match &e {
                cascade_repo::LayoutError::BadSegment { what, .. } => *what,
                cascade_repo::LayoutError::BadTargetName(_) => "name",
            };
            ApiError::bad("program.name", field, e.to_string())
        })?;
    let want = q.sha256.as_deref().map(parse_sha256).transpose()?;
    let site = st.site.publisher()?;
    if site
        .listed(Category::Programs)
        .await?
        .iter()
        .any(|l| l.path.name() == name && l.path.version() == version)
    {
        return Err(
            SiteError::Publish(cascade_repo::PublishError::VersionExists(format!(
                "programs/{name}/{version}"
            )))
            .into(),
        );
    }
    let uploads = uploads_dir(&st);
    std::fs::create_dir_all(&uploads).map_err(internal("create", &uploads))?;
    remove_abandoned(&uploads, st.limits.upload_timeout * 2);
    let scratch = tempfile::Builder::new()
        .prefix(".upload-")
        .tempdir_in(&uploads)
        .map_err(internal("create a directory in", &uploads))?;
    let dest = scratch.path().join(target.file());
    let received = receive(&st, body, &dest, want.as_deref()).await?;
    let published = site
        .publish_program(&name, &version, &dest, q.hotfix)
        .await?;
    drop(scratch);
    let listed = site.listed(Category::Programs).await?;
    let found = listed
        .into_iter()
        .find(|l| l.path.to_string() == published.name)
        .ok_or_else(|| {
            ApiError::Internal(format!("{} not listed after publish", published.name))
        })?;
    if found.sha256 != received {
        return Err(ApiError::Internal(format!(
            "{} was published with SHA-256 {}, not the {received} received",
            published.name, found.sha256
        )));
    }
    tracing::info!(target = %published.name, length = found.length, hotfix = q.hotfix, "program published");
    crate::rollout::on_publish(&st, &name, &version).await;
    Ok((StatusCode::CREATED, Json(view(found))))
}

/// Streams `body` into `dest`, refusing it past `--max-program-bytes` (413) or when it does
/// not hash to `want` (400); returns its SHA-256 (hex).
pub(crate) async fn receive(
    st: &AppState,
    body: Body,
    dest: &std::path::Path,
    want: Option<&[u8]>,
) -> Result<String, ApiError> {
    let max = st.limits.max_program_bytes;
    let tmp = dest.parent().unwrap_or(dest);
    let mut landing = Landing::start_in(dest, tmp, ".part-").map_err(internal("create", dest))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad(
                "request.body",
                "body",
                format!("the upload did not arrive whole: {e}"),
            )
        })?;
        if landing.len().saturating_add(chunk.len() as u64) > max {
            return Err(ApiError::UploadTooLarge { limit: max });
        }
        landing.write(&chunk).map_err(internal("write", dest))?;
    }
    if landing.is_empty() {
        return Err(ApiError::bad(
            "program.empty",
            "body",
            "the upload is empty: send the build's bytes as the body",
        ));
    }
    let sha256 = hex::encode(landing.sha256());
    match landing.finish(want) {
        Ok(_) => Ok(sha256),
        Err(LandError::Mismatch { sha256, len }) => Err(ApiError::bad(
            "program.sha256_mismatch",
            "sha256",
            format!(
                "the {len} bytes received hash to {}, not the sha256 given; nothing was published",
                hex::encode(sha256)
            ),
        )),
        Err(LandError::Io(e)) => Err(internal("write", dest)(e)),
    }
}

/// Removes the staging directories of uploads a killed server left (`.upload-*` untouched for
/// longer than `age`, twice the upload time limit: no upload in progress is that old).
pub(crate) fn remove_abandoned(uploads: &std::path::Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(uploads) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for e in entries.filter_map(Result::ok) {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|d| d > age);
        if old && e.file_name().to_string_lossy().starts_with(".upload-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub(crate) fn parse_sha256(text: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(text)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            ApiError::bad(
                "request.sha256",
                "sha256",
                format!(
                    "sha256: `{}` is not 64 hexadecimal digits",
                    cascade_proto::limits::cut(text)
                ),
            )
        })
}

pub(crate) fn internal<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> ApiError + 'a {
    move |e| ApiError::Internal(format!("{op} {}: {e}", path.display()))
}
