//! cascade's test kit: the real pieces, started on loopback addresses for integration tests,
//! benchmarks and `cascade demo`. A signed upstream repository served over HTTP
//! ([`Upstream`]), a static file server that can be stopped or made to lie
//! ([`StaticServer`]), the cascade server with its first-start tokens captured
//! ([`Fleet`]), and in-process agents bound to their own 127.x.y.z address ([`AgentHandle`]).
//! Nothing here binds or contacts an address outside 127.0.0.0/8 unless the caller asks.

mod fleet;
mod serve;
mod upstream;

pub use fleet::{update_once, wait_until, AgentHandle, Fleet, FleetError};
pub use serve::{Lie, StaticServer};
pub use upstream::Upstream;

/// Any error of the kit, as text with its origin (the kit serves tests and the demo, which
/// report and stop).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct KitError {
    /// What the kit was doing.
    pub what: &'static str,
    /// What went wrong.
    pub detail: String,
}

impl KitError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        "testkit.failed"
    }
}

pub(crate) fn kit(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> KitError {
    move |e| KitError {
        what,
        detail: e.to_string(),
    }
}
