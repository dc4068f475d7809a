//! What a server is started with. Everything that tests need to control is here and passed
//! in: the data directory, the database URL, the clock, the randomness source, the cost of
//! credential hashing, notify staging and who hears the first-start secrets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cascade_repo::TransportLimits;

/// The current time in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Now, as Unix seconds.
    fn now(&self) -> i64;
}

/// A clock a test sets by hand (`clock.0.store(t, Ordering::SeqCst)`).
#[cfg(test)]
pub(crate) struct TestClock(pub std::sync::atomic::AtomicI64);

#[cfg(test)]
impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// Fills a buffer with unpredictable bytes (token secrets, salts).
pub type RandomFill = Arc<dyn Fn(&mut [u8]) -> Result<(), String> + Send + Sync>;

/// The operating system's random source.
pub fn os_random() -> RandomFill {
    Arc::new(|buf: &mut [u8]| getrandom::fill(buf).map_err(|e| e.to_string()))
}

/// Argon2id cost for stored credential hashes.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
}

impl Default for HashCost {
    /// The OWASP-recommended argon2id minimum (19 MiB, 2 passes).
    fn default() -> Self {
        HashCost {
            memory_kib: 19 * 1024,
            iterations: 2,
        }
    }
}

/// The secrets created on the first start of a fresh database; shown once, stored hashed.
#[derive(Debug, Clone)]
pub struct FirstStart {
    /// The bootstrap admin user's first API token.
    pub admin_token: String,
    /// The bootstrap admin user's name (`admin`).
    pub admin_user: String,
    /// Its password (console login, `cascade tokens create --password`).
    pub admin_password: String,
    /// The token clients enroll with.
    pub enrollment_token: String,
    /// Where the server listens, e.g. `https://127.0.0.1:8080`.
    pub url: String,
    /// SHA-256 of the CA certificate served at `/ca.pem` (`None` over plain HTTP).
    pub ca_sha256: Option<String>,
}

/// Called once with the first-start secrets.
pub type FirstStartHook = Arc<dyn Fn(&FirstStart) + Send + Sync>;

/// How a server runs.
#[derive(Clone)]
pub struct Settings {
    /// Holds `cascade.db` (SQLite) and `repo/` by default.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// The directory served at `/repo/`; `None` means `data_dir/repo`.
    pub repo_dir: Option<PathBuf>,
    /// The server's own site repository (`--site-repo`); `None` means `data_dir/site-repo`,
    /// unless the operator linked `<repo-dir>/site` (see [`crate::site`]).
    pub site_repo: Option<PathBuf>,
    /// The passphrase of the site repository's key files (`--key-passphrase-file`, else
    /// `CASCADE_KEY_PASSPHRASE`): keys it creates are encrypted with it, and encrypted keys
    /// need it to sign. `None`: plain key files, warned about at every start.
    pub key_passphrase: Option<cascade_repo::Passphrase>,
    /// How often the site repository's timestamp is re-signed.
    pub site_refresh: Duration,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The random source.
    pub random: RandomFill,
    /// Argon2 cost for credentials.
    pub hash_cost: HashCost,
    /// A client not seen for this long is `stale`.
    pub stale_after: Duration,
    /// How often update agents and clients update (their `--interval`): the fleet health
    /// view counts reports from the last two intervals and calls an update agent down when
    /// its own last check-in is older (`docs/operating.md#health`).
    pub update_interval: Duration,
    /// How long update agents hear a notify before ordinary clients do.
    pub agent_head_start: Duration,
    /// Every replica's base URL, told to each client at enrollment so it can fail over
    /// between them (`docs/operating.md#replicas`); empty: none advertised.
    pub replica_urls: Vec<String>,
    /// The jitter hint grows by this much per connected client…
    pub jitter_per_client: Duration,
    /// …up to this much.
    pub max_jitter: Duration,
    /// On PostgreSQL (replicas): how often a replica reads the shared repository's newest
    /// tree versions without a signal, and tries to become the mirror leader.
    pub replica_poll: Duration,
    /// How often to look for notifies issued by other replicas sharing the database.
    pub notify_poll: Duration,
    /// How long the policy and rollout revisions read from the database answer clients'
    /// policy requests (304) without reading it again: the bound on how late a change made
    /// by another replica, and not followed by a notify, is seen here
    /// (`docs/operating.md#policy-revisions-in-memory`).
    pub revisions_max_age: Duration,
    /// A notify is still delivered to event streams that (re)connect within this long after
    /// it was issued, unless the client sent a later event id or checked in since
    /// (`docs/architecture.md#notify-across-restarts`).
    pub notify_replay_window: Duration,
    /// Told the first-start secrets; the default prints them to stdout.
    pub on_first_start: FirstStartHook,
    /// Mirroring of the upstream; `None` serves `/repo/upstream/` as it is on disk.
    pub mirror: Option<MirrorSettings>,
    /// Timeouts, the connection cap and the body-size limit.
    pub limits: crate::limits::ServeLimits,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>`; `None` leaves it open.
    pub metrics_token: Option<String>,
    /// HTTPS (the private CA by default) or, loudly, plain HTTP (`docs/operating.md#tls`).
    pub tls: crate::tls::TlsMode,
    /// Failed logins, enrollments and token uses that lock a name, id or address out.
    pub lockout: crate::lockout::LockoutPolicy,
    /// Proxies (load balancers) whose `X-Forwarded-For` names the client
    /// (`--trusted-proxy`, `docs/operating.md#trusted-proxies`); empty: the header is never read.
    pub trusted_proxies: crate::forwarded::TrustedProxies,
    /// Clients per batch when filling in the fleet figures and the search index of clients
    /// from before this version (`crate::backfill`).
    pub backfill_batch: u32,
    /// The pause between two such batches (check-ins get the database meanwhile).
    pub backfill_pause: Duration,
    /// One accept loop, or one per thread (`docs/operating.md#accept-per-thread`); bind the
    /// listener with [`crate::listen`] to match.
    pub accept: crate::accept::Accept,
}

impl Settings {
    /// Defaults for a data directory: SQLite, system clock, OS randomness.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Settings {
            data_dir: data_dir.into(),
            database_url: None,
            repo_dir: None,
            site_repo: None,
            key_passphrase: None,
            site_refresh: crate::site::REFRESH_EVERY,
            clock: Arc::new(SystemClock),
            random: os_random(),
            hash_cost: HashCost::default(),
            stale_after: Duration::from_secs(24 * 3600),
            update_interval: Duration::from_secs(3600),
            agent_head_start: Duration::from_secs(10),
            replica_urls: Vec::new(),
            jitter_per_client: Duration::from_millis(5),
            max_jitter: Duration::from_secs(60),
            notify_poll: Duration::from_secs(2),
            revisions_max_age: crate::revisions::MAX_AGE,
            replica_poll: Duration::from_secs(10),
            notify_replay_window: Duration::from_secs(3600),
            on_first_start: Arc::new(print_first_start),
            mirror: None,
            limits: crate::limits::ServeLimits::default(),
            metrics_token: None,
            tls: crate::tls::TlsMode::default(),
            lockout: crate::lockout::LockoutPolicy::default(),
            trusted_proxies: crate::forwarded::TrustedProxies::default(),
            backfill_batch: 500,
            backfill_pause: Duration::from_millis(50),
            accept: crate::accept::Accept::Shared,
        }
    }

    /// The repository directory.
    pub fn repo_dir(&self) -> PathBuf {
        self.repo_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("repo"))
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "…"))
            .field("repo_dir", &self.repo_dir)
            .field("site_repo", &self.site_repo)
            .field(
                "key_passphrase",
                &self.key_passphrase.as_ref().map(|_| "(set)"),
            )
            .field("limits", &self.limits)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("accept", &self.accept)
            .finish_non_exhaustive()
    }
}

#[allow(clippy::print_stdout)]
fn print_first_start(f: &FirstStart) {
    println!(
        "cascade server first start: {url}\n\
         admin user `{user}`, password (shown once; console login):\n  {password}\n\
         its API token (shown once; use as CASCADE_TOKEN or `Authorization: Bearer …`):\n  {admin}\n\
         enrollment token for clients (rotate with POST /api/enrollment-token/rotate):\n  {enroll}\n\
         {ca}",
        url = f.url,
        user = f.admin_user,
        password = f.admin_password,
        admin = f.admin_token,
        enroll = f.enrollment_token,
        ca = match &f.ca_sha256 {
            Some(h) => format!(
                "CA certificate to trust: {url}/ca.pem, SHA-256 {h} (the enrollment token carries it)",
                url = f.url
            ),
            None => "PLAIN HTTP (--insecure-plain-http): nothing above is protected in transit".into(),
        }
    );
}

/// How the server mirrors its upstream.
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    /// The upstream's `root.json`, trusted out of band (the anchor of verification).
    pub trusted_root: PathBuf,
    /// Mirror this often; `None` mirrors only on demand.
    pub interval: Option<Duration>,
    /// Transport limits for the upstream.
    pub limits: TransportLimits,
}
