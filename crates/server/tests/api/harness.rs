//! Test harness: a real cascade server on 127.0.0.1:0 (the test kit's starter) with a real
//! SQLite file (or a given database URL), the first-start tokens captured, helpers for JSON
//! calls that print the request and response when an expectation fails, and the kit's SSE
//! reader.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cascade_server::Settings;
pub use cascade_testkit::{ManualClock, Sse};
use cascade_testkit::{RunningServer, CHEAP_HASHING};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct TestServer {
    pub url: String,
    pub admin: String,
    pub enroll: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub first_start_seen: bool,
    server: RunningServer,
}

fn settings(data_dir: &Path, database_url: Option<String>, clock: Arc<ManualClock>) -> Settings {
    let mut s = Settings::new(data_dir);
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
    let url = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let first = server.first_start.clone();
    if let Some(f) = &first {
        assert_eq!(f.url, url, "first-start message names the listening URL");
    }
    let (admin, enroll) = match (&first, previous) {
        (Some(f), _) => (f.admin_token.clone(), f.enrollment_token.clone()),
        (None, Some((a, e, _))) => (a, e),
        (None, None) => panic!("a fresh server did not report its first-start tokens"),
    };
    TestServer {
        url,
        admin,
        enroll,
        data_dir: data_dir.to_owned(),
        database_url,
        clock,
        http,
        first_start_seen: first.is_some(),
        server,
    }
}

pub async fn start(data_dir: &Path) -> TestServer {
    start_with(data_dir, None, None).await
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
}

impl TestServer {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
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
            req = req.json(b);
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

    /// An admin call.
    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.call(method, path, Some(&self.admin), &[], body).await
    }

    /// An admin call with `If-Match: "rev"`.
    pub async fn admin_at(&self, rev: i64, method: Method, path: &str, body: &Value) -> Reply {
        let tag = format!("\"{rev}\"");
        self.call(
            method,
            path,
            Some(&self.admin),
            &[("if-match", &tag)],
            Some(body),
        )
        .await
    }

    pub async fn policy(&self) -> Value {
        self.admin(Method::GET, "/api/policy", None)
            .await
            .expect(200)
    }

    pub async fn revision(&self) -> i64 {
        self.policy().await["revision"].as_i64().unwrap()
    }

    /// Enrolls a client; returns (id, credential).
    pub async fn enroll_client(&self, name: &str, agent: Option<&str>) -> (String, String) {
        let body = serde_json::json!({"name": name, "agent_address": agent});
        let v = self
            .call(
                Method::POST,
                "/api/client/enroll",
                Some(&self.enroll),
                &[],
                Some(&body),
            )
            .await
            .expect(201);
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["credential"].as_str().unwrap().to_owned(),
        )
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
