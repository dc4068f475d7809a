//! Integration tests of the cascade server: each starts the real server on 127.0.0.1:0
//! with a real SQLite file in a temporary directory (see `harness`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

mod accept;
mod accounts;
mod audit;
mod auth;
mod backfill;
mod clients;
mod contract;
mod domains;
mod durability;
mod enrollment;
mod fleet_stats;
mod front;
mod harness;
mod limits;
mod lockout;
mod mirror;
mod notify;
mod ops;
mod policy;
mod postgres;
mod programs;
mod proxies;
mod revisions;
mod rollouts;
mod sessions;
mod shared_repo;
mod site;
mod sources;
mod tls;
