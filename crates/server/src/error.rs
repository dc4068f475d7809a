//! The server's errors and the one place they become HTTP responses. Every error body is
//! `{"error":{"code":…,"field":…,"message":…}}`; `code` is stable for scripts, `field` names
//! the request field (dotted path) when there is one, and `message` repeats the value.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_core::PolicyError;
use cascade_proto::{ErrorBody, ErrorDetail};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The policy or an edit of it is invalid (422; TOML/JSON syntax is 400).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A malformed request: bad JSON, a bad query parameter or path segment (400).
    #[error("{message}")]
    BadRequest {
        /// Stable code, e.g. `request.query`.
        code: &'static str,
        /// The field at fault, when known.
        field: Option<String>,
        /// What is wrong, naming the value.
        message: String,
    },
    /// The request body is over the server's limit (413).
    #[error("the request body is over the limit of {limit} bytes (`--max-body-bytes`)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A program upload over `--max-program-bytes` (413).
    #[error("the upload is over the limit of {limit} bytes (`--max-program-bytes`)")]
    UploadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A policy write without `If-Match` (428).
    #[error("{0}")]
    PreconditionRequired(&'static str),
    /// No credential, or one that is not valid (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Too many failed attempts: locked out for a while (429 with `Retry-After`).
    #[error("too many failed {what} attempts from here or for this name: locked out; retry after {retry_after} s")]
    LockedOut {
        /// What was attempted (`login`, `enrollment`, `token`).
        what: &'static str,
        /// Seconds until the lock ends.
        retry_after: u64,
    },
    /// A valid credential that may not do this (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Nothing at this id (404).
    #[error("{what} `{id}` not found")]
    NotFound {
        /// The kind of thing, e.g. `client`.
        what: &'static str,
        /// The id as given.
        id: String,
    },
    /// Something of that name exists already (409).
    #[error("{what} `{id}` exists already")]
    Exists {
        /// The kind of thing, e.g. `user`.
        what: &'static str,
        /// The name as given.
        id: String,
    },
    /// The write named a policy revision that is no longer current (409).
    #[error(
        "policy revision {expected} is stale: the current revision is {current}; re-read and retry"
    )]
    StaleRevision {
        /// The revision the request named.
        expected: i64,
        /// The revision in the store.
        current: i64,
    },
    /// The thing is not in a state that allows this (409), e.g. promoting a completed rollout.
    #[error("{message}")]
    Conflict {
        /// Stable code, e.g. `rollout.state`.
        code: &'static str,
        /// The field at fault, when there is one.
        field: Option<&'static str>,
        /// What stands in the way, naming the state.
        message: String,
    },
    /// The upstream failed while mirroring (502); the served copy is unchanged.
    #[error("upstream: {message}")]
    Upstream {
        /// The failure's stable code, e.g. `tuf.rollback`.
        code: String,
        /// What failed.
        message: String,
    },
    /// The storage cannot take the write now: disk full, an I/O error, the database
    /// unreachable or busy past its timeout (503 with `Retry-After`). Nothing was changed.
    #[error("storage unavailable, nothing was changed; retry later: {0}")]
    Storage(sqlx::Error),
    /// The server's site repository refused or failed a publish: 409 for a version that
    /// exists or an operator-linked site, 400 for a bad name, 503 while it is locked, 500
    /// otherwise (`crate::site`).
    #[error(transparent)]
    Site(#[from] crate::site::SiteError),
    /// The database failed (500).
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// A server-side invariant failed (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            ApiError::Storage(e)
        } else {
            ApiError::Db(e)
        }
    }
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn bad(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Policy(PolicyError::Syntax(_)) | ApiError::BadRequest { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Policy(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge { .. } | ApiError::UploadTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::LockedOut { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::StaleRevision { .. }
            | ApiError::Exists { .. }
            | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ApiError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Site(e) => e.status(),
            ApiError::Db(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Policy(e) => e.code(),
            ApiError::BadRequest { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::TooLarge { .. } | ApiError::UploadTooLarge { .. } => "request.too_large",
            ApiError::PreconditionRequired(_) => "request.if_match_required",
            ApiError::Unauthorized(_) => "auth.unauthorized",
            ApiError::LockedOut { .. } => "auth.locked_out",
            ApiError::Forbidden(_) => "auth.forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::StaleRevision { .. } => "policy.stale_revision",
            ApiError::Exists { .. } => "exists",
            ApiError::Upstream { .. } => "mirror.upstream_failed",
            ApiError::Storage(_) => "storage.unavailable",
            ApiError::Site(e) => e.code(),
            ApiError::Db(_) => "internal.database",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The field at fault.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Policy(e) => e.field(),
            ApiError::BadRequest { field, .. } => field.as_deref(),
            ApiError::StaleRevision { .. } | ApiError::PreconditionRequired(_) => Some("If-Match"),
            ApiError::TooLarge { .. } | ApiError::UploadTooLarge { .. } => Some("body"),
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) | ApiError::LockedOut { .. } => {
                Some("Authorization")
            }
            ApiError::NotFound { .. } => Some("id"),
            ApiError::Exists { .. } => Some("name"),
            ApiError::Conflict { field, .. } => *field,
            ApiError::Upstream { .. } => Some("activeupdate_url"),
            ApiError::Site(e) => e.field(),
            ApiError::Storage(_) | ApiError::Db(_) | ApiError::Internal(_) => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                field: self.field().map(str::to_owned),
                message: self.to_string(),
                current_revision: match &self {
                    ApiError::StaleRevision { current, .. } => Some(*current),
                    _ => None,
                },
                reason: match &self {
                    ApiError::Upstream { code, .. } => Some(code.clone()),
                    _ => None,
                },
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        if let ApiError::LockedOut { retry_after, .. } = &self {
            if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s (400 with the serde message).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Serialize> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    /// The body as `T`, refusing a positional array where `T` has an object
    /// ([`crate::json_shape`]).
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<crate::limits::BodyLimit>()
            .map_or(0, |l| l.0);
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge { limit }
                } else {
                    ApiError::bad("request.json", "body", e.body_text())
                }
            })?;
        let req = Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
        let value = match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(e) => return Err(json_rejection(&e, limit)),
        };
        named_fields(&bytes, &value)?;
        Ok(ApiJson(value))
    }
}

/// Refuses `bytes` when they hold a positional array where `value` (parsed from them) has an
/// object: 400 `request.json` naming the field.
///
/// # Errors
/// That 400.
pub fn named_fields<T: Serialize>(bytes: &[u8], value: &T) -> Result<(), ApiError> {
    if !crate::json_shape::has_array(bytes) {
        return Ok(());
    }
    let (Ok(body), Ok(parsed)) = (
        serde_json::from_slice::<serde_json::Value>(bytes),
        serde_json::to_value(value),
    ) else {
        return Ok(());
    };
    strict_shape(&body, &parsed)
}

/// [`named_fields`] for a body already parsed as a JSON value.
///
/// # Errors
/// 400 `request.json` naming the field that holds an array where an object belongs.
pub fn strict_shape(body: &serde_json::Value, parsed: &serde_json::Value) -> Result<(), ApiError> {
    match crate::json_shape::positional_field(body, parsed) {
        None => Ok(()),
        Some(field) => Err(ApiError::bad(
            "request.json",
            &field,
            format!(
                "{field}: a JSON array where an object with named fields is expected \
                 (positional arrays are refused)"
            ),
        )),
    }
}

fn json_rejection(e: &JsonRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge { limit };
    }
    ApiError::BadRequest {
        code: "request.json",
        field: Some("body".into()),
        message: e.body_text(),
    }
}

/// `Query<T>` whose rejections are [`ApiError`]s (400 naming the query string).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(query_rejection(&e)),
        }
    }
}

fn query_rejection(e: &QueryRejection) -> ApiError {
    ApiError::BadRequest {
        code: "request.query",
        field: Some("query".into()),
        message: e.body_text(),
    }
}
