//! The server child: `serve` mode (the real server, cheap hashing, one JSON line on stdout
//! once it listens), and on the bench's side how it is started, read and ended.

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::{descriptors, raise_nofile, runtime};

/// What the server child prints on start.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Started {
    pub(crate) url: String,
    pub(crate) admin: String,
    pub(crate) enroll: String,
}

/// `serve` mode: the real server, with cheap hashing (tokens are random, the work factor
/// buys nothing here) and no notify head start (no agents are connected anyway).
pub(crate) fn serve(
    listen: SocketAddr,
    data_dir: PathBuf,
    max_connections: usize,
    tls: bool,
) -> Result<()> {
    if !matches!(listen.ip(), IpAddr::V4(a) if a.is_loopback()) {
        bail!("--listen must be a 127.x.y.z address");
    }
    let limit = raise_nofile(descriptors(max_connections));
    if limit < descriptors(max_connections) {
        bail!(
            "the server may open {limit} files, {max_connections} streams need {}",
            descriptors(max_connections)
        );
    }
    let mut s = cascade_server::Settings::new(data_dir);
    s.hash_cost = cascade_testkit::CHEAP_HASHING;
    s.limits.max_connections = max_connections;
    // Raw sockets speaking HTTP/1.1; plain HTTP unless `--tls`, said out loud
    // (docs/operating.md#tls).
    if !tls {
        s.tls = cascade_server::TlsMode::InsecurePlainHttp;
    }
    s.on_first_start = Arc::new(|f: &cascade_server::FirstStart| {
        let line = serde_json::to_string(&Started {
            url: f.url.clone(),
            admin: f.admin_token.clone(),
            enroll: f.enrollment_token.clone(),
        })
        .unwrap_or_default();
        println!("{line}");
    });
    runtime()?.block_on(async move {
        let listener =
            cascade_front::listen(listen).with_context(|| format!("binding {listen}"))?;
        // The parent kills this process when the bench ends.
        cascade_server::launch(s, listener, std::future::pending())
            .await
            .map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))
    })
}

/// Kills the server child when the bench ends, however it ends.
pub(crate) struct ServerChild(pub(crate) Child);

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system) used so far by process `pid`, ms; 0 when unknown.
pub(crate) fn cpu_ms(pid: u32) -> f64 {
    // Fields 14 and 15 of /proc/PID/stat, in clock ticks (100 per second on Linux); the
    // command name (field 2) may hold spaces, so count from its closing parenthesis.
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) * 10.0
}

/// The command that runs the server child: this binary, or, with `SSE_SERVER_WRAP=heaptrack`
/// (any command taking the program and its arguments), this binary under that command (the
/// RSS figures are then the wrapper's process's).
pub(crate) fn server_command(exe: PathBuf) -> Command {
    match std::env::var_os("SSE_SERVER_WRAP") {
        Some(wrap) => {
            let mut c = Command::new(wrap);
            c.arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

/// The first line of `stdout` that is JSON (a wrapper may print lines of its own first), and
/// the reader, kept open so the child's later writes do not fail.
pub(crate) fn first_json_line(
    stdout: std::process::ChildStdout,
) -> Result<(BufReader<std::process::ChildStdout>, String)> {
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    while !line.trim_start().starts_with('{') {
        line.clear();
        if stdout
            .read_line(&mut line)
            .context("reading the server's first-start line")?
            == 0
        {
            bail!("the server child ended before it listened");
        }
    }
    Ok((stdout, line))
}
