//! The `cascade` binary run as a real process: exit statuses, the JSON contract of
//! `sources resolve`, tables, and bad-input messages that name the field and value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;

fn cascade() -> Command {
    Command::cargo_bin("cascade").unwrap()
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy.toml")
}

fn write_policy(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

// `policy check` accepts the shipped example and says what it found.
#[test]
fn check_accepts_example() {
    cascade()
        .args(["policy", "check"])
        .arg(example())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ok (customized mode, 2 agents, 4 source entries)",
        ));
}

// `policy check` refuses each kind of bad input with exit 2, naming field and value.
#[test]
fn check_refuses_bad_input() {
    let cases = [
        (
            "[[sources]]\nrange = \"10.0.0.9-10.0.0.1\"\nurl = \"http://m/\"",
            &["sources[0].range", "10.0.0.9-10.0.0.1", "range.reversed"][..],
        ),
        (
            "[[sources]]\nrange = \"10.0.0.0/24\"\nagent = \"10.0.0.9:8443\"",
            &[
                "sources[0].agent",
                "10.0.0.9:8443",
                "not a registered update agent",
            ][..],
        ),
        (
            "[[sources]]\nrange = \"10.0.0.0/24\"\nurl = \"ftp://x/\"",
            &["sources[0].url", "ftp://x/"][..],
        ),
        ("mode = \"custom\"", &["mode", "custom", "standard"][..]),
    ];
    for (text, words) in cases {
        let (_dir, path) = write_policy(text);
        let mut assert = cascade()
            .args(["policy", "check"])
            .arg(&path)
            .assert()
            .code(2)
            .stdout("");
        for w in words {
            assert = assert.stderr(predicate::str::contains(*w));
        }
    }
}

// A missing file is an ordinary failure (exit 1), not bad policy input, and names the path.
#[test]
fn missing_file_exits_one() {
    cascade()
        .args(["policy", "check", "/nonexistent/cascade-policy.toml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/cascade-policy.toml"));
}

// `policy show` prints the settings and the list as a table, in list order.
#[test]
fn show_prints_table_in_order() {
    let out = cascade()
        .args(["policy", "show"])
        .arg(example())
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("fallback.programs_from_server: off"),
        "{text}"
    );
    let a = text.find("10.0.1.0/24").unwrap();
    let b = text.find("10.0.2.0/24").unwrap();
    let c = text.find("10.0.0.0-10.0.255.255").unwrap();
    assert!(a < b && b < c, "{text}");
    assert!(text.contains("update agent 10.0.1.5:8443"), "{text}");
}

// `sources resolve --json` prints exactly the contract: ip, plans[category, steps[source, why]].
#[test]
fn resolve_json_contract() {
    let out = cascade()
        .args([
            "sources",
            "resolve",
            "--ip",
            "10.0.1.20",
            "--json",
            "--policy",
        ])
        .arg(example())
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let expected = serde_json::json!({
        "ip": "10.0.1.20",
        "plans": [
            {"category": "components", "steps": [
                {"source": "agent:10.0.1.5:8443", "why": "sources[0] 10.0.1.0/24 contains 10.0.1.20"},
                {"source": "url:http://mirror.branch.example/cascade", "why": "sources[2] 10.0.0.0-10.0.255.255 contains 10.0.1.20"},
                {"source": "server", "why": "fallback.components_from_server is on"}
            ]},
            {"category": "domain-settings", "steps": [
                {"source": "agent:10.0.1.5:8443", "why": "sources[0] 10.0.1.0/24 contains 10.0.1.20"},
                {"source": "url:http://mirror.branch.example/cascade", "why": "sources[2] 10.0.0.0-10.0.255.255 contains 10.0.1.20"},
                {"source": "server", "why": "fallback.domain_settings_from_server is on"}
            ]},
            {"category": "programs", "steps": [
                {"source": "agent:10.0.1.5:8443", "why": "sources[0] 10.0.1.0/24 contains 10.0.1.20"},
                {"source": "url:http://mirror.branch.example/cascade", "why": "sources[2] 10.0.0.0-10.0.255.255 contains 10.0.1.20"}
            ]}
        ]
    });
    assert_eq!(v, expected);
}

// `--domain` applies that domain's privileges, and `--category` narrows to one plan; the
// upstream is reached through the `any` rule (`docs/architecture.md#fallback-chain`) when the
// server option is off.
#[test]
fn resolve_domain_and_category() {
    let (_dir, path) = write_policy(
        "mode = \"customized\"\nactiveupdate_url = \"https://up.example/repo\"\nactiveupdate_fallback = \"all\"\n[fallback]\ncomponents_from_server = false\n[domains.lab.privileges]\ndownload_from_activeupdate = true\n",
    );
    let run = |domain: Option<&str>| {
        let mut cmd = cascade();
        cmd.args([
            "sources",
            "resolve",
            "--ip",
            "192.0.2.7",
            "--category",
            "components",
            "--json",
            "--policy",
        ])
        .arg(&path);
        if let Some(d) = domain {
            cmd.args(["--domain", d]);
        }
        let out = cmd.assert().success();
        serde_json::from_slice::<serde_json::Value>(&out.get_output().stdout).unwrap()
    };
    let lab = run(Some("lab"));
    assert_eq!(lab["plans"].as_array().unwrap().len(), 1);
    assert_eq!(
        lab["plans"][0]["steps"][0]["source"],
        "activeupdate:https://up.example/repo"
    );
    let default = run(None);
    assert_eq!(default["plans"][0]["steps"], serde_json::json!([]));
}

// The human output lists numbered steps with reasons and what was skipped.
#[test]
fn resolve_text_output() {
    cascade()
        .args([
            "sources",
            "resolve",
            "--ip",
            "10.0.2.20",
            "--category",
            "programs",
            "--policy",
        ])
        .arg(example())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "1. url:http://mirror.branch.example/cascade",
        ))
        .stdout(predicate::str::contains("agent lacks capability programs"))
        .stdout(predicate::str::contains(
            "fallback.programs_from_server is off",
        ));
}

// Bad arguments: an unknown domain or category, and a malformed IP, exit 2 with the value.
#[test]
fn resolve_bad_arguments() {
    cascade()
        .args([
            "sources", "resolve", "--ip", "10.0.0.1", "--domain", "labb", "--policy",
        ])
        .arg(example())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`labb`").and(predicate::str::contains("lab")));
    cascade()
        .args([
            "sources",
            "resolve",
            "--ip",
            "10.0.0.1",
            "--category",
            "patterns",
            "--policy",
        ])
        .arg(example())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("patterns"));
    cascade()
        .args(["sources", "resolve", "--ip", "10.0.0.300", "--policy"])
        .arg(example())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("10.0.0.300"));
}
