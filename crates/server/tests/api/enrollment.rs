//! Enrollment tokens (several, named, expiring, limited, revocable) and agent identity
//! (`docs/operating.md#enrollment-tokens`, `docs/operating.md#agent-approval`).

use cascade_client::proto::{
    AgentDoc, Category, CheckIn, ClientView, EnrollRequest, Enrolled, NewEnrollmentToken,
    RelayReport,
};
use reqwest::Method;

use crate::harness::{json, start, Sse, TestServer};

fn enroll_body(name: &str, agent: Option<&str>) -> EnrollRequest {
    EnrollRequest {
        name: name.into(),
        domain: None,
        agent_address: agent.map(str::to_owned),
    }
}

async fn enroll_with(s: &TestServer, token: &str, name: &str) -> u16 {
    s.call(
        Method::POST,
        "/api/client/enroll",
        Some(token),
        &[],
        json(&enroll_body(name, None)),
    )
    .await
    .status
    .as_u16()
}

// Named enrollment tokens: each counts its uses up to its maximum, expires, and is
// revoked at once; the first-start token keeps working beside them.
#[tokio::test]
async fn enrollment_tokens_expire_run_out_and_are_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let api = s.api();
    let two = api
        .create_enrollment_token(&NewEnrollmentToken {
            name: "lab batch".into(),
            max_uses: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    let hour = api
        .create_enrollment_token(&NewEnrollmentToken {
            name: "this hour".into(),
            expires_in_secs: Some(3600),
            ..Default::default()
        })
        .await
        .unwrap();
    let spare = api
        .create_enrollment_token(&NewEnrollmentToken {
            name: "spare".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(enroll_with(&s, &two.token, "a").await, 201);
    assert_eq!(enroll_with(&s, &two.token, "b").await, 201);
    assert_eq!(enroll_with(&s, &two.token, "c").await, 401, "used up");
    assert_eq!(enroll_with(&s, &hour.token, "d").await, 201);
    s.clock.advance(3601);
    assert_eq!(enroll_with(&s, &hour.token, "e").await, 401, "expired");
    api.revoke_enrollment_token(&spare.info.id).await.unwrap();
    assert_eq!(enroll_with(&s, &spare.token, "f").await, 401, "revoked");
    assert_eq!(enroll_with(&s, &s.enroll, "g").await, 201);
    let listed = api.enrollment_tokens().await.unwrap().tokens;
    assert_eq!(listed.len(), 4, "{listed:?}");
    let by = |id: &str| listed.iter().find(|t| t.id == id).unwrap().clone();
    assert_eq!(by(&two.info.id).uses, 2);
    assert_eq!(by(&two.info.id).max_uses, Some(2));
    assert!(by(&spare.info.id).revoked_at.is_some());
    assert_eq!(by(&hour.info.id).expires_at, Some(1_700_000_000 + 3600));
    // Bad values are refused naming the field.
    let e = api
        .create_enrollment_token(&NewEnrollmentToken {
            name: "x".into(),
            max_uses: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.server_error().unwrap().field.as_deref(), Some("max_uses"));
    let clients = api
        .clients(&cascade_client::proto::ClientsQuery::default())
        .await
        .unwrap()
        .clients;
    assert_eq!(clients.len(), 4);
    s.stop().await;
}

// Finding 4: a client enrolling from another IP and claiming a registered agent's address
// gets neither the agent role nor a say in the relay report; it is refused the address
// once the real agent is approved, and an agent enrollment token makes an approved agent.
#[tokio::test]
async fn an_agent_address_cannot_be_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.admin(
        Method::POST,
        "/api/agents",
        json(&AgentDoc {
            address: "127.0.0.2:8443".into(),
            capabilities: Category::ALL.to_vec(),
        }),
    )
    .await
    .expect(201);

    // Unapproved, a claim is only a claim: client role, relay report ignored.
    let other_ip = cascade_client::http_builder(s.ca_pem.as_deref())
        .unwrap()
        .local_address("127.0.0.3".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let resp = other_ip
        .post(format!("{}/api/client/enroll", s.url))
        .bearer_auth(&s.enroll)
        .json(&enroll_body("x", Some("127.0.0.2:8443")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let x: Enrolled = resp.json().await.unwrap();
    let mut sse = Sse::connect(&s.http, &s.url, &x.credential).await.unwrap();
    let (event, data) = sse.next().await.unwrap();
    assert_eq!(event, "hello");
    assert_eq!(
        data["role"], "client",
        "an unapproved claim is not an agent"
    );
    let invented = CheckIn {
        agent_version: None,
        relay: Some(RelayReport {
            bytes_served: 999_999,
            ..RelayReport::default()
        }),
        ..CheckIn::default()
    };
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&x.credential),
        &[],
        json(&invented),
    )
    .await
    .expect(200);
    let view: ClientView = s
        .admin(Method::GET, &format!("/api/clients/{}", x.client_id), None)
        .await
        .typed(200);
    assert!(!view.is_agent);
    assert!(
        view.relay.is_none(),
        "an unapproved client's relay report is not kept"
    );

    // The real agent enrolls with an agent enrollment token: approved at once.
    let agent_token = s
        .api()
        .create_enrollment_token(&NewEnrollmentToken {
            name: "agents".into(),
            agent: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let real: Enrolled = s
        .call(
            Method::POST,
            "/api/client/enroll",
            Some(&agent_token.token),
            &[],
            json(&enroll_body("relay", Some("127.0.0.2:8443"))),
        )
        .await
        .typed(201);
    let mut sse = Sse::connect(&s.http, &s.url, &real.credential)
        .await
        .unwrap();
    assert_eq!(sse.next().await.unwrap().1["role"], "agent");
    let report = CheckIn {
        agent_version: None,
        relay: Some(RelayReport {
            bytes_served: 42,
            ..RelayReport::default()
        }),
        ..CheckIn::default()
    };
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&real.credential),
        &[],
        json(&report),
    )
    .await
    .expect(200);
    // Now the address is taken: another claim is refused, even with an agent token, and
    // the impostor cannot be approved there.
    for token in [&s.enroll, &agent_token.token] {
        s.call(
            Method::POST,
            "/api/client/enroll",
            Some(token),
            &[],
            json(&enroll_body("y", Some("127.0.0.2:8443"))),
        )
        .await
        .expect(409);
    }
    s.admin(
        Method::POST,
        &format!("/api/clients/{}/approve-agent", x.client_id),
        None,
    )
    .await
    .expect(409);
    s.call(
        Method::POST,
        "/api/client/checkin",
        Some(&x.credential),
        &[],
        json(&invented),
    )
    .await
    .expect(200);
    let real_view: ClientView = s
        .admin(
            Method::GET,
            &format!("/api/clients/{}", real.client_id),
            None,
        )
        .await
        .typed(200);
    assert!(real_view.is_agent);
    assert_eq!(real_view.relay.unwrap().bytes_served, 42);
    s.stop().await;
}
