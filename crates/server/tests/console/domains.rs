//! The Domains page over plain HTTP: the default and each domain with its ActiveUpdate
//! privilege control, a settings form that stores and publishes through the API's code path
//! (a refusal shown beside its field, nothing stored), and the privilege saved per domain.

use reqwest::header::{COOKIE, LOCATION};
use reqwest::Method;

use crate::forms::{get, login, post};
use crate::harness::{csrf_in, revision_in, start};

#[tokio::test]
async fn domains_page_edits_settings_and_the_privilege() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let cookie = login(&s, &s.admin).await.unwrap();

    let (status, page) = get(&s, &cookie, "/domains").await;
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/domains\""), "nav link");
    assert!(page.contains("ActiveUpdate privilege of default"), "{page}");
    assert!(page.contains("built-in"), "{page}");

    // The "another domain" form opens the settings page of a new domain.
    let r = s
        .http
        .get(format!("{}/domain-open?name=sales", s.url))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/domains/sales");
    let (status, form) = get(&s, &cookie, "/domains/sales").await;
    assert_eq!(status, 200);
    assert!(form.contains("no settings of its own"), "{form}");
    let csrf = csrf_in(&form);
    let rev = revision_in(&form);
    let fields = |interval: &'static str, windows: &'static str| {
        vec![
            ("interval_secs", interval),
            ("jitter_secs", "0"),
            ("windows", windows),
            ("min_transfer_rate", "0"),
            ("download_cap", "50000"),
            ("relay_cap_per_client", "0"),
            ("relay_cap_total", "0"),
            ("relay_cache_bytes", "1073741824"),
        ]
    };

    // Out of bounds: shown beside the field, nothing stored.
    let mut bad = fields("5", "22-6");
    bad.extend([("csrf", csrf.as_str()), ("revision", rev.as_str())]);
    let r = post(&s, &cookie, "/domains/sales", &bad).await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"interval_secs-error\""), "{body}");
    let now = s
        .api(&s.admin, Method::GET, "/api/policy/settings", None, 200)
        .await;
    assert_eq!(now["revision"].to_string(), rev);

    let mut good = fields("900", "22-6");
    good.extend([("csrf", csrf.as_str()), ("revision", rev.as_str())]);
    let r = post(&s, &cookie, "/domains/sales", &good).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let v: cascade_client::proto::DomainSettingsView = serde_json::from_value(
        s.api(
            &s.admin,
            Method::GET,
            "/api/policy/domain-settings/sales",
            None,
            200,
        )
        .await,
    )
    .unwrap();
    assert!(v.own);
    assert_eq!((v.settings.version, v.settings.interval_secs), (1, 900));
    assert_eq!(
        v.target.as_deref(),
        Some("domain-settings/sales/1/settings.json")
    );

    // The privilege of the domain: on.
    let (_, page) = get(&s, &cookie, "/domains").await;
    assert!(page.contains("v1"), "{page}");
    let rev = revision_in(&page);
    let r = post(
        &s,
        &cookie,
        "/domain-privilege",
        &[
            ("csrf", csrf.as_str()),
            ("revision", rev.as_str()),
            ("name", "sales"),
            ("privilege", "on"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let d: cascade_client::proto::DomainsResponse = serde_json::from_value(
        s.api(&s.admin, Method::GET, "/api/policy/domains", None, 200)
            .await,
    )
    .unwrap();
    assert_eq!(
        d.domains["sales"].privileges.download_from_activeupdate,
        Some(true)
    );
    assert!(!d.privileges.download_from_activeupdate);
}
