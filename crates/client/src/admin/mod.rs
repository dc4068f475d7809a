//! The admin API behind the admin token: the whole policy and its settings, domains, update
//! agents, the customized source list and the what-if resolution, mirroring, Notify All
//! Clients, the client registry and the enrollment token. Each write takes the policy
//! revision it expects (`If-Match`; `None` reads the current revision first and writes at it).
//!
//! The calls are grouped by what they manage, each file an `impl AdminClient` block:
//! - `policy`: the policy, its settings, domains, update agents, sources and what-if;
//! - `fleet`: mirroring, Notify All Clients, the client registry, health and compliance;
//! - `publishing`: program builds, rollouts and delegated roles;
//! - `access`: users, API tokens, enrollment tokens and the audit log.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{at_revision, call, Client, ClientError};

mod access;
mod fleet;
mod policy;
mod publishing;

/// The admin API of one server.
#[derive(Debug, Clone)]
pub struct AdminClient {
    client: Client,
    token: String,
}

/// What must be escaped in one path segment (`[fd00::1]:8443` keeps its colons).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The limit for one program upload (the server's default `--upload-timeout` is 30 min).
pub const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `text` as one path segment.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

impl AdminClient {
    pub(crate) fn new(client: Client, token: String) -> Self {
        AdminClient { client, token }
    }

    /// The underlying client (base URL, client API).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        call(self.client.request(Method::GET, path, Some(&self.token))?).await
    }

    async fn write<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        at: Option<i64>,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut req = at_revision(self.client.request(method, path, Some(&self.token))?, at);
        if let Some(b) = body {
            req = req.json(b);
        }
        call(req).await
    }

    /// A policy write at revision `at`, or, when `None`, at the current revision read first
    /// (the server refuses policy writes without `If-Match` with 428).
    async fn write_at<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        at: Option<i64>,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let at = match at {
            Some(rev) => rev,
            None => self.settings().await?.revision,
        };
        self.write(method, path, Some(at), body).await
    }
}

#[cfg(test)]
mod tests {
    use super::segment;

    // Path segments keep addresses readable and escape what would change the path.
    #[test]
    fn segments_escape_only_what_they_must() {
        assert_eq!(segment("10.0.0.5:8443"), "10.0.0.5:8443");
        assert_eq!(segment("[fd00::1]:8443"), "%5Bfd00::1%5D:8443");
        assert_eq!(segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
    }
}
