//! The admin API's policy calls: the whole policy and its settings, domains and their
//! settings, update agents, the customized source list, the what-if resolution and restoring
//! an earlier revision.

use cascade_core::PolicyDoc;
use cascade_proto as p;
use reqwest::Method;

use super::{segment, AdminClient};
use crate::{call, ClientError};

impl AdminClient {
    /// `GET /api/policy`: the whole policy and its revision.
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn policy(&self) -> Result<p::PolicyResponse, ClientError> {
        self.get("api/policy").await
    }

    /// `PUT /api/policy`: replaces the whole policy.
    ///
    /// # Errors
    /// Refused token, an invalid policy (422 naming the field), a stale revision (409).
    pub async fn put_policy(
        &self,
        doc: &PolicyDoc,
        at: Option<i64>,
    ) -> Result<p::PolicyResponse, ClientError> {
        self.write_at(Method::PUT, "api/policy", at, Some(doc))
            .await
    }

    /// `GET /api/policy/settings`.
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn settings(&self) -> Result<p::Settings, ClientError> {
        self.get("api/policy/settings").await
    }

    /// `PATCH /api/policy/settings`: changes the given settings only.
    ///
    /// # Errors
    /// Refused token, an invalid result (422), a stale revision (409).
    pub async fn patch_settings(
        &self,
        patch: &p::SettingsPatch,
        at: Option<i64>,
    ) -> Result<p::Settings, ClientError> {
        self.write_at(Method::PATCH, "api/policy/settings", at, Some(patch))
            .await
    }

    /// `GET /api/policy/domains`: default, overridden and effective privileges per domain.
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn domains(&self) -> Result<p::DomainsResponse, ClientError> {
        self.get("api/policy/domains").await
    }

    /// `PUT /api/policy/domains/{name}`: sets a domain's privilege overrides.
    ///
    /// # Errors
    /// Refused token, a bad name (422), a stale revision (409).
    pub async fn put_domain(
        &self,
        name: &str,
        privileges: &cascade_core::PrivilegeOverrides,
        at: Option<i64>,
    ) -> Result<p::DomainUpdated, ClientError> {
        let path = format!("api/policy/domains/{}", segment(name));
        self.write_at(Method::PUT, &path, at, Some(privileges))
            .await
    }

    /// `DELETE /api/policy/domains/{name}`.
    ///
    /// # Errors
    /// Refused token, an unknown domain (422), a stale revision (409).
    pub async fn delete_domain(
        &self,
        name: &str,
        at: Option<i64>,
    ) -> Result<p::DomainDeleted, ClientError> {
        let path = format!("api/policy/domains/{}", segment(name));
        self.write_at::<(), _>(Method::DELETE, &path, at, None)
            .await
    }

    /// `GET /api/policy/domain-settings`: the default settings and every domain's privileges
    /// and settings.
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn domain_settings(&self) -> Result<p::DomainSettingsList, ClientError> {
        self.get("api/policy/domain-settings").await
    }

    /// `GET /api/policy/domain-settings/{name}`: the settings a client of `name` applies
    /// (`default`: the default's).
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn domain_settings_of(
        &self,
        name: &str,
    ) -> Result<p::DomainSettingsView, ClientError> {
        self.get(&format!("api/policy/domain-settings/{}", segment(name)))
            .await
    }

    /// `PUT /api/policy/domain-settings/{name}`: stores `settings` at the next version and
    /// publishes them signed.
    ///
    /// # Errors
    /// Refused token, a field out of bounds (422 naming it), a stale revision (409), an
    /// operator-linked site repository (409 `site.linked`).
    pub async fn put_domain_settings(
        &self,
        name: &str,
        settings: &cascade_core::DomainSettings,
        at: Option<i64>,
    ) -> Result<p::DomainSettingsView, ClientError> {
        let path = format!("api/policy/domain-settings/{}", segment(name));
        self.write_at(Method::PUT, &path, at, Some(settings)).await
    }

    /// `GET /api/agents`: registered update agents, who serves at each, what they relayed.
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn agents(&self) -> Result<p::AgentsResponse, ClientError> {
        self.get("api/agents").await
    }

    /// `POST /api/agents`: registers an update agent.
    ///
    /// # Errors
    /// Refused token, a bad or duplicate address (422), a stale revision (409).
    pub async fn add_agent(
        &self,
        agent: &cascade_core::AgentDoc,
        at: Option<i64>,
    ) -> Result<p::AgentAdded, ClientError> {
        self.write_at(Method::POST, "api/agents", at, Some(agent))
            .await
    }

    /// `DELETE /api/agents/{address}`: unregisters an update agent.
    ///
    /// # Errors
    /// Refused token, an agent still in use (422), a stale revision (409).
    pub async fn remove_agent(
        &self,
        address: &str,
        at: Option<i64>,
    ) -> Result<p::AgentRemoved, ClientError> {
        let path = format!("api/agents/{}", segment(address));
        self.write_at::<(), _>(Method::DELETE, &path, at, None)
            .await
    }

    /// `GET /api/sources`: the customized source list, in order.
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn sources(&self) -> Result<p::SourcesResponse, ClientError> {
        self.get("api/sources").await
    }

    /// `POST /api/sources`: appends an entry.
    ///
    /// # Errors
    /// Refused token, a bad entry (422 naming the field), a stale revision (409).
    pub async fn add_source(
        &self,
        entry: &p::SourceBody,
        at: Option<i64>,
    ) -> Result<p::SourcesResponse, ClientError> {
        self.write_at(Method::POST, "api/sources", at, Some(entry))
            .await
    }

    /// `PUT /api/sources/{id}`: replaces an entry, keeping its place.
    ///
    /// # Errors
    /// Refused token, a bad entry or unknown id (422), a stale revision (409).
    pub async fn edit_source(
        &self,
        id: u32,
        entry: &p::SourceBody,
        at: Option<i64>,
    ) -> Result<p::SourcesResponse, ClientError> {
        self.write_at(Method::PUT, &format!("api/sources/{id}"), at, Some(entry))
            .await
    }

    /// `POST /api/sources/delete`: deletes a set of entries (all or nothing).
    ///
    /// # Errors
    /// Refused token, an unknown id or an empty set (422), a stale revision (409).
    pub async fn delete_sources(
        &self,
        body: &p::DeleteSources,
        at: Option<i64>,
    ) -> Result<p::SourcesResponse, ClientError> {
        self.write_at(Method::POST, "api/sources/delete", at, Some(body))
            .await
    }

    /// `POST /api/sources/{id}/move`: moves an entry one place.
    ///
    /// # Errors
    /// Refused token, an entry that cannot move (422), a stale revision (409).
    pub async fn move_source(
        &self,
        id: u32,
        body: &p::MoveSource,
        at: Option<i64>,
    ) -> Result<p::SourcesResponse, ClientError> {
        self.write_at(
            Method::POST,
            &format!("api/sources/{id}/move"),
            at,
            Some(body),
        )
        .await
    }

    /// `GET /api/resolve`: the plans a client (or an update agent) would follow now.
    ///
    /// # Errors
    /// Refused token, a bad query (400) or unknown agent (422).
    pub async fn resolve(
        &self,
        query: &p::ResolveQuery,
    ) -> Result<p::ResolveResponse, ClientError> {
        let req = self
            .client
            .request(Method::GET, "api/resolve", Some(&self.token))?
            .query(query);
        call(req).await
    }

    /// `POST /api/policy/restore`: makes an earlier revision's policy current again.
    ///
    /// # Errors
    /// Refused token, an unknown revision (404), a stale `at` (409).
    pub async fn restore_policy(
        &self,
        revision: i64,
        at: Option<i64>,
    ) -> Result<p::PolicyResponse, ClientError> {
        let body = p::RestoreRequest { revision };
        self.write_at(Method::POST, "api/policy/restore", at, Some(&body))
            .await
    }
}
