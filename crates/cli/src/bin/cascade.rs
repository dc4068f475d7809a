//! The `cascade` command (its code is the `cascade_cli` library, `src/main.rs`).

fn main() -> std::process::ExitCode {
    cascade_cli::main()
}
