//! The console tests' harness: the real server on 127.0.0.1:0 (the test kit's starter, a
//! clock that stands still), an HTTP client that keeps the console's cookies by hand, and
//! the kit's SSE reader for the notify check.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cascade_client::proto::EnrollRequest;
use cascade_server::Settings;
pub use cascade_testkit::Sse;
use cascade_testkit::{ManualClock, RunningServer, CHEAP_HASHING};
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

pub struct TestServer {
    pub url: String,
    pub admin: String,
    /// The bootstrap admin user's password.
    pub admin_password: String,
    pub enroll: String,
    pub http: reqwest::Client,
    /// Base64 SHA-256 of the server CA's public key (SPKI), for chromium's
    /// `--ignore-certificate-errors-spki-list`: the browser accepts this test CA and no other.
    pub ca_spki_sha256: String,
    /// The server's clock (it stands still until a test moves it).
    pub clock: Arc<ManualClock>,
    server: RunningServer,
}

/// Standard base64 (with padding) of `bytes`.
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The SPKI hash of the private CA in `data_dir` (its key is `DATA/tls/ca.key`).
fn ca_spki_sha256(data_dir: &Path) -> String {
    use rcgen::PublicKeyData as _;
    let pem = std::fs::read_to_string(data_dir.join("tls/ca.key")).unwrap();
    let key = rcgen::KeyPair::from_pem(&pem).unwrap();
    let hex = cascade_repo::fsutil::sha256_hex(&key.subject_public_key_info());
    base64(&::hex::decode(hex).unwrap())
}

pub async fn start(data_dir: &Path) -> TestServer {
    start_tuned(data_dir, Arc::new(ManualClock::at(1_700_000_000)), |_| {}).await
}

/// [`start`] on `clock`, with a last say on the settings (a start on a data directory that
/// already has a server keeps its tokens: the caller knows them).
pub async fn start_tuned(
    data_dir: &Path,
    clock: Arc<ManualClock>,
    tune: impl FnOnce(&mut Settings),
) -> TestServer {
    let mut s = Settings::new(data_dir);
    s.clock = clock.clone();
    s.hash_cost = CHEAP_HASHING;
    s.agent_head_start = Duration::from_millis(100);
    tune(&mut s);
    let server = RunningServer::start(s, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.url.as_str().trim_end_matches('/').to_owned();
    let http = server
        .http_builder()
        .unwrap()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (admin, admin_password, enroll) = server.first_start.clone().map_or_else(
        || (String::new(), String::new(), String::new()),
        |f| (f.admin_token, f.admin_password, f.enrollment_token),
    );
    TestServer {
        url,
        admin,
        admin_password,
        enroll,
        http,
        ca_spki_sha256: ca_spki_sha256(data_dir),
        clock,
        server,
    }
}

impl TestServer {
    /// Stops the server (its data directory stays).
    pub async fn stop(mut self) {
        self.server.stop().await.unwrap();
    }

    /// An API call with a bearer token; asserts the status and returns the JSON body.
    pub async fn api(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<String>,
        status: u16,
    ) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(token);
        if method != Method::GET {
            // Policy writes need `If-Match`: send the current revision.
            let rev: Value = self
                .http
                .get(format!("{}/api/policy/settings", self.url))
                .bearer_auth(&self.admin)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            req = req.header("if-match", format!("\"{}\"", rev["revision"]));
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = req.send().await.unwrap();
        let got = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(got, status, "{method} {path} answered {got}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    /// The ids of `GET /api/sources`, in order, with their ranges.
    pub async fn source_order(&self) -> Vec<(u64, String)> {
        let v = self
            .api(&self.admin, Method::GET, "/api/sources", None, 200)
            .await;
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_u64().unwrap(),
                    e["range"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Enrolls a client; returns (id, credential).
    pub async fn enroll_client(&self, name: &str) -> (String, String) {
        let v = self
            .api(
                &self.enroll,
                Method::POST,
                "/api/client/enroll",
                json(&EnrollRequest {
                    name: name.to_owned(),
                    ..EnrollRequest::default()
                }),
                201,
            )
            .await;
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["credential"].as_str().unwrap().to_owned(),
        )
    }
}

/// `value` (a `cascade-proto` type) as a JSON request body.
#[allow(clippy::unnecessary_wraps)] // it fills the `body: Option<…>` argument
pub fn json<T: Serialize>(value: &T) -> Option<String> {
    Some(serde_json::to_string(value).unwrap())
}

/// The value of `name="csrf"` in a page.
pub fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// The value of `name="revision"` in a page.
pub fn revision_in(html: &str) -> String {
    let at = html
        .find("name=\"revision\" value=\"")
        .expect("a revision field")
        + 23;
    html[at..].split('"').next().unwrap().to_owned()
}
