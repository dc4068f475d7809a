//! `cascade server` (run the server until SIGINT/SIGTERM) and the subcommands that talk to a
//! running server's admin API: `sources list|add|edit|rm|move`, `notify`, `clients`,
//! `agents` and `policy export|apply`. The server URL comes from `--server`, `CASCADE_SERVER`
//! or the config file; the admin token from `CASCADE_TOKEN` or the config file
//! (`$CASCADE_CONFIG`, else `$XDG_CONFIG_HOME/cascade/cli.toml`, else
//! `~/.config/cascade/cli.toml`, with `server = "…"` and `token = "…"`). Refusals of bad input
//! (4xx) exit with status 2 and print the server's code, field and message.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use cascade_client::proto::{
    AgentDoc, AgentsResponse, ClientsQuery, DeleteSources, FleetHealth, HealthLevel, MoveSource,
    NewToken, NewUser, NotifyRequest, SourceBody, SourceKind, SourcesResponse, UserPatch, UserRole,
};
use cascade_client::{AdminClient, Client, ClientError};
use cascade_core::{Category, Policy, PolicyDoc};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::{Deserialize, Serialize};

use crate::BadInput;

/// `cascade server`: run the server.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Data directory: the `SQLite` database and `repo/`.
    #[arg(long, env = "CASCADE_DATA_DIR", default_value = "cascade-server-data")]
    pub data_dir: PathBuf,
    /// `postgres://user@host/db` to keep state in `PostgreSQL` (default: `SQLite` in the data dir).
    #[arg(long, env = "CASCADE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory served at `/repo/` (default: `DATA_DIR/repo`).
    #[arg(long)]
    pub repo_dir: Option<PathBuf>,
    /// The server's own site repository (domain settings, programs), served at `/repo/site/`;
    /// created on first start when it holds none (default: `DATA_DIR/site-repo`, unless
    /// `REPO_DIR/site` is a link the operator made, which is then served as it is).
    #[arg(long)]
    pub site_repo: Option<PathBuf>,
    /// File whose first line is the passphrase of the site repository's key files (else the
    /// `CASCADE_KEY_PASSPHRASE` environment variable): the keys a first start creates are
    /// encrypted with it, and encrypted keys need it to sign. Without one the keys are plain
    /// files, warned about at every start (`docs/operating.md#keys-and-their-ceremony`).
    #[arg(long, value_name = "FILE")]
    pub key_passphrase_file: Option<PathBuf>,
    /// Seconds update agents hear a notify before ordinary clients.
    #[arg(long, default_value_t = 10)]
    pub agent_head_start: u64,
    /// A replica's base URL (repeat it for each, this one included): told to every client at
    /// enrollment, which then fails over between them (docs/operating.md#replicas).
    #[arg(long = "replica-url", value_name = "URL")]
    pub replica_urls: Vec<url::Url>,
    /// Seconds between the agents' scheduled updates (their --interval): health counts
    /// reports from the last two intervals, and an update agent silent that long is down.
    #[arg(long, default_value_t = 3600)]
    pub update_interval: u64,
    /// Seconds without a check-in after which a client is stale.
    #[arg(long, default_value_t = 86_400)]
    pub stale_after: u64,
    /// The upstream's trusted `root.json`: turns on mirroring of the policy's
    /// `activeupdate_url` into `/repo/upstream/` (also `POST /api/repo/mirror`).
    #[arg(long)]
    pub upstream_root: Option<PathBuf>,
    /// Seconds between scheduled mirror runs (0: only on demand).
    #[arg(long, default_value_t = 3600, requires = "upstream_root")]
    pub mirror_every: u64,
    /// With `--database-url postgres://…` (replicas): seconds between a replica's reads of
    /// the shared repository without a signal, and its tries to become the mirror leader
    /// (docs/operating.md#shared-repository-and-one-writer).
    #[arg(long, default_value_t = 10)]
    pub replica_poll: u64,
    /// Seconds a connection may take to send a request's headers; also how long a kept-alive
    /// connection may sit idle.
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a request body may take to arrive whole.
    #[arg(long, default_value_t = 30)]
    pub body_timeout: u64,
    /// Connections served at once; more wait in the listen queue.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// The largest request body in bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// The largest program build `cascade publish --server` may upload, in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 30)]
    pub max_program_bytes: u64,
    /// Seconds a program upload may take to arrive whole.
    #[arg(long, default_value_t = 1800)]
    pub upload_timeout: u64,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>` (default: open).
    #[arg(long, env = "CASCADE_METRICS_TOKEN")]
    pub metrics_token: Option<String>,
    /// An organisation's own certificate chain (PEM, leaf first, ending with the CA clients
    /// are to trust); default: the server's private CA in `DATA_DIR/tls/`.
    #[arg(long, requires = "tls_key", conflicts_with = "insecure_plain_http")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A DNS name or IP address the private CA's server certificate also names (repeat it);
    /// the listen address and `localhost` are always named.
    #[arg(long = "tls-name", conflicts_with_all = ["tls_cert", "insecure_plain_http"])]
    pub tls_names: Vec<String>,
    /// Serve plain HTTP: every token, password and the console cookie travel in clear and
    /// anyone on the path can take over the server and its clients. Only behind a
    /// TLS-terminating proxy on the same host (docs/operating.md#tls).
    #[arg(long)]
    pub insecure_plain_http: bool,
    /// Failed logins, enrollments or token uses per user name or token id that lock it out.
    #[arg(long, default_value_t = 10)]
    pub lockout_failures: u32,
    /// Failed logins, enrollments or token uses per source address that lock it out.
    #[arg(long, default_value_t = 50)]
    pub lockout_address_failures: u32,
    /// Seconds in which failures are counted.
    #[arg(long, default_value_t = 900)]
    pub lockout_window: u64,
    /// Seconds a lockout lasts.
    #[arg(long, default_value_t = 900)]
    pub lockout_secs: u64,
}

/// Runs `cascade server` until SIGINT or SIGTERM.
pub fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let mut settings = cascade_server::Settings::new(&args.data_dir);
    settings.database_url = args.database_url;
    settings.repo_dir = args.repo_dir;
    settings.site_repo = args.site_repo;
    settings.key_passphrase =
        cascade_repo::Passphrase::from_file_or_env(args.key_passphrase_file.as_deref())
            .map_err(|e| crate::BadInput(format!("{e} [{}]", e.code())))?;
    settings.agent_head_start = Duration::from_secs(args.agent_head_start);
    settings.replica_urls = args.replica_urls.iter().map(ToString::to_string).collect();
    settings.replica_poll = Duration::from_secs(args.replica_poll.max(1));
    settings.stale_after = Duration::from_secs(args.stale_after);
    settings.update_interval = Duration::from_secs(args.update_interval.max(1));
    settings.limits = cascade_server::ServeLimits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout.max(1)),
        body_timeout: Duration::from_secs(args.body_timeout.max(1)),
        max_connections: args.max_connections.max(1),
        max_body_bytes: args.max_body_bytes,
        max_program_bytes: args.max_program_bytes,
        upload_timeout: Duration::from_secs(args.upload_timeout.max(1)),
    };
    settings.metrics_token = args.metrics_token.filter(|t| !t.is_empty());
    settings.tls = match (args.insecure_plain_http, args.tls_cert, args.tls_key) {
        (true, _, _) => cascade_server::TlsMode::InsecurePlainHttp,
        (false, Some(cert), Some(key)) => cascade_server::TlsMode::Files { cert, key },
        _ => cascade_server::TlsMode::PrivateCa {
            names: args.tls_names,
        },
    };
    settings.lockout = cascade_server::lockout::LockoutPolicy {
        max_failures: args.lockout_failures.max(1),
        max_address_failures: args.lockout_address_failures.max(1),
        window: Duration::from_secs(args.lockout_window.max(1)),
        lockout: Duration::from_secs(args.lockout_secs.max(1)),
    };
    settings.mirror = args
        .upstream_root
        .map(|root| cascade_server::mirror::MirrorSettings {
            trusted_root: root,
            interval: (args.mirror_every > 0).then(|| Duration::from_secs(args.mirror_every)),
            limits: cascade_repo::TransportLimits::default(),
        });
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        cascade_server::launch(settings, listener, crate::shutdown_signal())
            .await
            .map_err(|e| anyhow!("[{}] {e}", e.code()))
    })
}

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

/// `cascade sources …` subcommands over the API (merge into the local `sources` group with
/// `#[command(flatten)]`).
#[derive(Debug, Subcommand)]
pub enum SourcesRemote {
    /// List the server's source list, in order.
    List(Conn),
    /// Append an entry: `--range R` and exactly one of `--agent IP:PORT` or `--url URL`.
    Add {
        #[command(flatten)]
        entry: EntryArgs,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace entry ID's range and source, keeping its place.
    Edit {
        /// The entry id (see `sources list`).
        id: u32,
        #[command(flatten)]
        entry: EntryArgs,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete the given entries (all or nothing).
    Rm {
        /// Entry ids.
        #[arg(required = true)]
        ids: Vec<u32>,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
    /// Move entry ID one place up or down.
    Move {
        /// The entry id.
        id: u32,
        /// `up` or `down`.
        #[arg(value_enum)]
        direction: Direction,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
}

/// A source-list entry on the command line.
#[derive(Debug, Clone, Args)]
pub struct EntryArgs {
    /// Client range: CIDR, `a.b.c.d-e.f.g.h` or one address.
    #[arg(long)]
    pub range: String,
    /// A registered update agent's `IP:PORT`.
    #[arg(long, conflicts_with = "url")]
    pub agent: Option<String>,
    /// A URL source.
    #[arg(long)]
    pub url: Option<String>,
}

/// Optimistic concurrency: refuse the write if the policy changed since this revision.
#[derive(Debug, Clone, Copy, Args)]
pub struct Revision {
    /// Only write if the server's policy is still at this revision (else exit 2, HTTP 409).
    #[arg(long)]
    pub revision: Option<i64>,
}

/// Which way to move an entry.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Direction {
    /// One place towards the top.
    Up,
    /// One place towards the bottom.
    Down,
}

/// `cascade policy …` subcommands over the API (merge into the local `policy` group).
#[derive(Debug, Subcommand)]
pub enum PolicyRemote {
    /// Write the server's whole policy as TOML (to stdout or `--output`).
    Export {
        /// File to write (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace the server's whole policy with a TOML file (checked locally first).
    Apply {
        /// The policy file.
        file: PathBuf,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `cascade notify`: Notify All Clients.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// Only these categories (default: all).
    #[arg(long = "category", value_parser = parse_category)]
    pub categories: Vec<Category>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `cascade clients`: the client registry.
#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// Only clients not seen recently: `--stale` uses the server's window, `--stale=SECS` yours.
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    pub stale: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `cascade agents …`: registered update agents.
#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// List agents, capabilities, the enrolled clients serving at each and what their relays
    /// last reported serving (clients, bytes, upstream fetches).
    List(Conn),
    /// Register an update agent.
    Add {
        /// `IP:PORT` where it serves.
        address: String,
        /// Categories it relays (default: all).
        #[arg(long = "capability", value_parser = parse_category)]
        capabilities: Vec<Category>,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
    /// Unregister an update agent (refused while a source entry uses it).
    Rm {
        /// `IP:PORT`.
        address: String,
        #[command(flatten)]
        at: Revision,
        #[command(flatten)]
        conn: Conn,
    },
}

fn parse_category(s: &str) -> Result<Category, String> {
    s.parse()
        .map_err(|e: cascade_core::category::UnknownCategory| e.to_string())
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

pub(crate) fn print_json<T: Serialize>(v: &T) {
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_default()
    );
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

/// An optional value for a table cell (`-` when absent).
fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn print_sources(v: &SourcesResponse) {
    let mut t = table(&["#", "id", "range", "source"]);
    for (i, e) in v.sources.iter().enumerate() {
        let src = match (&e.agent, &e.url) {
            (Some(agent), _) => format!("agent:{agent}"),
            (None, url) => format!("url:{}", or_dash(url.as_deref())),
        };
        t.add_row(vec![
            (i + 1).to_string(),
            or_dash(e.id),
            e.range.clone(),
            src,
        ]);
    }
    println!("{t}\nrevision {}", v.revision);
}

fn entry_body(e: &EntryArgs) -> SourceBody {
    SourceBody {
        range: e.range.clone(),
        agent: e.agent.clone(),
        url: e.url.clone(),
    }
}

/// Runs `cascade sources list|add|edit|rm|move`.
pub fn run_sources_remote(cmd: SourcesRemote) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let (conn, v) = match cmd {
            SourcesRemote::List(conn) => {
                let v = ask(&conn, "GET /api/sources", |api| async move {
                    api.sources().await
                })
                .await?;
                (conn, v)
            }
            SourcesRemote::Add { entry, at, conn } => {
                let body = entry_body(&entry);
                let v = ask(&conn, "POST /api/sources", |api| async move {
                    api.add_source(&body, at.revision).await
                })
                .await?;
                (conn, v)
            }
            SourcesRemote::Edit {
                id,
                entry,
                at,
                conn,
            } => {
                let body = entry_body(&entry);
                let what = format!("PUT /api/sources/{id}");
                let v = ask(&conn, &what, |api| async move {
                    api.edit_source(id, &body, at.revision).await
                })
                .await?;
                (conn, v)
            }
            SourcesRemote::Rm { ids, at, conn } => {
                let body = DeleteSources { ids };
                let v = ask(&conn, "POST /api/sources/delete", |api| async move {
                    api.delete_sources(&body, at.revision).await
                })
                .await?;
                (conn, v)
            }
            SourcesRemote::Move {
                id,
                direction,
                at,
                conn,
            } => {
                let body = MoveSource {
                    direction: match direction {
                        Direction::Up => cascade_client::proto::Direction::Up,
                        Direction::Down => cascade_client::proto::Direction::Down,
                    },
                };
                let what = format!("POST /api/sources/{id}/move");
                let v = ask(&conn, &what, |api| async move {
                    api.move_source(id, &body, at.revision).await
                })
                .await?;
                (conn, v)
            }
        };
        if conn.json {
            print_json(&v);
        } else {
            print_sources(&v);
        }
        Ok(())
    })
}

/// Runs `cascade policy export|apply`.
pub fn run_policy_remote(cmd: PolicyRemote) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            PolicyRemote::Export { output, conn } => {
                let v = ask(&conn, "GET /api/policy", |api| async move { api.policy().await })
                    .await?;
                if conn.json {
                    print_json(&v);
                    return Ok(());
                }
                let policy = v
                    .policy
                    .into_policy()
                    .map_err(|e| anyhow!("the server's policy does not validate: {e}"))?;
                let text = format!(
                    "# cascade policy, server revision {} (apply with --revision {} to refuse if it changed since)\n{}",
                    v.revision,
                    v.revision,
                    policy.to_toml().map_err(|e| anyhow!("{e}"))?
                );
                match output {
                    Some(path) => std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => print!("{text}"),
                }
            }
            PolicyRemote::Apply { file, at, conn } => {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read policy file {}", file.display()))?;
                let policy = Policy::from_toml(&text).map_err(|e| {
                    BadInput(format!("{}: [{}] {e}", file.display(), e.code()))
                })?;
                let doc = PolicyDoc::from_policy(&policy);
                let v = ask(&conn, "PUT /api/policy", |api| async move {
                    api.put_policy(&doc, at.revision).await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("applied {}: server policy revision {}", file.display(), v.revision);
                }
            }
        }
        Ok(())
    })
}

/// Runs `cascade notify`.
pub fn run_notify(args: NotifyArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let body = NotifyRequest {
            categories: args.categories,
        };
        let v = ask(&args.conn, "POST /api/notify", |api| async move {
            api.notify(&body).await
        })
        .await?;
        if args.conn.json {
            print_json(&v);
        } else {
            let f = &v.fan_out;
            println!(
                "notify {}: {} update agents now, {} clients after {} ms (jitter hint {} ms); others at their next poll",
                v.id, f.agents, f.clients, f.clients_after_ms, f.jitter_ms
            );
        }
        Ok(())
    })
}

/// Runs `cascade clients [--stale[=SECS]]`.
pub fn run_clients(args: ClientsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let query = ClientsQuery { stale: args.stale };
        let v = ask(&args.conn, "GET /api/clients", |api| async move {
            api.clients(&query).await
        })
        .await?;
        if args.conn.json {
            print_json(&v);
            return Ok(());
        }
        let now = unix_now();
        let mut t = table(&[
            "name",
            "id",
            "state",
            "last seen",
            "reported ip",
            "peer ip",
            "installed",
            "agent",
        ]);
        for c in &v.clients {
            let installed = c
                .installed
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            let agent = if c.is_agent {
                or_dash(c.agent_address.as_deref())
            } else {
                "-".into()
            };
            t.add_row(vec![
                c.name.clone(),
                c.id.clone(),
                c.state.as_str().to_owned(),
                c.last_seen
                    .map_or_else(|| "never".to_owned(), |t| when(t, now)),
                or_dash(c.reported_ip.as_deref()),
                or_dash(c.peer_ip.as_deref()),
                installed,
                agent,
            ]);
        }
        println!("{t}\n{} clients", v.clients.len());
        Ok(())
    })
}

/// Now, Unix seconds, by this machine's clock.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// A time for people: `3 min ago (2026-11-27 19:49:50 UTC)`, as the console writes it.
fn when(t: i64, now: i64) -> String {
    format!(
        "{} ({})",
        cascade_server::human::ago(t, now),
        cascade_server::human::time(t)
    )
}

fn print_health(v: &FleetHealth) {
    let now = unix_now();
    let mut t = table(&[
        "source",
        "health",
        "served",
        "failed",
        "own last check-in",
        "since",
    ]);
    for h in &v.sources {
        t.add_row(vec![
            h.source.clone(),
            h.level.as_str().to_owned(),
            h.served.to_string(),
            h.failed.to_string(),
            h.last_check_in
                .map_or_else(|| "-".to_owned(), |c| when(c, now)),
            h.since.map_or_else(|| "-".to_owned(), |c| when(c, now)),
        ]);
    }
    println!(
        "{t}\nreports of the last {} counted",
        cascade_server::human::duration(v.window_s)
    );
    for h in v
        .sources
        .iter()
        .filter(|h| matches!(h.level, HealthLevel::Down | HealthLevel::Degraded))
    {
        println!("\n{}", h.summary);
        for c in h.affected.iter().take(20) {
            println!(
                "  {} ({}): {}{}",
                c.name,
                c.id,
                c.reason.as_deref().unwrap_or("failed"),
                c.served_by
                    .as_deref()
                    .map(|s| format!("; served by {s}"))
                    .unwrap_or_default()
            );
        }
        if h.affected.len() > 20 {
            println!(
                "  … and {} more (--json lists them all)",
                h.affected.len() - 20
            );
        }
    }
}

/// Runs `cascade health`: every update agent's and URL source's health.
pub fn run_health(conn: Conn) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let v = ask(&conn, "GET /api/fleet/health", |api| async move {
            api.fleet_health().await
        })
        .await?;
        if conn.json {
            print_json(&v);
        } else {
            print_health(&v);
        }
        Ok(())
    })
}

/// Runs `cascade compliance`: compliance by version per category.
pub fn run_compliance(conn: Conn) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let v = ask(&conn, "GET /api/fleet/compliance", |api| async move {
            api.compliance().await
        })
        .await?;
        if conn.json {
            print_json(&v);
            return Ok(());
        }
        let mut t = table(&[
            "category",
            "newest published",
            "current",
            "behind",
            "never installed",
            "failed",
            "clients",
        ]);
        for c in &v.categories {
            let (cur, behind, never, failed) = if c.newest.is_empty() {
                ("-".into(), "-".into(), "-".into(), "-".into())
            } else {
                (
                    c.current.to_string(),
                    c.behind.to_string(),
                    c.never_installed.to_string(),
                    c.failed.to_string(),
                )
            };
            t.add_row(vec![
                c.category.as_str().to_owned(),
                if c.newest.is_empty() {
                    "nothing published".to_owned()
                } else {
                    c.newest.join(", ")
                },
                cur,
                behind,
                never,
                failed,
                c.total.to_string(),
            ]);
        }
        println!("{t}");
        for c in &v.categories {
            let dist: Vec<String> = c
                .distribution
                .iter()
                .map(|d| {
                    format!(
                        "{} × {}{}",
                        d.version,
                        d.clients,
                        if d.newest { " (newest)" } else { "" }
                    )
                })
                .collect();
            println!("{}: {}", c.category.as_str(), dist.join(", "));
        }
        Ok(())
    })
}

/// The agents table with each agent's health, then a line per agent that is down.
fn print_agents(v: &AgentsResponse, health: &FleetHealth) {
    let mut t = table(&[
        "address",
        "health",
        "capabilities",
        "enrolled as",
        "clients served",
        "bytes served",
        "upstream fetches",
    ]);
    for a in &v.agents {
        let caps = a
            .capabilities
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let clients = a
            .clients
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let (served, sent, fetches) = match &a.relay {
            Some(relay) => (
                relay.client_count.to_string(),
                indicatif::HumanBytes(relay.bytes_served).to_string(),
                relay.upstream_fetches.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let level = health
            .sources
            .iter()
            .find(|h| h.kind == SourceKind::Agent && h.address == a.address)
            .map_or(HealthLevel::Unknown, |h| h.level);
        t.add_row(vec![
            a.address.clone(),
            level.as_str().to_owned(),
            caps,
            clients,
            served,
            sent,
            fetches,
        ]);
    }
    println!("{t}\nrevision {}", v.revision);
    for h in health
        .sources
        .iter()
        .filter(|h| h.level == HealthLevel::Down)
    {
        println!("{}", h.summary);
    }
}

/// Runs `cascade agents list|add|rm`.
pub fn run_agents(cmd: AgentsCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            AgentsCmd::List(conn) => {
                let v = ask(
                    &conn,
                    "GET /api/agents",
                    |api| async move { api.agents().await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                    return Ok(());
                }
                let health = ask(&conn, "GET /api/fleet/health", |api| async move {
                    api.fleet_health().await
                })
                .await?;
                print_agents(&v, &health);
            }
            AgentsCmd::Add {
                address,
                capabilities,
                at,
                conn,
            } => {
                let body = AgentDoc {
                    address,
                    capabilities: if capabilities.is_empty() {
                        Category::ALL.to_vec()
                    } else {
                        capabilities
                    },
                };
                let v = ask(&conn, "POST /api/agents", |api| async move {
                    api.add_agent(&body, at.revision).await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("ok: policy revision {}", v.revision);
                }
            }
            AgentsCmd::Rm { address, at, conn } => {
                let what = format!("DELETE /api/agents/{address}");
                let v = ask(&conn, &what, |api| async move {
                    api.remove_agent(&address, at.revision).await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("ok: policy revision {}", v.revision);
                }
            }
        }
        Ok(())
    })
}

/// `cascade users …`: named users and their roles (admin only).
#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// List users and their roles.
    List(Conn),
    /// Make a user; the password is read from standard input (one line).
    Add {
        /// The user name (letters, digits, `.`, `_`, `-`).
        name: String,
        /// `viewer` (read), `operator` (read, notify, what-if) or `admin`.
        #[arg(long, value_parser = parse_role)]
        role: UserRole,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a user's role.
    SetRole {
        /// The user name.
        name: String,
        /// The new role.
        #[arg(value_parser = parse_role)]
        role: UserRole,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a user's password, read from standard input (one line).
    Passwd {
        /// The user name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a user and revoke its tokens.
    Rm {
        /// The user name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `cascade tokens …`: API tokens (the caller's own; an admin's, everyone's).
#[derive(Debug, Subcommand)]
pub enum TokensCmd {
    /// List API tokens.
    List(Conn),
    /// Make an API token; it is printed once.
    Create {
        /// What it is for.
        #[arg(long)]
        label: String,
        /// The user it acts as (admin only; default: yourself).
        #[arg(long)]
        user: Option<String>,
        /// Seconds until it expires (default: never).
        #[arg(long)]
        expires_in: Option<i64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke an API token at once.
    Revoke {
        /// The token's id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

fn parse_role(s: &str) -> Result<UserRole, String> {
    UserRole::parse(s).ok_or_else(|| format!("`{s}` is not a role (viewer, operator, admin)"))
}

/// One line of standard input: the password.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(BadInput("password: none given on standard input".into()).into());
    }
    Ok(password)
}

fn print_user(json: bool, v: &cascade_client::proto::UserView) {
    if json {
        print_json(v);
    } else {
        println!("ok: user {} ({})", v.name, v.role.as_str());
    }
}

/// Runs `cascade users list|add|set-role|passwd|rm`.
pub fn run_users(cmd: UsersCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            UsersCmd::List(conn) => {
                let v = ask(
                    &conn,
                    "GET /api/users",
                    |api| async move { api.users().await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                    return Ok(());
                }
                let mut t = table(&["name", "role", "created"]);
                for u in &v.users {
                    t.add_row(vec![
                        u.name.clone(),
                        u.role.as_str().to_owned(),
                        u.created_at.to_string(),
                    ]);
                }
                println!("{t}");
            }
            UsersCmd::Add { name, role, conn } => {
                let body = NewUser {
                    name,
                    role,
                    password: read_password()?,
                };
                let v = ask(&conn, "POST /api/users", |api| async move {
                    api.create_user(&body).await
                })
                .await?;
                print_user(conn.json, &v);
            }
            UsersCmd::SetRole { name, role, conn } => {
                let what = format!("PATCH /api/users/{name}");
                let body = UserPatch {
                    role: Some(role),
                    password: None,
                };
                let v = ask(&conn, &what, |api| async move {
                    api.patch_user(&name, &body).await
                })
                .await?;
                print_user(conn.json, &v);
            }
            UsersCmd::Passwd { name, conn } => {
                let what = format!("PATCH /api/users/{name}");
                let body = UserPatch {
                    role: None,
                    password: Some(read_password()?),
                };
                let v = ask(&conn, &what, |api| async move {
                    api.patch_user(&name, &body).await
                })
                .await?;
                print_user(conn.json, &v);
            }
            UsersCmd::Rm { name, conn } => {
                let what = format!("DELETE /api/users/{name}");
                let v = ask(
                    &conn,
                    &what,
                    |api| async move { api.delete_user(&name).await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("ok: user {} deleted, its tokens revoked", v.deleted);
                }
            }
        }
        Ok(())
    })
}

/// Runs `cascade tokens list|create|revoke`.
pub fn run_tokens(cmd: TokensCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            TokensCmd::List(conn) => {
                let v = ask(
                    &conn,
                    "GET /api/tokens",
                    |api| async move { api.tokens().await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                    return Ok(());
                }
                let mut t = table(&["id", "user", "label", "created", "expires", "revoked"]);
                for k in &v.tokens {
                    t.add_row(vec![
                        k.id.clone(),
                        k.user.clone(),
                        k.label.clone(),
                        k.created_at.to_string(),
                        or_dash(k.expires_at),
                        or_dash(k.revoked_at),
                    ]);
                }
                println!("{t}");
            }
            TokensCmd::Create {
                label,
                user,
                expires_in,
                conn,
            } => {
                let body = NewToken {
                    label,
                    user,
                    expires_in_secs: expires_in,
                };
                let v = ask(&conn, "POST /api/tokens", |api| async move {
                    api.create_token(&body).await
                })
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!(
                        "token {} for {} (shown once):\n{}",
                        v.info.id, v.info.user, v.token
                    );
                }
            }
            TokensCmd::Revoke { id, conn } => {
                let what = format!("DELETE /api/tokens/{id}");
                let v = ask(
                    &conn,
                    &what,
                    |api| async move { api.revoke_token(&id).await },
                )
                .await?;
                if conn.json {
                    print_json(&v);
                } else {
                    println!("ok: token {} revoked", v.revoked);
                }
            }
        }
        Ok(())
    })
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
