//! Domain settings reach a real agent daemon and take effect at its next cycle
//! (`docs/operating.md#domains-and-their-settings`): the agent runs with an interval of an
//! hour; the admin sets its domain's interval to 10 s through the API; a notify makes it run
//! one cycle, which installs the signed settings and puts them in force; the next cycle then
//! comes on its own, which under the old interval it would not within this test. Counted in
//! cycles the server saw (each check-in's report), not timed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cascade_client::proto::{ClientsQuery, DomainSettings, UpdateReport};
use cascade_core::report::Reason;
use cascade_core::Category;
use cascade_testkit::{wait_until, AgentHandle};

/// The applied-settings line of a report, if any.
fn applied(r: &UpdateReport) -> Option<String> {
    r.attempts
        .iter()
        .filter(|a| a.source == "settings")
        .find_map(|a| match &a.reason {
            Some(Reason::Note(n)) => Some(n.clone()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_interval_takes_effect_at_the_next_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let (_upstream, root, fleet) =
        cascade_testkit::upstream_and_server(tmp.path(), b"patterns one")
            .await
            .unwrap();
    let mut cfg = fleet.agent_config(
        &tmp.path().join("c1"),
        "127.0.3.7".parse().unwrap(),
        None,
        Some(&root),
    );
    cfg.domain = Some("lab".into());
    cfg.interval = Duration::from_secs(3600);
    let mut agent = AgentHandle::spawn(cfg);
    let api = fleet.api();

    // The latest report the server has for the client, once it checked in.
    let report = || async {
        let list = api.clients(&ClientsQuery::default()).await.ok()?;
        let id = list.clients.first()?.id.clone();
        api.client_record(&id).await.ok()?.last_update
    };
    wait_until(Duration::from_secs(30), || async {
        report().await.is_some()
    })
    .await
    .unwrap();
    let first = report().await.unwrap();
    assert_eq!(applied(&first), None, "no settings published yet");

    let fast = DomainSettings {
        interval_secs: 10,
        jitter_secs: 0,
        ..DomainSettings::default()
    };
    let set = api.put_domain_settings("lab", &fast, None).await.unwrap();
    assert_eq!(
        set.target.as_deref(),
        Some("domain-settings/lab/1/settings.json")
    );
    // Only the notify starts a cycle now: the agent's own interval is an hour. It is sent
    // once the client holds its event stream.
    wait_until(Duration::from_secs(30), || async {
        api.client().metrics().await.is_ok_and(|m| {
            m.lines().any(|l| {
                l.strip_prefix("cascade_event_streams{role=\"client\"} ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
    .await
    .unwrap();
    fleet.notify().await.unwrap();
    wait_until(Duration::from_secs(30), || async {
        report().await.is_some_and(|r| applied(&r).is_some())
    })
    .await
    .unwrap();
    let installed = report().await.unwrap();
    assert_eq!(
        applied(&installed).as_deref(),
        Some("domain settings lab 1 applied")
    );
    // The next cycle comes by itself, 10 s later rather than an hour.
    let after = installed.finished_at.unwrap();
    wait_until(Duration::from_secs(60), || async {
        report()
            .await
            .is_some_and(|r| r.finished_at.unwrap_or(0) > after)
    })
    .await
    .expect("a scheduled cycle at the new interval");
    let next = report().await.unwrap();
    assert_eq!(
        applied(&next).as_deref(),
        Some("domain settings lab 1 applied")
    );
    agent.stop().await.unwrap();
}

/// Whether the server saw the client holding its event stream (a notify reaches it then).
async fn streaming(api: &cascade_client::AdminClient) {
    wait_until(Duration::from_secs(30), || async {
        api.client().metrics().await.is_ok_and(|m| {
            m.lines().any(|l| {
                l.strip_prefix("cascade_event_streams{role=\"client\"} ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
    .await
    .unwrap();
}

/// The programs step of `r` that installed `what`, if any.
fn installed<'a>(r: &'a UpdateReport, what: &str) -> Option<&'a cascade_client::proto::Attempt> {
    r.attempts.iter().find(|a| {
        a.category == Some(Category::Programs)
            && matches!(&a.reason, Some(Reason::Note(n)) if n == &format!("installed {what}"))
    })
}

// A download cap set in the domain's settings holds the agent's next cycle to it
// (`docs/operating.md#domains-and-their-settings`): the admin sets a 64 KiB/s cap (and a 10 s
// interval), a notify makes the agent install and apply them; a 384 KiB program published
// next comes in a following cycle at no more than the cap allows. Measured on the agent's own
// report of that step: the bytes it received against what the cap lets through in the step's
// time plus the cap's one-second burst and one chunk. Uncapped, loopback moves the build in a
// small part of a second, far over that bound. The bound is what a working cap guarantees on
// any machine; a slow machine only moves it further from failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_download_cap_takes_effect_at_the_next_cycle() {
    const CAP: u64 = 64 * 1024;
    const BUILD: usize = 384 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let (_upstream, root, fleet) =
        cascade_testkit::upstream_and_server(tmp.path(), b"patterns one")
            .await
            .unwrap();
    let mut cfg = fleet.agent_config(
        &tmp.path().join("c1"),
        "127.0.3.8".parse().unwrap(),
        None,
        Some(&root),
    );
    cfg.domain = Some("lab".into());
    cfg.interval = Duration::from_secs(3600);
    let mut agent = AgentHandle::spawn(cfg);
    let api = fleet.api();
    let report = || async {
        let list = api.clients(&ClientsQuery::default()).await.ok()?;
        let id = list.clients.first()?.id.clone();
        api.client_record(&id).await.ok()?.last_update
    };
    wait_until(Duration::from_secs(30), || async {
        report().await.is_some()
    })
    .await
    .unwrap();

    // A low floor: a loaded test machine must not make the capped download look stalled.
    let capped = DomainSettings {
        download_cap: CAP,
        min_transfer_rate: 1024,
        interval_secs: 10,
        jitter_secs: 0,
        ..DomainSettings::default()
    };
    api.put_domain_settings("lab", &capped, None).await.unwrap();
    streaming(api).await;
    fleet.notify().await.unwrap();
    wait_until(Duration::from_secs(30), || async {
        report().await.is_some_and(|r| applied(&r).is_some())
    })
    .await
    .unwrap();

    // A build published once the cap is in force: a scheduled cycle fetches it.
    let build = cascade_testkit::pseudo_random(BUILD, 7);
    let query = cascade_client::proto::ProgramUpload {
        file: "bulk.bin".into(),
        hotfix: false,
        sha256: None,
    };
    api.upload_program("bulk", "1", &query, build.into(), BUILD as u64)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let r = loop {
        let last = report().await;
        if let Some(r) = last.as_ref().filter(|r| installed(r, "bulk 1").is_some()) {
            break r.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the build was never installed: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        applied(&r).as_deref(),
        Some("domain settings lab 1 applied")
    );
    let step = installed(&r, "bulk 1").unwrap();
    assert!(step.bytes >= BUILD as u64, "{step:?}");
    // What the cap lets through in the step's time: a second's burst, the time itself, and
    // one chunk held at the start of its reservation.
    let allowed = CAP * (step.millis / 1000 + 2) + 64 * 1024;
    assert!(
        step.bytes <= allowed,
        "{} bytes in {} ms is over the {CAP} B/s cap (at most {allowed})",
        step.bytes,
        step.millis
    );
    agent.stop().await.unwrap();
}
