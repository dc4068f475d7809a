//! cascade's test kit, for tests and benchmarks only (never linked into the `cascade`
//! binary). It re-exports the lab (`cascade-lab`: the real pieces started on loopback
//! addresses) and adds what only tests want: the one server starter of the tests with cheap
//! credential hashing ([`start_fleet`], over [`RunningServer`]), a static server that can be
//! made to lie ([`HostileServer`]), a counting reverse proxy that can hold one path's answers
//! ([`CountingProxy`]), a reader of the notification stream ([`Sse`]), a clock tests move by
//! hand ([`ManualClock`]), a fresh PostgreSQL database ([`postgres::Database`]), replicas of
//! the server as real processes on one database ([`replicas::Replicas`]), a swap of the
//! process's TLS trust store ([`one_tls_root`]), and the harness of the tests that run the
//! `cascade` binary ([`cli`]: a server, enrolled agents, replicas on PostgreSQL, build teams,
//! the command run against them).
//! Nothing here binds or contacts an address outside 127.0.0.0/8 unless the caller asks.

pub mod cli;
mod clock;
mod hostile;
pub mod nginx;
pub mod postgres;
mod proxy;
pub mod replicas;
mod sse;

pub use cascade_lab::{
    update_once, wait_until, AgentHandle, Fleet, RunningServer, StaticServer, Upstream,
};
pub use clock::ManualClock;
pub use hostile::{HostileServer, Lie, RequestLog};
pub use proxy::CountingProxy;
pub use sse::Sse;

/// Any error of the kit: the lab's (text with its origin; tests report and stop).
pub type KitError = cascade_lab::LabError;

use cascade_lab::lab_error as kit;

/// Cheap credential hashing: tokens are random, so the work factor buys nothing in a test.
pub const CHEAP_HASHING: cascade_server::HashCost = cascade_server::HashCost {
    memory_kib: 64,
    iterations: 1,
};

/// The lab's fleet ([`Fleet::start`]) with [`CHEAP_HASHING`]: the server on `listen` with
/// its data in `data_dir`, mirroring the policy's upstream pinned to `upstream_root`.
///
/// # Errors
/// When the server cannot open its store or bind.
pub async fn start_fleet(
    data_dir: &std::path::Path,
    listen: std::net::SocketAddr,
    upstream_root: Option<std::path::PathBuf>,
) -> Result<Fleet, KitError> {
    let mut settings = Fleet::settings(data_dir, upstream_root);
    settings.hash_cost = CHEAP_HASHING;
    Fleet::start_with(settings, listen).await
}

/// A temporary directory on tmpfs (`/dev/shm`) when the machine has one, else in the usual
/// temporary directory. Hundreds of agents create, fsync and delete thousands of small files
/// (data directories, stages, installs, the server's database); on a virtual disk that costs
/// more than the scenario itself, and nothing under test depends on it reaching a disk.
///
/// # Errors
/// When no directory can be created.
pub fn scratch_dir() -> Result<tempfile::TempDir, KitError> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("cascade-").tempdir_in(shm) {
            return Ok(dir);
        }
    }
    tempfile::tempdir().map_err(|e| kit("temporary directory")(&e))
}

/// A public root certificate (ISRG Root X2), never used to verify anything here.
const ONE_ROOT: &str = "-----BEGIN CERTIFICATE-----
MIICGzCCAaGgAwIBAgIQQdKd0XLq7qeAwSxs6S+HUjAKBggqhkjOPQQDAzBPMQsw
CQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJuZXQgU2VjdXJpdHkgUmVzZWFyY2gg
R3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBYMjAeFw0yMDA5MDQwMDAwMDBaFw00
MDA5MTcxNjAwMDBaME8xCzAJBgNVBAYTAlVTMSkwJwYDVQQKEyBJbnRlcm5ldCBT
ZWN1cml0eSBSZXNlYXJjaCBHcm91cDEVMBMGA1UEAxMMSVNSRyBSb290IFgyMHYw
EAYHKoZIzj0CAQYFK4EEACIDYgAEzZvVn4CDCuwJSvMWSj5cz3es3mcFDR0HttwW
+1qLFNvicWDEukWVEYmO6gbf9yoWHKS5xcUy4APgHoIYOIvXRdgKam7mAHf7AlF9
ItgKbppbd9/w+kHsOdx1ymgHDB/qo0IwQDAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0T
AQH/BAUwAwEB/zAdBgNVHQ4EFgQUfEKWrt5LSDv6kviejM9ti6lyN5UwCgYIKoZI
zj0EAwMDaAAwZQIwe3lORlCEwkSHRhtFcP9Ymd70/aTSVaYgLXTWNLxBo1BfASdW
tL4ndQavEi51mI38AjEAi/V3bNTIZargCyzuFJ0nN6T5U6VR5CmD1/iQMVtCnwr1
/q4AaOeMSQ+2b1tbFfLn
-----END CERTIFICATE-----
";

/// Points this process's TLS trust store (`SSL_CERT_FILE`, `SSL_CERT_DIR`) at a single root
/// written into `dir`. Every HTTP client the agents build (several per update cycle) loads
/// the system's CA bundle otherwise, about 50 ms each in a debug build; a test that runs
/// hundreds of agents over plain HTTP on loopback spends most of its time there.
///
/// Call it first thing in a test's own process (nextest runs each test in one), before any
/// runtime or thread starts: it changes the process environment.
///
/// # Errors
/// When the file cannot be written.
pub fn one_tls_root(dir: &std::path::Path) -> Result<(), KitError> {
    let file = dir.join("one-root.pem");
    std::fs::write(&file, ONE_ROOT).map_err(|e| kit("write TLS root")(&e))?;
    std::env::set_var("SSL_CERT_FILE", &file);
    std::env::set_var("SSL_CERT_DIR", dir);
    Ok(())
}

/// The start most scenarios share: an upstream on 127.0.0.1 publishing `components/patterns`
/// version 1 (one file, `patterns.db` = `v1`), its root written to `dir/upstream-root.json`,
/// and a server in `dir/server` on 127.0.0.1 that pins that root. Returns the upstream, the
/// root's path and the server.
///
/// # Errors
/// Any part that cannot be created or started.
pub async fn upstream_and_server(
    dir: &std::path::Path,
    v1: &[u8],
) -> Result<(Upstream, std::path::PathBuf, Fleet), KitError> {
    let (upstream, root) = cli::patterns_upstream(dir, v1).await?;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let fleet = start_fleet(&dir.join("server"), loopback, Some(root.clone())).await?;
    Ok((upstream, root, fleet))
}

/// `len` deterministic bytes that do not compress away (xorshift from `seed`), for content
/// whose size matters (interrupted downloads, single-flight of a large blob).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}
