//! Compliance by version per category (`docs/operating.md#compliance`): what the repository
//! publishes ([`Catalog`]) and where each client, or group of clients with the same installed
//! versions, stands against it.

use std::collections::BTreeMap;
use std::path::Path;

use cascade_core::Category;
use cascade_proto::{CategoryCompliance, ClientView, Compliance, ComplianceResponse, VersionCount};

use crate::state::AppState;
use crate::store::{InstalledGroup, StoreError};

/// Compliance by version per category, from the clients' check-ins and the repository.
///
/// # Errors
/// Store errors.
pub async fn compliance(st: &AppState) -> Result<ComplianceResponse, StoreError> {
    let groups = st.store.installed_groups().await?;
    let catalog = Catalog::read(&st.repo_dir);
    Ok(catalog.compliance_of_groups(&groups, st.clock.now()))
}

/// What the repository publishes: per category and content name, the versions newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    versions: BTreeMap<Category, BTreeMap<String, Vec<String>>>,
}

impl Catalog {
    /// Reads the newest `N.targets.json` of each trust domain under `repo_dir`
    /// (`site/`, `upstream/`). The server landed these files itself (verified, when
    /// mirrored), so they are read as they are; an unreadable one is skipped.
    pub fn read(repo_dir: &Path) -> Catalog {
        let mut seqs: BTreeMap<(Category, String), BTreeMap<u64, String>> = BTreeMap::new();
        for mount in ["site", "upstream"] {
            let Some(doc) = newest_targets(&repo_dir.join(mount).join("metadata")) else {
                continue;
            };
            let Some(targets) = doc["signed"]["targets"].as_object() else {
                continue;
            };
            for (name, t) in targets {
                let Ok(path) = name.parse::<cascade_repo::TargetPath>() else {
                    continue;
                };
                let Some(meta) = t["custom"]
                    .get("cascade") // the key of cascade's own target metadata
                    .and_then(|v| {
                        serde_json::from_value::<cascade_repo::TargetMeta>(v.clone()).ok()
                    })
                else {
                    continue;
                };
                if meta.is_delta() {
                    continue;
                }
                seqs.entry((path.category(), path.name().to_owned()))
                    .or_default()
                    .insert(meta.seq, meta.version);
            }
        }
        let mut versions: BTreeMap<Category, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for ((cat, name), by_seq) in seqs {
            versions
                .entry(cat)
                .or_default()
                .insert(name, by_seq.into_values().rev().collect());
        }
        Catalog { versions }
    }

    /// A catalog of the given versions (newest first per name), for tests and tools.
    pub fn from_versions(versions: BTreeMap<Category, BTreeMap<String, Vec<String>>>) -> Self {
        Catalog { versions }
    }

    /// The newest published version of each name in `category` (`patterns 1.2`).
    pub fn newest(&self, category: Category) -> Vec<String> {
        self.versions
            .get(&category)
            .into_iter()
            .flatten()
            .filter_map(|(name, v)| v.first().map(|v| format!("{name} {v}")))
            .collect()
    }

    /// Where `client` stands in `category`.
    pub fn client(&self, client: &ClientView, category: Category) -> Compliance {
        let failed = client
            .last_update
            .as_ref()
            .map(crate::store::failed_categories)
            .unwrap_or_default();
        self.standing(&client.installed, &failed, category)
    }

    /// Where a client with `installed` versions whose last update failed in `failed`
    /// categories stands in `category`.
    pub fn standing(
        &self,
        installed: &BTreeMap<Category, String>,
        failed: &[Category],
        category: Category,
    ) -> Compliance {
        let items = installed_items(installed, category);
        let failed = failed.contains(&category);
        let Some(published) = self.versions.get(&category).filter(|p| !p.is_empty()) else {
            return Compliance::Unpublished;
        };
        let mut any = false;
        let mut behind = false;
        for (name, version) in &items {
            if let Some(newest) = published.get(*name).and_then(|v| v.first()) {
                any = true;
                if newest != version {
                    behind = true;
                }
            }
        }
        let current = any && !behind;
        if current {
            Compliance::Current
        } else if failed {
            Compliance::Failed
        } else if any || !items.is_empty() {
            Compliance::Behind
        } else {
            Compliance::NeverInstalled
        }
    }

    /// Clients of `groups` current in every category that has something published (none
    /// when nothing is published).
    pub fn current_clients(&self, groups: &[InstalledGroup]) -> u64 {
        let published: Vec<Category> = Category::ALL
            .into_iter()
            .filter(|c| self.versions.get(c).is_some_and(|p| !p.is_empty()))
            .collect();
        if published.is_empty() {
            return 0;
        }
        groups
            .iter()
            .filter(|g| {
                published
                    .iter()
                    .all(|c| self.standing(&g.installed, &g.failed, *c) == Compliance::Current)
            })
            .map(|g| g.clients)
            .sum()
    }

    /// Compliance of every category over `clients`.
    pub fn compliance(&self, clients: &[ClientView], now: i64) -> ComplianceResponse {
        let groups: Vec<InstalledGroup> = clients
            .iter()
            .map(|c| InstalledGroup {
                installed_text: String::new(),
                installed: c.installed.clone(),
                failed_text: String::new(),
                failed: c
                    .last_update
                    .as_ref()
                    .map(crate::store::failed_categories)
                    .unwrap_or_default(),
                clients: 1,
            })
            .collect();
        self.compliance_of_groups(&groups, now)
    }

    /// Compliance of every category over clients grouped by what they installed.
    pub fn compliance_of_groups(&self, groups: &[InstalledGroup], now: i64) -> ComplianceResponse {
        let total: u64 = groups.iter().map(|g| g.clients).sum();
        let categories = Category::ALL
            .iter()
            .map(|&category| {
                let newest = self.newest(category);
                let mut row = CategoryCompliance {
                    category,
                    newest: newest.clone(),
                    current: 0,
                    behind: 0,
                    never_installed: 0,
                    failed: 0,
                    total,
                    distribution: Vec::new(),
                };
                let mut dist: BTreeMap<String, u64> = BTreeMap::new();
                for g in groups {
                    let n = g.clients;
                    match self.standing(&g.installed, &g.failed, category) {
                        Compliance::Current => row.current += n,
                        Compliance::Behind => row.behind += n,
                        Compliance::NeverInstalled => row.never_installed += n,
                        Compliance::Failed => row.failed += n,
                        Compliance::Unpublished => {}
                    }
                    let items = installed_items(&g.installed, category);
                    if items.is_empty() {
                        *dist.entry("none".to_owned()).or_default() += n;
                    }
                    for (name, version) in items {
                        *dist.entry(format!("{name} {version}")).or_default() += n;
                    }
                }
                let mut distribution: Vec<VersionCount> = dist
                    .into_iter()
                    .map(|(version, clients)| VersionCount {
                        newest: newest.contains(&version),
                        version,
                        clients,
                    })
                    .collect();
                distribution
                    .sort_by(|a, b| b.clients.cmp(&a.clients).then(a.version.cmp(&b.version)));
                distribution.truncate(1000);
                row.distribution = distribution;
                row
            })
            .collect();
        ComplianceResponse {
            checked_at: now,
            categories,
        }
    }

    /// The stored groups whose clients stand at `want` in `category` (for the clients
    /// list's compliance filter, done in SQL).
    pub fn groups_at<'g>(
        &self,
        groups: &'g [InstalledGroup],
        category: Category,
        want: Compliance,
    ) -> Vec<&'g InstalledGroup> {
        groups
            .iter()
            .filter(|g| self.standing(&g.installed, &g.failed, category) == want)
            .collect()
    }
}

/// The installed items of `category`: `name version, name version` as the agent reports
/// them (a bare version counts as the version of an unnamed item).
fn installed_items(
    installed: &BTreeMap<Category, String>,
    category: Category,
) -> Vec<(&str, &str)> {
    installed
        .get(&category)
        .map(|s| {
            s.split(", ")
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.trim().split_once(' ').unwrap_or(("", p.trim())))
                .collect()
        })
        .unwrap_or_default()
}

/// The newest `N.targets.json` in `dir`, parsed.
fn newest_targets(dir: &Path) -> Option<serde_json::Value> {
    let mut best: Option<(u64, std::path::PathBuf)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".targets.json"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, e.path()));
        }
    }
    let (_, path) = best?;
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}
