//! The bench side: start the server child, enroll the clients, open and hold one stream
//! each, sample the server's RSS, send the notify and time its arrival on every stream.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use cascade_bench::procs::status_kib;
use cascade_client::proto::{EnrollRequest, NotifyRequest};
use cascade_client::Client;
use futures::StreamExt as _;
use tokio::sync::Semaphore;

use crate::report::{mib, per_stream, Report};
use crate::server::{cpu_ms, first_json_line, server_command, ServerChild, Started};
use crate::stream::{source, tls_connector, Stream};
use crate::{descriptors, raise_nofile, runtime, Args};

pub(crate) fn bench(args: &Args) -> Result<()> {
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

/// Enrolls `args.clients` clients, `args.concurrency` at a time; their credentials.
pub(crate) async fn enroll(api: &Client, token: &str, args: &Args) -> Result<Vec<String>> {
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
pub(crate) async fn arrivals(
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
pub(crate) async fn settled_rss(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(2)).await;
    status_kib(&pid.to_string(), "VmRSS:")
}

pub(crate) async fn run(
    args: &Args,
    started: &Started,
    pid: u32,
    ca: Option<Vec<u8>>,
) -> Result<Report> {
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

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
