//! What the benchmark binaries of this crate share: starting a real `cascade server` as a
//! child process and reading its first-start message ([`procs`]), measuring a process from
//! `/proc` (CPU time, RSS), the server's own counts from `/metrics`, and the machine a run
//! ran on ([`procs`]); nginx over TLS as the reference a paced run is compared with
//! ([`reference`](mod@reference)).

pub mod procs;
pub mod reference;
