//! Tests of the fleet views: health from reports and check-ins, compliance by version.

use std::collections::BTreeMap;

use super::*;
use cascade_core::report::{Attempt, Outcome, UpdateReport};
use cascade_core::{Category, Policy};
use cascade_proto::{ClientState, ClientView, Compliance, HealthLevel};

fn client(name: &str, seen: i64, installed: &str, attempts: Vec<Attempt>) -> ClientView {
    ClientView {
        id: name.to_owned(),
        name: name.to_owned(),
        domain: None,
        agent_address: None,
        agent_version: None,
        is_agent: false,
        enrolled_at: 0,
        enrolled_from: String::new(),
        last_seen: Some(seen),
        reported_ip: None,
        peer_ip: None,
        installed: if installed.is_empty() {
            BTreeMap::new()
        } else {
            BTreeMap::from([(Category::Components, installed.to_owned())])
        },
        last_outcome: None,
        state: ClientState::Ok,
        last_update: Some(UpdateReport {
            finished_at: Some(seen),
            outcome: Outcome::Ok,
            attempts,
        }),
        relay: None,
    }
}

fn attempt(source: &str, outcome: Outcome) -> Attempt {
    Attempt {
        category: Some(Category::Components),
        step: 1,
        source: source.to_owned(),
        outcome,
        reason: None,
        bytes: 0,
        millis: 0,
    }
}

fn policy_with_agent() -> Policy {
    let mut p = Policy::default();
    p.agent.push(cascade_core::Agent {
        address: "127.0.0.3:8443".parse().unwrap(),
        capabilities: Category::ALL.into_iter().collect(),
    });
    p
}

// An agent every client failed against since the first failure is down, with where they
// went instead; successes after a failure make it degraded; a silent agent is down.
#[test]
fn agent_health_from_reports_and_check_ins() {
    let p = policy_with_agent();
    let ok = |n: &str, t| client(n, t, "", vec![attempt("agent:127.0.0.3:8443", Outcome::Ok)]);
    let failed = |n: &str, t| {
        client(
            n,
            t,
            "",
            vec![
                attempt("agent:127.0.0.3:8443", Outcome::Failed),
                attempt("url:http://mirror/", Outcome::Ok),
            ],
        )
    };
    let mut agent = client("agent", 1000, "", vec![]);
    agent.agent_address = Some("127.0.0.3:8443".to_owned());
    agent.is_agent = true;
    let h = assess(
        &p,
        &[
            ok("a", 900),
            failed("b", 950),
            failed("c", 990),
            agent.clone(),
        ],
        1000,
        7200,
    );
    let s = &h.sources[0];
    assert_eq!(s.level, HealthLevel::Down);
    assert_eq!(s.failed, 2);
    assert_eq!(s.served, 1);
    assert_eq!(s.since, Some(950));
    assert!(
        s.summary
            .starts_with("update agent 127.0.0.3:8443 down: 2 clients on url:http://mirror/ since"),
        "{}",
        s.summary
    );
    assert_eq!(
        s.affected
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["b", "c"]
    );

    let h = assess(
        &p,
        &[failed("b", 950), ok("a", 960), agent.clone()],
        1000,
        7200,
    );
    assert_eq!(h.sources[0].level, HealthLevel::Degraded);

    let h = assess(&p, &[ok("a", 960), agent.clone()], 1000, 7200);
    assert_eq!(h.sources[0].level, HealthLevel::Healthy);

    // Silent for longer than the window.
    let h = assess(&p, &[agent], 1000 + 7201, 7200);
    assert_eq!(h.sources[0].level, HealthLevel::Down);
    assert!(h.sources[0].summary.contains("no check-in since"));

    let h = assess(&p, &[], 1000, 7200);
    assert_eq!(h.sources[0].level, HealthLevel::Unknown);
}

// A client on an older version is behind, not current; nothing installed is never
// installed; nothing published is unpublished (not "current").
#[test]
fn compliance_by_version() {
    let cat = Catalog::from_versions(BTreeMap::from([(
        Category::Components,
        BTreeMap::from([(
            "patterns".to_owned(),
            vec!["1.2".to_owned(), "1.1".to_owned()],
        )]),
    )]));
    let new = client("new", 1, "patterns 1.2", vec![]);
    let old = client("old", 1, "patterns 1.1", vec![]);
    let none = client("none", 1, "", vec![]);
    let broken = client(
        "broken",
        1,
        "patterns 1.1",
        vec![attempt("server", Outcome::Failed)],
    );
    assert_eq!(cat.client(&new, Category::Components), Compliance::Current);
    assert_eq!(cat.client(&old, Category::Components), Compliance::Behind);
    assert_eq!(
        cat.client(&none, Category::Components),
        Compliance::NeverInstalled
    );
    assert_eq!(
        cat.client(&broken, Category::Components),
        Compliance::Failed
    );
    assert_eq!(
        cat.client(&new, Category::Programs),
        Compliance::Unpublished
    );
    let r = cat.compliance(&[new, old, none, broken], 5);
    let p = r
        .categories
        .iter()
        .find(|c| c.category == Category::Components)
        .unwrap();
    assert_eq!(
        (p.current, p.behind, p.never_installed, p.failed),
        (1, 1, 1, 1)
    );
    assert_eq!(p.newest, ["patterns 1.2"]);
    assert_eq!(p.distribution[0].version, "patterns 1.1");
    assert_eq!(p.distribution[0].clients, 2);
    let progs = r
        .categories
        .iter()
        .find(|c| c.category == Category::Programs)
        .unwrap();
    assert_eq!(progs.current, 0);
    assert!(progs.newest.is_empty());
}
