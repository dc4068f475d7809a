//! Input limits every front end applies (`docs/api.md#limits`): how many source entries a
//! policy may hold, how long names, domains, versions and URLs may be, which characters a
//! name may not contain, and how a long value is cut before an error message repeats it.

use crate::error::PolicyError;

/// Most entries in the customized source list.
pub const MAX_SOURCES: usize = 1024;
/// Most registered update agents.
pub const MAX_AGENTS: usize = 1024;
/// Most domains with privilege overrides.
pub const MAX_DOMAINS: usize = 1024;
/// Longest client name, in characters.
pub const MAX_NAME: usize = 200;
/// Longest domain name, in bytes (a DNS name's limit).
pub const MAX_DOMAIN: usize = 253;
/// Longest version string, in bytes.
pub const MAX_VERSION: usize = 64;
/// Longest URL, in bytes.
pub const MAX_URL: usize = 2048;
/// Error messages repeat at most this many characters of a value.
pub const SHOWN: usize = 80;

/// `value` as an error message repeats it: at most [`SHOWN`] characters, then `…` and how
/// many bytes there were.
pub fn cut(value: &str) -> String {
    match value.char_indices().nth(SHOWN) {
        None => value.to_owned(),
        Some((at, _)) => format!("{}… ({} bytes)", &value[..at], value.len()),
    }
}

/// Whether `c` is a control character or a bidirectional-text override, isolate or mark
/// (which make a name display as something else).
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Checks a human-facing name or label: at most `max` bytes, no control or bidi characters.
///
/// # Errors
/// [`PolicyError::Invalid`] naming `field` and the (cut) value.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), PolicyError> {
    let bad = |reason: String| PolicyError::Invalid {
        field: field.to_owned(),
        value: cut(value),
        reason,
    };
    if value.len() > max {
        return Err(bad(format!("is longer than {max} bytes")));
    }
    if let Some((i, c)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| is_forbidden_char(*c))
    {
        return Err(bad(format!(
            "has a control or bidirectional character (U+{:04X}) at character {}",
            u32::from(c),
            i + 1
        )));
    }
    Ok(())
}

/// Checks that a list of `len` items named `field` holds at most `max`.
///
/// # Errors
/// [`PolicyError::Invalid`] naming the field and the count.
pub fn check_count(field: &str, len: usize, max: usize) -> Result<(), PolicyError> {
    if len > max {
        return Err(PolicyError::Invalid {
            field: field.to_owned(),
            value: format!("{len} entries"),
            reason: format!("is more than the limit of {max}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Long values are cut in messages; control and bidi characters are refused with their
    // 1-based position; lists over the limit are refused with the count.
    #[test]
    fn limits() {
        let long = "x".repeat(100_000);
        let shown = cut(&long);
        assert!(shown.len() < 120, "{shown}");
        assert!(shown.ends_with("(100000 bytes)"), "{shown}");
        assert_eq!(cut("short"), "short");
        let e = check_text("name", "ab\u{202E}c", 200)
            .unwrap_err()
            .to_string();
        assert!(e.contains("U+202E") && e.contains("character 3"), "{e}");
        assert!(check_text("name", "a\0b", 200).is_err());
        assert!(check_text("name", "plain name", 200).is_ok());
        let e = check_text("domain", &long, MAX_DOMAIN)
            .unwrap_err()
            .to_string();
        assert!(e.len() < 300, "{e}");
        assert!(check_count("sources", 1025, MAX_SOURCES).is_err());
        assert!(check_count("sources", 1024, MAX_SOURCES).is_ok());
    }
}
