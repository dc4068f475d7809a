//! Every rule of `docs/architecture.md#resolution`, one table row or test each: a row names
//! the policy, the client, the category and the exact sources expected in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cascade_core::{resolve, resolve_for_agent, Category, Policy};

const UP: &str = "https://updates.example.net/repo";

/// A customized policy with two agents and a URL mirror; `extra` is appended verbatim, so a
/// case can set options or add entries (TOML allows top-level keys only before tables, so
/// `head` is placed first).
fn policy(head: &str, extra: &str) -> Policy {
    let text = format!(
        r#"
mode = "customized"
activeupdate_url = "{UP}"
{head}

[[agent]]
address = "10.0.0.5:8443"
capabilities = ["components", "domain-settings", "programs"]

[[agent]]
address = "10.0.1.5:8443"
capabilities = ["components"]

[[sources]]
range = "10.0.0.0/24"
agent = "10.0.0.5:8443"

[[sources]]
range = "10.0.0.0-10.0.255.255"
url = "http://mirror.branch.example/cascade"
{extra}
"#
    );
    Policy::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn sources(p: &Policy, ip: &str, domain: Option<&str>, c: Category) -> Vec<String> {
    resolve(p, ip.parse().unwrap(), domain, c)
        .steps
        .iter()
        .map(|s| s.source.to_string())
        .collect()
}

const AGENT1: &str = "agent:10.0.0.5:8443";
const AGENT2: &str = "agent:10.0.1.5:8443";
const MIRROR: &str = "url:http://mirror.branch.example/cascade";
const ACTIVE: &str = "activeupdate:https://updates.example.net/repo";

struct Case {
    name: &'static str,
    head: &'static str,
    extra: &'static str,
    ip: &'static str,
    domain: Option<&'static str>,
    category: Category,
    expect: &'static [&'static str],
}

const FALLBACK_OFF: &str =
    "[fallback]\ncomponents_from_server = false\ndomain_settings_from_server = false\nprograms_from_server = false";
const FALLBACK_ON: &str =
    "[fallback]\ncomponents_from_server = true\ndomain_settings_from_server = true\nprograms_from_server = true";
const AGENT2_ENTRY: &str = "\n[[sources]]\nrange = \"10.0.0.0/16\"\nagent = \"10.0.1.5:8443\"";

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Rule 2: matching entries in list order; overlapping ranges give both, first match first.
    Case { name: "overlap: agent then mirror then server", head: "", extra: "", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR, "server"] },
    Case { name: "second range only", head: "", extra: "", ip: "10.0.3.7", domain: None, category: Category::Components, expect: &[MIRROR, "server"] },
    // An address matched by no entry goes straight to the fallback.
    Case { name: "no entry matches", head: "", extra: "", ip: "192.0.2.1", domain: None, category: Category::Components, expect: &["server"] },
    // Each fallback option on / off, per category.
    Case { name: "domain settings from server on", head: "", extra: FALLBACK_ON, ip: "10.0.0.7", domain: None, category: Category::DomainSettings, expect: &[AGENT1, MIRROR, "server"] },
    Case { name: "domain settings from server off", head: "", extra: FALLBACK_OFF, ip: "10.0.0.7", domain: None, category: Category::DomainSettings, expect: &[AGENT1, MIRROR] },
    Case { name: "programs from server on", head: "", extra: FALLBACK_ON, ip: "10.0.0.7", domain: None, category: Category::Programs, expect: &[AGENT1, MIRROR, "server"] },
    Case { name: "programs from server off", head: "", extra: FALLBACK_OFF, ip: "10.0.0.7", domain: None, category: Category::Programs, expect: &[AGENT1, MIRROR] },
    Case { name: "components from server on: no activeupdate even with privilege", head: "", extra: "[privileges]\ndownload_from_activeupdate = true\n[fallback]\ncomponents_from_server = true", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR, "server"] },
    // Components, server option off: the "any" rule and its variants.
    Case { name: "any: privilege off, upstream unlisted -> activeupdate", head: "", extra: FALLBACK_OFF, ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR, ACTIVE] },
    Case { name: "any: privilege on, upstream listed -> activeupdate", head: "", extra: "[privileges]\ndownload_from_activeupdate = true\n[fallback]\ncomponents_from_server = false\n[[sources]]\nrange = \"192.168.9.0/24\"\nurl = \"https://updates.example.net/repo/\"", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR, ACTIVE] },
    Case { name: "any: privilege off, upstream listed -> quit", head: "", extra: "[fallback]\ncomponents_from_server = false\n[[sources]]\nrange = \"192.168.9.0/24\"\nurl = \"https://updates.example.net/repo/\"", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR] },
    Case { name: "all: privilege off, upstream unlisted -> quit", head: "activeupdate_fallback = \"all\"", extra: FALLBACK_OFF, ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR] },
    Case { name: "all: privilege on, upstream unlisted -> activeupdate", head: "activeupdate_fallback = \"all\"", extra: "[privileges]\ndownload_from_activeupdate = true\n[fallback]\ncomponents_from_server = false", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR, ACTIVE] },
    Case { name: "all: privilege on, upstream listed -> quit", head: "activeupdate_fallback = \"all\"", extra: "[privileges]\ndownload_from_activeupdate = true\n[fallback]\ncomponents_from_server = false\n[[sources]]\nrange = \"192.168.9.0/24\"\nurl = \"https://updates.example.net/repo/\"", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR] },
    Case { name: "never: privilege on, upstream unlisted -> quit", head: "activeupdate_fallback = \"never\"", extra: "[privileges]\ndownload_from_activeupdate = true\n[fallback]\ncomponents_from_server = false", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR] },
    // The activeupdate fallback is for components only.
    Case { name: "activeupdate never for programs", head: "", extra: "[privileges]\ndownload_from_activeupdate = true\n[fallback]\nprograms_from_server = false", ip: "10.0.0.7", domain: None, category: Category::Programs, expect: &[AGENT1, MIRROR] },
    // Privilege per domain: an override beats the default, either way.
    Case { name: "all: domain turns privilege on", head: "activeupdate_fallback = \"all\"", extra: "[fallback]\ncomponents_from_server = false\n[domains.branch.privileges]\ndownload_from_activeupdate = true", ip: "10.0.0.7", domain: Some("branch"), category: Category::Components, expect: &[AGENT1, MIRROR, ACTIVE] },
    Case { name: "all: other domain keeps default off", head: "activeupdate_fallback = \"all\"", extra: "[fallback]\ncomponents_from_server = false\n[domains.branch.privileges]\ndownload_from_activeupdate = true", ip: "10.0.0.7", domain: Some("hq"), category: Category::Components, expect: &[AGENT1, MIRROR] },
    Case { name: "all: domain turns privilege off", head: "activeupdate_fallback = \"all\"", extra: "[privileges]\ndownload_from_activeupdate = true\n[fallback]\ncomponents_from_server = false\n[domains.branch.privileges]\ndownload_from_activeupdate = false", ip: "10.0.0.7", domain: Some("branch"), category: Category::Components, expect: &[AGENT1, MIRROR] },
    // Capability skip: agent 2 relays components only.
    Case { name: "capable agent kept", head: "", extra: AGENT2_ENTRY, ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR, AGENT2, "server"] },
    Case { name: "incapable agent skipped", head: "", extra: AGENT2_ENTRY, ip: "10.0.0.7", domain: None, category: Category::Programs, expect: &[AGENT1, MIRROR, "server"] },
    // The same source twice is tried once, at its first place.
    Case { name: "duplicate agent tried once", head: "", extra: "\n[[sources]]\nrange = \"10.0.0.7\"\nagent = \"10.0.0.5:8443\"", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR, "server"] },
    Case { name: "duplicate url (trailing slash) tried once", head: "", extra: "\n[[sources]]\nrange = \"10.0.0.7\"\nurl = \"http://mirror.branch.example/cascade/\"", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR, "server"] },
    Case { name: "listed upstream matched, then privilege fallback: tried once", head: "", extra: "[privileges]\ndownload_from_activeupdate = true\n[fallback]\ncomponents_from_server = false\n[[sources]]\nrange = \"10.0.0.7\"\nurl = \"https://updates.example.net/repo/\"", ip: "10.0.0.7", domain: None, category: Category::Components, expect: &[AGENT1, MIRROR, "url:https://updates.example.net/repo/"] },
    // IPv6 ranges and clients; an IPv6 client never matches IPv4 ranges.
    Case { name: "ipv6 entry", head: "", extra: "\n[[sources]]\nrange = \"fd00::/64\"\nurl = \"http://v6.example/repo\"", ip: "fd00::42", domain: None, category: Category::Components, expect: &["url:http://v6.example/repo", "server"] },
    Case { name: "ipv6 range form", head: "", extra: "\n[[sources]]\nrange = \"fd00::1 - fd00::ff\"\nurl = \"http://v6.example/repo\"", ip: "fd00::100", domain: None, category: Category::Components, expect: &["server"] },
];

// Each row of the table: the plan's sources, in order, are exactly the expected ones.
#[test]
fn customized_rules_table() {
    let mut failures = Vec::new();
    for c in CASES {
        let p = policy(c.head, c.extra);
        let got = sources(&p, c.ip, c.domain, c.category);
        if got != c.expect {
            failures.push(format!(
                "{}: expected {:?}, got {:?}",
                c.name, c.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// Rule 1: standard mode is [server], plus activeupdate for components when privileged.
#[test]
fn standard_mode() {
    let text = |privilege: bool| {
        format!("mode = \"standard\"\nactiveupdate_url = \"{UP}\"\n[privileges]\ndownload_from_activeupdate = {privilege}\n[domains.lab.privileges]\ndownload_from_activeupdate = {}\n[[sources]]\nrange = \"0.0.0.0/0\"\nurl = \"http://mirror.example/\"", !privilege)
    };
    let off = Policy::from_toml(&text(false)).unwrap();
    let on = Policy::from_toml(&text(true)).unwrap();
    let ip = "10.0.0.7";
    assert_eq!(sources(&off, ip, None, Category::Components), ["server"]);
    assert_eq!(
        sources(&on, ip, None, Category::Components),
        ["server", ACTIVE]
    );
    assert_eq!(sources(&on, ip, None, Category::Programs), ["server"]);
    assert_eq!(sources(&on, ip, None, Category::DomainSettings), ["server"]);
    assert_eq!(
        sources(&off, ip, Some("lab"), Category::Components),
        ["server", ACTIVE]
    );
    assert_eq!(
        sources(&on, ip, Some("lab"), Category::Components),
        ["server"]
    );
}

// Without an upstream URL no activeupdate step can be planned, and the plan says why.
#[test]
fn no_upstream_url() {
    let p = Policy::from_toml("mode = \"customized\"\n[fallback]\ncomponents_from_server = false")
        .unwrap();
    let plan = resolve(&p, "10.0.0.7".parse().unwrap(), None, Category::Components);
    assert!(plan.steps.is_empty());
    assert!(
        plan.skipped
            .iter()
            .any(|s| s.contains("no activeupdate_url")),
        "{:?}",
        plan.skipped
    );
}

// Each step says why it is there, naming the entry, the range and the client.
#[test]
fn reasons_are_explicit() {
    let p = policy("", "[privileges]\ndownload_from_activeupdate = true\n[fallback]\ncomponents_from_server = false");
    let plan = resolve(&p, "10.0.0.7".parse().unwrap(), None, Category::Components);
    let whys: Vec<&str> = plan.steps.iter().map(|s| s.why.as_str()).collect();
    assert_eq!(whys[0], "sources[0] 10.0.0.0/24 contains 10.0.0.7");
    assert_eq!(
        whys[1],
        "sources[1] 10.0.0.0-10.0.255.255 contains 10.0.0.7"
    );
    assert!(
        whys[2].contains("fallback.components_from_server is off"),
        "{}",
        whys[2]
    );
    assert!(
        whys[2].contains("privilege download_from_activeupdate is on"),
        "{}",
        whys[2]
    );
    let server = resolve(
        &policy("", ""),
        "10.0.0.7".parse().unwrap(),
        None,
        Category::Programs,
    );
    assert_eq!(server.steps[2].why, "fallback.programs_from_server is on");
}

// A skipped agent is reported in the plan with the reason.
#[test]
fn capability_skip_is_reported() {
    let p = policy("", AGENT2_ENTRY);
    let plan = resolve(&p, "10.0.0.7".parse().unwrap(), None, Category::Programs);
    assert!(
        plan.skipped
            .iter()
            .any(|s| s.contains("agent:10.0.1.5:8443") && s.contains("lacks capability programs")),
        "{:?}",
        plan.skipped
    );
}

fn agent_sources(p: &Policy, addr: &str, c: Category) -> Vec<String> {
    resolve_for_agent(p, addr.parse().unwrap(), c)
        .unwrap()
        .steps
        .iter()
        .map(|s| s.source.to_string())
        .collect()
}

// Rule 4: by default an agent updates from the server only, whatever the list says.
#[test]
fn agent_default_is_server() {
    let p = policy("", "");
    assert_eq!(
        agent_sources(&p, "10.0.0.5:8443", Category::Components),
        ["server"]
    );
    assert!(resolve_for_agent(&p, "10.9.9.9:1".parse().unwrap(), Category::Components).is_err());
}

// Rule 4, customized: an agent uses the list but never itself.
#[test]
fn agent_never_uses_itself() {
    let p = policy("", "[agents]\nsource = \"customized\"");
    let plan =
        resolve_for_agent(&p, "10.0.0.5:8443".parse().unwrap(), Category::Components).unwrap();
    let got: Vec<String> = plan.steps.iter().map(|s| s.source.to_string()).collect();
    assert_eq!(got, [MIRROR, "server"]);
    assert!(plan
        .skipped
        .iter()
        .any(|s| s.contains("never updates from itself")));
}

// Rule 4, customized: two agents that would fetch from each other both skip the other
// (every edge on a cycle is dropped), while an agent that is not on a cycle is kept.
#[test]
fn two_agent_cycle_is_broken() {
    let cyc = "[agents]\nsource = \"customized\"\n[[sources]]\nrange = \"10.0.0.0/16\"\nagent = \"10.0.1.5:8443\"";
    let p = policy("", cyc);
    // Agent 1 (10.0.0.5) matches entry 0 (itself) and entry 2 (agent 2); agent 2 (10.0.1.5)
    // matches entry 2 (itself) and... not entry 0 (10.0.0.0/24). So no cycle: agent 1 -> agent 2.
    assert_eq!(
        agent_sources(&p, "10.0.0.5:8443", Category::Components),
        [MIRROR, AGENT2, "server"]
    );
    assert_eq!(
        agent_sources(&p, "10.0.1.5:8443", Category::Components),
        [MIRROR, "server"]
    );
    // Now let agent 2 fetch from agent 1 too: a two-agent cycle.
    let p = policy(
        "",
        &format!("{cyc}\n[[sources]]\nrange = \"10.0.1.0/24\"\nagent = \"10.0.0.5:8443\""),
    );
    let a1 = resolve_for_agent(&p, "10.0.0.5:8443".parse().unwrap(), Category::Components).unwrap();
    let a2 = resolve_for_agent(&p, "10.0.1.5:8443".parse().unwrap(), Category::Components).unwrap();
    let s = |plan: &cascade_core::Plan| {
        plan.steps
            .iter()
            .map(|s| s.source.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(s(&a1), [MIRROR, "server"]);
    assert_eq!(s(&a2), [MIRROR, "server"]);
    assert!(
        a1.skipped.iter().any(|x| x.contains("cycle")),
        "{:?}",
        a1.skipped
    );
    assert!(
        a2.skipped.iter().any(|x| x.contains("cycle")),
        "{:?}",
        a2.skipped
    );
    // For programs agent 2 has no capability, so agent 1 -> agent 2 is no edge, and agent 2
    // may use agent 1 without a cycle.
    assert_eq!(
        agent_sources(&p, "10.0.1.5:8443", Category::Programs),
        [MIRROR, AGENT1, "server"]
    );
}

// Rule 4, customized: a three-agent ring is broken too, so no agent waits on itself.
#[test]
fn three_agent_ring_is_broken() {
    let text = r#"
mode = "customized"
[agents]
source = "customized"
[[agent]]
address = "127.0.0.2:9000"
[[agent]]
address = "127.0.0.3:9000"
[[agent]]
address = "127.0.0.4:9000"
[[agent]]
address = "127.0.0.9:9000"
[[sources]]
range = "127.0.0.2"
agent = "127.0.0.3:9000"
[[sources]]
range = "127.0.0.3"
agent = "127.0.0.4:9000"
[[sources]]
range = "127.0.0.4"
agent = "127.0.0.2:9000"
[[sources]]
range = "127.0.0.2-127.0.0.4"
agent = "127.0.0.9:9000"
"#;
    let p = Policy::from_toml(text).unwrap();
    for a in ["127.0.0.2:9000", "127.0.0.3:9000", "127.0.0.4:9000"] {
        assert_eq!(
            agent_sources(&p, a, Category::Components),
            ["agent:127.0.0.9:9000", "server"],
            "{a}"
        );
    }
}
