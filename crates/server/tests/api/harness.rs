//! Test harness: a real cascade server on 127.0.0.1:0 (the test kit's starter) with a real
//! SQLite file (or a given database URL), the first-start tokens captured, the typed client
//! (`cascade-client`) for it, helpers for calls whose bodies are `cascade-proto` types (or raw
//! text, for tests of malformed input) that print the request and response when an
//! expectation fails, and the kit's SSE reader.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cascade_client::proto::{EnrollRequest, Enrolled, Mode, SettingsPatch};
use cascade_client::{AdminClient, Client};
use cascade_server::Settings;
pub use cascade_testkit::{ManualClock, Sse};
use cascade_testkit::{RunningServer, CHEAP_HASHING};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub struct TestServer {
    pub url: String,
    pub admin: String,
    /// The bootstrap admin user's password (only when this start was the first).
    pub admin_password: Option<String>,
    pub enroll: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    /// The typed client of this server.
    pub client: Client,
    pub first_start_seen: bool,
    /// The server's CA certificate (PEM), `None` over plain HTTP.
    pub ca_pem: Option<Vec<u8>>,
    server: RunningServer,
}

/// A raw connection to the server: TLS to its CA, as a client speaks it.
pub type RawConn = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A rustls client configuration trusting only the CA certificate(s) in `ca_pem`.
pub fn rustls_client(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl TestServer {
    /// The listening `IP:PORT`.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr
    }

    /// A raw TLS connection (handshake done) that checks the server's certificate against its
    /// CA, for tests of what goes on the socket.
    pub async fn raw_connect(&self) -> RawConn {
        let tcp = tokio::net::TcpStream::connect(self.server.addr)
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(rustls_client(
            self.ca_pem.as_deref().expect("a TLS server"),
        ));
        let name = rustls_pki_types::ServerName::IpAddress(self.server.addr.ip().into());
        tls.connect(name, tcp).await.unwrap()
    }
}

/// The key passphrase every server of a test on PostgreSQL is given.
pub const PG_PASSPHRASE: &str = "replicas share one passphrase";

fn settings(data_dir: &Path, database_url: Option<String>, clock: Arc<ManualClock>) -> Settings {
    let mut s = Settings::new(data_dir);
    if database_url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres"))
    {
        // Replicas keep the private CA's key in the database encrypted with it.
        s.key_passphrase = Some(cascade_repo::Passphrase::new(PG_PASSPHRASE).unwrap());
    }
    s.database_url = database_url;
    s.clock = clock;
    s.hash_cost = CHEAP_HASHING;
    s.agent_head_start = Duration::from_secs(1);
    s.notify_poll = Duration::from_millis(100);
    s.stale_after = Duration::from_secs(3600);
    s
}

/// Starts a server on `data_dir`; `previous` carries tokens and clock over a restart.
pub async fn start_with(
    data_dir: &Path,
    database_url: Option<String>,
    previous: Option<(String, String, Arc<ManualClock>)>,
) -> TestServer {
    start_tuned(data_dir, database_url, previous, |_| {}).await
}

/// [`start_with`], with a last say on the settings.
pub async fn start_tuned(
    data_dir: &Path,
    database_url: Option<String>,
    previous: Option<(String, String, Arc<ManualClock>)>,
    tune: impl FnOnce(&mut Settings),
) -> TestServer {
    let clock = previous
        .as_ref()
        .map_or_else(|| Arc::new(ManualClock::at(1_700_000_000)), |p| p.2.clone());
    let mut s = settings(data_dir, database_url.clone(), clock.clone());
    tune(&mut s);
    let server = RunningServer::start(s, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.url.as_str().trim_end_matches('/').to_owned();
    let http = server.http_builder().unwrap().build().unwrap();
    let first = server.first_start.clone();
    if let Some(f) = &first {
        assert_eq!(f.url, url, "first-start message names the listening URL");
    }
    let (admin, enroll) = match (&first, previous) {
        (Some(f), _) => (f.admin_token.clone(), f.enrollment_token.clone()),
        (None, Some((a, e, _))) => (a, e),
        (None, None) => panic!("a fresh server did not report its first-start tokens"),
    };
    let client = Client::with_http(url.parse().unwrap(), http.clone());
    TestServer {
        admin_password: first.as_ref().map(|f| f.admin_password.clone()),
        client,
        url,
        admin,
        enroll,
        data_dir: data_dir.to_owned(),
        database_url,
        clock,
        http,
        first_start_seen: first.is_some(),
        ca_pem: server.ca_pem.clone(),
        server,
    }
}

pub async fn start(data_dir: &Path) -> TestServer {
    start_with(data_dir, None, None).await
}

/// A request body: the JSON of an API type, or raw text (malformed or invalid on purpose).
pub struct Body {
    text: String,
}

/// The settings patch that switches the policy to the customized source list.
pub fn customized() -> SettingsPatch {
    SettingsPatch {
        mode: Some(Mode::Customized),
        ..SettingsPatch::default()
    }
}

/// `value` (a `cascade-proto` type) as the JSON body.
#[allow(clippy::unnecessary_wraps)] // it fills the `body: Option<…>` argument
pub fn json<T: Serialize + ?Sized>(value: &T) -> Option<Body> {
    Some(Body {
        text: serde_json::to_string(value).unwrap(),
    })
}

/// `text` sent as it is, with `Content-Type: application/json`.
#[allow(clippy::unnecessary_wraps)] // it fills the `body: Option<…>` argument
pub fn raw(text: &str) -> Option<Body> {
    Some(Body {
        text: text.to_owned(),
    })
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub what: String,
}

impl Reply {
    /// Asserts the status, printing the request and the body otherwise.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{} answered {}: {}",
            self.what,
            self.status,
            self.body
        );
        self.body
    }

    /// Asserts an error reply with `code` naming `field`; returns the message.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str, field: &str) -> String {
        let what = self.what.clone();
        let body = self.expect(status);
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert_eq!(body["error"]["field"], field, "{what}: {body}");
        body["error"]["message"].as_str().unwrap().to_owned()
    }

    /// Asserts the status and reads the body as the API type `T`.
    #[track_caller]
    pub fn typed<T: DeserializeOwned>(self, status: u16) -> T {
        let what = self.what.clone();
        let body = self.expect(status);
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("{what}: answer is not the API type: {e}: {body}"))
    }
}

impl TestServer {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Body>,
    ) -> Reply {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.text);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
            what: format!("{method} {path}"),
        }
    }

    /// An admin call; a policy write is sent at the current revision (`If-Match`, which the
    /// server requires), read first.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Body>) -> Reply {
        let policy_write = method != Method::GET
            && ["/api/policy", "/api/agents", "/api/sources"]
                .iter()
                .any(|p| path.starts_with(p));
        if policy_write {
            let rev = self.revision().await;
            return self.admin_at(rev, method, path, body).await;
        }
        self.call(method, path, Some(&self.admin), &[], body).await
    }

    /// An admin call with `If-Match: "rev"`.
    pub async fn admin_at(
        &self,
        rev: i64,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Reply {
        let tag = format!("\"{rev}\"");
        self.call(method, path, Some(&self.admin), &[("if-match", &tag)], body)
            .await
    }

    pub async fn policy(&self) -> Value {
        self.call(Method::GET, "/api/policy", Some(&self.admin), &[], None)
            .await
            .expect(200)
    }

    pub async fn revision(&self) -> i64 {
        self.policy().await["revision"].as_i64().unwrap()
    }

    /// An HTTP client for the console's pages: it does not follow redirects, so a test sees
    /// the login's `Set-Cookie` and the redirect to `/login` of a refused session.
    #[allow(clippy::unused_self)] // a method: how the server is reached is the server's business
    pub fn console_http(&self) -> reqwest::Client {
        self.server
            .http_builder()
            .unwrap()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// The typed admin API.
    pub fn api(&self) -> AdminClient {
        self.client.admin(self.admin.as_str())
    }

    /// Enrolls a client; returns (id, credential).
    pub async fn enroll_client(&self, name: &str, agent: Option<&str>) -> (String, String) {
        let body = EnrollRequest {
            name: name.to_owned(),
            domain: None,
            agent_address: agent.map(str::to_owned),
        };
        let e: Enrolled = self
            .call(
                Method::POST,
                "/api/client/enroll",
                Some(&self.enroll),
                &[],
                json(&body),
            )
            .await
            .typed(201);
        // An update agent counts as one only once an admin approves it.
        if agent.is_some() {
            self.api().approve_agent(&e.client_id).await.unwrap();
        }
        (e.client_id, e.credential)
    }

    /// Stops the server and waits for it; returns what a restart needs.
    pub async fn stop(mut self) -> (String, String, Arc<ManualClock>) {
        tokio::time::timeout(Duration::from_secs(10), self.server.stop())
            .await
            .expect("server stopped within 10 s")
            .unwrap();
        (self.admin.clone(), self.enroll.clone(), self.clock.clone())
    }
}
