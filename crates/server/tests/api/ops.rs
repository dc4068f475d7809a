//! Repository serving, health, metrics and the OpenAPI document.

use reqwest::Method;

use crate::harness::start;

/// A file above the small-file limit and the 1 MiB streaming chunk.
const BIG: u32 = 2 * 1024 * 1024 + 300 * 1024;

// /repo serves files with Content-Length, Range, ETag and If-None-Match, and nothing outside.
#[tokio::test]
async fn repository_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let body: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(dir.path().join("repo/targets")).unwrap();
    std::fs::write(dir.path().join("repo/targets/pattern.bin"), &body).unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"no").unwrap();
    let url = format!("{}/repo/targets/pattern.bin", s.url);

    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "4096");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());

    let r = s
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());

    let r = s
        .http
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-length"], "100");
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &body[100..200]);

    let r = s.http.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "4096");

    // Changing the file changes the ETag.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.path().join("repo/targets/pattern.bin"), b"new").unwrap();
    let r = s
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"], etag.as_str());

    // A file above the small-file limit is streamed (several chunks and a partial last one)
    // with the same headers; a range of it is answered too.
    let big: Vec<u8> = (0..BIG).map(|i| (i % 241) as u8).collect();
    std::fs::write(dir.path().join("repo/targets/big.bin"), &big).unwrap();
    let big_url = format!("{}/repo/targets/big.bin", s.url);
    let r = s.http.get(&big_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], BIG.to_string().as_str());
    let big_tag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(r.bytes().await.unwrap().as_ref(), big.as_slice());
    let r = s
        .http
        .get(&big_url)
        .header("range", "bytes=2097150-2097153")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["etag"], big_tag.as_str());
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &big[2_097_150..2_097_154]
    );
    let r = s
        .http
        .get(&big_url)
        .header("if-none-match", &big_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    for bad in [
        "/repo/../secret.txt",
        "/repo/%2e%2e/secret.txt",
        "/repo/missing.bin",
    ] {
        let r = s.http.get(format!("{}{bad}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
    let metrics = s
        .call(Method::GET, "/metrics", None, &[], None)
        .await
        .expect(200);
    let text = metrics.as_str().unwrap();
    // 4096 + 100 + 4096 (HEAD announces the length) + 3 bytes + the big file once + 4.
    assert!(
        text.contains(&format!(
            "cascade_repo_bytes_total {}",
            4096 + 100 + 4096 + 3 + BIG + 4
        )),
        "{text}"
    );
    s.stop().await;
}

// A small file replaced by an atomic rename is served new at once, even when the new
// version has the same length and modification time (the memory cache checks the inode).
#[tokio::test]
async fn repository_file_replaced_by_rename() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let repo = dir.path().join("repo");
    let path = repo.join("timestamp.json");
    std::fs::write(&path, br#"{"version": 1}"#).unwrap();
    let url = format!("{}/repo/timestamp.json", s.url);
    for _ in 0..2 {
        let r = s.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.bytes().await.unwrap().as_ref(), br#"{"version": 1}"#);
    }
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let tmp = repo.join(".timestamp.json.tmp");
    std::fs::write(&tmp, br#"{"version": 2}"#).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "14");
    assert_eq!(r.bytes().await.unwrap().as_ref(), br#"{"version": 2}"#);
    // Ranges and conditional requests still work on the cached file.
    let r = s.http.get(&url).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = s
        .http
        .get(&url)
        .header("range", "bytes=-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"2}");
    let r = s
        .http
        .head(&url)
        .header("if-none-match", format!("\"other\", {etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // Removed: 404, not the cached bytes.
    std::fs::remove_file(&path).unwrap();
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    s.stop().await;
}

// /healthz answers with the revision; /metrics has clients by state and request latencies.
#[tokio::test]
async fn health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let h = s
        .call(Method::GET, "/healthz", None, &[], None)
        .await
        .expect(200);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["revision"], 1);
    s.enroll_client("pc", None).await;
    let m = s.call(Method::GET, "/metrics", None, &[], None).await;
    assert!(m.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = m.expect(200);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("cascade_clients{state=\"never\"} 1"),
        "{text}"
    );
    assert!(text.contains("cascade_clients{state=\"ok\"} 0"), "{text}");
    assert!(
        text.contains("cascade_http_request_duration_seconds_count{method=\"POST\",route=\"/api/client/enroll\",status=\"201\"} 1"),
        "{text}"
    );
}

// Every operation in the OpenAPI document exists in the router (no 404/405 from routing).
#[tokio::test]
async fn openapi_matches_router() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let doc = s
        .call(Method::GET, "/api/openapi.json", None, &[], None)
        .await
        .expect(200);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut n = 0;
    for (method, path) in cascade_server::openapi::operations() {
        n += 1;
        let path = path
            .replace("{name}", "eng")
            .replace("{address}", "10.0.0.5:8443")
            .replace("{id}", "1")
            .replace("{path}", "x");
        let r = s
            .call(
                method.to_uppercase().parse().unwrap(),
                &path,
                None,
                &[],
                None,
            )
            .await;
        let routed = r.status != 405 && !(r.status == 404 && path != "/repo/x");
        assert!(
            routed,
            "{method} {path} is in the document but not routed: {}",
            r.status
        );
    }
    assert_eq!(
        doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_object().unwrap().len())
            .sum::<usize>(),
        n
    );
}
