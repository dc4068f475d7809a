//! The `cascade` command built a second time, for the agent self-update test only
//! (`crates/cli/tests/self_update.rs`): with the `second-build` feature, which also turns on
//! the agent's fault injection, and its own binary name so the normal build is untouched.

fn main() -> std::process::ExitCode {
    cascade_cli::main()
}
