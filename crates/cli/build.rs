//! Build script: stamps the version the `cascade` binary reports (`cascade --version`, and
//! an agent's check-ins, `docs/operating.md#agent-self-update`): `CASCADE_BUILD_VERSION` when
//! set (a packager's build number, or the self-update test's second build), else the
//! package version.

fn main() {
    println!("cargo:rerun-if-env-changed=CASCADE_BUILD_VERSION");
    let version = std::env::var("CASCADE_BUILD_VERSION")
        .or_else(|_| std::env::var("CARGO_PKG_VERSION"))
        .unwrap_or_default();
    println!("cargo:rustc-env=CASCADE_VERSION={version}");
}
