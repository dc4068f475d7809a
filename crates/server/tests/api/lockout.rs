//! Rate limits with lockout (`docs/operating.md#rate-limits-and-lockout`) against a real
//! server: repeated failed logins, token uses and enrollments lock the name, id or address out
//! with 429 and `Retry-After`, the same for unknown and known names, even for the right
//! secret, each refusal audited; the lock ends after its period (the injected clock).

use cascade_client::proto::{EnrollRequest, NewToken};
use reqwest::header::{CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE};
use reqwest::Method;

use crate::harness::{json, start, start_tuned, TestServer};

/// One console login with `user` and `password`: the status and `Retry-After`, if any.
async fn login(s: &TestServer, user: &str, password: &str) -> (u16, Option<String>) {
    let page = s.http.get(format!("{}/login", s.url)).send().await.unwrap();
    let cookie = page.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = html[at..].split('"').next().unwrap().to_owned();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", csrf.as_str()),
            ("user", user),
            ("password", password),
        ])
        .finish();
    let no_redirects = cascade_client::http_builder(s.ca_pem.as_deref())
        .unwrap()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirects
        .post(format!("{}/login", s.url))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let retry = resp
        .headers()
        .get(RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), retry)
}

/// The audit records of `path` answered 429.
async fn audited_429(s: &TestServer, path: &str) -> usize {
    let log = s.api().audit().await.unwrap().entries;
    log.iter()
        .filter(|e| e.path == path && e.status == 429)
        .count()
}

// 20 wrong passwords: the first 10 are 401, the next 10 are 429 with `Retry-After`, each
// audited; the right password is refused too while the lock lasts, and taken once it is over.
// An unknown user name gets the very same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_logins_lock_the_user_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let password = s.admin_password.clone().unwrap();
    for user in ["admin", "nobody"] {
        let mut statuses = Vec::new();
        for _ in 0..20 {
            let (status, retry) = login(&s, user, "a wrong password").await;
            if status == 429 {
                assert_eq!(retry.as_deref(), Some("900"), "{user}");
            }
            statuses.push(status);
        }
        let expected: Vec<u16> = [401; 10].into_iter().chain([429; 10]).collect();
        assert_eq!(statuses, expected, "{user}");
    }
    assert_eq!(audited_429(&s, "/login").await, 20);
    // The right password, while locked: refused, audited.
    s.clock.advance(600);
    let (status, retry) = login(&s, "admin", &password).await;
    assert_eq!((status, retry.as_deref()), (429, Some("300")));
    assert_eq!(audited_429(&s, "/login").await, 21);
    // Once the lock is over, the right password logs in (303 to the console).
    s.clock.advance(301);
    assert_eq!(login(&s, "admin", &password).await.0, 303);
    // The success cleared admin's count: 9 more failures do not lock it again.
    for _ in 0..9 {
        assert_eq!(login(&s, "admin", "a wrong password").await.0, 401);
    }
    assert_eq!(login(&s, "admin", &password).await.0, 303);
}

// Wrong secrets for a token id lock that id out (the right secret too, until the period
// ends), the same for an id that does not exist; and many wrong ids from one address lock
// the address out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_secrets_lock_the_id_and_the_address_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_tuned(dir.path(), None, None, |set| {
        set.lockout.max_failures = 3;
        set.lockout.max_address_failures = 12;
        set.lockout.lockout = std::time::Duration::from_secs(60);
    })
    .await;
    let issued = s
        .api()
        .create_token(&NewToken {
            label: "second".into(),
            user: None,
            expires_in_secs: None,
        })
        .await
        .unwrap();
    let good = issued.token.clone();
    let wrong = format!("{}0", &good[..good.len() - 1]);
    let wrong = if wrong == good {
        format!("{}1", &good[..good.len() - 1])
    } else {
        wrong
    };
    let unknown = "cascade_adm_0123456789abcdef_00ff00ff";
    for token in [wrong.as_str(), unknown] {
        let statuses: Vec<u16> = {
            let mut v = Vec::new();
            for _ in 0..5 {
                v.push(
                    s.call(Method::GET, "/api/policy", Some(token), &[], None)
                        .await
                        .status
                        .as_u16(),
                );
            }
            v
        };
        assert_eq!(statuses, [401, 401, 401, 429, 429], "{token}");
    }
    let locked = s
        .call(Method::GET, "/api/policy", Some(&good), &[], None)
        .await;
    assert_eq!(locked.headers[RETRY_AFTER], "60");
    locked.expect_error(429, "auth.locked_out", "Authorization");
    assert_eq!(audited_429(&s, "/api/policy").await, 5);
    s.clock.advance(61);
    s.call(Method::GET, "/api/policy", Some(&good), &[], None)
        .await
        .expect(200);
    // 6 failures so far from 127.0.0.1; 6 more ids, once each, lock the address.
    for i in 0..6 {
        let t = format!("cascade_cli_{i:016x}_00ff");
        s.call(Method::GET, "/api/policy", Some(&t), &[], None)
            .await
            .expect(401);
    }
    s.call(
        Method::GET,
        "/api/policy",
        Some("cascade_cli_ffff_00ff"),
        &[],
        None,
    )
    .await
    .expect_error(429, "auth.locked_out", "Authorization");
}

// Wrong enrollment secrets lock the enrollment token out, audited even though the client API
// is not; the real token is refused until the period ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_enrollments_lock_the_token_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    // The enrollment token with a wrong secret (its last digit changed).
    let mut token: cascade_client::proto::EnrollmentTokenText = s.enroll.parse().unwrap();
    let secret = token.secret.clone();
    token.secret = format!("{}0", &secret[..secret.len() - 1]);
    if token.secret == secret {
        token.secret = format!("{}1", &secret[..secret.len() - 1]);
    }
    let wrong = token.to_string();
    let body = EnrollRequest {
        name: "pc-1".into(),
        domain: None,
        agent_address: None,
    };
    for _ in 0..10 {
        s.call(
            Method::POST,
            "/api/client/enroll",
            Some(&wrong),
            &[],
            json(&body),
        )
        .await
        .expect(401);
    }
    s.call(
        Method::POST,
        "/api/client/enroll",
        Some(&s.enroll),
        &[],
        json(&body),
    )
    .await
    .expect_error(429, "auth.locked_out", "Authorization");
    assert_eq!(audited_429(&s, "/api/client/enroll").await, 1);
    s.clock.advance(901);
    s.enroll_client("pc-1", None).await;
}
