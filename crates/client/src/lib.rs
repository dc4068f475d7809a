//! One typed client of the cascade server's HTTP API, used by the CLI, the agent, the demo,
//! the benches and the tests. [`Client`] speaks the client API (enroll with the enrollment
//! token, then policy, status, check-in and the notification stream with the client's
//! credential, and the public repository files); [`Client::admin`] gives the admin API behind
//! the admin token. Bodies and answers are the `cascade-proto` types; a refusal is a
//! [`ClientError`] carrying the HTTP status and the server's error body (code, field,
//! message). See `docs/architecture.md` for the API's place in the data flow.
//!
//! Over HTTPS the client trusts only the CA certificate it is given
//! ([`ClientBuilder::trust_ca_pem`]: the server's private CA, `docs/operating.md#tls`), else
//! the system's roots.
//!
//! Every connection leaves from the bind address when one is set, so the server sees (and
//! resolves the plan for) the address the caller really uses; a `reqwest::Client` can be
//! shared by many clients ([`Client::with_http`]).

mod admin;
mod device;
mod error;

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::IF_MATCH;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

pub use admin::AdminClient;
pub use cascade_proto as proto;
pub use device::{Event, PolicyAnswer};
pub use error::ClientError;

/// A client of one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    stream_http: reqwest::Client,
    base: Url,
}

/// How a [`Client`] connects: source address and time limits.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base: Url,
    bind: Option<IpAddr>,
    connect_timeout: Duration,
    timeout: Duration,
    ca_pem: Option<Vec<u8>>,
}

/// A `reqwest` client builder (no proxy) that trusts only the CA certificates in `ca_pem`
/// when given (else the system's roots): for callers that need plain HTTP requests to a
/// server or relay beside the typed client.
///
/// # Errors
/// When `ca_pem` holds no PEM certificate.
pub fn http_builder(ca_pem: Option<&[u8]>) -> Result<reqwest::ClientBuilder, ClientError> {
    let b = reqwest::Client::builder().no_proxy();
    Ok(match ca_pem {
        Some(pem) => {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Protocol(format!("CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Protocol(
                    "CA certificate: no PEM certificate in it".into(),
                ));
            }
            b.tls_certs_only(certs)
        }
        None => b,
    })
}

/// Fetches `GET /ca.pem` from the server at `base` over a connection that does NOT check the
/// server's certificate: the caller must compare the bytes with a hash it got out of band
/// (the enrollment token) before trusting them (`docs/architecture.md#trust-model`).
///
/// # Errors
/// Unreachable server or a non-success answer.
pub async fn fetch_ca_unverified(base: &Url, bind: Option<IpAddr>) -> Result<Vec<u8>, ClientError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .local_address(bind)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| ClientError::protocol(&e))?;
    let url = with_slash(base.clone())
        .join("ca.pem")
        .map_err(|e| ClientError::protocol(&e))?;
    let resp = send(http.get(url)).await?;
    Ok(resp
        .bytes()
        .await
        .map_err(|e| ClientError::unreachable(&e))?
        .to_vec())
}

impl ClientBuilder {
    /// Trust only the CA certificate(s) in `pem` (none: the system's roots).
    #[must_use]
    pub fn trust_ca_pem(mut self, pem: Option<Vec<u8>>) -> Self {
        self.ca_pem = pem;
        self
    }

    /// Every connection leaves from `ip` (none: the system chooses).
    #[must_use]
    pub fn bind(mut self, ip: Option<IpAddr>) -> Self {
        self.bind = ip;
        self
    }

    /// The limit for one whole call (not the notification stream, which has none).
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The limit for opening a connection.
    #[must_use]
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// The client.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS set-up).
    pub fn build(self) -> Result<Client, ClientError> {
        let make = |timeout: Option<Duration>| {
            let mut b = http_builder(self.ca_pem.as_deref())?
                .connect_timeout(self.connect_timeout)
                .local_address(self.bind);
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            b.build().map_err(|e| ClientError::protocol(&e))
        };
        Ok(Client {
            http: make(Some(self.timeout))?,
            stream_http: make(None)?,
            base: with_slash(self.base),
        })
    }
}

/// `base` with a trailing `/`, so API paths join below it rather than beside it.
fn with_slash(mut base: Url) -> Url {
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base
}

impl Client {
    /// A client of the server at `base` (connect limit 5 s, call limit 30 s).
    pub fn builder(base: Url) -> ClientBuilder {
        ClientBuilder {
            base,
            bind: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            ca_pem: None,
        }
    }

    /// A client of the server at `base`, connecting from `bind` when given.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base: Url, bind: Option<IpAddr>) -> Result<Self, ClientError> {
        Client::builder(base).bind(bind).build()
    }

    /// A client over a shared `reqwest::Client` (its limits apply to every call, the
    /// notification stream included).
    pub fn with_http(base: Url, http: reqwest::Client) -> Self {
        Client {
            stream_http: http.clone(),
            http,
            base: with_slash(base),
        }
    }

    /// The server's base URL (ends with `/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The admin API with `token`.
    pub fn admin(&self, token: impl Into<String>) -> AdminClient {
        AdminClient::new(self.clone(), token.into())
    }

    /// `path` (relative, e.g. `api/sources`) below the base URL.
    ///
    /// # Errors
    /// When `path` does not make a URL.
    pub fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ClientError::protocol(&e))
    }

    /// `GET /healthz`: the server is up and its database answers.
    ///
    /// # Errors
    /// Unreachable server, or 503 when the database does not answer.
    pub async fn health(&self) -> Result<proto::Health, ClientError> {
        call(self.request(Method::GET, "healthz", None)?).await
    }

    /// `GET /metrics`: the Prometheus text.
    ///
    /// # Errors
    /// Unreachable server or a non-success answer.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        send(self.request(Method::GET, "metrics", None)?)
            .await?
            .text()
            .await
            .map_err(|e| ClientError::unreachable(&e))
    }

    /// A request to `path` with `bearer` as the credential (none: anonymous).
    fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<RequestBuilder, ClientError> {
        let mut req = self.http.request(method, self.url(path)?);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        Ok(req)
    }
}

/// Sends `req`; a success (or 304) is returned, anything else becomes its [`ClientError`].
async fn send(req: RequestBuilder) -> Result<Response, ClientError> {
    let resp = req.send().await.map_err(|e| ClientError::unreachable(&e))?;
    let status = resp.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    Err(ClientError::from_answer(status, &text))
}

/// Sends `req` and reads its JSON answer as `T`.
async fn call<T: DeserializeOwned>(req: RequestBuilder) -> Result<T, ClientError> {
    let resp = send(req).await?;
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClientError::unreachable(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::protocol(&e))
}

/// `req` with `If-Match: "REV"` when a revision is given (optimistic concurrency: the
/// server refuses the write with 409 when its policy moved on).
fn at_revision(req: RequestBuilder, revision: Option<i64>) -> RequestBuilder {
    match revision {
        Some(rev) => req.header(IF_MATCH, format!("\"{rev}\"")),
        None => req,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // API paths go below the base URL, with or without its trailing slash.
    #[test]
    fn paths_join_below_the_base() {
        for base in ["http://127.0.0.1:8080", "http://127.0.0.1:8080/"] {
            let c = Client::new(base.parse().unwrap(), None).unwrap();
            assert_eq!(
                c.url("api/sources").unwrap().as_str(),
                "http://127.0.0.1:8080/api/sources"
            );
        }
        let c = Client::new("http://127.0.0.1:8080/cascade".parse().unwrap(), None).unwrap();
        assert_eq!(
            c.url("/api/policy").unwrap().as_str(),
            "http://127.0.0.1:8080/cascade/api/policy"
        );
    }

    // A refusal keeps the status and the server's code, field and message; a body that is
    // not the API's error JSON becomes the message.
    #[test]
    fn errors_carry_the_server_body() {
        let body = r#"{"error":{"code":"range.reversed","field":"range","message":"range: `10.0.0.9-10.0.0.1` is reversed"}}"#;
        let e = ClientError::from_answer(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(e.status(), Some(422));
        assert_eq!(e.code(), "server.status");
        let detail = e.server_error().unwrap();
        assert_eq!(detail.code, "range.reversed");
        assert_eq!(detail.field.as_deref(), Some("range"));
        assert!(e.to_string().contains("10.0.0.9-10.0.0.1"), "{e}");

        let e = ClientError::from_answer(StatusCode::FORBIDDEN, body);
        assert_eq!(e.code(), "server.refused");

        let e = ClientError::from_answer(StatusCode::BAD_GATEWAY, "<html>proxy down</html>");
        let detail = e.server_error().unwrap();
        assert_eq!(detail.code, "http");
        assert_eq!(detail.message, "<html>proxy down</html>");
    }
}
