//! What every subcommand that talks to a running server shares: where the server is
//! ([`Conn`]: `--server`, `CASCADE_SERVER` or the config file, and the CA to trust), the admin
//! token, the admin API client ([`admin`], [`ask`]), what a failed call means for the person
//! at the terminal ([`failed`]), and printing (JSON, tables, times for people).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use cascade_client::{AdminClient, Client, ClientError};
use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::{Deserialize, Serialize};

use crate::BadInput;

/// The async runtime every subcommand runs its calls on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Where the server is and how to print; shared by every API subcommand.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The server's URL, e.g. `https://127.0.0.1:8080` (else `CASCADE_SERVER` or the config file).
    #[arg(long, env = "CASCADE_SERVER")]
    pub server: Option<String>,
    /// The server's CA certificate (PEM) to trust, e.g. a copy of its `/ca.pem` (else
    /// `CASCADE_CA`, `ca` in the config file, or `DATA_DIR/tls/ca.pem` of a server whose data
    /// directory is here: `CASCADE_DATA_DIR` or `cascade-server-data`).
    #[arg(long, env = "CASCADE_CA")]
    pub ca: Option<PathBuf>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Optimistic concurrency: refuse the write if the policy changed since this revision.
#[derive(Debug, Clone, Copy, Args)]
pub struct Revision {
    /// Only write if the server's policy is still at this revision (else exit 2, HTTP 409).
    #[arg(long)]
    pub revision: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    server: Option<String>,
    token: Option<String>,
    ca: Option<PathBuf>,
}

/// The CA certificate to trust for `conn` (`docs/operating.md#tls`): `--ca`/`CASCADE_CA`,
/// else the config file's `ca`, else a local server's `DATA_DIR/tls/ca.pem`; `None`: the
/// system's roots.
fn server_ca(conn: &Conn, file: &ConfigFile) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(path) = conn.ca.as_ref().or(file.ca.as_ref()) {
        return std::fs::read(path)
            .map(Some)
            .map_err(|e| BadInput(format!("--ca: cannot read {}: {e}", path.display())).into());
    }
    let data_dir = std::env::var_os("CASCADE_DATA_DIR")
        .map_or_else(|| PathBuf::from("cascade-server-data"), PathBuf::from);
    Ok(std::fs::read(data_dir.join("tls").join("ca.pem")).ok())
}

fn config_file() -> anyhow::Result<ConfigFile> {
    let path = std::env::var_os("CASCADE_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("cascade/cli.toml"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/cascade/cli.toml"))
        });
    let Some(path) = path.filter(|p| p.exists()) else {
        return Ok(ConfigFile::default());
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| BadInput(format!("{}: {e}", path.display())).into())
}

/// The admin API client for `conn`: the server from `--server`, `CASCADE_SERVER` or the
/// config file; the token from `CASCADE_TOKEN` or the config file.
pub(crate) fn admin(conn: &Conn) -> anyhow::Result<AdminClient> {
    let file = config_file()?;
    let ca = server_ca(conn, &file)?;
    let base = conn.server.clone().or(file.server).ok_or_else(|| {
        BadInput(
            "no server: give --server URL, CASCADE_SERVER or `server` in the config file".into(),
        )
    })?;
    let token = std::env::var("CASCADE_TOKEN")
        .ok()
        .or(file.token)
        .ok_or_else(|| {
            BadInput("no admin token: set CASCADE_TOKEN or `token` in the config file".into())
        })?;
    let url = url::Url::parse(&base)
        .map_err(|e| BadInput(format!("server: `{base}` is not a URL: {e}")))?;
    let client = Client::builder(url)
        .timeout(Duration::from_secs(60))
        .trust_ca_pem(ca)
        .build()
        .context("cannot build the HTTP client")?;
    Ok(client.admin(token))
}

/// What a failed call means for the person at the terminal: the request, the HTTP status,
/// the server's code and message; refusals of bad input (4xx) exit with status 2.
pub(crate) fn failed(what: &str, server: &AdminClient, e: ClientError) -> anyhow::Error {
    let base = server
        .client()
        .base()
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    match (e.status(), e.server_error()) {
        (Some(status), Some(err)) => {
            let msg = format!("{what}: HTTP {status} [{}] {}", err.code, err.message);
            match status {
                401 | 403 => anyhow!("{msg} (check CASCADE_TOKEN)"),
                400..=499 => BadInput(msg).into(),
                _ => anyhow!(msg),
            }
        }
        _ => match e {
            ClientError::Unreachable(m) => anyhow!("cannot reach the server at {base}: {m}"),
            other => anyhow!("{what}: {other}"),
        },
    }
}

/// Runs one admin call, naming the request when it fails.
pub(crate) async fn ask<T, F>(
    conn: &Conn,
    what: &str,
    call: impl FnOnce(AdminClient) -> F,
) -> anyhow::Result<T>
where
    F: std::future::Future<Output = Result<T, ClientError>>,
{
    let api = admin(conn)?;
    call(api.clone()).await.map_err(|e| failed(what, &api, e))
}

/// Prints `v` as pretty JSON on standard output (`--json`).
pub(crate) fn print_json<T: Serialize>(v: &T) {
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_default()
    );
}

/// A table with the given column headers, in the style every subcommand prints.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

/// An optional value for a table cell (`-` when absent).
pub(crate) fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Now, Unix seconds, by this machine's clock.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// A time for people: `3 min ago (2026-11-27 19:49:50 UTC)`, as the console writes it.
pub(crate) fn when(t: i64, now: i64) -> String {
    format!(
        "{} ({})",
        cascade_server::human::ago(t, now),
        cascade_server::human::time(t)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // `cascade clients` writes check-ins as people read them, never raw Unix seconds.
    #[test]
    fn times_for_people() {
        assert_eq!(when(100, 280), "3 min ago (1970-01-01 00:01:40 UTC)");
        assert_eq!(
            when(1_795_798_451, 1_795_798_451),
            "just now (2026-11-27 16:54:11 UTC)"
        );
    }
}
