//! The API's operations driven against a real server, each with a body of its request type,
//! its answer checked to be exactly its response type.

use cascade_proto as p;
use reqwest::Method;

use super::row::{exact, Answer, Row, Who};
use super::table::table;
use crate::harness::{json, start, Sse, TestServer};

async fn drive(s: &TestServer, r: &Row, client: &mut Option<(String, String)>) {
    let path = match client {
        Some((id, _)) => r.drive.replace("CLIENT", id),
        None => r.drive.to_owned(),
    };
    let token = match r.who {
        Who::Anyone => None,
        Who::Admin => Some(s.admin.clone()),
        Who::Enroll => Some(s.enroll.clone()),
        Who::Client => client.as_ref().map(|c| c.1.clone()),
    };
    let what = format!("{} {path}", r.method);
    if r.path == "/api/client/events" {
        let mut sse = Sse::connect(&s.http, &s.url, token.as_deref().unwrap())
            .await
            .unwrap();
        let (event, data) = sse.next().await.unwrap();
        assert_eq!(event, "hello");
        let Answer::Json(_, round_trip) = &r.answer else {
            unreachable!()
        };
        assert_eq!(round_trip(&data).unwrap(), data, "{what}: hello");
        assert_eq!(exact::<p::Hello>(&data).unwrap(), data, "{what}: hello");
        return;
    }
    let method: Method = r.method.to_uppercase().parse().unwrap();
    // Admin writes are sent at the current revision (policy writes need `If-Match`).
    let tag = if r.who == Who::Admin && method != Method::GET {
        Some(format!("\"{}\"", s.revision().await))
    } else {
        None
    };
    let headers: Vec<(&str, &str)> = tag.iter().map(|t| ("if-match", t.as_str())).collect();
    let reply = s
        .call(
            method,
            &path,
            token.as_deref(),
            &headers,
            r.request.as_ref().and_then(|b| json(&b.1)),
        )
        .await;
    let got = reply.expect(r.expect);
    if r.expect >= 400 && r.path != "/repo/{path}" {
        assert_eq!(
            exact::<p::ErrorBody>(&got).unwrap(),
            got,
            "{what}: error body"
        );
        return;
    }
    if let Answer::Json(n, round_trip) = &r.answer {
        let typed = round_trip(&got).unwrap_or_else(|e| panic!("{what}: not a {n}: {e}\n{got}"));
        assert_eq!(typed, got, "{what}: the answer is not exactly a {n}");
    }
    if r.path == "/api/client/enroll" {
        *client = Some((
            got["client_id"].as_str().unwrap().to_owned(),
            got["credential"].as_str().unwrap().to_owned(),
        ));
    }
}

// Each operation, called with a body of its request type, answers with exactly its
// response type.
#[tokio::test]
async fn each_operation_speaks_its_types() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let mut client = None;
    for r in table() {
        drive(&s, &r, &mut client).await;
    }
}
