//! The agent's side of the server's client API: enroll, fetch the policy (conditionally, by
//! revision), check in with the last report, and hold the notification stream (SSE). Every
//! connection leaves from the agent's bind address when one is set, so the server sees, and
//! the plan is resolved for, the address the agent really uses.

use std::net::IpAddr;
use std::time::Duration;

use cascade_core::report::CheckIn;
use cascade_core::{Category, PolicyDoc};
use eventsource_stream::Eventsource as _;
use futures::{Stream, StreamExt as _};
use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use crate::state::CachedPolicy;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server could not be reached or the connection broke.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server refused the credential or token.
    #[error("refused by the server (HTTP {status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        body: String,
    },
    /// Any other non-success answer.
    #[error("server answered HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        body: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ApiError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unreachable(_) => "server.unreachable",
            ApiError::Refused { .. } => "server.refused",
            ApiError::Status { .. } => "server.status",
            ApiError::Protocol(_) => "server.protocol",
        }
    }
}

fn net(e: &reqwest::Error) -> ApiError {
    ApiError::Unreachable(e.to_string())
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    let status = resp.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let status = status.as_u16();
    if status == 401 || status == 403 {
        Err(ApiError::Refused { status, body })
    } else {
        Err(ApiError::Status { status, body })
    }
}

/// A notification from the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Notice {
    /// Increasing id.
    pub id: i64,
    /// What to update.
    pub categories: Vec<Category>,
    /// `agents` or `clients`.
    pub stage: String,
    /// Start within a random delay below this.
    pub jitter_ms: u64,
}

/// What the event stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The stream is open; the server's current policy revision.
    Hello {
        /// Policy revision.
        revision: i64,
    },
    /// Update now.
    Notify(Notice),
}

/// A client of one server.
#[derive(Debug, Clone)]
pub struct ServerClient {
    http: reqwest::Client,
    stream_http: reqwest::Client,
    base: Url,
}

#[derive(Deserialize)]
struct Enrolled {
    client_id: String,
    credential: String,
}

#[derive(Deserialize)]
struct PolicyAnswer {
    revision: i64,
    policy: PolicyDoc,
    client: ClientInfo,
}

#[derive(Deserialize)]
struct ClientInfo {
    #[serde(default)]
    domain: Option<String>,
}

#[derive(Deserialize)]
struct CheckInAnswer {
    policy_revision: i64,
}

#[derive(Deserialize)]
struct Hello {
    revision: i64,
}

impl ServerClient {
    /// A client of the server at `base`, connecting from `bind` when given.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base: Url, bind: Option<IpAddr>) -> Result<Self, ApiError> {
        let build = |timeout: Option<Duration>| {
            let mut b = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .no_proxy()
                .local_address(bind);
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            b.build().map_err(|e| ApiError::Protocol(e.to_string()))
        };
        Ok(ServerClient {
            http: build(Some(Duration::from_secs(30)))?,
            stream_http: build(None)?,
            base,
        })
    }

    fn url(&self, path: &str) -> Result<Url, ApiError> {
        self.base
            .join(path)
            .map_err(|e| ApiError::Protocol(e.to_string()))
    }

    /// Enrolls with the enrollment token; returns `(client_id, credential)`.
    ///
    /// # Errors
    /// Unreachable server or a refused token.
    pub async fn enroll(
        &self,
        token: &str,
        name: &str,
        domain: Option<&str>,
        agent_address: Option<&str>,
    ) -> Result<(String, String), ApiError> {
        let body =
            serde_json::json!({"name": name, "domain": domain, "agent_address": agent_address});
        let resp = self
            .http
            .post(self.url("api/client/enroll")?)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| net(&e))?;
        let e: Enrolled = check(resp)
            .await?
            .json()
            .await
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        Ok((e.client_id, e.credential))
    }

    /// The policy, unless the server's revision is still `known` (then `None`).
    ///
    /// # Errors
    /// Unreachable server, refused credential, or a malformed answer.
    pub async fn policy(
        &self,
        credential: &str,
        known: Option<i64>,
    ) -> Result<Option<CachedPolicy>, ApiError> {
        let mut req = self
            .http
            .get(self.url("api/client/policy")?)
            .bearer_auth(credential);
        if let Some(rev) = known {
            req = req.header(reqwest::header::IF_NONE_MATCH, format!("\"{rev}\""));
        }
        let resp = check(req.send().await.map_err(|e| net(&e))?).await?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let a: PolicyAnswer = resp
            .json()
            .await
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        Ok(Some(CachedPolicy {
            revision: a.revision,
            policy: a.policy,
            domain: a.client.domain,
        }))
    }

    /// Sends a check-in; returns the server's current policy revision.
    ///
    /// # Errors
    /// Unreachable server or refused credential.
    pub async fn checkin(&self, credential: &str, body: &CheckIn) -> Result<i64, ApiError> {
        let resp = self
            .http
            .post(self.url("api/client/checkin")?)
            .bearer_auth(credential)
            .json(body)
            .send()
            .await
            .map_err(|e| net(&e))?;
        let a: CheckInAnswer = check(resp)
            .await?
            .json()
            .await
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        Ok(a.policy_revision)
    }

    /// A public file of the server's repository tree (e.g. a trusted root at first contact).
    ///
    /// # Errors
    /// Unreachable server or a non-success answer.
    pub async fn repo_file(&self, path: &str) -> Result<Vec<u8>, ApiError> {
        let resp = check(
            self.http
                .get(self.url(path)?)
                .send()
                .await
                .map_err(|e| net(&e))?,
        )
        .await?;
        Ok(resp.bytes().await.map_err(|e| net(&e))?.to_vec())
    }

    /// Opens the notification stream. It ends when the server closes it; events that do
    /// not parse are skipped.
    ///
    /// # Errors
    /// Unreachable server or refused credential.
    pub async fn events(
        &self,
        credential: &str,
    ) -> Result<impl Stream<Item = Event> + Send + 'static, ApiError> {
        let resp = self
            .stream_http
            .get(self.url("api/client/events")?)
            .bearer_auth(credential)
            .send()
            .await
            .map_err(|e| net(&e))?;
        let resp = check(resp).await?;
        Ok(resp
            .bytes_stream()
            .eventsource()
            .filter_map(|ev| async move {
                let ev = ev.ok()?;
                match ev.event.as_str() {
                    "hello" => serde_json::from_str::<Hello>(&ev.data)
                        .ok()
                        .map(|h| Event::Hello {
                            revision: h.revision,
                        }),
                    "notify" => serde_json::from_str::<Notice>(&ev.data)
                        .ok()
                        .map(Event::Notify),
                    _ => None,
                }
            }))
    }
}
