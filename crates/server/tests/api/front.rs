//! The connection front (`docs/architecture.md#serving-the-repository`): whole repository
//! files answered without the router (sendfile on plain HTTP), kept-alive and pipelined
//! requests, the hand-over to the router mid-connection, and event streams written by the
//! front, over plain HTTP and TLS, with real sockets.

use std::collections::HashMap;
use std::time::Duration;

use cascade_client::proto::NotifyRequest;
use reqwest::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::harness::{json, start, start_tuned, Sse};

/// One response read off a raw connection: status, headers (lower-case names), body.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// Reads one response; `pending` keeps bytes read past it (pipelined answers).
pub(crate) async fn answer(
    io: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
    head_request: bool,
) -> Answer {
    let end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut b = vec![0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(20), io.read(&mut b))
            .await
            .expect("an answer within 20 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole head: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8(pending.drain(..end).collect()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = if head_request || status == 304 {
        0
    } else {
        headers["content-length"].parse().unwrap()
    };
    while pending.len() < len {
        let mut b = vec![0u8; 1 << 20];
        let n = tokio::time::timeout(Duration::from_secs(20), io.read(&mut b))
            .await
            .expect("the body within 20 s")
            .unwrap();
        assert!(n > 0, "closed before the whole body");
        pending.extend_from_slice(&b[..n]);
    }
    let body = pending.drain(..len).collect();
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

// On plain HTTP: pipelined GET and HEAD of a small file, a large file (sendfile) byte for
// byte, 304 on a matching If-None-Match, a Range still answered 206 by the router, and a
// request for another route on the same kept-alive connection handed to the router; every
// repository answer counted in /metrics.
#[tokio::test]
async fn plain_http_whole_files_keep_alive_and_hand_over() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.tls = cascade_server::TlsMode::InsecurePlainHttp;
    })
    .await;
    let repo = s.data_dir.join("repo");
    std::fs::create_dir_all(repo.join("t")).unwrap();
    let small = random_bytes(4096);
    let large = random_bytes(3 * 1024 * 1024 + 17);
    std::fs::write(repo.join("t/small.json"), &small).unwrap();
    std::fs::write(repo.join("t/large.bin"), &large).unwrap();

    let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let mut pending = Vec::new();
    tcp.write_all(
        b"GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /repo/t/small.json?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let got = answer(&mut tcp, &mut pending, false).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, small);
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.headers["content-length"], "4096");
    assert_eq!(got.headers["accept-ranges"], "bytes");
    let etag = got.headers["etag"].clone();
    assert!(etag.starts_with('"') && etag.ends_with("-1000\""), "{etag}");
    let head = answer(&mut tcp, &mut pending, true).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-length"], "4096");
    assert_eq!(head.headers["etag"], etag);

    // 304, then the large file, then a route of the router on the same connection.
    tcp.write_all(
        format!(
            "GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/\"zz\", {etag}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let not_modified = answer(&mut tcp, &mut pending, false).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.headers["etag"], etag);
    tcp.write_all(b"GET /repo/t/large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = answer(&mut tcp, &mut pending, false).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-type"], "application/octet-stream");
    assert_eq!(got.body.len(), large.len());
    assert!(got.body == large, "the large file's bytes differ");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let health = answer(&mut tcp, &mut pending, false).await;
    assert_eq!(
        health.status,
        200,
        "{}",
        String::from_utf8_lossy(&health.body)
    );
    // After the hand-over the router answers repository requests too, the same way.
    tcp.write_all(b"GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let again = answer(&mut tcp, &mut pending, false).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, small);
    assert_eq!(again.headers["etag"], etag);

    // A Range goes to the router: 206 with the same ETag.
    let resp = s
        .http
        .get(format!("{}/repo/t/large.bin", s.url))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["etag"].to_str().unwrap(),
        etag_of(&repo.join("t/large.bin"))
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &large[10..20]);

    // `Connection: close` is honoured: the answer says so and the connection ends.
    let mut once = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    once.write_all(b"GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut leftover = Vec::new();
    let got = answer(&mut once, &mut leftover, false).await;
    assert_eq!(got.headers["connection"], "close");
    let mut tail = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), once.read_to_end(&mut tail))
        .await
        .expect("closed after the answer")
        .unwrap();
    assert_eq!(n, 0);

    let metrics = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    let responses: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cascade_repo_responses_total "))
        .unwrap()
        .parse()
        .unwrap();
    // small, HEAD, 304, large, small (routed), the range, the closed one.
    assert_eq!(responses, 7, "{text}");
    let bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("cascade_repo_bytes_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(bytes, 4096 * 4 + large.len() as u64 + 10);
}

fn etag_of(path: &std::path::Path) -> String {
    let meta = std::fs::metadata(path).unwrap();
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!(
        "\"{:x}.{:x}-{:x}\"",
        mtime.as_secs(),
        mtime.subsec_nanos(),
        meta.len()
    )
}

// Over TLS: a large file (read in user space) arrives whole; an event stream written by the
// front gets its hello and the notify; a stream refused (bad credential) gets the router's
// 401 with its JSON body.
#[tokio::test]
async fn tls_large_file_and_event_stream() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let repo = s.data_dir.join("repo");
    let large = random_bytes(2 * 1024 * 1024 + 3);
    std::fs::write(repo.join("large.bin"), &large).unwrap();
    let resp = s
        .http
        .get(format!("{}/repo/large.bin", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().as_ref() == large.as_slice());

    let (_, credential) = s.enroll_client("pc-1", None).await;
    let mut sse = Sse::connect(&s.http, &s.url, &credential).await.unwrap();
    let (event, data) = sse.next().await.unwrap();
    assert_eq!(event, "hello");
    assert_eq!(data["role"], "client");
    s.admin(Method::POST, "/api/notify", json(&NotifyRequest::default()))
        .await
        .expect(200);
    let (event, _) = tokio::time::timeout(Duration::from_secs(20), sse.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event, "notify");

    let refused = s
        .http
        .get(format!("{}/api/client/events", s.url))
        .header("authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "auth.unauthorized", "{body}");
}

/// Reads from `io` until `pending` holds `needle`; what was read stays in `pending`.
pub(crate) async fn read_until(
    io: &mut (impl AsyncRead + Unpin),
    pending: &mut Vec<u8>,
    needle: &[u8],
) {
    while !pending.windows(needle.len()).any(|w| w == needle) {
        let mut b = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), io.read(&mut b))
            .await
            .expect("the event within 20 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before {:?}: {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&b[..n]);
    }
}

// The same stream, held by the front (HTTP/1.1: one chunk per event) and served by hyper (a
// connection the front hands over, HTTP/1.0 here): the `hello`, then the `notify` with its
// id, byte for byte in the event-stream format; the front's stream ends with the last chunk
// when the client is deleted.
#[tokio::test]
async fn event_stream_held_by_the_front_and_by_hyper() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.tls = cascade_server::TlsMode::InsecurePlainHttp;
    })
    .await;
    let (id, credential) = s.enroll_client("pc-1", None).await;
    let mut streams = Vec::new();
    for version in ["1.1", "1.0"] {
        let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        let req = format!(
            "GET /api/client/events HTTP/{version}\r\nHost: x\r\n\
             Authorization: Bearer {credential}\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut pending = Vec::new();
        read_until(&mut tcp, &mut pending, b"event: hello\ndata: {").await;
        read_until(&mut tcp, &mut pending, b"}\n\n").await;
        let head = String::from_utf8_lossy(&pending).to_ascii_lowercase();
        assert!(head.starts_with(&format!("http/{version} 200")), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("cache-control: no-cache"), "{head}");
        if version == "1.1" {
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
        }
        assert!(head.contains(&format!("\"client_id\":\"{id}\"")), "{head}");
        streams.push((tcp, pending));
    }
    let sent = s
        .admin(Method::POST, "/api/notify", json(&NotifyRequest::default()))
        .await
        .expect(200);
    let notice = sent["id"].as_i64().expect("the notice's id");
    for (tcp, pending) in &mut streams {
        pending.clear();
        let event = format!("event: notify\nid: {notice}\ndata: {{");
        read_until(tcp, pending, event.as_bytes()).await;
        read_until(tcp, pending, b"}\n\n").await;
    }
    // The front's stream: one chunk per event, the stream's end the last chunk.
    let (tcp, pending) = &mut streams[0];
    let text = String::from_utf8_lossy(pending).into_owned();
    let at = text.find("event: notify").unwrap();
    let size = text[..at]
        .trim_end_matches("\r\n")
        .rsplit("\r\n")
        .next()
        .unwrap();
    let chunk_len = usize::from_str_radix(size, 16).unwrap();
    let event_len = text[at..].find("}\n\n").unwrap() + 3;
    assert_eq!(event_len, chunk_len, "{text}");
    pending.clear();
    s.admin(Method::DELETE, &format!("/api/clients/{id}"), None)
        .await
        .expect(200);
    read_until(tcp, pending, b"0\r\n\r\n").await;
}

// On a multi-threaded runtime, a kept-alive connection answered by the front again and
// again, its requests spread over longer than the header-read timeout, gets every answer
// (the timeout counts from each new head, not from the first) and is closed once it goes
// quiet for longer than the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn front_header_timeout_restarts_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.tls = cascade_server::TlsMode::InsecurePlainHttp;
        st.limits.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let repo = s.data_dir.join("repo");
    std::fs::create_dir_all(repo.join("t")).unwrap();
    let small = random_bytes(4096);
    std::fs::write(repo.join("t/small.json"), &small).unwrap();

    let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let mut pending = Vec::new();
    for _ in 0..5 {
        tcp.write_all(b"GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = answer(&mut tcp, &mut pending, false).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, small);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut tail = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut tail))
        .await
        .expect("an idle connection is closed")
        .unwrap();
    assert_eq!(n, 0);
}

// A kept-alive connection waiting for its next head after answers from the front is closed
// when the server stops (the header-read timeout is far away), and the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn front_connections_end_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |st| {
        st.tls = cascade_server::TlsMode::InsecurePlainHttp;
        st.limits.header_read_timeout = Duration::from_secs(600);
    })
    .await;
    let repo = s.data_dir.join("repo");
    std::fs::create_dir_all(repo.join("t")).unwrap();
    let small = random_bytes(4096);
    std::fs::write(repo.join("t/small.json"), &small).unwrap();

    let mut conns = Vec::new();
    for _ in 0..8 {
        let mut tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        let mut pending = Vec::new();
        for _ in 0..3 {
            tcp.write_all(b"GET /repo/t/small.json HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let got = answer(&mut tcp, &mut pending, false).await;
            assert_eq!(got.status, 200);
        }
        conns.push(tcp);
    }
    let stopped = tokio::spawn(s.stop());
    for mut tcp in conns {
        let mut tail = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut tail))
            .await
            .expect("closed when the server stops")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    stopped.await.unwrap();
}
