//! Tests of the site repository: created once, then published to.

use std::sync::Arc;

use cascade_core::Category;
use cascade_repo::{Passphrase, PublishedTarget};

use super::{SiteError, SitePublisher};
use crate::settings::Clock;

struct Fixed;
impl Clock for Fixed {
    fn now(&self) -> i64 {
        1_800_000_000
    }
}

fn passphrase() -> Passphrase {
    Passphrase::new("correct horse battery staple").unwrap()
}

/// Publishes `{}` as version 1 of the default settings document.
async fn publish_default_settings(site: &SitePublisher) -> Result<PublishedTarget, SiteError> {
    site.publish_bytes(
        Category::DomainSettings,
        "default",
        "1",
        "settings.json",
        b"{}",
    )
    .await
}

// First open creates the repository with private, encrypted keys and takes the root key
// out of the server's key directory; the second opens it as it is; a publish adds a
// signed target; the same version again is refused with its code; without the passphrase
// nothing can be signed.
#[tokio::test]
async fn created_once_then_published_to() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site-repo");
    let site = SitePublisher::open_or_create(&dir, Some(passphrase()), Arc::new(Fixed))
        .await
        .unwrap();
    let root = std::fs::read(site.root_path()).unwrap();
    assert!(
        !dir.join("offline-keys/root.pk8").exists(),
        "root key left online"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for key in [
            "root-keys-offline/root.pk8",
            "offline-keys/targets.pk8",
            "online-keys/timestamp.pk8",
        ] {
            let mode = std::fs::metadata(dir.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
            let text = std::fs::read_to_string(dir.join(key)).unwrap();
            assert!(
                text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
                "{key}"
            );
        }
    }
    drop(site);
    let locked = SitePublisher::open_or_create(&dir, None, Arc::new(Fixed))
        .await
        .unwrap();
    let refused = publish_default_settings(&locked).await.unwrap_err();
    assert_eq!(refused.code(), "key.passphrase_needed", "{refused}");
    drop(locked);
    let site = SitePublisher::open_or_create(&dir, Some(passphrase()), Arc::new(Fixed))
        .await
        .unwrap();
    assert_eq!(std::fs::read(site.root_path()).unwrap(), root);
    let t = publish_default_settings(&site).await.unwrap();
    assert_eq!(t.name, "domain-settings/default/1/settings.json");
    let again = publish_default_settings(&site).await.unwrap_err();
    assert_eq!(again.code(), "publish.version_exists");
    assert!(!dir.join("server-incoming").exists());
    site.refresh_timestamp().await.unwrap();
}
