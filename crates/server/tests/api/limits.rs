//! Limits and hardening (`docs/operating.md#limits`), with real sockets: slow-header and idle
//! connections are closed after the header-read timeout, oversized bodies are 413 on every
//! route, `/repo/` never leaves its directory nor redirects protocol-relative, the data
//! directory and database are private, secrets are `no-store`, `/metrics` takes a token.

use std::time::Duration;

use reqwest::Method;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{json, raw, start, start_tuned};

/// Reads until the peer closes; `None` when it is still open after `wait` (far longer than
/// the configured timeout, so the test does not depend on timing).
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(wait, read).await.ok().map(|()| got)
}

// A connection that sends half a request line, one that sends nothing, and one that went
// quiet after a full request and answer are all closed by the server after the (short,
// test-configured) header-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.limits.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let wait = Duration::from_secs(20);

    let mut slow = s.raw_connect().await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, wait).await.is_some(),
        "a slow-header connection is still open"
    );

    let mut idle = s.raw_connect().await;
    assert!(
        closed_within(&mut idle, wait).await.is_some(),
        "an idle connection is still open"
    );

    let mut kept = s.raw_connect().await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut kept, wait)
        .await
        .expect("a kept-alive connection that went idle is still open");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // The server still answers.
    s.call(Method::GET, "/healthz", None, &[], None)
        .await
        .expect(200);
}

// A body that stops arriving is refused after the (short, test-configured) body timeout,
// and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.limits.body_timeout = Duration::from_millis(300);
    })
    .await;
    let mut slow = s.raw_connect().await;
    let head = format!(
        "PUT /api/policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         If-Match: *\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"mode\"",
        s.admin
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let answer = closed_within(&mut slow, Duration::from_secs(20))
        .await
        .expect("a slow-body connection is still open");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(s.revision().await, 1);
}

// A body over the limit is 413 with the API's error body on every route that takes one,
// declared (Content-Length) or not (chunked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.limits.max_body_bytes = 4096;
    })
    .await;
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(8000));
    let cases: [(Method, &str, &str); 6] = [
        (Method::PUT, "/api/policy", &s.admin),
        (Method::POST, "/api/sources", &s.admin),
        (Method::PATCH, "/api/policy/settings", &s.admin),
        (Method::POST, "/api/notify", &s.admin),
        (Method::POST, "/api/agents", &s.admin),
        (Method::POST, "/api/client/enroll", &s.enroll),
    ];
    for (method, path, token) in cases {
        let msg = s
            .call(
                method,
                path,
                Some(token),
                &[("if-match", "\"1\"")],
                raw(&big),
            )
            .await
            .expect_error(413, "request.too_large", "body");
        assert!(msg.contains("4096"), "{msg}");
    }
    // Chunked: no Content-Length to refuse up front; the reader stops at the limit.
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok(big[..4000].to_owned()), Ok(big[4000..].to_owned())];
    let resp = s
        .http
        .put(format!("{}/api/policy", s.url))
        .bearer_auth(&s.admin)
        .header("if-match", "\"1\"")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request.too_large", "{body}");
    // Under the limit still works.
    s.call(
        Method::POST,
        "/api/notify",
        Some(&s.admin),
        &[],
        json(&serde_json::json!({})),
    )
    .await
    .expect(200);
}

// `/repo/` answers 404 for a 256-byte segment (not 500), never redirects `//…`, and never
// follows a symbolic link, to a file or a directory.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_stays_in_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("site/metadata")).unwrap();
    std::fs::write(repo.join("site/metadata/timestamp.json"), b"{}").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), repo.join("passwd")).unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.join("out")).unwrap();
    // The operator's link of `upstream` to a directory is followed; links below it are not.
    let mirror = tempfile::tempdir().unwrap();
    std::fs::write(mirror.path().join("root.json"), b"{}").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        mirror.path().join("leak"),
    )
    .unwrap();
    std::os::unix::fs::symlink(mirror.path(), repo.join("upstream")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        repo.join("site/metadata/leak.json"),
    )
    .unwrap();
    let s = start(dir.path()).await;
    let http = cascade_client::http_builder(s.ca_pem.as_deref())
        .unwrap()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", s.url);
        async move { http.get(url).send().await.unwrap() }
    };
    for path in [
        "/repo/site/metadata/timestamp.json",
        "/repo/upstream/root.json",
    ] {
        let ok = get(path.into()).await;
        assert_eq!(ok.status(), 200, "GET {path}");
    }
    for path in [
        format!("/repo/{}", "a".repeat(256)),
        format!("/repo/site/{}/x", "b".repeat(300)),
        "/repo//site/metadata".to_owned(),
        "/repo//site/metadata/timestamp.json".to_owned(),
        "/repo/passwd".to_owned(),
        "/repo/out/secret.txt".to_owned(),
        "/repo/out/".to_owned(),
        "/repo/upstream/leak".to_owned(),
        "/repo/site/metadata/leak.json".to_owned(),
    ] {
        let resp = get(path.clone()).await;
        assert_eq!(resp.status(), 404, "GET {path}: {:?}", resp.headers());
    }
    // A directory without its slash still redirects, to a path on this server.
    let resp = get("/repo/site/metadata".into()).await;
    if let Some(loc) = resp.headers().get("location") {
        assert!(!loc.to_str().unwrap().starts_with("//"), "{loc:?}");
    }
}

// The data directory is 0700 and the database 0600, even when they were made with wider
// modes (as under umask 0).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_directory_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let s = start(&data).await;
    s.call(Method::GET, "/healthz", None, &[], None)
        .await
        .expect(200);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for f in ["cascade.db", "cascade.db-wal"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let previous = s.stop().await;
    // A database left world-readable is made private again at the next start.
    std::fs::set_permissions(
        data.join("cascade.db"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let _again = crate::harness::start_with(&data, None, Some(previous)).await;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("cascade.db")), 0o600);
}

// Answers that carry a secret (enrollment, the enrollment token, its rotation) say `no-store`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_not_stored_by_caches() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let enroll = s
        .call(
            Method::POST,
            "/api/client/enroll",
            Some(&s.enroll),
            &[],
            json(&serde_json::json!({"name": "pc-1"})),
        )
        .await;
    let rotate = s
        .admin(Method::POST, "/api/enrollment-token/rotate", None)
        .await;
    let token = s.admin(Method::GET, "/api/enrollment-token", None).await;
    for r in [enroll, rotate, token] {
        let what = r.what.clone();
        let cc = r.headers.get("cache-control").cloned();
        assert!(r.status.is_success(), "{what}: {}", r.status);
        assert_eq!(
            cc.as_ref().and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{what}"
        );
    }
}

// With a metrics token configured `/metrics` needs it; the right token is 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_behind_a_token_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.metrics_token = Some("m-secret".into());
    })
    .await;
    s.call(Method::GET, "/metrics", None, &[], None)
        .await
        .expect_error(401, "auth.unauthorized", "Authorization");
    s.call(Method::GET, "/metrics", Some("wrong"), &[], None)
        .await
        .expect_error(401, "auth.unauthorized", "Authorization");
    let text = s
        .call(Method::GET, "/metrics", Some("m-secret"), &[], None)
        .await
        .expect(200);
    assert!(text.as_str().unwrap().contains("cascade_"), "{text}");
}

// `PUT /api/policy` takes only an object: `[]` and a positional array are 400 naming the
// body, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_policy_must_be_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    for body in ["[]", r#"["customized"]"#, "null", "\"standard\""] {
        let msg = s
            .admin(Method::PUT, "/api/policy", raw(body))
            .await
            .expect_error(400, "request.json", "body");
        assert!(msg.contains("must be a JSON object"), "{body}: {msg}");
    }
    assert_eq!(s.revision().await, 1);
}

// A positional array nested where an object belongs is refused too, on `PUT /api/policy` and
// every other JSON body: 400 `request.json` naming the field, and nothing changes. (serde's
// derived structs would read `[false, false, false]` as the three fallback options.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_positional_arrays_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let cases = [
        (
            Method::PUT,
            "/api/policy",
            r#"{"fallback": [false, false, false]}"#,
            "fallback",
        ),
        (
            Method::PUT,
            "/api/policy",
            r#"{"privileges": [false]}"#,
            "privileges",
        ),
        (
            Method::PUT,
            "/api/policy",
            r#"{"mode": "customized", "agent": [["127.0.0.2:8443", []]]}"#,
            "agent[0]",
        ),
        (
            Method::PATCH,
            "/api/policy/settings",
            r#"{"fallback": [false, false, false]}"#,
            "fallback",
        ),
        (Method::PUT, "/api/policy/domains/eng", "[false]", "body"),
    ];
    for (method, path, body, field) in cases {
        let msg =
            s.admin(method.clone(), path, raw(body))
                .await
                .expect_error(400, "request.json", field);
        assert!(msg.contains("positional"), "{path} {body}: {msg}");
    }
    assert_eq!(s.revision().await, 1);
    // The same values with named fields are taken.
    s.admin(
        Method::PATCH,
        "/api/policy/settings",
        raw(r#"{"fallback": {"components_from_server": false, "domain_settings_from_server": false, "programs_from_server": false}}"#),
    )
    .await
    .expect(200);
    assert_eq!(s.revision().await, 2);
}

// Every policy write without `If-Match` is 428 naming `If-Match`, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_writes_need_if_match() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let entry = serde_json::json!({"range": "10.0.0.0/24", "url": "https://m.example/repo"});
    let cases = [
        (Method::PUT, "/api/policy", Some(serde_json::json!({}))),
        (
            Method::PATCH,
            "/api/policy/settings",
            Some(serde_json::json!({})),
        ),
        (
            Method::PUT,
            "/api/policy/domains/eng",
            Some(serde_json::json!({})),
        ),
        (Method::DELETE, "/api/policy/domains/eng", None),
        (
            Method::POST,
            "/api/agents",
            Some(serde_json::json!({"address": "127.0.0.5:8443"})),
        ),
        (Method::DELETE, "/api/agents/127.0.0.5:8443", None),
        (Method::POST, "/api/sources", Some(entry.clone())),
        (Method::PUT, "/api/sources/1", Some(entry)),
        (
            Method::POST,
            "/api/sources/delete",
            Some(serde_json::json!({"ids": [1]})),
        ),
        (
            Method::POST,
            "/api/sources/1/move",
            Some(serde_json::json!({"direction": "up"})),
        ),
    ];
    for (method, path, body) in cases {
        let body = body.as_ref().and_then(json);
        let msg = s
            .call(method, path, Some(&s.admin), &[], body)
            .await
            .expect_error(428, "request.if_match_required", "If-Match");
        assert!(msg.contains("If-Match"), "{path}: {msg}");
    }
    assert_eq!(s.revision().await, 1);
}

// Input limits: 1,025 source entries, a long URL, a long or bidi-laden domain name, a long
// client domain or version are refused naming the field, with the value cut in the message;
// nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let sources: Vec<serde_json::Value> = (0..1025)
        .map(|i| {
            serde_json::json!({
                "range": format!("10.{}.{}.0/24", i / 256, i % 256),
                "url": "https://m.example/repo"
            })
        })
        .collect();
    let policy = serde_json::json!({"mode": "customized", "sources": sources});
    let msg = s
        .admin(Method::PUT, "/api/policy", json(&policy))
        .await
        .expect_error(422, "policy.invalid", "sources");
    assert!(msg.contains("1025") && msg.contains("1024"), "{msg}");

    let long_url = format!("https://m.example/{}", "u".repeat(100_000));
    let entry = serde_json::json!({"range": "10.0.0.0/24", "url": long_url});
    let reply = s.admin(Method::POST, "/api/sources", json(&entry)).await;
    let what = reply.what.clone();
    let body = reply.expect(422);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.len() < 500, "{what}: message of {} bytes", msg.len());
    assert!(msg.contains("2048"), "{msg}");

    let bidi = "eng\u{202E}gpj";
    let reply = s
        .admin(
            Method::PUT,
            &format!("/api/policy/domains/{}", urlencode(bidi)),
            json(&serde_json::json!({})),
        )
        .await;
    let body = reply.expect(422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("U+202E"),
        "{body}"
    );
    assert_eq!(s.revision().await, 1);

    let enroll = |body: serde_json::Value| {
        let s = &s;
        async move {
            s.call(
                Method::POST,
                "/api/client/enroll",
                Some(&s.enroll),
                &[],
                json(&body),
            )
            .await
        }
    };
    enroll(serde_json::json!({"name": "pc", "domain": "d".repeat(300)}))
        .await
        .expect_error(400, "request.domain", "domain");
    let msg = enroll(serde_json::json!({"name": "pc\u{0}1"}))
        .await
        .expect_error(400, "request.name", "name");
    assert!(
        msg.contains("U+0000") && msg.contains("character 3"),
        "{msg}"
    );
    let (_, credential) = s.enroll_client("pc-1", None).await;
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&credential),
        &[],
        json(&serde_json::json!({"installed": {"programs": "9".repeat(65)}})),
    )
    .await
    .expect_error(400, "request.installed", "installed.programs");
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
