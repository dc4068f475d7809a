//! `cascade demo --no-console` end to end, as a real process: upstream, server, two update
//! agents, a URL mirror and a small fleet on loopback addresses, five acts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;

// The demo converges in every act, and in act 3 office 2 (its update agent stopped) is
// visibly served by the next entry, the URL mirror, with the failed step counted.
#[test]
fn demo_converges_and_shows_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = Command::cargo_bin("cascade")
        .unwrap()
        .args([
            "demo",
            "--no-console",
            "--clients",
            "7",
            "--timeout",
            "90",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .timeout(std::time::Duration::from_secs(240))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("result: every client is current"),
        "{stdout}"
    );
    let act3 = &stdout[stdout.find("act 3").unwrap()..];
    let office2 = act3.lines().find(|l| l.starts_with("│ office 2")).unwrap();
    assert!(
        office2.contains("url:http://127.0.0.4:"),
        "office 2 should fall back to the mirror: {office2}"
    );
    let office1 = act3.lines().find(|l| l.starts_with("│ office 1")).unwrap();
    assert!(office1.contains("agent:127.0.0.2:"), "{office1}");
    // Every client really has the last version installed.
    let clients = std::fs::read_dir(data.join("clients")).unwrap().count();
    assert_eq!(clients, 7);
    for e in std::fs::read_dir(data.join("clients")).unwrap() {
        let client = e.unwrap().path();
        let link = client.join("installed/components/patterns/current");
        assert_eq!(
            std::fs::read_link(&link).unwrap().to_string_lossy(),
            "1.2",
            "{}",
            link.display()
        );
        // Acts 4 and 5: the good build of `tool` everywhere, the bad one nowhere.
        let tool = client.join("installed/programs/tool/current");
        assert_eq!(std::fs::read_link(&tool).unwrap().to_string_lossy(), "2.0");
    }
    let act5 = &stdout[stdout.find("act 5").unwrap()..];
    assert!(
        act5.contains("halted automatically in ring 1 (`office 2`)"),
        "{act5}"
    );
    assert!(
        act5.contains("7 of 7 clients keep 2.0, 0 have 3.0"),
        "{act5}"
    );
}

// Bad input is refused before anything starts.
#[test]
fn demo_refuses_bad_input() {
    Command::cargo_bin("cascade")
        .unwrap()
        .args(["demo", "--no-console", "--clients", "0"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--clients"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    Command::cargo_bin("cascade")
        .unwrap()
        .args(["demo", "--no-console", "--data-dir"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "mine"
    );
}
