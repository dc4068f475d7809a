//! The `version` of each trust domain's `timestamp.json` served now: what clients are told
//! as their floor (`docs/architecture.md#run-time`).

use cascade_core::TrustDomain;
use cascade_proto::RepoVersions;

use super::cache::{look, Content};
use super::Served;

/// The `signed.version` of a TUF metadata file, if it parses (the one field read of it).
pub(crate) fn signed_version(bytes: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Signed {
        signed: Version,
    }
    #[derive(serde::Deserialize)]
    struct Version {
        version: u64,
    }
    serde_json::from_slice::<Signed>(bytes)
        .ok()
        .map(|s| s.signed.version)
}

impl Served {
    /// The `version` of each trust domain's `timestamp.json` served now: what clients are
    /// told as their floor, in the policy answer's header and in every notice
    /// (`docs/architecture.md#run-time`). Read through the cache: a `stat` per domain, a
    /// parse only when the file changed. `None` where a domain has no readable timestamp.
    pub fn announced(&self) -> RepoVersions {
        let mut out = RepoVersions::default();
        for domain in TrustDomain::ALL {
            let base = match (domain, &self.site) {
                (TrustDomain::Site, Some(site)) => site.clone(),
                _ => self.dir.join(domain.as_str()),
            };
            let full = base.join("metadata").join("timestamp.json");
            let version = look(&self.cache, full, true).and_then(|found| match found.content {
                Content::Bytes(b) => signed_version(&b),
                Content::File(..) | Content::Elsewhere => None,
            });
            out.set(domain, version);
        }
        out
    }
}
