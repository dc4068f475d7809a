//! The console tests' harness: the real server on 127.0.0.1:0 (the minimum of the API
//! tests' harness), an HTTP client that keeps the console's cookies by hand, and a tiny SSE
//! reader for the notify check.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_client::proto::EnrollRequest;
use cascade_server::{Clock, FirstStart, HashCost, Server, Settings};
use futures::StreamExt;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

/// A fixed clock.
#[derive(Debug, Default)]
pub struct FixedClock(pub AtomicI64);

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct TestServer {
    pub url: String,
    pub admin: String,
    pub enroll: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn start(data_dir: &Path) -> TestServer {
    let mut s = Settings::new(data_dir);
    s.clock = Arc::new(FixedClock(AtomicI64::new(1_700_000_000)));
    s.hash_cost = HashCost {
        memory_kib: 64,
        iterations: 1,
    };
    s.agent_head_start = Duration::from_millis(100);
    let seen: Arc<Mutex<Option<FirstStart>>> = Arc::default();
    let slot = seen.clone();
    s.on_first_start = Arc::new(move |f: &FirstStart| *slot.lock().unwrap() = Some(f.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = Server::open(s).await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..200 {
        let up = http.get(format!("{url}/healthz")).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = seen.lock().unwrap().clone().expect("first-start tokens");
    TestServer {
        url,
        admin: first.admin_token,
        enroll: first.enrollment_token,
        http,
        stop: Some(tx),
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

/// A minimal SSE reader over a streaming response.
pub struct Sse {
    stream: futures::stream::BoxStream<'static, Option<Vec<u8>>>,
    buf: String,
}

impl Sse {
    pub async fn connect(server: &TestServer, credential: &str) -> Sse {
        let resp = server
            .http
            .get(format!("{}/api/client/events", server.url))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        Sse {
            stream: resp
                .bytes_stream()
                .map(|r| r.ok().map(|b| b.to_vec()))
                .boxed(),
            buf: String::new(),
        }
    }

    /// The next event: (event name, data JSON).
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            while let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        v.trim().clone_into(&mut event);
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Some((event, serde_json::from_str(&data).unwrap()));
                }
            }
            let chunk = self.stream.next().await??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
