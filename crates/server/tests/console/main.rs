//! The web console's tests: sessions and CSRF over plain HTTP, and the whole admin journey
//! in a real headless chromium (Debian's `chromium` through `chromium-driver`), each against
//! the real server on 127.0.0.1:0. Screenshots of every page land in `target/screenshots/`.
//! The browser test is `#[ignore]`d in plain `cargo test` runs; `scripts/browser-tests`
//! installs chromium and chromium-driver and runs it with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod browser;
mod charts;
mod domains;
mod fleet;
mod forms;
mod harness;
mod http;
mod programs;
mod webdriver;
