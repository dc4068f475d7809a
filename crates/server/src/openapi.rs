//! The OpenAPI 3.1 document served at `/api/openapi.json`, generated with `utoipa` from the
//! `cascade-proto` types and each handler's `#[utoipa::path]`: [`base`] holds what is not
//! per route (security schemes, the repository path, the event-stream payloads), the routes
//! add their operations as they are registered (`routes::api`), and the error sets below
//! are the 4xx/5xx answers operations list.

use std::sync::LazyLock;

use cascade_proto::{ErrorBody, Hello, Notice, StreamEvent};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Required};
use utoipa::{IntoResponses, Modify, OpenApi};

/// The parts of the document that are not one JSON route.
#[derive(OpenApi)]
#[openapi(
    info(title = "cascade server", description = "Admin and client API of the cascade server"),
    paths(crate::repo::serve),
    components(schemas(ErrorBody, StreamEvent, Hello, Notice)),
    modifiers(&Security)
)]
struct Base;

/// The three bearer credentials: admin token, enrollment token, client credential.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("admin", "admin token cascade_adm_…"),
            ("enrollment", "enrollment token cascade_enr_…"),
            ("client", "client credential cascade_cli_…"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

/// The document before the routes add their operations.
pub fn base() -> Document {
    Base::openapi()
}

static DOCUMENT: LazyLock<serde_json::Value> = LazyLock::new(|| {
    let (_, mut doc) = crate::routes::api().split_for_parts();
    // `POST /api/notify` takes its body or none at all (every category).
    if let Some(RefOr::T(body)) = doc
        .paths
        .paths
        .get_mut("/api/notify")
        .and_then(|item| item.post.as_mut())
        .and_then(|op| op.request_body.as_mut())
    {
        body.required = Some(Required::False);
    }
    serde_json::to_value(doc).unwrap_or_default()
});

/// The whole document, as served.
pub fn document() -> serde_json::Value {
    DOCUMENT.clone()
}

/// Every `(method, path)` the document lists, methods lowercase (tests compare it with the
/// router).
pub fn operations() -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(paths) = DOCUMENT["paths"].as_object() {
        for (path, ops) in paths {
            for method in ops.as_object().into_iter().flat_map(|o| o.keys()) {
                if matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "patch" | "delete" | "head"
                ) {
                    out.push((method.clone(), path.clone()));
                }
            }
        }
    }
    out
}

/// What an authenticated JSON route may answer besides its success (`400` bad request,
/// `401` no credential, `403` the wrong kind, `500`, `503` storage unavailable).
#[derive(IntoResponses)]
#[allow(dead_code)] // a description for the document, never built
pub enum Refusals {
    /// A malformed request: bad JSON, query parameter, path segment or header.
    #[response(
        status = 400,
        description = "Malformed request; `field` names the part at fault"
    )]
    BadRequest(ErrorBody),
    /// No credential, or one that is not valid.
    #[response(status = 401, description = "No credential, or one that is not valid")]
    Unauthorized(ErrorBody),
    /// A valid credential of the wrong kind.
    #[response(status = 403, description = "A valid credential that may not do this")]
    Forbidden(ErrorBody),
    /// The server failed.
    #[response(status = 500, description = "The server failed (database)")]
    Internal(ErrorBody),
    /// The storage cannot take the request now; nothing was changed.
    #[response(
        status = 503,
        description = "`storage.unavailable`: disk full or database unreachable; nothing was changed, retry later"
    )]
    Unavailable(ErrorBody),
}

/// What a policy write may answer besides [`Refusals`].
#[derive(IntoResponses)]
#[allow(dead_code)] // a description for the document, never built
pub enum PolicyRefusals {
    /// `If-Match` named a revision that is no longer current.
    #[response(
        status = 409,
        description = "If-Match names a stale revision; `current_revision` is the stored one"
    )]
    Stale(ErrorBody),
    /// The body is over the server's limit.
    #[response(
        status = 413,
        description = "`request.too_large`: the body is over the server's limit (`--max-body-bytes`)"
    )]
    TooLarge(ErrorBody),
    /// No `If-Match`.
    #[response(
        status = 428,
        description = "`request.if_match_required`: policy writes need `If-Match` with the revision read"
    )]
    PreconditionRequired(ErrorBody),
    /// The change would make the policy invalid.
    #[response(
        status = 422,
        description = "The policy or the change is invalid; `field` names it (1-based where a person counts)"
    )]
    Invalid(ErrorBody),
}

/// A request whose values are well-formed but refused (an agent address that is not
/// `IP:PORT`, an agent the policy does not know).
#[derive(IntoResponses)]
#[allow(dead_code)] // a description for the document, never built
pub enum Unprocessable {
    /// The value is refused; `field` names it.
    #[response(status = 422, description = "A value is refused; `field` names it")]
    Invalid(ErrorBody),
}

/// A body over the server's limit, for routes with a body that are not policy writes.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description for the document, never built
pub enum TooLarge {
    /// The body is over the server's limit.
    #[response(
        status = 413,
        description = "`request.too_large`: the body is over the server's limit (`--max-body-bytes`)"
    )]
    TooLarge(ErrorBody),
}

/// Nothing at this id.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description for the document, never built
pub enum NotFound {
    /// Nothing at this id.
    #[response(status = 404, description = "Nothing at this id")]
    Missing(ErrorBody),
}

/// The upstream failed while mirroring.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description for the document, never built
pub enum UpstreamFailed {
    /// The upstream failed; `reason` is its stable code.
    #[response(
        status = 502,
        description = "The upstream failed; `reason` is its code and the served copy is unchanged"
    )]
    Upstream(ErrorBody),
}

/// What a write that publishes into the server's site repository may answer besides the
/// policy refusals.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description for the document, never built
pub enum SiteRefusals {
    /// The site is the operator's link; the server publishes nothing into it.
    #[response(
        status = 409,
        description = "`site.linked`: /repo/site is an operator's link; start the server with --site-repo"
    )]
    Linked(ErrorBody),
    /// Another process holds the site repository's lock.
    #[response(
        status = 503,
        description = "`publish.busy`: the site repository is locked by another publisher; retry"
    )]
    Busy(ErrorBody),
}

/// A name that is taken.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description for the document, never built
pub enum Taken {
    /// Something of that name exists already.
    #[response(status = 409, description = "Something of that name exists already")]
    Exists(ErrorBody),
}
