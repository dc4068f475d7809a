//! How an agent is run ([`AgentConfig`]) and why it could not ([`AgentError`], with stable
//! codes).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use cascade_core::TrustDomain;
use cascade_repo::TransportLimits;
use url::Url;

use crate::selfupdate::SelfUpdate;

/// How the agent is run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The server's base URL (needed at enrollment; afterwards the stored one is used).
    pub server: Option<Url>,
    /// More servers: replicas of `server` on one database, asked in order when the one in
    /// use is down (`docs/operating.md#replicas`); stored at enrollment, and added to the
    /// stored ones at later starts.
    pub more_servers: Vec<Url>,
    /// The enrollment token (first start only).
    pub enroll_token: Option<String>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Every outgoing connection leaves from this address.
    pub bind_ip: Option<IpAddr>,
    /// Name shown in the console.
    pub name: String,
    /// Client domain (privileges).
    pub domain: Option<String>,
    /// Run as an update agent serving at this address.
    pub relay_listen: Option<SocketAddr>,
    /// Relay cache budget, bytes.
    pub relay_cache_bytes: u64,
    /// Time between scheduled updates.
    pub interval: Duration,
    /// An update agent also checks in this often between cycles when its relay served
    /// something since the last check-in.
    pub relay_report_interval: Duration,
    /// Per-source transfer limits.
    pub limits: TransportLimits,
    /// How often the daemon re-checks installed files against verified metadata and repairs
    /// them (`None`: never; `cascade agent verify` does it on demand).
    pub verify_interval: Option<Duration>,
    /// Trusted roots given out of band, per trust domain; otherwise the ones whose hash the
    /// enrollment token carries, else the server's (over HTTPS to the CA pinned from the
    /// token: `docs/architecture.md#trust-model`).
    pub pinned_roots: Vec<(TrustDomain, PathBuf)>,
    /// How the daemon updates itself ([`run_self_updating`](super::run_self_updating));
    /// `None`: it does not, and reports this crate's version.
    pub self_update: Option<SelfUpdate>,
}

/// Why the agent cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Not enrolled and no token given.
    #[error("this data directory is not enrolled: pass --server URL and --enroll-token TOKEN")]
    NotEnrolled,
    /// Another agent holds the data directory.
    #[error("another agent is running on {0}")]
    Locked(PathBuf),
    /// No policy cached and the server unreachable.
    #[error("no policy: the server is unreachable ({0}) and none is cached")]
    NoPolicy(String),
    /// The cached policy does not validate.
    #[error("the policy is invalid: {0}")]
    BadPolicy(String),
    /// Data directory trouble.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Server API trouble that stops start-up (enrollment refused…).
    #[error(transparent)]
    Api(#[from] cascade_client::ClientError),
    /// The relay could not start.
    #[error("relay: {0}")]
    Relay(String),
    /// A local part could not be set up (the HTTP client).
    #[error("set-up: {0}")]
    Setup(String),
    /// The enrollment token's text is malformed.
    #[error(transparent)]
    Token(#[from] cascade_client::proto::EnrollTokenError),
    /// The server's CA certificate does not have the hash the enrollment token names: the
    /// connection is not to the server that issued the token (or the CA was replaced).
    #[error("the server's CA certificate has SHA-256 {found}, the enrollment token says {expected}: refusing to enroll")]
    CaMismatch {
        /// The token's hash.
        expected: String,
        /// The fetched certificate's hash.
        found: String,
    },
    /// A repository's first root does not have the hash the enrollment token names.
    #[error("{domain} 1.root.json has SHA-256 {found}, the enrollment token says {expected}: refusing to enroll")]
    RootMismatch {
        /// The trust domain.
        domain: TrustDomain,
        /// The token's hash.
        expected: String,
        /// The fetched root's hash.
        found: String,
    },
    /// The self-update state could not be read or written at start.
    #[error(transparent)]
    SelfUpdate(#[from] crate::selfupdate::SelfUpdateError),
}

impl AgentError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::NotEnrolled => "agent.not_enrolled",
            AgentError::Locked(_) => "agent.locked",
            AgentError::NoPolicy(_) => "agent.no_policy",
            AgentError::BadPolicy(_) => "agent.bad_policy",
            AgentError::State(e) => e.code(),
            AgentError::Api(e) => e.code(),
            AgentError::Relay(_) => "agent.relay",
            AgentError::Setup(_) => "agent.setup",
            AgentError::Token(e) => e.code(),
            AgentError::CaMismatch { .. } => "agent.ca_mismatch",
            AgentError::RootMismatch { .. } => "agent.root_mismatch",
            AgentError::SelfUpdate(e) => e.code(),
        }
    }
}
