//! `sse-bench`: how many notification streams one cascade server holds, and how fast a
//! notify reaches all of them. The bench starts the server as a child process (this binary,
//! `serve` mode: the real server, SQLite, cheap credential hashing so enrolling thousands of
//! clients takes seconds), enrolls `--clients` clients, opens one
//! `GET /api/client/events` stream per client (each from its own `127.2.x.y` source
//! address), waits for every stream's `hello`, samples the server's RSS, then sends
//! `POST /api/notify` and times, for every stream, the arrival of its `notify` event.
//!
//! The figures: streams held, server RSS idle and while holding them (and per stream), and the
//! time from sending the notify to each stream receiving it (p50, p99, last). Client and
//! server share the machine, so the times include the client side reading every socket.
//!
//! Each held stream costs one descriptor in the bench and one in the server: the bench raises
//! its `RLIMIT_NOFILE` (soft to hard, and the hard limit too when it may: as root up to
//! `fs.nr_open`) to `--clients` plus a margin before it starts the server, which inherits it
//! and raises its own the same way; when the limit stays too low it says so and stops. The
//! server's connection cap (`--max-connections`) is set to fit. Source addresses are
//! `127.2.0.1` upwards (250 per /24, 62,500 per /16), so no source address comes near the
//! ephemeral port range. `--tls` runs the server with its TLS (the default for `cascade
//! server`) and the streams over TLS, to see what a TLS session adds per stream.

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_bench::procs::status_kib;
use cascade_client::proto::{EnrollRequest, NotifyRequest};
use cascade_client::Client;
use clap::{Parser, Subcommand};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "SSE benchmark: N notification streams held by one server, notify latency")]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Streams (enrolled clients) to hold.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Enrollments and stream openings in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to wait for every stream to receive the notify.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// JSON result file.
    #[arg(long, default_value = "target/bench/sse.json")]
    out: PathBuf,
    /// Streams over TLS (the server's own CA), not plain HTTP.
    #[arg(long)]
    tls: bool,
}

/// The child process's mode.
#[derive(Debug, Subcommand)]
enum Mode {
    /// Run the server on `listen` with its data in `data_dir`; prints one JSON line
    /// (`url`, `admin`, `enroll`) on stdout once it listens.
    Serve {
        /// Listen address (must be 127.x.y.z).
        #[arg(long)]
        listen: SocketAddr,
        /// A fresh data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Connections served at once (one per held stream, and a few).
        #[arg(long)]
        max_connections: usize,
        /// Serve over TLS (private CA in `data_dir/tls/`).
        #[arg(long)]
        tls: bool,
    },
}

/// What the server child prints on start.
#[derive(Debug, Serialize, Deserialize)]
struct Started {
    url: String,
    admin: String,
    enroll: String,
}

/// The result.
#[derive(Debug, Serialize)]
struct Report {
    clients: usize,
    tls: bool,
    /// The bench's open-files limit after raising it (the server raises its own the same way).
    open_files_limit: u64,
    streams_held: usize,
    notified: usize,
    enroll_seconds: f64,
    connect_seconds: f64,
    server_rss_idle_kib: u64,
    /// After enrolling every client, before the first stream opens.
    server_rss_enrolled_kib: u64,
    server_rss_holding_kib: u64,
    server_rss_peak_kib: u64,
    /// (RSS holding - RSS idle) / streams held: includes what enrolling the clients left
    /// behind (the database's page cache, the allocator's free lists).
    server_rss_per_stream_kib: f64,
    /// (RSS holding - RSS enrolled) / streams held: what the streams themselves cost.
    server_rss_per_stream_after_enroll_kib: f64,
    notify_request_ms: f64,
    notify_p50_ms: f64,
    notify_p99_ms: f64,
    notify_last_ms: f64,
    /// CPU time the server used from the notify until the last stream had it (ms).
    server_cpu_fan_out_ms: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.mode {
        Some(Mode::Serve {
            listen,
            data_dir,
            max_connections,
            tls,
        }) => serve(listen, data_dir, max_connections, tls),
        None => bench(&args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Raises this process's open-files limit to at least `want` where it can: the soft limit to
/// the hard one, and the hard one too when allowed (root, up to `fs.nr_open`). Returns the
/// soft limit in force afterwards.
fn raise_nofile(want: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let hard = now.maximum.unwrap_or(u64::MAX);
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let target = want.max(now.current.unwrap_or(0)).min(nr_open.max(hard));
    let raised = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: Some(target.max(hard)),
        },
    );
    if raised.is_err() {
        // Not allowed to raise the hard limit: take all of it.
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard.min(target)),
                maximum: now.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Descriptors one side needs for `clients` streams: one each, and room for the rest.
fn descriptors(clients: usize) -> u64 {
    clients as u64 + 1024
}

/// `serve` mode: the real server, with cheap hashing (tokens are random, the work factor
/// buys nothing here) and no notify head start (no agents are connected anyway).
fn serve(listen: SocketAddr, data_dir: PathBuf, max_connections: usize, tls: bool) -> Result<()> {
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
struct ServerChild(Child);

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system) used so far by process `pid`, ms; 0 when unknown.
fn cpu_ms(pid: u32) -> f64 {
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

/// The `i`-th client's source address: 127.2.0.1 upwards, 250 per /24, 62,500 per /16.
fn source(i: usize) -> IpAddr {
    let b = u8::try_from(2 + i / 62_500).unwrap_or(255);
    let c = u8::try_from(i / 250 % 250).unwrap_or(0);
    let d = u8::try_from(i % 250 + 1).unwrap_or(1);
    IpAddr::V4(Ipv4Addr::new(127, b, c, d))
}

/// The command that runs the server child: this binary, or, with `SSE_SERVER_WRAP=heaptrack`
/// (any command taking the program and its arguments), this binary under that command (the
/// RSS figures are then the wrapper's process's).
fn server_command(exe: PathBuf) -> Command {
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
fn first_json_line(
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

fn bench(args: &Args) -> Result<()> {
    let limit = raise_nofile(descriptors(args.clients));
    eprintln!(
        "open files: {limit} (streams need {} on each side)",
        descriptors(args.clients)
    );
    if limit < descriptors(args.clients) {
        bail!(
            "cannot hold {} streams: this process may open {limit} files (raise the hard limit, \
             `ulimit -Hn`, as root)",
            args.clients
        );
    }
    let work = tempfile::tempdir().context("temporary directory")?;
    let exe = std::env::current_exe().context("locating this binary")?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("picking a port")?;
        l.local_addr()?.port()
    };
    let mut child = server_command(exe)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(work.path())
        .args(["--max-connections", &(args.clients + 256).to_string()])
        .args(args.tls.then_some("--tls"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the server child")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let child = ServerChild(child);
    let pid = child.0.id();
    let (_stdout, line) = first_json_line(stdout)?;
    let started: Started = serde_json::from_str(line.trim())
        .with_context(|| format!("server first-start line: {line:?}"))?;
    let ca = if args.tls {
        Some(std::fs::read(work.path().join("tls/ca.pem")).context("the server's CA")?)
    } else {
        None
    };
    let mut report = runtime()?.block_on(run(args, &started, pid, ca))?;
    report.open_files_limit = limit;
    report.server_rss_per_stream_kib = per_stream(&report, report.server_rss_idle_kib);
    report.server_rss_per_stream_after_enroll_kib =
        per_stream(&report, report.server_rss_enrolled_kib);
    drop(child);
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "streams over:            {}\n\
         streams held:            {}/{}\n\
         notified:                {}/{}\n\
         enroll {} clients:     {:.1} s\n\
         open streams (hello):    {:.1} s\n\
         server RSS idle:         {:.1} MiB\n\
         server RSS enrolled:     {:.1} MiB\n\
         server RSS holding:      {:.1} MiB ({:.1} KiB per stream from idle, {:.1} from enrolled)\n\
         server RSS peak:         {:.1} MiB\n\
         POST /api/notify:        {:.1} ms\n\
         notify -> stream p50:    {:.1} ms\n\
         notify -> stream p99:    {:.1} ms\n\
         notify -> last stream:   {:.1} ms\n\
         server CPU in fan-out:   {:.0} ms\n\
         (JSON in {})",
        if report.tls { "TLS" } else { "plain HTTP" },
        report.streams_held,
        report.clients,
        report.notified,
        report.clients,
        report.clients,
        report.enroll_seconds,
        report.connect_seconds,
        mib(report.server_rss_idle_kib),
        mib(report.server_rss_enrolled_kib),
        mib(report.server_rss_holding_kib),
        report.server_rss_per_stream_kib,
        report.server_rss_per_stream_after_enroll_kib,
        mib(report.server_rss_peak_kib),
        report.notify_request_ms,
        report.notify_p50_ms,
        report.notify_p99_ms,
        report.notify_last_ms,
        report.server_cpu_fan_out_ms,
        args.out.display()
    );
    if report.notified < report.clients {
        bail!(
            "{} streams did not receive the notify",
            report.clients - report.notified
        );
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)] // KiB counts for display
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[allow(clippy::cast_precision_loss)] // KiB counts for display
fn per_stream(r: &Report, before_kib: u64) -> f64 {
    r.server_rss_holding_kib.saturating_sub(before_kib) as f64 / r.streams_held.max(1) as f64
}

/// Enrolls `args.clients` clients, `args.concurrency` at a time; their credentials.
async fn enroll(api: &Client, token: &str, args: &Args) -> Result<Vec<String>> {
    futures::stream::iter(0..args.clients)
        .map(|i| async move {
            let body = EnrollRequest {
                name: format!("sse-{i}"),
                ..EnrollRequest::default()
            };
            Ok::<_, anyhow::Error>(api.enroll(token, &body).await?.credential)
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Waits (up to `--timeout`) for every stream task; the time each one received the notify,
/// counted from `sent`.
async fn arrivals(
    streams: &mut tokio::task::JoinSet<Result<Instant>>,
    sent: Instant,
    args: &Args,
) -> Vec<Duration> {
    let mut got: Vec<Duration> = Vec::with_capacity(args.clients);
    let deadline = tokio::time::sleep(Duration::from_secs(args.timeout));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => {
                eprintln!("timed out waiting for notifies");
                break;
            }
            r = streams.join_next() => match r {
                None => break,
                Some(Ok(Ok(at))) => got.push(at.saturating_duration_since(sent)),
                Some(Ok(Err(e))) => eprintln!("stream: {e:#}"),
                Some(Err(e)) => eprintln!("stream task: {e}"),
            },
        }
    }
    streams.abort_all();
    got
}

/// The server's RSS (KiB) after letting it settle for 2 s (freed buffers, timers).
async fn settled_rss(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(2)).await;
    status_kib(&pid.to_string(), "VmRSS:")
}

async fn run(args: &Args, started: &Started, pid: u32, ca: Option<Vec<u8>>) -> Result<Report> {
    let base = started.url.trim_end_matches('/').to_owned();
    let addr: SocketAddr = base
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .parse()
        .with_context(|| format!("server address in {base}"))?;
    let http = cascade_client::http_builder(ca.as_deref())
        .context("http client")?
        .no_proxy()
        .build()
        .context("http client")?;
    let tls = ca.as_deref().map(tls_connector).transpose()?;
    let rss_idle = status_kib(&pid.to_string(), "VmRSS:");

    let t = Instant::now();
    let api = Client::with_http(url::Url::parse(&started.url).context("server URL")?, http);
    let credentials = enroll(&api, &started.enroll, args)
        .await
        .context("enrolling")?;
    let enroll_seconds = t.elapsed().as_secs_f64();
    eprintln!("enrolled {} clients in {enroll_seconds:.1} s", args.clients);
    let rss_enrolled = settled_rss(pid).await;

    let t = Instant::now();
    let opening = Arc::new(Semaphore::new(args.concurrency));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut streams = tokio::task::JoinSet::new();
    for (i, cred) in credentials.into_iter().enumerate() {
        let opening = Arc::clone(&opening);
        let tls = tls.clone();
        let ready = ready_tx.clone();
        streams.spawn(async move {
            let permit = opening.acquire_owned().await?;
            let mut conn = Stream::open(source(i), addr, &cred, tls.as_ref()).await?;
            conn.until(b"event: hello").await?;
            drop(permit);
            let _ = ready.send(());
            conn.until(b"event: notify").await?;
            Ok::<Instant, anyhow::Error>(Instant::now())
        });
    }
    drop(ready_tx);
    let mut held = 0;
    while held < args.clients {
        if ready_rx.recv().await.is_none() {
            break;
        }
        held += 1;
        if held % 2000 == 0 {
            eprintln!("{held} streams open");
        }
    }
    let connect_seconds = t.elapsed().as_secs_f64();
    if held < args.clients {
        // A stream failed to open; its task holds the reason.
        while let Some(r) = streams.join_next().await {
            r??;
        }
    }
    let rss_holding = settled_rss(pid).await;

    let cpu_before = cpu_ms(pid);
    let sent = Instant::now();
    api.admin(started.admin.as_str())
        .notify(&NotifyRequest::default())
        .await
        .context("POST /api/notify")?;
    let notify_request_ms = ms(sent.elapsed());
    let mut got = arrivals(&mut streams, sent, args).await;
    let server_cpu_fan_out_ms = cpu_ms(pid) - cpu_before;
    got.sort_unstable();
    let pick = |p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((got.len().saturating_sub(1)) as f64 * p).round() as usize;
        got.get(i).copied().map_or(0.0, ms)
    };
    Ok(Report {
        clients: args.clients,
        tls: args.tls,
        open_files_limit: 0,
        streams_held: held,
        notified: got.len(),
        enroll_seconds,
        connect_seconds,
        server_rss_idle_kib: rss_idle,
        server_rss_enrolled_kib: rss_enrolled,
        server_rss_holding_kib: rss_holding,
        server_rss_peak_kib: status_kib(&pid.to_string(), "VmHWM:"),
        server_rss_per_stream_kib: 0.0,
        server_rss_per_stream_after_enroll_kib: 0.0,
        notify_request_ms,
        notify_p50_ms: pick(0.5),
        notify_p99_ms: pick(0.99),
        notify_last_ms: got.last().copied().map_or(0.0, ms),
        server_cpu_fan_out_ms,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A rustls connector trusting only the server's CA.
fn tls_connector(ca_pem: &[u8]) -> Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.context("CA certificate")?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A stream's connection: plain TCP or TLS over it.
enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl Io {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(t) => t.write_all(b).await,
            Io::Tls(t) => {
                t.write_all(b).await?;
                t.flush().await
            }
        }
    }

    async fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(t) => t.read(b).await,
            Io::Tls(t) => t.read(b).await,
        }
    }
}

/// One raw HTTP/1.1 event stream (no client library: 10,000 of them must stay cheap).
struct Stream {
    tcp: Io,
    seen: Vec<u8>,
}

impl Stream {
    async fn open(
        from: IpAddr,
        to: SocketAddr,
        credential: &str,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<Stream> {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(from, 0))
            .with_context(|| format!("binding {from}"))?;
        let tcp = sock.connect(to).await.context("connecting")?;
        tcp.set_nodelay(true)?;
        let mut tcp = match tls {
            None => Io::Plain(tcp),
            Some(c) => {
                let name = rustls_pki_types::ServerName::IpAddress(to.ip().into());
                Io::Tls(Box::new(
                    c.connect(name, tcp).await.context("TLS handshake")?,
                ))
            }
        };
        let req = format!(
            "GET /api/client/events HTTP/1.1\r\nHost: {to}\r\nAuthorization: Bearer {credential}\r\n\
             Accept: text/event-stream\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await?;
        Ok(Stream {
            tcp,
            seen: Vec::with_capacity(1024),
        })
    }

    /// Reads until `needle` has arrived (SSE events are single chunks, so the chunked
    /// framing never splits a line), then forgets what was read.
    async fn until(&mut self, needle: &[u8]) -> Result<()> {
        let mut buf = [0u8; 2048];
        loop {
            if self.seen.windows(needle.len()).any(|w| w == needle) {
                self.seen.clear();
                return Ok(());
            }
            let n = self.tcp.read(&mut buf).await?;
            if n == 0 {
                bail!(
                    "stream closed before `{}`: {}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&self.seen)
                );
            }
            self.seen.extend_from_slice(&buf[..n]);
        }
    }
}
