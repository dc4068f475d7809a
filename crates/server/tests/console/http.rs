//! Console sessions, CSRF and revision checks, spoken over plain HTTP (no browser needed).

use cascade_client::proto::{AgentDoc, Category, CheckIn, EnrollRequest, RelayReport, SourceBody};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION};
use reqwest::Method;

use crate::forms::{cookie_pair, cookies, encode, get, login, login_with, post, FORM};
use crate::harness::{csrf_in, json, revision_in, start};

// Pages need a session; only the admin token opens one, and logout ends it.
#[tokio::test]
async fn login_needs_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let r = s
        .http
        .get(format!("{}/sources", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/login");
    let page = s.http.get(format!("{}/login", s.url)).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let (status, body) = login(&s, "cascade_adm_00_11").await.unwrap_err();
    assert_eq!(status, 401);
    assert!(body.contains("not valid"), "{body}");
    let (status, body) = login(&s, &s.enroll).await.unwrap_err();
    assert_eq!(status, 403);
    assert!(body.contains("not an admin token"), "{body}");
    let cookie = login(&s, &s.admin).await.unwrap();
    let (status, page) = get(&s, &cookie, "/sources").await;
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_in(&page);
    let r = post(&s, &cookie, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 303);
    let (status, _) = get(&s, &cookie, "/sources").await;
    assert_eq!(status, 303, "the session ended");
}

// A form without the session's CSRF token changes nothing and is refused with 403.
#[tokio::test]
async fn forms_need_the_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let cookie = login(&s, &s.admin).await.unwrap();
    let (_, page) = get(&s, &cookie, "/sources/add").await;
    let rev = revision_in(&page);
    let form = [
        ("revision", rev.as_str()),
        ("range", "10.0.0.0/24"),
        ("kind", "url"),
        ("url", "http://mirror.example/repo"),
    ];
    let r = post(&s, &cookie, "/sources/add", &form).await;
    assert_eq!(r.status(), 403);
    let mut wrong = form.to_vec();
    wrong.push(("csrf", "00ff"));
    assert_eq!(
        post(&s, &cookie, "/sources/add", &wrong).await.status(),
        403
    );
    assert!(s.source_order().await.is_empty(), "nothing was added");
    let csrf = csrf_in(&page);
    let mut right = form.to_vec();
    right.push(("csrf", &csrf));
    assert_eq!(
        post(&s, &cookie, "/sources/add", &right).await.status(),
        303
    );
    assert_eq!(s.source_order().await.len(), 1);
}

// A form rendered before someone else's change is refused, says so, and keeps the input.
#[tokio::test]
async fn stale_form_is_refused_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let cookie = login(&s, &s.admin).await.unwrap();
    let (_, page) = get(&s, &cookie, "/sources/add").await;
    let (csrf, rev) = (csrf_in(&page), revision_in(&page));
    s.api(
        &s.admin,
        Method::POST,
        "/api/sources",
        json(&SourceBody {
            range: "192.168.0.0/16".into(),
            agent: None,
            url: Some("http://other.example/".into()),
        }),
        201,
    )
    .await;
    let r = post(
        &s,
        &cookie,
        "/sources/add",
        &[
            ("csrf", &csrf),
            ("revision", &rev),
            ("range", "10.9.0.0/16"),
            ("kind", "url"),
            ("url", "http://mine.example/"),
        ],
    )
    .await;
    assert_eq!(r.status(), 409);
    let body = r.text().await.unwrap();
    assert!(body.contains("changed by someone else"), "{body}");
    assert!(
        body.contains("value=\"10.9.0.0/16\""),
        "typed range kept: {body}"
    );
    let order = s.source_order().await;
    assert_eq!(order, vec![(1, "192.168.0.0/16".to_owned())]);
}

// With no reports yet the dashboard says so instead of showing numbers; what-if refuses a
// bad IP beside the field and keeps what was typed.
#[tokio::test]
async fn empty_dashboard_and_bad_whatif_ip() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let cookie = login(&s, &s.admin).await.unwrap();
    let (status, page) = get(&s, &cookie, "/").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("no bytes reported yet"), "{page}");
    assert!(page.contains("nothing to chart"), "{page}");
    assert!(!page.contains("<svg"), "{page}");
    let (status, page) = get(&s, &cookie, "/whatif?ip=10.0.0.300").await;
    assert_eq!(status, 422);
    assert!(page.contains("id=\"ip-error\""), "{page}");
    assert!(page.contains("value=\"10.0.0.300\""), "{page}");
    let (status, page) = get(&s, &cookie, "/whatif?ip=10.0.0.7").await;
    assert_eq!(status, 200);
    assert!(page.contains("mode is standard"), "{page}");
}

// The agents page shows what the agent's relay reported (clients, bytes, upstream share);
// before its first report, the figures are marked as estimated from clients' reports.
#[tokio::test]
async fn agents_page_shows_the_relay_report() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let body = AgentDoc {
        address: "10.0.0.5:8443".into(),
        capabilities: Category::ALL.to_vec(),
    };
    s.api(&s.admin, Method::POST, "/api/agents", json(&body), 201)
        .await;
    let v = s
        .api(
            &s.enroll,
            Method::POST,
            "/api/client/enroll",
            json(&EnrollRequest {
                name: "relay-1".into(),
                domain: None,
                agent_address: Some("10.0.0.5:8443".into()),
            }),
            201,
        )
        .await;
    let cred = v["credential"].as_str().unwrap().to_owned();
    // An update agent's relay report counts once an admin approves it.
    let approve = format!(
        "/api/clients/{}/approve-agent",
        v["client_id"].as_str().unwrap()
    );
    s.api(&s.admin, Method::POST, &approve, None, 200).await;
    let cookie = login(&s, &s.admin).await.unwrap();
    let (status, page) = get(&s, &cookie, "/agents").await;
    assert_eq!(status, 200);
    assert!(page.contains("(estimated)"), "{page}");

    let report = CheckIn {
        agent_version: None,
        relay: Some(RelayReport {
            since: None,
            requests: 30,
            bytes_served: 4_194_304,
            upstream_fetches: 5,
            upstream_bytes: 1_048_576,
            refused: 0,
            client_count: 17,
            clients: vec![],
        }),
        ..CheckIn::default()
    };
    s.api(
        &cred,
        Method::POST,
        "/api/client/checkin",
        json(&report),
        200,
    )
    .await;
    let (status, page) = get(&s, &cookie, "/agents").await;
    assert_eq!(status, 200);
    assert!(!page.contains("(estimated)"), "{page}");
    assert!(page.contains("<td class=\"reported\">17</td>"), "{page}");
    assert!(page.contains("5 fetches"), "{page}");
    assert!(page.contains("75 % saved"), "{page}");
}

// The clients page says why a client's last update failed, e.g. a full disk on the client
// (docs/operating.md#agent-self-repair).
#[tokio::test]
async fn clients_page_shows_the_failure_reason() {
    use cascade_client::proto::{Attempt, Outcome, UpdateReport};
    use cascade_core::report::{Failure, Reason};
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (_, cred) = s.enroll_client("pc-full").await;
    let report = CheckIn {
        agent_version: None,
        last_update: Some(UpdateReport {
            finished_at: Some(1),
            outcome: Outcome::Failed,
            attempts: vec![Attempt {
                category: None,
                step: 0,
                source: "agent".into(),
                outcome: Outcome::Failed,
                reason: Some(Reason::Failure(Failure {
                    code: "agent.disk_full".into(),
                    message: "no space left on device".into(),
                })),
                bytes: 0,
                millis: 0,
            }],
        }),
        ..CheckIn::default()
    };
    s.api(
        &cred,
        Method::POST,
        "/api/client/checkin",
        json(&report),
        200,
    )
    .await;
    let cookie = login(&s, &s.admin).await.unwrap();
    let (status, page) = get(&s, &cookie, "/clients").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<code class=\"why\">agent.disk_full: no space left on device</code>"),
        "{page}"
    );
}

// The bootstrap admin logs in by name and password; a wrong password is refused; a viewer's
// session reads pages but its forms (even Notify) are refused with 403 and change nothing.
#[tokio::test]
async fn login_by_user_name_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (status, body) = login_with(&s, &[("user", "admin"), ("password", "wrong-password")])
        .await
        .unwrap_err();
    assert_eq!(status, 401);
    assert!(body.contains("wrong password"), "{body}");
    let cookie = login_with(&s, &[("user", "admin"), ("password", &s.admin_password)])
        .await
        .unwrap();
    let (status, page) = get(&s, &cookie, "/sources").await;
    assert_eq!(status, 200, "{page}");

    let user =
        serde_json::json!({"name": "vera", "role": "viewer", "password": "vera-password-long"});
    s.api(
        &s.admin,
        Method::POST,
        "/api/users",
        Some(user.to_string()),
        201,
    )
    .await;
    let viewer = login_with(&s, &[("user", "vera"), ("password", "vera-password-long")])
        .await
        .unwrap();
    let (status, page) = get(&s, &viewer, "/sources").await;
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_in(&page);
    let rev = revision_in(&page);
    let r = post(
        &s,
        &viewer,
        "/sources/settings",
        &[("csrf", &csrf), ("revision", &rev), ("mode", "customized")],
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = post(&s, &viewer, "/notify", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 403);
    let policy = s.api(&s.admin, Method::GET, "/api/policy", None, 200).await;
    assert_eq!(policy["revision"], 1);
    // The audit page: admins only; it shows the viewer's refused forms.
    let (status, _) = get(&s, &viewer, "/audit").await;
    assert_eq!(status, 403);
    let (status, page) = get(&s, &cookie, "/audit").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("POST /notify"), "{page}");
    assert!(page.contains("user:vera"), "{page}");
}

// Limits in plain words: a 3 MB form gets the console's 413 page (not raw text or JSON); a
// 100 KB range is refused with a short message that does not echo it whole; nothing is stored.
#[tokio::test]
async fn oversized_input_gets_short_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let cookie = login(&s, &s.admin).await.unwrap();
    let (_, page) = get(&s, &cookie, "/sources/add").await;
    let csrf = csrf_in(&page);
    let rev = revision_in(&page);
    let huge = "a".repeat(3 * 1024 * 1024);
    let r = post(
        &s,
        &cookie,
        "/sources/add",
        &[("csrf", &csrf), ("revision", &rev), ("range", &huge)],
    )
    .await;
    assert_eq!(r.status(), 413);
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let body = r.text().await.unwrap();
    assert!(body.contains("The form was too large to accept"), "{body}");
    assert!(body.len() < 10_000);

    let long_range = "1".repeat(100 * 1024);
    let r = post(
        &s,
        &cookie,
        "/sources/add",
        &[
            ("csrf", &csrf),
            ("revision", &rev),
            ("range", &long_range),
            ("kind", "url"),
            ("url", "http://mirror.example/repo"),
        ],
    )
    .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let body = r.text().await.unwrap();
    let message = body
        .split("id=\"range-error\"")
        .nth(1)
        .and_then(|m| m.split("</p>").next())
        .unwrap_or_else(|| panic!("a message beside the range: {body}"));
    assert!(message.len() < 1000, "{message}");
    assert!(s.source_order().await.is_empty(), "nothing stored");

    // The API still answers its own JSON error.
    let r = s
        .http
        .post(format!("{}/api/sources", s.url))
        .bearer_auth(&s.admin)
        .header(CONTENT_TYPE, "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().contains("json"));
}

// After login the console goes back to the page that was asked for, not the dashboard;
// never to another site.
#[tokio::test]
async fn login_returns_to_the_page_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let r = s
        .http
        .get(format!("{}/clients?show=failed", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let next = cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("cascade_next="))
        .expect("the page asked for is remembered");
    let page = s.http.get(format!("{}/login", s.url)).send().await.unwrap();
    let login_cookie = cookie_pair(&cookies(&page)[0]);
    let csrf = csrf_in(&page.text().await.unwrap());
    let resp = s
        .http
        .post(format!("{}/login", s.url))
        .header(COOKIE, format!("{login_cookie}; {}", cookie_pair(&next)))
        .header(CONTENT_TYPE, FORM)
        .body(encode(&[
            ("csrf", csrf.as_str()),
            ("token", s.admin.as_str()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/clients?show=failed");
    // A forged cookie naming another site lands on the dashboard.
    let page = s.http.get(format!("{}/login", s.url)).send().await.unwrap();
    let login_cookie = cookie_pair(&cookies(&page)[0]);
    let csrf = csrf_in(&page.text().await.unwrap());
    let resp = s
        .http
        .post(format!("{}/login", s.url))
        .header(
            COOKIE,
            format!("{login_cookie}; cascade_next=//evil.example/"),
        )
        .header(CONTENT_TYPE, FORM)
        .body(encode(&[
            ("csrf", csrf.as_str()),
            ("token", s.admin.as_str()),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()[LOCATION], "/");
}

// The clients list pages, searches, filters, sorts and exports: 60 clients, 50 a page; a
// search by name and by IP; an IP-range filter; newest check-in first; and the CSV holds
// every match, with a name that looks like a formula made harmless.
#[tokio::test]
async fn clients_list_search_filter_sort_page_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    for i in 0..60 {
        let name = if i == 7 {
            "=HYPERLINK(1)".to_owned()
        } else {
            format!("pc-{i:02}")
        };
        let (_, cred) = s.enroll_client(&name).await;
        let body = CheckIn {
            ip: Some(format!("10.0.{}.{}", i / 30, i % 30 + 1)),
            ..CheckIn::default()
        };
        s.api(&cred, Method::POST, "/api/client/checkin", json(&body), 200)
            .await;
    }
    let cookie = login(&s, &s.admin).await.unwrap();
    let (status, page) = get(&s, &cookie, "/clients").await;
    assert_eq!(status, 200);
    assert!(page.contains("Clients 1–50 of 60"), "{page}");
    assert!(page.contains("Page 1 of 2"), "{page}");
    let (_, page) = get(&s, &cookie, "/clients?page=2").await;
    assert!(page.contains("Clients 51–60 of 60"), "{page}");
    let (_, page) = get(&s, &cookie, "/clients?q=pc-1").await;
    assert!(page.contains("of 10 matching"), "{page}");
    let (_, page) = get(&s, &cookie, "/clients?q=10.0.1.").await;
    assert!(page.contains("of 30 matching"), "{page}");
    let (_, page) = get(&s, &cookie, "/clients?range=10.0.0.1-10.0.0.5").await;
    assert!(page.contains("Clients 1–5 of 5 matching"), "{page}");
    let (_, page) = get(&s, &cookie, "/clients?sort=name&order=desc").await;
    let first = page.find("pc-59").unwrap();
    let second = page.find("pc-58").unwrap();
    assert!(first < second, "descending by name");
    // A bad range is refused beside its field, cut short.
    let (status, page) = get(&s, &cookie, &format!("/clients?range={}", "9".repeat(500))).await;
    assert_eq!(status, 400);
    assert!(page.contains("at most 200 characters"), "{page}");
    assert!(
        !page.contains(&"9".repeat(300)),
        "the value is not echoed whole"
    );
    // CSV: a header and 60 rows; the formula-like name is prefixed with '.
    let r = s
        .http
        .get(format!("{}/clients.csv", s.url))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 61, "{csv}");
    assert!(csv.starts_with("name,id,ip,domain,components,"), "{csv}");
    assert!(csv.contains("\n'=HYPERLINK(1),"), "{csv}");
    let r = s
        .http
        .get(format!("{}/clients.csv?q=pc-0", s.url))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap().lines().count(),
        10,
        "pc-00…pc-09 without pc-07's name"
    );
}
