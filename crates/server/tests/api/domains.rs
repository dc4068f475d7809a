//! Domain settings over the API: stored at the next version (If-Match, audited), refused with
//! the field and value when out of bounds (nothing stored), and published as signed
//! `domain-settings/NAME/VERSION/settings.json` targets in the server's site repository,
//! also after a whole-policy import.

use cascade_client::proto as p;
use reqwest::Method;
use serde_json::Value;

use crate::harness::*;

/// The targets the site repository serves now, followed from `timestamp.json` over HTTP.
async fn served_targets(s: &TestServer) -> Value {
    let get = |path: String| {
        let http = s.http.clone();
        let url = format!("{}/repo/site/metadata/{path}", s.url);
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let ts = get("timestamp.json".into()).await;
    let snap_v = ts["signed"]["meta"]["snapshot.json"]["version"]
        .as_u64()
        .unwrap();
    let snap = get(format!("{snap_v}.snapshot.json")).await;
    let t_v = snap["signed"]["meta"]["targets.json"]["version"]
        .as_u64()
        .unwrap();
    get(format!("{t_v}.targets.json")).await["signed"]["targets"].clone()
}

/// The published document of `target`, read from the site repository's served tree.
async fn published(s: &TestServer, target: &str) -> p::PublishedSettings {
    let targets = served_targets(s).await;
    let sha = targets[target]["hashes"]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let (dir, file) = target.rsplit_once('/').unwrap();
    let url = format!("{}/repo/site/targets/{dir}/{sha}.{file}", s.url);
    let r = s.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{target}");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_versioned_validated_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;

    // Never set: version 0, nothing published; any domain shows the default's.
    let v: p::DomainSettingsView = s
        .admin(Method::GET, "/api/policy/domain-settings/sales", None)
        .await
        .typed(200);
    assert_eq!((v.own, v.settings.version, v.target), (false, 0, None));

    let hourly = p::DomainSettings {
        interval_secs: 900,
        jitter_secs: 30,
        windows: vec![p::UpdateWindow {
            from_hour: 22,
            to_hour: 6,
        }],
        download_cap: 1_000_000,
        ..p::DomainSettings::default()
    };
    let v: p::DomainSettingsView = s
        .admin(
            Method::PUT,
            "/api/policy/domain-settings/default",
            json(&hourly),
        )
        .await
        .typed(200);
    assert_eq!(v.settings.version, 1);
    assert_eq!(
        v.target.as_deref(),
        Some("domain-settings/default/1/settings.json")
    );
    let doc = published(&s, "domain-settings/default/1/settings.json").await;
    assert_eq!(doc.domain, "default");
    assert_eq!(
        doc.settings,
        p::DomainSettings {
            version: 1,
            ..hourly.clone()
        }
    );

    // A domain's own document, versioned on its own; the default is untouched.
    let own = p::DomainSettings {
        interval_secs: 60,
        jitter_secs: 0,
        ..p::DomainSettings::default()
    };
    for want in [1, 2] {
        let v: p::DomainSettingsView = s
            .admin(Method::PUT, "/api/policy/domain-settings/sales", json(&own))
            .await
            .typed(200);
        assert!(v.own);
        assert_eq!(v.settings.version, want);
        let target = format!("domain-settings/sales/{want}/settings.json");
        assert_eq!(v.target.as_deref(), Some(target.as_str()));
        assert_eq!(published(&s, &target).await.settings.interval_secs, 60);
    }
    let list: p::DomainSettingsList = s
        .admin(Method::GET, "/api/policy/domain-settings", None)
        .await
        .typed(200);
    assert_eq!(list.default.version, 1);
    assert_eq!(list.domains["sales"].settings.as_ref().unwrap().version, 2);
    assert!(!list.domains["sales"].effective.download_from_activeupdate);

    // Out of bounds: 422 naming the field and the value; nothing stored or published.
    let rev = s.revision().await;
    let bad = p::DomainSettings {
        jitter_secs: 5000,
        interval_secs: 600,
        ..p::DomainSettings::default()
    };
    let msg = s
        .admin(Method::PUT, "/api/policy/domain-settings/sales", json(&bad))
        .await
        .expect_error(422, "policy.invalid", "domains.sales.settings.jitter_secs");
    assert!(msg.contains("5000"), "{msg}");
    let bad = p::DomainSettings {
        windows: vec![
            p::UpdateWindow {
                from_hour: 1,
                to_hour: 3,
            },
            p::UpdateWindow {
                from_hour: 4,
                to_hour: 25,
            },
        ],
        ..p::DomainSettings::default()
    };
    s.admin(
        Method::PUT,
        "/api/policy/domain-settings/default",
        json(&bad),
    )
    .await
    .expect_error(422, "policy.invalid", "settings.windows[2].to_hour");
    s.admin(
        Method::PUT,
        "/api/policy/domain-settings/bad%20name",
        json(&own),
    )
    .await
    .expect_error(422, "policy.invalid", "domains.bad name.settings");
    assert_eq!(s.revision().await, rev);
    assert!(served_targets(&s)
        .await
        .get("domain-settings/sales/3/settings.json")
        .is_none());

    // If-Match like every policy write.
    s.call(
        Method::PUT,
        "/api/policy/domain-settings/sales",
        Some(&s.admin),
        &[],
        json(&own),
    )
    .await
    .expect_error(428, "request.if_match_required", "If-Match");

    // Audited.
    let audit = s.admin(Method::GET, "/api/audit", None).await.expect(200);
    assert!(
        audit
            .to_string()
            .contains("/api/policy/domain-settings/sales"),
        "{audit}"
    );

    // Privilege edits keep the domain's settings.
    s.admin(
        Method::PUT,
        "/api/policy/domains/sales",
        json(&p::PrivilegeOverrides {
            download_from_activeupdate: Some(true),
        }),
    )
    .await
    .expect(200);
    let v: p::DomainSettingsView = s
        .admin(Method::GET, "/api/policy/domain-settings/sales", None)
        .await
        .typed(200);
    assert_eq!((v.own, v.settings.version), (true, 2));
}

// A whole-policy import carrying a changed document publishes it at a new version, so agents
// that have the older one take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_import_publishes_changed_settings() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let doc = p::DomainSettings {
        interval_secs: 120,
        jitter_secs: 0,
        ..p::DomainSettings::default()
    };
    s.admin(Method::PUT, "/api/policy/domain-settings/lab", json(&doc))
        .await
        .expect(200);
    let mut policy: p::PolicyDoc =
        serde_json::from_value(s.policy().await["policy"].clone()).unwrap();
    policy.domains.get_mut("lab").unwrap().settings = Some(p::DomainSettings {
        interval_secs: 300,
        ..doc
    });
    s.admin(Method::PUT, "/api/policy", json(&policy))
        .await
        .expect(200);
    let v: p::DomainSettingsView = s
        .admin(Method::GET, "/api/policy/domain-settings/lab", None)
        .await
        .typed(200);
    assert_eq!(v.settings.version, 2);
    assert_eq!(
        published(&s, "domain-settings/lab/2/settings.json")
            .await
            .settings
            .interval_secs,
        300
    );
}
