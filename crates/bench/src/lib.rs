//! What the benchmark binaries of this crate share: starting a real `cascade server` as a
//! child process and reading its first-start message ([`procs`]), measuring a process from
//! `/proc` (CPU time, RSS), the server's own counts from `/metrics`, and the machine a run
//! ran on.

pub mod procs;
