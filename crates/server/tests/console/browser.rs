//! The admin's journey through the console in a real headless chromium.

use std::time::Duration;

use cascade_client::proto::{AgentsResponse, Attempt, Category, CheckIn, Outcome, UpdateReport};
use reqwest::Method;

use crate::harness::{json, start, Sse};
use crate::webdriver::Browser;

// Log in, register an agent, add two entries, edit one via its IP-range link, move one up,
// delete one, check the API's order, notify a connected client, refuse a bad range, and
// visit every page (screenshots in target/screenshots/).
#[tokio::test]
#[ignore = "needs chromium and chromium-driver: scripts/browser-tests installs them and runs this"]
async fn admin_journey_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let Some(b) = Browser::start(&s.ca_spki_sha256).await else {
        return;
    };
    let at = |path: &str| format!("{}{path}", s.url);

    // Login: pages redirect there; a wrong token is refused beside the field.
    b.goto(&at("/sources")).await;
    assert!(b.url().await.ends_with("/login"), "{}", b.url().await);
    b.fill("#token", "cascade_adm_00_11").await;
    b.click("form button[type=submit]").await;
    b.wait_text("#token-error", "not valid").await;
    b.screenshot("01-login").await;
    b.fill("#token", &s.admin).await;
    b.click("form button[type=submit]").await;
    // Back to the page asked for before login.
    b.wait_url(&at("/sources")).await;

    // Register an update agent.
    b.goto(&at("/agents")).await;
    b.fill("#address", "10.0.0.5:8443").await;
    b.click("#add-agent button[type=submit]").await;
    b.wait_text("#flash", "Registered update agent").await;

    // Customized mode, then two entries: an agent and a URL.
    b.goto(&at("/sources")).await;
    assert_eq!(
        b.execute("return typeof htmx === 'object' && !!document.querySelector('main[hx-boost]')")
            .await,
        true,
        "the vendored htmx loads from the server and boosts the page"
    );
    b.execute("window.__sameDocument = true; return null").await;
    b.click("input[name=mode][value=customized]").await;
    b.click("#save-mode").await;
    b.wait_text("#flash", "Settings saved").await;
    // A bad upstream URL is refused beside its field; the options typed stay as typed.
    b.click("input[name=programs_from_server]").await;
    b.fill("#activeupdate_url", "ftp://updates.example.net/repo")
        .await;
    b.click("#save-settings").await;
    b.wait_text("#activeupdate_url-error", "ftp://updates.example.net/repo")
        .await;
    assert_eq!(
        b.property("input[name=programs_from_server]", "checked")
            .await,
        false
    );
    assert_eq!(
        b.property("input[name=mode][value=customized]", "checked")
            .await,
        true,
        "the mode saved before is still shown"
    );
    b.fill("#activeupdate_url", "https://updates.example.net/repo")
        .await;
    b.click("#save-settings").await;
    b.wait_text("#flash", "Settings saved").await;
    let settings = s
        .api(&s.admin, Method::GET, "/api/policy/settings", None, 200)
        .await;
    assert_eq!(settings["mode"], "customized");
    assert_eq!(settings["fallback"]["programs_from_server"], false);
    assert_eq!(
        settings["activeupdate_url"],
        "https://updates.example.net/repo"
    );
    b.click("#add").await;
    b.fill("#range", "10.0.0.0/24").await;
    b.click("#kind-agent").await;
    b.screenshot("03-add-entry").await;
    b.click("#save").await;
    b.wait_text("#flash", "Added entry 1").await;
    b.click("#add").await;
    b.fill("#range", "10.0.0.0-10.0.255.255").await;
    b.click("#kind-url").await;
    b.fill("#url", "http://mirror.branch.example/cascade").await;
    b.click("#save").await;
    b.wait_text("#flash", "Added entry 2").await;

    // Edit entry 1 through its IP-range link.
    b.click("a.range[href='/sources/1']").await;
    assert_eq!(b.property("#range", "value").await, "10.0.0.0/24");
    b.fill("#range", "10.0.1.0/24").await;
    b.click("#save").await;
    b.wait_text("#flash", "Saved entry 1").await;
    assert_eq!(
        s.source_order().await,
        vec![
            (1, "10.0.1.0/24".to_owned()),
            (2, "10.0.0.0-10.0.255.255".to_owned())
        ]
    );

    // Move entry 2 up one place.
    b.click("tr[data-id='2'] button.up").await;
    b.wait_text("#flash", "Moved entry 2 up").await;
    assert_eq!(
        b.execute("return window.__sameDocument === true").await,
        true,
        "the arrows swapped the page in place (htmx), not a full reload"
    );
    assert_eq!(
        s.source_order()
            .await
            .iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        vec![2, 1],
        "the API returns the order the console set"
    );
    b.screenshot("02-sources").await;

    // Delete the checked entry 1.
    b.click("#sel-1").await;
    b.click("#delete").await;
    let asked = b.accept_dialog().await;
    assert!(asked.contains("Delete the checked entries?"), "{asked}");
    b.wait_text("#flash", "Deleted 1").await;
    assert_eq!(
        s.source_order().await,
        vec![(2, "10.0.0.0-10.0.255.255".to_owned())]
    );

    // A reversed range is refused beside the field, with what was typed kept.
    b.click("#add").await;
    b.fill("#range", "10.0.0.9-10.0.0.1").await;
    b.click("#kind-url").await;
    b.fill("#url", "http://typed.example/repo").await;
    b.click("#save").await;
    b.wait_text("#range-error", "10.0.0.9-10.0.0.1").await;
    assert_eq!(b.property("#range", "value").await, "10.0.0.9-10.0.0.1");
    assert_eq!(
        b.property("#url", "value").await,
        "http://typed.example/repo"
    );
    assert_eq!(b.property("#kind-url", "checked").await, true);
    assert_eq!(
        b.execute("return document.activeElement && document.activeElement.id")
            .await,
        "range",
        "keyboard focus lands on the field in error"
    );
    b.screenshot("04-bad-range").await;
    assert_eq!(s.source_order().await.len(), 1, "nothing stored");

    // Notify All Clients reaches a connected client, and the page says how many.
    let (_, credential) = s.enroll_client("pc-7").await;
    let mut sse = Sse::connect(&s.http, &s.url, &credential).await.unwrap();
    assert_eq!(sse.next().await.unwrap().0, "hello");
    b.goto(&at("/sources")).await;
    b.click("#notify").await;
    let asked = b.accept_dialog().await;
    assert!(asked.contains("Notify all clients now?"), "{asked}");
    b.wait_text("#flash", "1 connected client and").await;
    let (event, data) = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .expect("notice within 5 s")
        .unwrap();
    assert_eq!(event, "notify");
    assert_eq!(data["stage"], "clients");

    // The client reports an update: one failed step, then the URL mirror delivered.
    let attempt =
        |category, step, source: &str, outcome, reason: Option<&str>, bytes, millis| Attempt {
            category: Some(category),
            step,
            source: source.to_owned(),
            outcome,
            reason: reason.map(Into::into),
            bytes,
            millis,
        };
    let report = CheckIn {
        agent_version: None,
        ip: Some("10.0.0.7".into()),
        installed: [
            (Category::Components, "8.1.9".to_owned()),
            (Category::DomainSettings, "42".to_owned()),
        ]
        .into(),
        last_update: Some(UpdateReport {
            finished_at: Some(1_700_000_000),
            outcome: Outcome::Ok,
            attempts: vec![
                attempt(
                    Category::Components,
                    1,
                    "agent:10.0.0.5:8443",
                    Outcome::Failed,
                    Some("connect: connection refused"),
                    0,
                    12,
                ),
                attempt(
                    Category::Components,
                    2,
                    "url:http://mirror.branch.example/cascade",
                    Outcome::Ok,
                    None,
                    16405,
                    80,
                ),
                attempt(
                    Category::DomainSettings,
                    1,
                    "server",
                    Outcome::UpToDate,
                    None,
                    512,
                    5,
                ),
            ],
        }),
        relay: None,
    };
    s.api(
        &credential,
        Method::POST,
        "/api/client/checkin",
        json(&report),
        200,
    )
    .await;

    // What-if for that client's address.
    b.goto(&at("/whatif")).await;
    b.fill("#ip", "10.0.0.7").await;
    b.click("#whatif button").await;
    let plan = b.text("#plan-components").await;
    assert!(
        plan.contains("url:http://mirror.branch.example/cascade"),
        "{plan}"
    );
    assert!(plan.contains("contains 10.0.0.7"), "{plan}");
    b.screenshot("05-whatif").await;

    // Clients and the client's last update, step by step.
    b.goto(&at("/clients")).await;
    let table = b.text("#clients").await;
    assert!(table.contains("pc-7") && table.contains("8.1.9"), "{table}");
    b.screenshot("06-clients").await;
    b.click("a[href='/clients?show=failed']").await;
    b.wait_text("#clients", "No clients match this filter")
        .await;
    b.click("a[href='/clients']").await;
    b.wait_text("#clients", "pc-7").await;
    b.click("#clients a[href^='/clients/']").await;
    b.wait_text("#attempts", "connect: connection refused")
        .await;
    b.screenshot("07-client").await;

    // The dashboard counts what the report says: 16405 of 16917 bytes offloaded.
    b.goto(&at("/")).await;
    b.wait_text("#offload", "97 %").await;
    b.wait_text("#failures", "pc-7").await;
    b.find("svg.chart rect").await;
    b.screenshot("08-dashboard").await;
    b.goto(&at("/agents")).await;
    b.wait_text("#agents", "10.0.0.5:8443").await;
    b.screenshot("09-agents").await;
    // Remove asks first: Cancel keeps the agent, OK removes it.
    b.click("#agents button.danger").await;
    let asked = b.dismiss_dialog().await;
    assert!(
        asked.contains("Remove update agent 10.0.0.5:8443?"),
        "{asked}"
    );
    b.click("#agents button.danger").await;
    b.accept_dialog().await;
    b.wait_text("#flash", "Removed update agent 10.0.0.5:8443")
        .await;
    let agents: AgentsResponse =
        serde_json::from_value(s.api(&s.admin, Method::GET, "/api/agents", None, 200).await)
            .unwrap();
    assert_eq!(agents.agents, vec![]);

    // A phone-sized window.
    b.resize(390, 844).await;
    b.goto(&at("/sources")).await;
    b.screenshot("10-sources-phone").await;
    b.resize(1280, 900).await;

    // Logout ends the session.
    b.click(".logout button").await;
    b.wait_url("/login").await;
    b.goto(&at("/sources")).await;
    assert!(b.url().await.ends_with("/login"));
    b.quit().await;
}
