//! The policy writes every front end shares (the admin API and the console call the same
//! method): replace the whole policy, change settings, domains, agents and the customized
//! source list. Each is one [`Store::write`] of a pure `core` operation.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use cascade_core::settings::DEFAULT_SETTINGS_NAME;
use cascade_core::{
    Agent, DomainSettings, EntryId, EntrySource, IpRange, PolicyDoc, PolicyError,
    PrivilegeOverrides,
};
use cascade_proto::{Direction, SettingsPatch};

use super::{Store, StoreError, Stored};

impl Store {
    /// Replaces the whole policy.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub async fn replace_policy(
        &self,
        expected: Option<i64>,
        actor: &str,
        doc: PolicyDoc,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |prev| {
            let mut next = doc.into_policy()?;
            cascade_core::settings::renumber(prev, &mut next);
            Ok(next)
        })
        .await
    }

    /// Changes the settings named in `patch` (absent fields keep their value).
    ///
    /// # Errors
    /// As [`Store::write`].
    pub async fn patch_settings(
        &self,
        expected: Option<i64>,
        actor: &str,
        patch: SettingsPatch,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |p| {
            let mut doc = PolicyDoc::from_policy(p);
            if let Some(m) = patch.mode {
                doc.mode = m;
            }
            if let Some(u) = patch.activeupdate_url {
                doc.activeupdate_url = u;
            }
            if let Some(r) = patch.activeupdate_fallback {
                doc.activeupdate_fallback = r;
            }
            if let Some(f) = patch.fallback {
                let d = &mut doc.fallback;
                d.components_from_server =
                    f.components_from_server.unwrap_or(d.components_from_server);
                d.domain_settings_from_server = f
                    .domain_settings_from_server
                    .unwrap_or(d.domain_settings_from_server);
                d.programs_from_server = f.programs_from_server.unwrap_or(d.programs_from_server);
            }
            if let Some(v) = patch.privileges.and_then(|p| p.download_from_activeupdate) {
                doc.privileges.download_from_activeupdate = v;
            }
            if let Some(s) = patch.agents_source {
                doc.agents.source = s;
            }
            doc.into_policy()
        })
        .await
    }

    /// Sets a domain's privilege overrides (adding the domain when new).
    ///
    /// # Errors
    /// As [`Store::write`].
    pub async fn set_domain(
        &self,
        expected: Option<i64>,
        actor: &str,
        name: &str,
        privileges: PrivilegeOverrides,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |p| {
            let mut doc = PolicyDoc::from_policy(p);
            doc.domains.entry(name.to_owned()).or_default().privileges = privileges;
            doc.into_policy()
        })
        .await
    }

    /// Stores `settings` as the settings of domain `name` (adding the domain when new), or as
    /// the default's when `name` is [`DEFAULT_SETTINGS_NAME`], with the next version: one
    /// more than the document it replaces (1 for the first). The `version` given is ignored.
    ///
    /// # Errors
    /// A field out of bounds or a name that cannot be published (422 naming it); as
    /// [`Store::write`].
    pub async fn set_domain_settings(
        &self,
        expected: Option<i64>,
        actor: &str,
        name: &str,
        settings: DomainSettings,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |p| {
            let mut doc = PolicyDoc::from_policy(p);
            let slot = if name == DEFAULT_SETTINGS_NAME {
                &mut doc.settings
            } else {
                doc.domains
                    .entry(name.to_owned())
                    .or_default()
                    .settings
                    .get_or_insert_with(|| DomainSettings {
                        version: 0,
                        ..DomainSettings::default()
                    })
            };
            let version = slot.version.saturating_add(1);
            *slot = DomainSettings {
                version,
                ..settings
            };
            doc.into_policy()
        })
        .await
    }

    /// Removes a domain.
    ///
    /// # Errors
    /// [`PolicyError::UnknownDomain`]; as [`Store::write`].
    pub async fn delete_domain(
        &self,
        expected: Option<i64>,
        actor: &str,
        name: &str,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |p| {
            if !p.domains.contains_key(name) {
                return Err(PolicyError::UnknownDomain(name.to_owned()));
            }
            let mut next = p.clone();
            next.domains.remove(name);
            Ok(next)
        })
        .await
    }

    /// Registers an update agent.
    ///
    /// # Errors
    /// [`PolicyError::Duplicate`] when the address is registered; as [`Store::write`].
    pub async fn add_agent(
        &self,
        expected: Option<i64>,
        actor: &str,
        agent: Agent,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |p| {
            if p.find_agent(agent.address).is_some() {
                return Err(PolicyError::Duplicate {
                    field: "address".into(),
                    value: agent.address.to_string(),
                });
            }
            p.with_agent_added(agent)
        })
        .await
    }

    /// Unregisters an update agent (refused while an entry points to it).
    ///
    /// # Errors
    /// As [`Store::write`].
    pub async fn remove_agent(
        &self,
        expected: Option<i64>,
        actor: &str,
        address: SocketAddr,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |p| p.with_agent_removed(address))
            .await
    }

    /// Appends a source-list entry; returns the list and the new entry's id.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub async fn add_source(
        &self,
        expected: Option<i64>,
        actor: &str,
        range: IpRange,
        source: EntrySource,
    ) -> Result<(Stored, Option<EntryId>), StoreError> {
        let mut new_id = None;
        let stored = self
            .write(expected, actor, |p| {
                let (list, id) = p.sources.add(range, source);
                new_id = Some(id);
                p.with_sources(list)
            })
            .await?;
        Ok((stored, new_id))
    }

    /// Replaces an entry's range and source, keeping its place.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub async fn edit_source(
        &self,
        expected: Option<i64>,
        actor: &str,
        id: EntryId,
        range: IpRange,
        source: EntrySource,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |p| {
            p.with_sources(p.sources.edit(id, range, source)?)
        })
        .await
    }

    /// Deletes a set of entries (all or nothing).
    ///
    /// # Errors
    /// As [`Store::write`].
    pub async fn delete_sources(
        &self,
        expected: Option<i64>,
        actor: &str,
        ids: &BTreeSet<EntryId>,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |p| p.with_sources(p.sources.delete(ids)?))
            .await
    }

    /// Moves an entry one place.
    ///
    /// # Errors
    /// As [`Store::write`].
    pub async fn move_source(
        &self,
        expected: Option<i64>,
        actor: &str,
        id: EntryId,
        direction: Direction,
    ) -> Result<Stored, StoreError> {
        self.write(expected, actor, |p| {
            let list = match direction {
                Direction::Up => p.sources.move_up(id)?,
                Direction::Down => p.sources.move_down(id)?,
            };
            p.with_sources(list)
        })
        .await
    }
}
