//! The domains' settings documents as signed targets of the site repository
//! (`domain-settings/NAME/VERSION/settings.json`), and those a write stored but could not
//! publish yet.

use std::path::PathBuf;

use cascade_core::settings::{DEFAULT_SETTINGS_NAME, SETTINGS_FILE};
use cascade_core::{Category, DomainSettings, PublishedSettings};
use cascade_repo::PublishError;

use super::{SiteError, SitePublisher};

impl SitePublisher {
    /// Publishes the settings document of `name` (a domain, or `default`) as the signed target
    /// `domain-settings/NAME/VERSION/settings.json` and returns the target's name. A version
    /// already published is left as it is (a retry after a crash republishes nothing).
    ///
    /// # Errors
    /// As [`SitePublisher::publish`].
    pub async fn publish_settings(
        &self,
        name: &str,
        settings: &DomainSettings,
    ) -> Result<String, SiteError> {
        let version = settings.version.to_string();
        let target = format!(
            "{}/{name}/{version}/{SETTINGS_FILE}",
            Category::DomainSettings
        );
        let doc = PublishedSettings {
            domain: name.to_owned(),
            settings: settings.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| SiteError::Io {
            path: PathBuf::from(&target),
            source: std::io::Error::other(e),
        })?;
        match self
            .publish_bytes(
                Category::DomainSettings,
                name,
                &version,
                SETTINGS_FILE,
                &bytes,
            )
            .await
        {
            Ok(_) | Err(SiteError::Publish(PublishError::VersionExists(_))) => Ok(target),
            Err(e) => Err(e),
        }
    }

    /// Publishes every settings document of `policy` (the default once set, and each domain's
    /// own) whose version is not in the repository yet: what a write stored but could not
    /// publish (a crash, a full disk) goes out at the next start.
    ///
    /// # Errors
    /// The first failure; the documents before it are published.
    pub async fn publish_pending(&self, policy: &cascade_core::Policy) -> Result<usize, SiteError> {
        let mut docs: Vec<(&str, &DomainSettings)> = Vec::new();
        if policy.settings.version > 0 {
            docs.push((DEFAULT_SETTINGS_NAME, &policy.settings));
        }
        for (name, d) in &policy.domains {
            if let Some(s) = &d.settings {
                docs.push((name, s));
            }
        }
        let mut published = 0;
        for (name, settings) in docs {
            let target = format!(
                "{}/{name}/{}/{SETTINGS_FILE}",
                Category::DomainSettings,
                settings.version
            );
            if self.has_target(&target) {
                continue;
            }
            self.publish_settings(name, settings).await?;
            published += 1;
        }
        Ok(published)
    }

    /// Whether the served targets metadata lists `target`: followed from `timestamp.json`
    /// to the snapshot it names and the targets version that names, as a client would (no
    /// signature check: these are the server's own files). `false` when anything cannot be
    /// read, so the caller publishes, and the publish itself refuses a version that exists.
    fn has_target(&self, target: &str) -> bool {
        let md = self.public.join("metadata");
        let read = |name: &str| -> Option<serde_json::Value> {
            serde_json::from_slice(&std::fs::read(md.join(name)).ok()?).ok()
        };
        let version =
            |v: &serde_json::Value, file: &str| v["signed"]["meta"][file]["version"].as_u64();
        let found = || -> Option<bool> {
            let ts = read("timestamp.json")?;
            let snap = read(&format!("{}.snapshot.json", version(&ts, "snapshot.json")?))?;
            let targets = read(&format!("{}.targets.json", version(&snap, "targets.json")?))?;
            Some(targets["signed"]["targets"].get(target).is_some())
        };
        found().unwrap_or(false)
    }
}
