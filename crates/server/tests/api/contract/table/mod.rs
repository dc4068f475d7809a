//! The contract's table: every operation, by area, in the order the drive runs them.

mod admin;
mod clients;
mod policy;
mod publishing;

use super::row::Row;

/// Every operation, in the order the drive runs them.
pub(super) fn table() -> Vec<Row> {
    [
        policy::rows(),
        clients::rows(),
        admin::rows(),
        publishing::rows(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
