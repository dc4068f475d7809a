//! The relay benchmark's clients (`bench/relay/run`): `--clients` connections, each from an
//! address of its own (`127.0.X.Y`, counting up from `--first`), all started together, each
//! fetching `--url` once with a plain HTTP/1.1 `GET` and reading the body into one reused
//! 256 KiB buffer (nothing parsed but the head): a client far cheaper than what it measures.
//! Prints one line: clients, failures, bytes, wall time from the start to the last body's
//! end, the median and slowest client, and the fetcher's own CPU time in clock ticks (user +
//! system from `/proc/self/stat`), which says whether the clients were the bottleneck.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Fetches one URL from many addresses at once.
#[derive(Debug, Parser)]
struct Args {
    /// `http://HOST:PORT/PATH` (an IPv4 address, plain HTTP).
    #[arg(long)]
    url: url::Url,
    /// Number of clients.
    #[arg(long, default_value_t = 200)]
    clients: u32,
    /// The first client's address; the others count up (`Y` from 1 to 250, then the next `X`).
    #[arg(long, default_value = "127.0.1.1")]
    first: Ipv4Addr,
    /// Worker threads of the fetcher's runtime.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .context("runtime")?
        .block_on(run(args))
}

/// Client `i`'s address: `first`'s last octet counts up 1..=250, then the third one.
fn address(first: Ipv4Addr, index: u32) -> Ipv4Addr {
    let [net, sub, third, last] = first.octets();
    let start = u32::from(third) * 250 + u32::from(last.max(1)) - 1 + index;
    let (third, last) = (start / 250, start % 250 + 1);
    Ipv4Addr::new(
        net,
        sub,
        u8::try_from(third).unwrap_or(u8::MAX),
        u8::try_from(last).unwrap_or(1),
    )
}

async fn run(args: Args) -> anyhow::Result<()> {
    let host = args.url.host_str().context("URL without host")?;
    let port = args
        .url
        .port_or_known_default()
        .context("URL without port")?;
    let target: SocketAddr = format!("{host}:{port}")
        .parse()
        .context("host is not an IPv4 address")?;
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {host}:{port}\r\nconnection: close\r\n\r\n",
        args.url.path()
    );
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            let from = address(args.first, i);
            let request = request.clone();
            tokio::spawn(async move { fetch(from, target, request.as_bytes()).await })
        })
        .collect();
    let (mut ok, mut failed, mut bytes) = (0u32, 0u32, 0u64);
    let mut times: Vec<Duration> = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => {
                ok += 1;
                bytes += n;
                times.push(start.elapsed());
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let wall = start.elapsed();
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let slowest = times.last().copied().unwrap_or_default();
    println!(
        "relay-fetch: clients={} ok={ok} failed={failed} bytes={bytes} wall_s={:.3} client_median_s={:.3} client_max_s={:.3} cpu_ticks={}",
        args.clients,
        wall.as_secs_f64(),
        median.as_secs_f64(),
        slowest.as_secs_f64(),
        own_cpu_ticks().unwrap_or(0)
    );
    if let Some(e) = first_error {
        println!("relay-fetch: first failure: {e}");
    }
    Ok(())
}

/// This process's user + system time so far, in clock ticks (`/proc/self/stat` fields 14
/// and 15, counted after the command name's closing parenthesis).
fn own_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// One client: connects from `from`, sends `request`, reads to the end; the body's length
/// (checked against `Content-Length`, status 200 required).
async fn fetch(from: Ipv4Addr, target: SocketAddr, request: &[u8]) -> anyhow::Result<u64> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::from((from, 0)))
        .with_context(|| format!("bind {from}"))?;
    let mut stream = socket
        .connect(target)
        .await
        .with_context(|| format!("connect from {from}"))?;
    stream.write_all(request).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head: Vec<u8> = Vec::new();
    let (mut body, mut expected) = (0u64, None);
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if expected.is_none() {
            head.extend_from_slice(&buf[..n]);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            anyhow::ensure!(
                text.starts_with("http/1.1 200"),
                "{from}: {}",
                text.lines().next().unwrap_or("")
            );
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .context("no content-length")?;
            expected = Some(length);
            body = (head.len() - end - 4) as u64;
            head = Vec::new();
        } else {
            body += n as u64;
        }
    }
    let expected = expected.context("no response head")?;
    anyhow::ensure!(body == expected, "{from}: {body} of {expected} bytes");
    Ok(body)
}
