//! Integration tests: publish, fetch through real HTTP servers on 127.0.0.1, verify, and one
//! misbehaving relay or mirror per attack test.

#![allow(clippy::unwrap_used)]

mod attacks;
mod common;
mod delegation;
mod fetch;
mod keys;
mod publishing;
mod workflow;
