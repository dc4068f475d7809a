//! cascade's lab: a whole fleet in one process, each piece real and on its own loopback
//! address, for `cascade demo`, the benchmarks and the test kit. A signed upstream
//! repository served over HTTP ([`Upstream`]), a static file server standing in for a URL
//! mirror ([`StaticServer`]), the cascade server with its first-start tokens captured
//! ([`RunningServer`], and [`Fleet`] on top of it with its site repository and admin calls),
//! and in-process agents bound to their own 127.x.y.z address ([`AgentHandle`]).
//!
//! Everything here runs the product as it ships: real credential hashing, the system's TLS
//! trust store, honest servers. What only tests want (servers that lie, counting proxies,
//! cheap hashing) is in the dev-only test kit (`crates/testkit`).
//! Nothing here binds or contacts an address outside 127.0.0.0/8 unless the caller asks.

mod fleet;
mod serve;
mod server;
mod upstream;

pub use fleet::{update_once, wait_until, AgentHandle, Fleet};
pub use serve::{RouterWrap, StaticServer};
pub use server::RunningServer;
pub use upstream::Upstream;

/// Any error of the lab, as text with its origin (the lab serves the demo and tests, which
/// report and stop).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct LabError {
    /// What the lab was doing.
    pub what: &'static str,
    /// What went wrong.
    pub detail: String,
}

impl LabError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        "lab.failed"
    }
}

/// Wraps an error of the step `what` into a [`LabError`].
pub fn lab_error(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> LabError {
    move |e| LabError {
        what,
        detail: e.to_string(),
    }
}

pub(crate) use lab_error as kit;

/// The lab's error under the name its modules were written with.
pub(crate) type KitError = LabError;
