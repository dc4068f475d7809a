//! The Programs page in a real headless chromium (`docs/operating.md#rollouts`): published
//! builds with the hotfix flag, a rollout's rings and counts, and halt, promote and roll back
//! by its buttons, each asking first (a dismissed dialog changes nothing).

use cascade_client::proto::{NewRollout, RingSpec, RolloutView};
use reqwest::Method;

use crate::harness::{json, start, TestServer};
use crate::webdriver::Browser;

async fn upload(s: &TestServer, version: &str, hotfix: bool) {
    let resp = s
        .http
        .post(format!(
            "{}/api/programs/app/{version}?file=app.bin&hotfix={hotfix}",
            s.url
        ))
        .bearer_auth(&s.admin)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(format!("build {version}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "{}",
        resp.text().await.unwrap()
    );
}

async fn state(s: &TestServer) -> String {
    let v = s
        .api(&s.admin, Method::GET, "/api/rollouts/1", None, 200)
        .await;
    let v: RolloutView = serde_json::from_value(v).unwrap();
    format!("{} {}", v.state, v.ring)
}

#[tokio::test]
#[ignore = "needs chromium and chromium-driver: scripts/browser-tests installs them and runs this"]
async fn programs_page_shows_rings_and_acts_on_a_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let Some(b) = Browser::start(&s.ca_spki_sha256).await else {
        return;
    };
    let at = |path: &str| format!("{}{path}", s.url);
    upload(&s, "1", false).await;
    s.enroll_client("pc-1").await;
    s.api(
        &s.admin,
        Method::POST,
        "/api/rollouts",
        json(&NewRollout {
            program: "app".into(),
            version: "2".into(),
            previous_version: None,
            rings: vec![
                RingSpec {
                    name: "canary".into(),
                    clients: vec!["pc-1".into()],
                    soak_secs: 3600,
                    ..RingSpec::default()
                },
                RingSpec {
                    name: "everyone".into(),
                    percent: Some(100.0),
                    soak_secs: 3600,
                    ..RingSpec::default()
                },
            ],
        }),
        201,
    )
    .await;
    upload(&s, "2", true).await;

    b.goto(&at("/login")).await;
    b.fill("#token", &s.admin).await;
    b.click("form button[type=submit]").await;
    b.wait_url(&at("/")).await;
    b.click("nav a[href='/programs']").await;
    b.wait_url(&at("/programs")).await;
    let builds = b.wait_text("#builds-table", "hotfix").await;
    assert!(builds.contains("app"), "{builds}");
    let rollout = b.text("#rollout-1").await;
    for want in [
        "app 2",
        "rolling",
        "canary",
        "everyone",
        "clients pc-1",
        "100 % of the fleet",
        "others keep 1",
    ] {
        assert!(rollout.contains(want), "{want} in {rollout}");
    }
    b.screenshot("programs-rolling").await;

    // Halt asks first: cancelled, nothing changes.
    b.click("#halt-1").await;
    assert!(b.dismiss_dialog().await.contains("Halt rollout 1"));
    assert_eq!(state(&s).await, "rolling 1");
    b.click("#halt-1").await;
    b.accept_dialog().await;
    b.wait_text("#flash", "halted, ring 1 of 2").await;
    assert_eq!(state(&s).await, "halted 1");

    // Promote resumes it in ring 2.
    b.click("#promote-1").await;
    assert!(b.accept_dialog().await.contains("next ring"));
    b.wait_text("#flash", "rolling, ring 2 of 2").await;
    assert_eq!(state(&s).await, "rolling 2");

    // Roll back: everyone goes back to 1; no more buttons but none that makes sense.
    b.click("#rollback-1").await;
    assert!(b.accept_dialog().await.contains("back to app 1"));
    b.wait_text("#flash", "rolled_back").await;
    assert_eq!(state(&s).await, "rolled_back 2");
    b.wait_text("#rollout-1", "rolled back").await;
    b.screenshot("programs-rolled-back").await;
    b.quit().await;
}
