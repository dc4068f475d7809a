//! Why the site repository could not be opened or published to, with each error's stable
//! code, HTTP status and the request field at fault.

use std::path::{Path, PathBuf};

use cascade_repo::PublishError;

/// Why the site repository could not be opened or published to.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// `/repo/site` is a directory the operator linked; the server does not publish into it.
    #[error(
        "the site repository is the operator's link {0}; start the server with --site-repo DIR \
         (or remove the link) to let it publish"
    )]
    Linked(PathBuf),
    /// The repository refused or failed the operation (its code says which).
    #[error("site repository: {0}")]
    Publish(#[from] PublishError),
    /// The shared repository of the replicas failed.
    #[error(transparent)]
    Shared(#[from] crate::shared::SharedError),
    /// A staging file or directory could not be used.
    #[error("site repository: {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl SiteError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SiteError::Linked(_) => "site.linked",
            SiteError::Publish(e) => e.code(),
            SiteError::Io { .. } => "site.io",
            SiteError::Shared(e) => e.code(),
        }
    }

    /// The HTTP status of an API request that failed with this error.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            SiteError::Linked(_) | SiteError::Publish(PublishError::VersionExists(_)) => {
                StatusCode::CONFLICT
            }
            SiteError::Publish(
                PublishError::Layout(_) | PublishError::NoFiles | PublishError::DuplicateFile(_),
            ) => StatusCode::BAD_REQUEST,
            SiteError::Publish(PublishError::Busy(_)) => StatusCode::SERVICE_UNAVAILABLE,
            SiteError::Publish(_) | SiteError::Io { .. } | SiteError::Shared(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The request field at fault, when a person's input caused it.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SiteError::Publish(PublishError::VersionExists(_)) => Some("version"),
            SiteError::Publish(PublishError::Layout(_)) => Some("name"),
            SiteError::Publish(PublishError::NoFiles | PublishError::DuplicateFile(_)) => {
                Some("file")
            }
            _ => None,
        }
    }
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SiteError + '_ {
    move |source| SiteError::Io {
        path: path.to_owned(),
        source,
    }
}
