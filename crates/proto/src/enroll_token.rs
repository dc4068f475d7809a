//! The enrollment token as a person copies it (`docs/operating.md#enrollment-token-format`): the
//! server's secret (what authenticates the enrollment, unchanged) together with the SHA-256
//! of the server's CA certificate and of the site and upstream `1.root.json`, so that an
//! agent given only this token and the server's URL trusts nothing on first contact
//! (`docs/architecture.md#trust-model`).
//!
//! Text form, version 1 (each hash 64 lowercase hex digits, or `-` when the server had none
//! when it issued the token: a plain-HTTP server has no CA, a repository not yet created
//! has no root):
//!
//! ```text
//! cascade-enroll-v1:SECRET:CA_SHA256:SITE_ROOT_SHA256:UPSTREAM_ROOT_SHA256
//! ```

use std::fmt;
use std::str::FromStr;

/// The text every token of this format starts with.
pub const PREFIX: &str = "cascade-enroll-";

/// The one version this build writes and reads.
pub const VERSION: u32 = 1;

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (either case).
    ///
    /// # Errors
    /// When `text` is not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out)?;
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An enrollment token with what the agent pins at enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentTokenText {
    /// The secret the server checks (`cascade_enr_ID_SECRET`), sent as the bearer credential.
    pub secret: String,
    /// SHA-256 of the server's CA certificate exactly as `GET /ca.pem` serves it; `None` for a
    /// server on plain HTTP.
    pub ca_sha256: Option<Sha256Digest>,
    /// SHA-256 of the site repository's `1.root.json`.
    pub site_root_sha256: Option<Sha256Digest>,
    /// SHA-256 of the upstream mirror's `1.root.json`.
    pub upstream_root_sha256: Option<Sha256Digest>,
}

/// What is wrong with an enrollment token's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollTokenError {
    /// It does not start with `cascade-enroll-`.
    #[error("enrollment token: does not start with `cascade-enroll-v1:` (was it copied whole?)")]
    Prefix,
    /// A version this build does not read.
    #[error("enrollment token: version `{0}` is not known (this build reads v1)")]
    Version(String),
    /// Not five `:`-separated parts.
    #[error("enrollment token: {found} `:`-separated parts, expected 5 (cascade-enroll-v1:SECRET:CA:SITE:UPSTREAM)")]
    Parts {
        /// How many there were.
        found: usize,
    },
    /// The secret part is empty.
    #[error("enrollment token: part 2 (the secret) is empty")]
    Secret,
    /// A hash part is neither `-` nor 64 hex digits.
    #[error("enrollment token: part {part} ({field}) `{value}` is neither `-` nor 64 hex digits")]
    Hash {
        /// 1-based part number.
        part: usize,
        /// Which hash.
        field: &'static str,
        /// The text found.
        value: String,
    },
}

impl EnrollTokenError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            EnrollTokenError::Prefix => "enroll_token.prefix",
            EnrollTokenError::Version(_) => "enroll_token.version",
            EnrollTokenError::Parts { .. } => "enroll_token.parts",
            EnrollTokenError::Secret => "enroll_token.secret",
            EnrollTokenError::Hash { .. } => "enroll_token.hash",
        }
    }
}

impl fmt::Display for EnrollmentTokenText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = |d: &Option<Sha256Digest>| d.map_or_else(|| "-".to_owned(), |d| d.to_hex());
        write!(
            f,
            "{PREFIX}v{VERSION}:{}:{}:{}:{}",
            self.secret,
            h(&self.ca_sha256),
            h(&self.site_root_sha256),
            h(&self.upstream_root_sha256)
        )
    }
}

impl FromStr for EnrollmentTokenText {
    type Err = EnrollTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let rest = s.strip_prefix(PREFIX).ok_or(EnrollTokenError::Prefix)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let version = parts.first().copied().unwrap_or_default();
        if version != format!("v{VERSION}") {
            return Err(EnrollTokenError::Version(version.to_owned()));
        }
        if parts.len() != 5 {
            return Err(EnrollTokenError::Parts { found: parts.len() });
        }
        let secret = parts[1];
        if secret.is_empty() {
            return Err(EnrollTokenError::Secret);
        }
        let hash = |part: usize, field: &'static str| -> Result<Option<Sha256Digest>, _> {
            let value = parts[part - 1];
            if value == "-" {
                return Ok(None);
            }
            if value.len() != 64 {
                return Err(EnrollTokenError::Hash {
                    part,
                    field,
                    value: value.chars().take(80).collect(),
                });
            }
            Sha256Digest::from_hex(value)
                .map(Some)
                .map_err(|_| EnrollTokenError::Hash {
                    part,
                    field,
                    value: value.to_owned(),
                })
        };
        Ok(EnrollmentTokenText {
            secret: secret.to_owned(),
            ca_sha256: hash(3, "CA certificate SHA-256")?,
            site_root_sha256: hash(4, "site root SHA-256")?,
            upstream_root_sha256: hash(5, "upstream root SHA-256")?,
        })
    }
}

/// The secret to send as the bearer credential: the token's secret part when `text` is a
/// full enrollment token, else `text` itself (a bare secret).
pub fn secret_of(text: &str) -> String {
    text.parse::<EnrollmentTokenText>()
        .map_or_else(|_| text.trim().to_owned(), |t| t.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EnrollmentTokenText {
        EnrollmentTokenText {
            secret: "cascade_enr_0011_abcdef".into(),
            ca_sha256: Some(Sha256Digest([0xab; 32])),
            site_root_sha256: None,
            upstream_root_sha256: Some(Sha256Digest([0x01; 32])),
        }
    }

    #[test]
    fn formats_and_parses_back() {
        let t = sample();
        let text = t.to_string();
        assert!(text.starts_with("cascade-enroll-v1:cascade_enr_0011_abcdef:abab"));
        assert!(text.contains(":-:"));
        assert_eq!(text.parse::<EnrollmentTokenText>().unwrap(), t);
        assert_eq!(secret_of(&text), "cascade_enr_0011_abcdef");
        assert_eq!(
            secret_of("cascade_enr_0011_abcdef"),
            "cascade_enr_0011_abcdef"
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(
            "cascade_enr_1_2"
                .parse::<EnrollmentTokenText>()
                .unwrap_err(),
            EnrollTokenError::Prefix
        );
        assert_eq!(
            "cascade-enroll-v2:a:-:-:-"
                .parse::<EnrollmentTokenText>()
                .unwrap_err()
                .code(),
            "enroll_token.version"
        );
        assert_eq!(
            "cascade-enroll-v1:a:-:-"
                .parse::<EnrollmentTokenText>()
                .unwrap_err(),
            EnrollTokenError::Parts { found: 4 }
        );
        assert_eq!(
            "cascade-enroll-v1::-:-:-"
                .parse::<EnrollmentTokenText>()
                .unwrap_err(),
            EnrollTokenError::Secret
        );
        let e = "cascade-enroll-v1:a:-:zz:-"
            .parse::<EnrollmentTokenText>()
            .unwrap_err();
        assert_eq!(e.code(), "enroll_token.hash");
        assert!(
            e.to_string().contains("part 4 (site root SHA-256) `zz`"),
            "{e}"
        );
    }
}
