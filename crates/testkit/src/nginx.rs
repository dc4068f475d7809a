//! Real nginx for the tests that run a configuration block of `docs/operating.md` as it is
//! written there: the block taken from the document between its markers, the binary (the
//! test fails, loudly, when nginx is missing, rather than pass without testing anything), and
//! a guard that stops nginx however the test ends.

use std::path::{Path, PathBuf};
use std::process::Child;

/// The ```` ```nginx ```` block of `docs/operating.md` between `<!-- MARKER: begin -->` and
/// `<!-- MARKER: end -->`.
///
/// # Panics
/// When the document, a marker or the block is missing.
#[must_use]
pub fn documented_block(marker: &str) -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operating.md");
    let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let begin = text
        .find(&format!("<!-- {marker}: begin -->"))
        .unwrap_or_else(|| panic!("no begin marker {marker} in operating.md"));
    let end = text
        .find(&format!("<!-- {marker}: end -->"))
        .unwrap_or_else(|| panic!("no end marker {marker} in operating.md"));
    let block = &text[begin..end];
    let start = block
        .find("```nginx\n")
        .unwrap_or_else(|| panic!("no nginx block inside {marker}"))
        + "```nginx\n".len();
    let stop = block[start..]
        .find("```")
        .unwrap_or_else(|| panic!("nginx block inside {marker} not closed"))
        + start;
    block[start..stop].to_owned()
}

/// The nginx binary; `what` says what the test runs, for the message when it is missing.
///
/// # Panics
/// When nginx is not installed.
#[must_use]
pub fn binary(what: &str) -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "nginx is not installed: this test runs {what} for real. Install it with \
         scripts/nginx (apt-get install nginx), which scripts/test runs."
    );
}

/// Kills nginx when the test ends, however it ends.
#[derive(Debug)]
pub struct Nginx(pub Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
