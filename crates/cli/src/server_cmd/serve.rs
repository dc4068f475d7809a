//! `cascade server`: its command-line settings ([`ServerArgs`]) and [`run_server`], which
//! turns them into [`cascade_server::Settings`] and runs the server until SIGINT or SIGTERM.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;

use super::api::runtime;

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
    /// How connections are accepted: `per-thread`, `--accept-threads` threads, each with its
    /// own listening socket on the address (`SO_REUSEPORT`) and runtime, serving the
    /// connections it accepts (a connection handed to the router moves to the main runtime);
    /// `shared`, one listening socket and one accept loop feeding the runtime's worker threads
    /// (docs/operating.md#accept-per-thread).
    #[arg(long, value_enum, default_value_t = AcceptMode::PerThread)]
    pub accept: AcceptMode,
    /// With `--accept per-thread`: the number of accepting threads (default: the CPUs this
    /// process may run on).
    #[arg(long, value_name = "N")]
    pub accept_threads: Option<std::num::NonZeroUsize>,
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
    /// A load balancer or reverse proxy (an address or a CIDR network; repeat it, or give a
    /// comma-separated list) whose `X-Forwarded-For` names the client: lockouts, the audit
    /// log, enrollment and check-ins then see the client's address, the rightmost one in the
    /// header that is not itself a trusted proxy. Default: none, the header is never read
    /// (docs/operating.md#trusted-proxies).
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = "CASCADE_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = trusted_proxy
    )]
    pub trusted_proxies: Vec<cascade_server::forwarded::IpNet>,
}

/// `--accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AcceptMode {
    /// One listener, one accept loop.
    Shared,
    /// One listener and one runtime per thread.
    PerThread,
}

impl AcceptMode {
    /// The server's setting, `threads` accepting threads for `per-thread` (default: the CPUs
    /// this process may run on).
    fn setting(self, threads: Option<std::num::NonZeroUsize>) -> cascade_server::Accept {
        match self {
            AcceptMode::Shared => cascade_server::Accept::Shared,
            AcceptMode::PerThread => cascade_server::Accept::PerThread {
                threads: threads
                    .or_else(|| std::thread::available_parallelism().ok())
                    .unwrap_or(std::num::NonZeroUsize::MIN),
            },
        }
    }
}

/// One `--trusted-proxy` value.
fn trusted_proxy(text: &str) -> Result<cascade_server::forwarded::IpNet, String> {
    cascade_server::forwarded::parse_trusted_proxy(text).map_err(|e| e.to_string())
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
    settings.trusted_proxies = cascade_server::forwarded::TrustedProxies::new(args.trusted_proxies);
    settings.accept = args.accept.setting(args.accept_threads);
    settings.mirror = args
        .upstream_root
        .map(|root| cascade_server::mirror::MirrorSettings {
            trusted_root: root,
            interval: (args.mirror_every > 0).then(|| Duration::from_secs(args.mirror_every)),
            limits: cascade_repo::TransportLimits::default(),
        });
    runtime()?.block_on(async move {
        let listener = cascade_server::listen(args.listen, settings.accept)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        cascade_server::launch(settings, listener, crate::shutdown_signal())
            .await
            .map_err(|e| anyhow!("[{}] {e}", e.code()))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::ServerArgs;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn parse(args: &[&str]) -> Result<ServerArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("cascade-server").chain(args.iter().copied()))
            .map(|c| c.server)
    }

    // None by default; repeated or comma-separated networks and single addresses; a bad value
    // is refused naming the flag and the value.
    #[test]
    fn trusted_proxy_flag() {
        assert!(parse(&[]).unwrap().trusted_proxies.is_empty());
        let a = parse(&[
            "--trusted-proxy",
            "10.0.0.0/8,192.0.2.7",
            "--trusted-proxy",
            "fd00::/8",
        ])
        .unwrap();
        let nets: Vec<String> = a.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
        let e = parse(&["--trusted-proxy", "10.0.0.0/33"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--trusted-proxy"), "{e}");
        assert!(e.contains("`10.0.0.0/33` is not an IP address"), "{e}");
    }

    // Per thread by default, one thread per CPU; `shared`; `per-thread` with the threads asked
    // for; a bad mode names the flag.
    #[test]
    fn accept_flag() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            a.accept.setting(a.accept_threads),
            cascade_server::Accept::PerThread {
                threads: std::thread::available_parallelism().unwrap()
            }
        );
        let a = parse(&["--accept", "shared"]).unwrap();
        assert_eq!(
            a.accept.setting(a.accept_threads),
            cascade_server::Accept::Shared
        );
        let a = parse(&["--accept", "per-thread", "--accept-threads", "3"]).unwrap();
        assert_eq!(
            a.accept.setting(a.accept_threads),
            cascade_server::Accept::PerThread {
                threads: std::num::NonZeroUsize::new(3).unwrap()
            }
        );
        let e = parse(&["--accept", "both"]).unwrap_err().to_string();
        assert!(e.contains("--accept"), "{e}");
        assert!(parse(&["--accept-threads", "0"]).is_err());
    }
}
