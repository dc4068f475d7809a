//! Binary deltas between successive versions of one file: zstd with the previous version as a
//! reference prefix and a long window (`zstd --patch-from` style).
//!
//! A delta is only ever trusted after [`apply`] reproduced the new file and the caller checked the
//! result against the full file's signed hash; [`apply`] itself caps the output size so a hostile
//! delta cannot expand without bound.

use std::io::{Read, Write};

/// Compression level used for deltas (the same as `zstd -19`).
pub const LEVEL: i32 = 19;

/// Errors from making or applying a delta.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// zstd refused to compress.
    #[error("making the delta failed: {0}")]
    Encode(#[source] std::io::Error),
    /// The delta is not a valid zstd frame for this reference.
    #[error("applying the delta failed: {0}")]
    Decode(#[source] std::io::Error),
    /// The delta expands to more than the signed length of the full file.
    #[error("the delta expands beyond {max} bytes")]
    TooLarge {
        /// The cap that was exceeded.
        max: u64,
    },
    /// One of the inputs is larger than zstd's biggest window (2 GiB).
    #[error("file too large for a delta ({0} bytes)")]
    InputTooLarge(u64),
}

impl DeltaError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            DeltaError::Encode(_) => "delta.encode",
            DeltaError::Decode(_) => "delta.decode",
            DeltaError::TooLarge { .. } => "delta.too_large",
            DeltaError::InputTooLarge(_) => "delta.input_too_large",
        }
    }
}

/// The window log that covers `reference` plus `target` (at least 2^20, at most 2^31).
fn window_log(reference_len: usize, target_len: usize) -> Result<u32, DeltaError> {
    let total = reference_len as u64 + target_len as u64;
    if total > (1 << 31) {
        return Err(DeltaError::InputTooLarge(total));
    }
    let bits = 64 - total.max(1).leading_zeros();
    Ok(bits.clamp(20, 31))
}

/// Make a delta that turns `reference` into `target`.
///
/// # Errors
/// [`DeltaError::Encode`] when zstd fails, [`DeltaError::InputTooLarge`] past 2 GiB.
pub fn make(reference: &[u8], target: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let wlog = window_log(reference.len(), target.len())?;
    let mut encoder = zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), LEVEL, reference)
        .map_err(DeltaError::Encode)?;
    encoder.window_log(wlog).map_err(DeltaError::Encode)?;
    encoder
        .long_distance_matching(true)
        .map_err(DeltaError::Encode)?;
    encoder
        .set_pledged_src_size(Some(target.len() as u64))
        .map_err(DeltaError::Encode)?;
    encoder.include_checksum(true).map_err(DeltaError::Encode)?;
    encoder.write_all(target).map_err(DeltaError::Encode)?;
    encoder.finish().map_err(DeltaError::Encode)
}

/// Apply `delta` to `reference`, refusing output longer than `max_len` bytes.
///
/// # Errors
/// [`DeltaError::Decode`] for a corrupt delta or wrong reference (zstd's checksum),
/// [`DeltaError::TooLarge`] past `max_len`.
pub fn apply(reference: &[u8], delta: &[u8], max_len: u64) -> Result<Vec<u8>, DeltaError> {
    let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(delta, reference)
        .map_err(DeltaError::Decode)?;
    decoder.window_log_max(31).map_err(DeltaError::Decode)?;
    let mut out = Vec::new();
    let read = decoder
        .take(max_len.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(DeltaError::Decode)?;
    if read as u64 > max_len {
        return Err(DeltaError::TooLarge { max: max_len });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| {
                let x = (i as u64).wrapping_mul(2_654_435_761) >> 7;
                x.to_le_bytes()[0] ^ seed.wrapping_mul(i.to_le_bytes()[0] % 13)
            })
            .collect()
    }

    // A small edit in a large file gives a small delta that reproduces the new file exactly.
    #[test]
    fn round_trip_small_edit() {
        let old = sample(300_000, 1);
        let mut new = old.clone();
        new[150_000..150_010].copy_from_slice(b"0123456789");
        new.extend_from_slice(b"appended tail");
        let d = make(&old, &new).unwrap();
        assert!(d.len() < 2_000, "delta {} bytes", d.len());
        assert_eq!(apply(&old, &d, new.len() as u64).unwrap(), new);
    }

    // Applying against the wrong reference or past the cap is refused, never silently accepted.
    #[test]
    fn wrong_reference_or_cap_refused() {
        let old = sample(100_000, 1);
        let mut new = old.clone();
        new[10] ^= 0xff;
        let d = make(&old, &new).unwrap();
        let other = sample(100_000, 9);
        assert!(
            apply(&other, &d, 1 << 20).is_err_and(|e| e.code() == "delta.decode")
                || apply(&other, &d, 1 << 20).is_ok_and(|out| out != new)
        );
        let err = apply(&old, &d, 10).unwrap_err();
        assert_eq!(err.code(), "delta.too_large");
    }
}
