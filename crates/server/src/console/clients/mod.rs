//! The Clients pages: every enrolled client with its IP, domain, installed version per
//! category, last check-in, the source that served its last update and its failures, with
//! stale/failed filters; and one client's last update, attempt by attempt. The rows come
//! from the registry through the API's own `client_view`, so states match `GET /api/clients`.
//!
//! `row`: a client as the pages show it; `filters`: the list's query string; `list`: the
//! paged list (`GET /clients`); `export`: the same clients as CSV; `detail`: one client.

mod detail;
mod export;
mod filters;
mod list;
mod row;

pub use detail::{detail, outcome_text};
pub use export::csv;
pub use filters::Filters;
pub use list::{list, matching};
pub use row::{load, ClientRow};
