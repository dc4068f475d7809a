//! Why a call failed: the server could not be reached, it answered with an error body (kept
//! whole: HTTP status, stable code, field and message), or its answer broke the API's promise.

use cascade_proto::{ErrorBody, ErrorDetail};
use reqwest::StatusCode;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or the connection broke.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server refused the credential or token (HTTP 401 or 403).
    #[error("refused by the server (HTTP {status}): [{}] {}", error.code, error.message)]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        error: ErrorDetail,
    },
    /// Any other non-success answer, with the server's error body.
    #[error("server answered HTTP {status}: [{}] {}", error.code, error.message)]
    Status {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        error: ErrorDetail,
    },
    /// The answer was not what the API promises (or the client could not be set up).
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Stable machine-readable code of the failure on this side (`server.unreachable`,
    /// `server.refused`, `server.status`, `server.protocol`); the server's own code is in
    /// [`ClientError::server_error`].
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Unreachable(_) => "server.unreachable",
            ClientError::Refused { .. } => "server.refused",
            ClientError::Status { .. } => "server.status",
            ClientError::Protocol(_) => "server.protocol",
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } | ClientError::Status { status, .. } => {
                Some(*status)
            }
            ClientError::Unreachable(_) | ClientError::Protocol(_) => None,
        }
    }

    /// The server's error body (code, field, message), when it answered with one.
    pub fn server_error(&self) -> Option<&ErrorDetail> {
        match self {
            ClientError::Refused { error, .. } | ClientError::Status { error, .. } => Some(error),
            ClientError::Unreachable(_) | ClientError::Protocol(_) => None,
        }
    }

    pub(crate) fn unreachable(e: &reqwest::Error) -> Self {
        ClientError::Unreachable(e.to_string())
    }

    pub(crate) fn protocol(e: &impl std::fmt::Display) -> Self {
        ClientError::Protocol(e.to_string())
    }

    /// The error for a non-success answer: its status and its error body (a body that is not
    /// the API's error JSON, e.g. from a proxy, becomes the message under code `http`).
    pub(crate) fn from_answer(status: StatusCode, text: &str) -> Self {
        let error = serde_json::from_str::<ErrorBody>(text).map_or_else(
            |_| ErrorDetail {
                code: "http".to_owned(),
                field: None,
                message: if text.trim().is_empty() {
                    status.to_string()
                } else {
                    text.trim().to_owned()
                },
                current_revision: None,
                reason: None,
            },
            |b| b.error,
        );
        let status = status.as_u16();
        if status == 401 || status == 403 {
            ClientError::Refused { status, error }
        } else {
            ClientError::Status { status, error }
        }
    }
}
