//! Measure cascade's delta between two files: `delta_bench OLD NEW [OUT.delta]`.
//!
//! Prints one JSON object: sizes, time to make the delta, time to apply it (best of 5), and
//! whether the applied result matched NEW byte for byte.

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [old, new, rest @ ..] = args.as_slice() else {
        return Err("usage: delta_bench OLD NEW [OUT.delta]".into());
    };
    let old = std::fs::read(old)?;
    let new = std::fs::read(new)?;
    let started = Instant::now();
    let delta = cascade_repo::delta::make(&old, &new)?;
    let make_time = started.elapsed();
    if let Some(out) = rest.first() {
        std::fs::write(out, &delta)?;
    }
    let mut best = Duration::MAX;
    let mut ok = true;
    for _ in 0..5 {
        let started = Instant::now();
        let applied = cascade_repo::delta::apply(&old, &delta, new.len() as u64)?;
        best = best.min(started.elapsed());
        ok &= applied == new;
    }
    println!(
        "{{\"old_bytes\":{},\"new_bytes\":{},\"delta_bytes\":{},\"make_seconds\":{:.3},\"apply_seconds\":{:.4},\"round_trip_ok\":{}}}",
        old.len(),
        new.len(),
        delta.len(),
        make_time.as_secs_f64(),
        best.as_secs_f64(),
        ok
    );
    Ok(())
}
