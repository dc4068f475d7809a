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
    _server: RunningServer,
}

pub async fn start(data_dir: &Path) -> TestServer {
    let mut s = Settings::new(data_dir);
    s.clock = Arc::new(ManualClock::at(1_700_000_000));
    s.hash_cost = CHEAP_HASHING;
    s.agent_head_start = Duration::from_millis(100);
    let server = RunningServer::start(s, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{}", server.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = server.first_start.clone().expect("first-start tokens");
    TestServer {
        url,
        admin: first.admin_token,
        admin_password: first.admin_password,
        enroll: first.enrollment_token,
        http,
        _server: server,
    }
}

impl TestServer {
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
