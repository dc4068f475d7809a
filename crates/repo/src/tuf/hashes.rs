//! Lengths and hashes of downloaded bytes against their signed values: sha256 and sha512, every
//! listed algorithm checked, an unknown one refused (`docs/architecture.md#trust-model`).

use std::collections::BTreeMap;

use super::TufError;

/// A hash algorithm the client can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// The algorithm named `name` in a `hashes` object, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn digest(self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha512 => &aws_lc_rs::digest::SHA512,
        }
    }
}

/// Hashes every listed algorithm of a stream at once, then compares with the signed values.
pub struct MultiHasher {
    file: String,
    contexts: Vec<(String, aws_lc_rs::digest::Context)>,
    len: u64,
}

impl MultiHasher {
    /// A hasher for `file` with signed `hashes` (algorithm name → hex). Every listed
    /// algorithm must be supported, and at least one must be listed.
    ///
    /// # Errors
    /// [`TufError::HashMismatch`] for an unsupported algorithm or no hash at all.
    pub fn new(file: &str, hashes: &BTreeMap<String, String>) -> Result<Self, TufError> {
        let mismatch = |reason: String| TufError::HashMismatch {
            file: file.to_owned(),
            reason,
        };
        if hashes.is_empty() {
            return Err(mismatch("no hash is listed".to_owned()));
        }
        let mut contexts = Vec::new();
        for (name, want) in hashes {
            let alg = HashAlgorithm::from_name(name)
                .ok_or_else(|| mismatch(format!("unsupported hash algorithm {name:?}")))?;
            contexts.push((
                want.to_ascii_lowercase(),
                aws_lc_rs::digest::Context::new(alg.digest()),
            ));
        }
        Ok(Self {
            file: file.to_owned(),
            contexts,
            len: 0,
        })
    }

    /// Hash the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.len = self.len.saturating_add(chunk.len() as u64);
        for (_, ctx) in &mut self.contexts {
            ctx.update(chunk);
        }
    }

    /// Compare the length (when signed) and every hash.
    ///
    /// # Errors
    /// [`TufError::HashMismatch`] naming what differs.
    pub fn finish(self, length: Option<u64>) -> Result<(), TufError> {
        if let Some(want) = length.filter(|want| *want != self.len) {
            return Err(TufError::HashMismatch {
                file: self.file,
                reason: format!("{} bytes, {want} signed", self.len),
            });
        }
        for (want, ctx) in self.contexts {
            if hex::encode(ctx.finish()) != want {
                return Err(TufError::HashMismatch {
                    file: self.file,
                    reason: "hash differs".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Check `bytes` against a signed length and (optional) hashes.
///
/// # Errors
/// [`TufError::HashMismatch`].
pub fn check_length_and_hashes(
    file: &str,
    bytes: &[u8],
    length: Option<u64>,
    hashes: Option<&BTreeMap<String, String>>,
) -> Result<(), TufError> {
    if let Some(hashes) = hashes {
        let mut h = MultiHasher::new(file, hashes)?;
        h.update(bytes);
        return h.finish(length);
    }
    match length {
        Some(want) if want != bytes.len() as u64 => Err(TufError::HashMismatch {
            file: file.to_owned(),
            reason: format!("{} bytes, {want} signed", bytes.len()),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::check_length_and_hashes;

    fn hashes(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    // sha256 and sha512 are both checked, alone or together; an unknown algorithm, a wrong
    // hash or a wrong length is refused.
    #[test]
    fn hashes_and_length_are_checked() {
        let data = b"target file contents";
        let sha256 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data));
        let sha512 = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, data));
        let len = Some(data.len() as u64);
        for ok in [
            hashes(&[("sha256", sha256.clone())]),
            hashes(&[("sha512", sha512.clone())]),
            hashes(&[("sha256", sha256.clone()), ("sha512", sha512.clone())]),
        ] {
            check_length_and_hashes("t", data, len, Some(&ok)).unwrap();
        }
        let bad = [
            hashes(&[("sha512", sha512.clone()), ("md5", sha256.clone())]),
            hashes(&[("sha256", sha256.clone()), ("sha512", sha256.clone())]),
            hashes(&[]),
        ];
        for bad in bad {
            let err = check_length_and_hashes("t", data, len, Some(&bad)).unwrap_err();
            assert_eq!(err.code(), "tuf.hash_mismatch", "{bad:?}");
        }
        let ok = hashes(&[("sha256", sha256)]);
        let err = check_length_and_hashes("t", data, Some(3), Some(&ok)).unwrap_err();
        assert_eq!(err.code(), "tuf.hash_mismatch");
    }
}
