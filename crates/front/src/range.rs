//! One `Range: bytes=…` request header (a resumed download).

/// The range asked for lies outside the file (`416 Range Not Satisfiable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A single `bytes=` range of a file of `len` bytes, first and last byte inclusive: `None`
/// when the header is not one plain range (then the whole file is sent),
/// `Err(Unsatisfiable)` when it cannot be satisfied.
pub fn parse_range(header: &str, len: u64) -> Option<Result<(u64, u64), Unsatisfiable>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last N bytes.
        let n: u64 = last.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(Unsatisfiable));
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            len.saturating_sub(1)
        } else {
            let end: u64 = last.parse().ok()?;
            if end < start {
                return None;
            }
            end.min(len.saturating_sub(1))
        };
        if start >= len {
            return Some(Err(Unsatisfiable));
        }
        (start, end)
    };
    Some(Ok(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=4-", 10), Some(Ok((4, 9))));
        assert_eq!(parse_range("bytes=2-5", 10), Some(Ok((2, 5))));
        assert_eq!(parse_range("bytes=2-50", 10), Some(Ok((2, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Some(Ok((7, 9))));
        assert_eq!(parse_range("bytes=-30", 10), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Some(Err(Unsatisfiable)));
        assert_eq!(parse_range("bytes=0-1,4-5", 10), None);
        assert_eq!(parse_range("bytes=5-2", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=x-", 10), None);
    }

    #[test]
    fn empty_files_and_zero_suffixes_are_unsatisfiable() {
        assert_eq!(parse_range("bytes=-0", 10), Some(Err(Unsatisfiable)));
        assert_eq!(parse_range("bytes=-5", 0), Some(Err(Unsatisfiable)));
        assert_eq!(parse_range("bytes=0-", 0), Some(Err(Unsatisfiable)));
        assert_eq!(parse_range(" bytes= 1 - 2 ", 10), Some(Ok((1, 2))));
    }
}
