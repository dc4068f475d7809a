//! Fleet statistics (`docs/operating.md#fleet-charts`): what each new update report says,
//! kept at check-in in columns of `clients` and in the small tables of
//! `migrations/0015_fleet_stats.sql`, so the console's dashboard, agents and compliance pages
//! and the source health aggregate in SQL instead of reading every client's report (JSON);
//! bytes per hour and source (`traffic`) and the fleet over time (`fleet_samples`), both with
//! bounded retention.
//!
//! `report` derives and stores what one report says; `backfill` fills in the clients
//! stored before these figures; `aggregates` counts the fleet for the console; `series`
//! keeps the traffic and the samples over time.

mod aggregates;
mod backfill;
mod report;
mod series;

pub use aggregates::{InstalledGroup, SourceTally};
pub(super) use report::categories_text;
pub use report::{derive, failed_categories, ip_key, ip_key_of, Derived};
pub use series::{FleetSample, TrafficRow};

/// Hours of `traffic` kept.
pub const TRAFFIC_HOURS: i64 = 14 * 24;
/// Seconds of `fleet_samples` kept.
pub const SAMPLE_SECS: i64 = 7 * 86_400;

/// A count as stored (saturating).
pub(super) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn as_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
