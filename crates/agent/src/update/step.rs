//! One step on one source: open the repository (checking the floor), choose what to install
//! (the newest, or the version a rollout pins), and install it atomically; with several
//! server replicas, the `server` step goes on to the next while one is down.

use std::path::PathBuf;

use cascade_core::{Category, StepSource};
use cascade_repo::{FailureReason, Installed, Loaded, Newest, RepoClient};

use super::{Got, StepEvent, Updater};

impl Updater {
    /// [`Updater::try_step`]; with several servers, the `server` step asks the next one while
    /// one is down (`docs/operating.md#replicas`).
    pub(super) async fn try_on_servers(
        &self,
        step: &StepSource,
        category: Category,
        n_of: (usize, usize),
        probe: bool,
    ) -> (Result<Got, FailureReason>, u64) {
        let Some(servers) = self.servers.as_ref() else {
            return self.try_step(step, category, n_of, probe).await;
        };
        if !matches!(step, StepSource::Server) {
            return self.try_step(step, category, n_of, probe).await;
        }
        let (mut bytes, mut last) = (0, None);
        for server in servers.order() {
            let mut on = self.clone();
            on.server = server.clone();
            let (result, got) = on.try_step(step, category, n_of, probe).await;
            bytes += got;
            match result {
                Err(e) if crate::servers::repo_down(e.code()) => {
                    servers.failed(&server, &e.to_string());
                    last = Some(e);
                }
                done => {
                    servers.succeeded(&server);
                    return (done, bytes);
                }
            }
        }
        let none = || FailureReason::Local("no server".into());
        (Err(last.unwrap_or_else(none)), bytes)
    }

    /// One step: the result and the body bytes it received.
    async fn try_step(
        &self,
        step: &StepSource,
        category: Category,
        (n, of): (usize, usize),
        probe: bool,
    ) -> (Result<Got, FailureReason>, u64) {
        let client = match self.floored_client_for(category, probe) {
            Ok(c) => c,
            Err(e) => return (Err(e), 0),
        };
        if let Some(obs) = &self.observer {
            obs(&StepEvent::Trying {
                category,
                step: n,
                of,
                source: step,
                bytes: client.transport().byte_counter(),
            });
        }
        let result = self.step_with(&client, step, category).await;
        (result, client.transport().bytes_received())
    }

    async fn step_with(
        &self,
        client: &RepoClient,
        step: &StepSource,
        category: Category,
    ) -> Result<Got, FailureReason> {
        let source = self.source_for(step, category)?;
        // `open` checks the floor: a stale source fails even when it offers nothing to fetch,
        // rather than report "up to date" and stop the plan.
        let loaded = client.open(&source).await?;
        // A delegated role that may sign this category's targets could not be trusted: the
        // update fails rather than miss its builds (`docs/architecture.md#trust-model`).
        if let Some(why) = loaded.refused_delegation(category) {
            return Err(why);
        }
        let mut installed = Vec::new();
        for newest in loaded.newest(category) {
            // Another platform's build of the agent is of no use here.
            if category == Category::Programs && crate::selfupdate::is_other_platform(&newest.name)
            {
                continue;
            }
            let Some(newest) = self.pinned(&loaded, newest) else {
                continue;
            };
            if self.install(&loaded, &newest).await? {
                installed.push(format!("{} {}", newest.name, newest.version));
            }
        }
        Ok(if installed.is_empty() {
            Got::Current
        } else {
            Got::Installed(installed)
        })
    }

    /// What to install of a program whose newest version is `newest`: the version a rollout
    /// pins for this client when there is one (among the verified targets of `loaded`; none
    /// when the pin names no signed version or says none), else the newest.
    fn pinned(&self, loaded: &Loaded, newest: Newest) -> Option<Newest> {
        if newest.category != Category::Programs {
            return Some(newest);
        }
        let Some(pin) = self.pins.get(&newest.name) else {
            return Some(newest);
        };
        let version = pin.as_deref()?;
        if version == newest.version {
            return Some(newest);
        }
        let files: Vec<_> = loaded
            .files()
            .iter()
            .filter(|f| {
                f.path.category() == Category::Programs
                    && f.path.name() == newest.name
                    && f.path.version() == version
            })
            .cloned()
            .collect();
        if !files.iter().any(|f| !f.is_delta()) {
            tracing::warn!(program = %newest.name, pinned = version, "the pinned version is not signed in this repository; keeping what is installed");
            return None;
        }
        Some(Newest {
            category: newest.category,
            name: newest.name,
            version: version.to_owned(),
            files,
        })
    }

    /// Installs `newest` from `loaded` unless it is installed already; whether it was.
    async fn install(&self, loaded: &Loaded, newest: &Newest) -> Result<bool, FailureReason> {
        let (category, name) = (newest.category, newest.name.as_str());
        let current = self.installer.current(category, name).map_err(local)?;
        if current.as_deref() == Some(newest.version.as_str()) {
            return Ok(false);
        }
        let stage = self
            .installer
            .stage(category, name, &newest.version)
            .map_err(local)?;
        let current_dir: Option<PathBuf> =
            self.installer.current_dir(category, name).map_err(local)?;
        let inst = current
            .as_deref()
            .zip(current_dir.as_deref())
            .map(|(version, dir)| Installed { version, dir });
        loaded.save_into(newest, inst, stage.path()).await?;
        stage.commit().map_err(local)?;
        Ok(true)
    }
}

pub(super) fn local(e: impl std::fmt::Display) -> FailureReason {
    FailureReason::Local(e.to_string())
}
