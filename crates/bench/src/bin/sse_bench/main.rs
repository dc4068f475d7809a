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
//!
//! The parts: [`server`](mod@server) (the server child: `serve` mode, starting and reading it),
//! [`bench`](mod@bench) (the bench side: enrolling, opening the streams, timing the notify),
//! [`stream`] (one raw event stream, plain or TLS), [`report`] (the result).

mod bench;
mod report;
mod server;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

use bench::bench;
use server::serve;

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
