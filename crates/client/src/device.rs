//! The client API: enroll with the enrollment token, then, with the client's credential,
//! fetch the policy (conditionally, by revision), read the client's own record, check in with
//! the last report, and hold the notification stream (SSE); and the public files of the
//! server's repository tree (e.g. a trusted root at first contact).

use cascade_core::report::CheckIn;
use cascade_proto::versions::{self, RepoVersions};
use cascade_proto::{
    CheckInResponse, ClientPolicy, ClientView, EnrollRequest, Enrolled, Hello, Notice,
};
use eventsource_stream::Eventsource as _;
use futures::{Stream, StreamExt as _};
use reqwest::header::IF_NONE_MATCH;
use reqwest::{Method, StatusCode};

use crate::{call, send, Client, ClientError};

/// `GET /api/client/policy`'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAnswer {
    /// The policy, `None` when the revision the caller holds is still current (304).
    pub policy: Option<ClientPolicy>,
    /// The repository versions the server serves now: the caller's floor.
    pub versions: RepoVersions,
}

/// What the notification stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The stream is open: who the server takes the caller for, and its policy revision.
    Hello(Hello),
    /// Update now.
    Notify(Notice),
}

impl Client {
    /// Enrolls with the enrollment `token`; the answer holds the client id and its
    /// credential (shown this once).
    ///
    /// # Errors
    /// Unreachable server, a refused token or a refused body.
    pub async fn enroll(&self, token: &str, body: &EnrollRequest) -> Result<Enrolled, ClientError> {
        // A full enrollment token (`docs/operating.md#enrollment-token-format`) authenticates with
        // its secret part; a bare secret is sent as it is.
        let secret = crate::proto::enroll_token::secret_of(token);
        let req = self.request(Method::POST, "api/client/enroll", Some(&secret))?;
        call(req.json(body)).await
    }

    /// The policy for the client with `credential`, unless the server's revision is still
    /// `known` (then `policy` is `None`), and the repository versions the server announces
    /// (the client's floor, sent with either answer: `cascade_proto::versions`).
    ///
    /// # Errors
    /// Unreachable server, refused credential, or a malformed answer.
    pub async fn policy(
        &self,
        credential: &str,
        known: Option<i64>,
    ) -> Result<PolicyAnswer, ClientError> {
        let mut req = self.request(Method::GET, "api/client/policy", Some(credential))?;
        if let Some(rev) = known {
            req = req.header(IF_NONE_MATCH, format!("\"{rev}\""));
        }
        let resp = send(req).await?;
        let versions = resp
            .headers()
            .get(versions::HEADER)
            .and_then(|v| v.to_str().ok())
            .map(RepoVersions::parse_header)
            .unwrap_or_default();
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(PolicyAnswer {
                policy: None,
                versions,
            });
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::unreachable(&e))?;
        let policy = serde_json::from_slice(&bytes).map_err(|e| ClientError::protocol(&e))?;
        Ok(PolicyAnswer {
            policy: Some(policy),
            versions,
        })
    }

    /// The record the server keeps of the client with `credential`.
    ///
    /// # Errors
    /// Unreachable server or refused credential.
    pub async fn status(&self, credential: &str) -> Result<ClientView, ClientError> {
        call(self.request(Method::GET, "api/client/status", Some(credential))?).await
    }

    /// Sends a check-in; the answer holds the server's current policy revision.
    ///
    /// # Errors
    /// Unreachable server, refused credential or a refused report.
    pub async fn checkin(
        &self,
        credential: &str,
        body: &CheckIn,
    ) -> Result<CheckInResponse, ClientError> {
        let req = self.request(Method::POST, "api/client/checkin", Some(credential))?;
        call(req.json(body)).await
    }

    /// A public file of the server's repository tree, by its path below the base URL
    /// (e.g. `repo/site/metadata/1.root.json`).
    ///
    /// # Errors
    /// Unreachable server or a non-success answer.
    pub async fn repo_file(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let resp = send(self.request(Method::GET, path, None)?).await?;
        Ok(resp
            .bytes()
            .await
            .map_err(|e| ClientError::unreachable(&e))?
            .to_vec())
    }

    /// Opens the notification stream of the client with `credential`. It ends when the
    /// server closes it; events that do not parse are skipped.
    ///
    /// # Errors
    /// Unreachable server or refused credential.
    pub async fn events(
        &self,
        credential: &str,
    ) -> Result<impl Stream<Item = Event> + Send + 'static, ClientError> {
        self.events_after(credential, None).await
    }

    /// [`Client::events`], reconnecting after notice `last` (sent as `Last-Event-ID`): the
    /// server replays only a newer notice the client missed.
    ///
    /// # Errors
    /// Unreachable server or refused credential.
    pub async fn events_after(
        &self,
        credential: &str,
        last: Option<i64>,
    ) -> Result<impl Stream<Item = Event> + Send + 'static, ClientError> {
        let mut req = self
            .stream_http
            .get(self.url("api/client/events")?)
            .bearer_auth(credential);
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = send(req).await?;
        Ok(resp
            .bytes_stream()
            .eventsource()
            .filter_map(|ev| async move {
                let ev = ev.ok()?;
                match ev.event.as_str() {
                    "hello" => serde_json::from_str(&ev.data).ok().map(Event::Hello),
                    "notify" => serde_json::from_str(&ev.data).ok().map(Event::Notify),
                    _ => None,
                }
            }))
    }
}
