//! The fleet views every surface shares (`docs/operating.md#health`,
//! `docs/operating.md#compliance`): the health of each update agent and URL source, from what
//! clients report about it and from its own check-ins, and compliance by version per
//! category, against the newest version published in the repository the server serves. The
//! console, `GET /api/fleet/…` and the CLI all call [`health()`] and [`compliance()`], so they
//! cannot disagree.
//!
//! - `health`: the health of each source, from the clients' reports and the agents' check-ins;
//! - `pages`: the console's kept health result, for a fleet too large to assess per page;
//! - `compliance`: the repository's catalog and where each client stands against it;
//! - `sample`: the fleet's samples over time, for the console's chart.

mod compliance;
mod health;
mod pages;
mod sample;
#[cfg(test)]
mod tests;

pub use compliance::{compliance, Catalog};
pub use health::{assess, from_tallies, health, window_secs};
pub use pages::{health_for_pages, refresh, HealthCache, BIG, CHEAP, REUSE};
pub use sample::{sample_if_due, sampler};
