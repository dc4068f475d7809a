//! The harness of the tests that run the `cascade` binary as a real process (the CLI crate's
//! `tests/`): the set-up they share, so each test says only what it checks.
//!
//! - Admin commands against a server: [`admin_fleet`] starts one with its data in
//!   `DIR/server`, [`admin_command`] is `cascade ARGS --server URL` with a token, no config
//!   file and the server's CA, and [`output`] / [`output_with_stdin`] run it off the async
//!   runtime (the server in the test's process keeps answering meanwhile).
//! - Agents: [`agent_fleet`] is [`upstream_and_server`] with the upstream mirrored into the
//!   server, so an agent finds `components/patterns` version 1 there; [`enroll_args`] and
//!   [`agent_once_args`] are the command lines that enroll an agent with the fleet;
//!   [`publish_patterns`] releases the next version; [`installed_patterns`] and
//!   [`client_id`] read what an agent's data directory holds.
//!
//! The binary's path is the caller's (`env!("CARGO_BIN_EXE_cascade")` exists only in the
//! CLI crate's tests). Every address is on 127.0.0.0/8.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cascade_core::Category;

use crate::{kit, start_fleet, upstream_and_server, Fleet, KitError, Upstream};

/// A fresh server for the admin commands' tests: its data in `dir/server`, on 127.0.0.1 at a
/// free port, no upstream, cheap credential hashing ([`start_fleet`]).
///
/// # Errors
/// When the server cannot open its store or bind.
pub async fn admin_fleet(dir: &Path) -> Result<Fleet, KitError> {
    start_fleet(
        &dir.join("server"),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
    )
    .await
}

/// `exe ARGS --server URL` with `token` as the admin token (`CASCADE_TOKEN`), no config file
/// (`CASCADE_CONFIG` names none), the fleet's CA trusted (`CASCADE_CA`) and `CASCADE_SERVER`
/// unset, so only what the test gives counts.
pub fn admin_command(exe: &str, fleet: &Fleet, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg("--server")
        .arg(fleet.url.as_str())
        .env("CASCADE_TOKEN", token)
        .env("CASCADE_CONFIG", "/nonexistent/cascade-cli.toml")
        .env("CASCADE_CA", fleet.data_dir.join("tls/ca.pem"))
        .env_remove("CASCADE_SERVER");
    cmd
}

/// Runs `cmd` to its end on a blocking thread and returns its status and output.
///
/// # Errors
/// When it cannot be started (or the blocking thread is lost).
pub async fn output(mut cmd: Command) -> std::io::Result<Output> {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(std::io::Error::other)?
}

/// [`output`] with `stdin` written to the command's standard input.
///
/// # Errors
/// When it cannot be started or its input not written.
pub async fn output_with_stdin(mut cmd: Command, stdin: &str) -> std::io::Result<Output> {
    use std::io::Write as _;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no standard input"))?
            .write_all(stdin.as_bytes())?;
        child.wait_with_output()
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A command's output as text, for messages and `contains` checks.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// [`upstream_and_server`] (`components/patterns` version 1 = `v1` upstream, a server in
/// `dir/server` pinning the upstream's root) with the policy's `activeupdate_url` set to the
/// upstream and the upstream mirrored once: an agent enrolled now installs version 1.
/// Returns the upstream, its root's path and the server.
///
/// # Errors
/// Any part that cannot be created, started or mirrored.
pub async fn agent_fleet(dir: &Path, v1: &[u8]) -> Result<(Upstream, PathBuf, Fleet), KitError> {
    let (upstream, root, fleet) = upstream_and_server(dir, v1).await?;
    let url = upstream
        .url()
        .ok_or_else(|| kit("upstream")(&"it is not served"))?;
    fleet
        .apply_policy(&format!("activeupdate_url = \"{url}\""))
        .await?;
    fleet.mirror().await?;
    Ok((upstream, root, fleet))
}

/// Publishes `components/patterns` `version` (one file, `patterns.db` = `bytes`) upstream and
/// mirrors it into the server.
///
/// # Errors
/// When publishing or mirroring fails.
pub async fn publish_patterns(
    upstream: &Upstream,
    fleet: &Fleet,
    version: &str,
    bytes: &[u8],
) -> Result<(), KitError> {
    upstream
        .publish(
            Category::Components,
            "patterns",
            version,
            &[("patterns.db", bytes)],
        )
        .await?;
    fleet.mirror().await?;
    Ok(())
}

/// The arguments that enroll an agent with `fleet`: `--server URL --enroll-token TOKEN
/// --upstream-root ROOT --site-root SITE_ROOT` (the site repository's first root).
pub fn enroll_args(fleet: &Fleet, upstream_root: &Path) -> Vec<OsString> {
    vec![
        "--server".into(),
        fleet.url.as_str().into(),
        "--enroll-token".into(),
        fleet.enroll.clone().into(),
        "--upstream-root".into(),
        upstream_root.into(),
        "--site-root".into(),
        fleet.site.public_dir().join("metadata/1.root.json").into(),
    ]
}

/// The arguments of one update cycle of an agent of `fleet`: `agent --once --bind-ip IP
/// --data-dir DATA` and [`enroll_args`].
pub fn agent_once_args(
    data: &Path,
    bind_ip: &str,
    fleet: &Fleet,
    upstream_root: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["agent", "--once", "--bind-ip", bind_ip, "--data-dir"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(data.into());
    args.extend(enroll_args(fleet, upstream_root));
    args
}

/// The installed `components/patterns` `patterns.db` of the agent whose data is in `data`,
/// if there is one.
pub fn installed_patterns(data: &Path) -> Option<Vec<u8>> {
    std::fs::read(data.join("installed/components/patterns/current/patterns.db")).ok()
}

/// The client id the agent whose data is in `data` enrolled as, once it has.
pub fn client_id(data: &Path) -> Option<String> {
    let bytes = std::fs::read(data.join("identity.json")).ok()?;
    let id: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(id["client_id"].as_str()?.to_owned())
}
