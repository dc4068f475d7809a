//! The policy file (`docs/architecture.md#policy`): it round-trips through TOML, and every
//! kind of bad input is refused with an error naming the field and the value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cascade_core::{Category, EntryId, Mode, Policy, PolicyError, Source};

const DESIGN_EXAMPLE: &str = r#"
mode = "customized"                       # or "standard"
activeupdate_url = "https://updates.example.net/repo"
activeupdate_fallback = "any"             # "any" | "all" | "never"

[fallback]          # "... if all customized sources are not available or not found"
components_from_server = true
domain_settings_from_server = true
programs_from_server = false

[privileges]        # defaults; [domains.NAME.privileges] override per domain
download_from_activeupdate = false

[domains.branch.privileges]
download_from_activeupdate = true

[agents]
source = "server"                          # or "customized"

[[agent]]                                  # a registered update agent
address = "10.0.0.5:8443"
capabilities = ["components", "domain-settings", "programs"]

[[sources]]                                # order matters: first match is tried first
range = "10.0.0.0/24"                      # CIDR, "a.b.c.d-e.f.g.h", one address; IPv6 too
agent = "10.0.0.5:8443"
[[sources]]
range = "10.0.0.0-10.0.255.255"
url = "http://mirror.branch.example/cascade"
"#;

// The design's example parses into the model it describes.
#[test]
fn design_example_parses() {
    let p = Policy::from_toml(DESIGN_EXAMPLE).unwrap();
    assert_eq!(p.mode, Mode::Customized);
    assert!(!p.fallback.programs_from_server);
    assert_eq!(p.sources.len(), 2);
    assert_eq!(p.sources.as_slice()[0].id, EntryId(1));
    assert_eq!(p.sources.as_slice()[1].id, EntryId(2));
    assert!(matches!(p.sources.as_slice()[0].source, Source::Agent(_)));
    assert!(p.privileges_for(Some("branch")).download_from_activeupdate);
    assert!(!p.privileges_for(None).download_from_activeupdate);
    assert_eq!(p.agent[0].capabilities.len(), 3);
}

// export then apply gives back the same policy, and exporting again gives the same text.
#[test]
fn toml_round_trip() {
    let p = Policy::from_toml(DESIGN_EXAMPLE).unwrap();
    let text = p.to_toml().unwrap();
    let back = Policy::from_toml(&text).unwrap();
    assert_eq!(back, p, "\n{text}");
    assert_eq!(back.to_toml().unwrap(), text);
}

// Defaults: standard mode, every server fallback on, rule "any", agents from the server.
#[test]
fn empty_file_is_the_default_policy() {
    let p = Policy::from_toml("").unwrap();
    assert_eq!(p, Policy::default());
    assert_eq!(p.mode, Mode::Standard);
    for c in Category::ALL {
        assert!(p.fallback.from_server(c));
    }
}

fn refuse(text: &str) -> PolicyError {
    match Policy::from_toml(text) {
        Ok(p) => panic!("accepted bad policy:\n{text}\n{p:?}"),
        Err(e) => e,
    }
}

// Each bad input names its field and value and has a stable code.
#[test]
fn bad_input_names_field_and_value() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("[[sources]]\nrange = \"10.0.0.9-10.0.0.1\"\nurl = \"http://m/\"", "range.reversed", &["sources[0].range", "10.0.0.9-10.0.0.1"]),
        ("[[sources]]\nrange = \"10.0.0.1-fd00::1\"\nurl = \"http://m/\"", "range.mixed_families", &["sources[0].range", "10.0.0.1-fd00::1"]),
        ("[[sources]]\nrange = \"10.0.0.5/24\"\nurl = \"http://m/\"", "range.host_bits", &["sources[0].range", "10.0.0.5/24", "10.0.0.0/24"]),
        ("[[sources]]\nrange = \"10.0.0.0/24\"\nagent = \"10.0.0.9:8443\"", "policy.unknown_agent", &["sources[0].agent", "10.0.0.9:8443"]),
        ("[[sources]]\nrange = \"10.0.0.0/24\"\nurl = \"ftp://m/x\"", "policy.invalid", &["sources[0].url", "ftp://m/x"]),
        ("[[sources]]\nrange = \"10.0.0.0/24\"\nurl = \"not a url\"", "policy.invalid", &["sources[0].url", "not a url"]),
        ("[[sources]]\nrange = \"10.0.0.0/24\"", "policy.invalid", &["sources[0]", "exactly one"]),
        ("[[agent]]\naddress = \"10.0.0.5:8443\"\n[[sources]]\nrange = \"10.0.0.0/24\"\nurl = \"http://m/\"\nagent = \"10.0.0.5:8443\"", "policy.invalid", &["sources[0]", "exactly one"]),
        ("activeupdate_url = \"updates.example.net\"", "policy.invalid", &["activeupdate_url", "updates.example.net"]),
        ("[[agent]]\naddress = \"relay-1\"", "policy.invalid", &["agent[0].address", "relay-1"]),
        ("[[agent]]\naddress = \"10.0.0.5:8443\"\n[[agent]]\naddress = \"10.0.0.5:8443\"", "policy.duplicate", &["agent[1].address", "10.0.0.5:8443"]),
        ("[[sources]]\nid = 4\nrange = \"10.0.0.0/24\"\nurl = \"http://m/\"\n[[sources]]\nid = 4\nrange = \"10.0.0.1\"\nurl = \"http://n/\"", "policy.duplicate", &["sources[1].id", "4"]),
        ("mode = \"custom\"", "policy.syntax", &["mode", "custom"]),
        ("activeupdate_fallback = \"some\"", "policy.syntax", &["activeupdate_fallback", "some"]),
        ("[fallback]\ncomponent_from_server = true", "policy.syntax", &["component_from_server"]),
        ("[[agent]]\naddress = \"10.0.0.5:8443\"\ncapabilities = [\"patterns\"]", "policy.syntax", &["patterns"]),
    ];
    for (text, code, words) in cases {
        let err = refuse(text);
        assert_eq!(err.code(), *code, "{text}\n{err}");
        let msg = err.to_string();
        for w in *words {
            assert!(msg.contains(w), "message for\n{text}\nlacks `{w}`: {msg}");
        }
    }
}

// Ids missing from the file are assigned after the largest given one, in order.
#[test]
fn ids_are_assigned() {
    let p = Policy::from_toml(
        "[[sources]]\nrange = \"10.0.0.1\"\nurl = \"http://a/\"\n[[sources]]\nid = 7\nrange = \"10.0.0.2\"\nurl = \"http://b/\"\n[[sources]]\nrange = \"10.0.0.3\"\nurl = \"http://c/\"",
    )
    .unwrap();
    let ids: Vec<u32> = p.sources.iter().map(|e| e.id.0).collect();
    assert_eq!(ids, [8, 7, 9]);
}

// Removing an agent that an entry still uses is refused and names the entry; an unused one goes.
#[test]
fn agent_removal_guard() {
    let p = Policy::from_toml(DESIGN_EXAMPLE).unwrap();
    let addr = "10.0.0.5:8443".parse().unwrap();
    let err = p.with_agent_removed(addr).unwrap_err();
    assert_eq!(err.code(), "policy.agent_in_use");
    assert!(err.to_string().contains("sources[0]"));
    let ids = [EntryId(1)].into_iter().collect();
    let without_entry = p.with_sources(p.sources.delete(&ids).unwrap()).unwrap();
    let without_agent = without_entry.with_agent_removed(addr).unwrap();
    assert!(without_agent.agent.is_empty());
    assert_eq!(
        without_agent.with_agent_removed(addr).unwrap_err().code(),
        "agent.unknown"
    );
}

// A list that names an unregistered agent cannot be put into a policy.
#[test]
fn with_sources_validates() {
    let p = Policy::from_toml(DESIGN_EXAMPLE).unwrap();
    let (list, _) = p.sources.add(
        "10.9.0.0/16".parse().unwrap(),
        Source::Agent("10.9.9.9:8443".parse().unwrap()),
    );
    let err = p.with_sources(list).unwrap_err();
    assert_eq!(err.code(), "policy.unknown_agent");
    assert_eq!(err.field(), Some("sources[2].agent"));
}
