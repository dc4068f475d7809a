//! An update agent's cache upkeep after each of its own update cycles: fill the relay's cache
//! through its own front door with the metadata and the newest files of every category, so
//! that its clients, told after it, find everything there; copy in what the agent has just
//! installed itself rather than fetching it again; and drop cached blobs that the current
//! metadata no longer names (no client can verify them any more).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use cascade_core::{Category, StepSource};
use cascade_repo::TargetPath;
use url::Url;

use crate::relay::Relay;
use crate::update::Updater;

/// What one category's metadata asks of the cache.
struct Wanted {
    /// The newest version's files (full and deltas): front-door URL, relay path, target.
    newest: Vec<(Url, String, TargetPath)>,
    /// Every blob the metadata names, as relay paths (below `/repo/`).
    named: BTreeSet<String>,
}

impl Updater {
    /// Warms the relay at `listen` for every category, then prunes unnamed blobs of each
    /// trust domain whose metadata loaded.
    pub async fn warm_relay(&self, listen: SocketAddr, relay: &Relay) {
        let http = reqwest::Client::new();
        // Metadata published since the relay last fetched it must be seen now.
        relay.revalidate();
        // A blob altered in place since it was cached is dropped here and fetched again below.
        let dropped = relay.check_cache();
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "relay cache: blobs not matching their names dropped"
            );
        }
        // Per `DOMAIN/targets/` prefix: the blobs its current metadata names.
        let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for category in Category::ALL {
            let Some((prefix, wanted)) = self.wanted(listen, category).await else {
                continue;
            };
            named.entry(prefix).or_default().extend(wanted.named);
            for (url, rel, path) in wanted.newest {
                if self.seed_from_install(relay, &rel, &path) {
                    continue;
                }
                if let Ok(resp) = http.get(url).send().await {
                    let _ = resp.bytes().await;
                }
            }
        }
        for (prefix, keep) in named {
            match relay.prune_unnamed(&prefix, &keep) {
                Ok(0) => {}
                Ok(n) => tracing::info!(prefix, removed = n, "relay cache: old blobs removed"),
                Err(e) => tracing::warn!(error = %e, prefix, "relay cache: prune failed"),
            }
        }
    }

    /// Loads `category`'s metadata through the relay and lists what it asks of the cache;
    /// `None` when it does not load (then nothing of its domain is pruned on its account).
    async fn wanted(&self, listen: SocketAddr, category: Category) -> Option<(String, Wanted)> {
        let source = self.source_for(&StepSource::Agent(listen), category).ok()?;
        let client = self.client_for(category).ok()?;
        let loaded = client.open(&source).await.ok()?;
        let base = source.base.join("targets/").ok()?;
        let prefix = base.path().strip_prefix("/repo/")?.to_owned();
        // Every URL a loaded repository names is below `base`, itself below `/repo/`.
        let rel = |url: &Url| url.path().strip_prefix("/repo/").map(str::to_owned);
        let wanted = Wanted {
            named: loaded.files().iter().filter_map(|f| rel(&f.url)).collect(),
            newest: loaded
                .newest(category)
                .into_iter()
                .flat_map(|newest| newest.files)
                .filter_map(|f| Some((f.url.clone(), rel(&f.url)?, f.path)))
                .collect(),
        };
        Some((prefix, wanted))
    }

    /// Seeds the relay's cache at `rel` with the installed copy of `path`, when the current
    /// install is that very version; `false` when there is none or it does not match.
    fn seed_from_install(&self, relay: &Relay, rel: &str, path: &TargetPath) -> bool {
        let installer = self.installer();
        let Ok(Some(current)) = installer.current(path.category(), path.name()) else {
            return false;
        };
        let Ok(Some(dir)) = installer.current_dir(path.category(), path.name()) else {
            return false;
        };
        if current != path.version() {
            return false;
        }
        match relay.seed(rel, &dir.join(path.file())) {
            Ok(seeded) => seeded,
            Err(e) => {
                tracing::debug!(error = %e, path = rel, "not seeded from the install");
                false
            }
        }
    }
}
