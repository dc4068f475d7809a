//! Crash debris of an agent (`docs/operating.md#crash-debris`): the temporary files of atomic
//! writes a killed agent left anywhere in its data directory, the trust scratch copies of
//! metadata loads it interrupted, and partial downloads nobody resumed for a week, are removed
//! when the agent starts; fresh partial downloads stay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use cascade_core::report::Outcome;

#[tokio::test]
async fn agent_start_removes_a_killed_agents_debris() {
    let tmp = tempfile::tempdir().unwrap();
    let (upstream, root, fleet) = cascade_testkit::upstream_and_server(tmp.path(), b"v1")
        .await
        .unwrap();
    let policy = format!(
        "mode = \"customized\"\nactiveupdate_url = \"{}\"\n",
        upstream.url().unwrap()
    );
    fleet.apply_policy(&policy).await.unwrap();
    fleet.mirror().await.unwrap();
    let data = tmp.path().join("agent");
    let cfg = fleet.agent_config(&data, "127.0.1.7".parse().unwrap(), None, Some(&root));
    assert_eq!(
        cascade_testkit::update_once(cfg.clone())
            .await
            .unwrap()
            .outcome,
        Outcome::Ok
    );

    let debris = [
        data.join(".tmp-policy"),
        data.join("trust/upstream/.tmp-abc"),
        data.join("installed/components/patterns/1/.tmp-x"),
    ];
    for d in &debris {
        std::fs::write(d, b"half written").unwrap();
    }
    // The trust scratch copy of a metadata load the kill interrupted, with a torn file in it.
    let scratch = data.join("trust/upstream/.load-killed");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join("targets.json"), b"").unwrap();
    let partial = data.join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    let fresh = partial.join(".partial-fresh");
    let stale = partial.join(".partial-stale");
    std::fs::write(&fresh, b"recent bytes").unwrap();
    std::fs::write(&stale, b"old bytes").unwrap();
    let week_ago = SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(week_ago)
        .unwrap();

    cascade_testkit::update_once(cfg).await.unwrap();
    for d in &debris {
        assert!(!d.exists(), "{} was left", d.display());
    }
    assert!(
        !scratch.exists(),
        "a killed load's trust scratch copy was left"
    );
    assert!(!stale.exists(), "a stale partial download was kept");
    assert!(fresh.exists(), "a fresh partial download was removed");
}
