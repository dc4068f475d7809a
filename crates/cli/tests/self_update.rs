//! Agent self-update with two real builds of the agent (`docs/operating.md#agent-self-update`):
//! the test builds `cascade` a second time with another version (`cascade-second-build`,
//! `CASCADE_BUILD_VERSION`, fault injection compiled in), uploads it as this platform's agent
//! program with `cascade publish --server … --hotfix` (the server signs and publishes it in
//! its site repository), and watches three agents that each run a copy of the first build as
//! their service binary: one re-executes as the new build, checks in as it and commits it
//! (the old binary kept); one gets a new build that exits at start and, started again by the
//! test as a service manager would, is back on the old build; one gets a new build that never
//! checks in and hands back to the old build after its trial.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cascade_agent::selfupdate::{program_name, SelfDir};
use cascade_agent::state::DataDir;
use cascade_client::proto::ClientView;
use cascade_testkit::cli::{agent_fleet, client_id, enroll_args};
use cascade_testkit::{wait_until, Fleet};

/// The second build's version.
const NEXT: &str = "9.9.9-second";

/// Builds `cascade-second-build` (version [`NEXT`]) beside the `cascade` under test, in the
/// same target directory and profile: only the command's and the agent's crates are compiled
/// again (the feature keeps their artifacts apart), the normal build stays fresh.
fn second_build() -> PathBuf {
    let cascade = Path::new(env!("CARGO_BIN_EXE_cascade"));
    let profile_dir = cascade.parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = profile_dir.file_name().unwrap().to_str().unwrap();
    let profile = if profile == "debug" { "dev" } else { profile };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--locked", "-p", "cascade-cli"])
        .args([
            "--features",
            "second-build",
            "--bin",
            "cascade-second-build",
        ])
        .args(["--profile", profile, "--target-dir"])
        .arg(target_dir)
        .env("CASCADE_BUILD_VERSION", NEXT)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building the second build failed");
    profile_dir.join("cascade-second-build")
}

/// One agent daemon run from its own copy of the first build, as a service would.
struct Agent {
    name: &'static str,
    exe: PathBuf,
    data: PathBuf,
    args: Vec<OsString>,
    fault: Option<&'static str>,
    child: Child,
    /// Times the test started it again after it exited.
    restarts: u32,
}

impl Agent {
    fn start(fleet: &Fleet, dir: &Path, name: &'static str, ip: &str, root: &Path) -> Agent {
        let home = dir.join(name);
        let exe = home.join("bin/cascade");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_cascade"), &exe).unwrap();
        let data = home.join("data");
        let mut args: Vec<OsString> = vec![
            "agent".into(),
            "--name".into(),
            name.into(),
            "--bind-ip".into(),
            ip.into(),
            "--data-dir".into(),
            data.clone().into(),
        ];
        args.extend(enroll_args(fleet, root));
        args.extend(
            [
                "--interval",
                "1",
                "--verify-every",
                "0",
                "--self-update-trial",
                "4",
            ]
            .map(OsString::from),
        );
        let fault = match name {
            "exits" => Some("exit"),
            "silent" => Some("silent"),
            _ => None,
        };
        Agent {
            name,
            child: spawn(&exe, &args, fault),
            exe,
            data,
            args,
            fault,
            restarts: 0,
        }
    }

    /// What a service manager does: start the agent again when it exited.
    fn keep_running(&mut self) {
        if self.child.try_wait().unwrap().is_some() {
            self.restarts += 1;
            self.child = spawn(&self.exe, &self.args, self.fault);
        }
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    async fn record(&self, fleet: &Fleet) -> Option<ClientView> {
        fleet
            .api()
            .client_record(&client_id(&self.data)?)
            .await
            .ok()
    }

    fn self_dir(&self) -> SelfDir {
        SelfDir::new(&DataDir::open(&self.data).unwrap())
    }
}

/// Starts the service binary `exe`. The fault variable is set on every build: the first
/// build has no fault injection compiled in, the second build inherits it through `exec`.
fn spawn(exe: &Path, args: &[OsString], fault: Option<&str>) -> Child {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("CASCADE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(f) = fault {
        cmd.env("CASCADE_FAULT", f);
    }
    cmd.spawn().unwrap()
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the client's last report says its new build was rolled back.
fn rolled_back(view: &ClientView) -> bool {
    view.last_update.as_ref().is_some_and(|r| {
        r.attempts.iter().any(|a| {
            a.reason
                .as_ref()
                .and_then(|r| r.failure())
                .is_some_and(|f| f.code == "selfupdate.rolled_back" && f.message.contains(NEXT))
        })
    })
}

/// Publishes the second build as an operator would: `cascade publish --server … --hotfix`
/// uploads it through the admin API, which signs and publishes it; it is listed as a hotfix.
async fn publish_through_the_server(fleet: &Fleet, dir: &Path, next: &Path, next_bytes: &[u8]) {
    let file = dir.join("cascade");
    std::fs::copy(next, &file).unwrap();
    let mut publish = Command::new(env!("CARGO_BIN_EXE_cascade"));
    publish
        .args(["publish", "--server", fleet.url.as_str()])
        .args(["--category", "programs", &program_name(), NEXT])
        .arg(&file)
        .arg("--hotfix")
        .arg("--ca")
        .arg(fleet.data_dir.join("tls/ca.pem"))
        .env("CASCADE_TOKEN", &fleet.admin)
        .env("CASCADE_CONFIG", dir.join("no-config.toml"));
    let out = tokio::task::spawn_blocking(move || publish.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!(
            "published programs/{}/{NEXT}/cascade ({} bytes",
            program_name(),
            next_bytes.len()
        )) && text.contains("as a hotfix"),
        "{text}"
    );
    let listed = fleet.api().programs().await.unwrap().programs;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].hotfix);
    assert_eq!(
        listed[0].sha256,
        cascade_repo::fsutil::sha256_hex(next_bytes)
    );
}

// Two real builds: the good one takes over the running agent (same process) and is committed
// with the old binary kept; a build that exits at start and one that never checks in are
// rolled back to the old binary, which then reports why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_updates_itself_and_bad_builds_are_rolled_back() {
    let next = tokio::task::spawn_blocking(second_build).await.unwrap();
    let first_bytes = std::fs::read(env!("CARGO_BIN_EXE_cascade")).unwrap();
    let next_bytes = std::fs::read(&next).unwrap();
    assert_ne!(first_bytes, next_bytes);
    let out = Command::new(&next).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("cascade {NEXT}")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cascade"))
        .arg("--version")
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("cascade ")
        .unwrap()
        .to_owned();

    let tmp = tempfile::tempdir().unwrap();
    let (_upstream, root, fleet) = agent_fleet(tmp.path(), b"one").await.unwrap();
    let mut good = Agent::start(&fleet, tmp.path(), "good", "127.0.1.71", &root);
    let mut exits = Agent::start(&fleet, tmp.path(), "exits", "127.0.1.72", &root);
    let mut silent = Agent::start(&fleet, tmp.path(), "silent", "127.0.1.73", &root);
    for a in [&good, &exits, &silent] {
        wait_until(Duration::from_secs(60), || async {
            a.record(&fleet)
                .await
                .is_some_and(|v| v.agent_version.as_deref() == Some(first.as_str()))
        })
        .await
        .unwrap_or_else(|e| panic!("{} never checked in as {first}: {e}", a.name));
    }

    publish_through_the_server(&fleet, tmp.path(), &next, &next_bytes).await;

    // The good agent: the same process runs the new build, which checked in and committed.
    wait_until(Duration::from_secs(120), || async {
        good.record(&fleet)
            .await
            .is_some_and(|v| v.agent_version.as_deref() == Some(NEXT))
            && good.self_dir().trial().unwrap().is_none()
    })
    .await
    .expect("the good agent never checked in as the new build");
    assert!(good.still_running(), "the good agent's process ended");
    assert_eq!(std::fs::read(&good.exe).unwrap(), next_bytes);
    let previous = good.self_dir().previous().expect("the previous build kept");
    assert_eq!(previous.version, first);
    assert_eq!(std::fs::read(&previous.binary).unwrap(), first_bytes);
    assert!(good.self_dir().refused().is_empty());

    // The build that exits at start: started again (as a service manager would), the
    // service binary is still the old build, which rolls back and says so.
    let mut back = false;
    for _ in 0..600 {
        exits.keep_running();
        let v = exits.record(&fleet).await;
        if v.as_ref()
            .is_some_and(|v| rolled_back(v) && v.agent_version.as_deref() == Some(first.as_str()))
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "the agent whose new build exits was not rolled back");
    assert!(exits.restarts >= 1, "the new build did not exit");
    assert_eq!(std::fs::read(&exits.exe).unwrap(), first_bytes);
    let refused = exits.self_dir().refused();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].version, NEXT);
    assert!(exits.self_dir().trial().unwrap().is_none());

    // The build that never checks in: after its trial it hands the process back to the old
    // build (no restart), which rolls back and says so.
    wait_until(Duration::from_secs(120), || async {
        silent
            .record(&fleet)
            .await
            .is_some_and(|v| rolled_back(&v) && v.agent_version.as_deref() == Some(first.as_str()))
    })
    .await
    .expect("the agent whose new build never checks in was not rolled back");
    assert!(silent.still_running(), "the silent agent's process ended");
    assert_eq!(std::fs::read(&silent.exe).unwrap(), first_bytes);
    assert_eq!(silent.self_dir().refused()[0].version, NEXT);
    // It stays on the old build: the refused version is not tried again.
    assert!(silent.self_dir().trial().unwrap().is_none());
    assert!(good.still_running());
}
