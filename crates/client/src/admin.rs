//! The admin API behind the admin token: the whole policy and its settings, domains, update
//! agents, the customized source list and the what-if resolution, mirroring, Notify All
//! Clients, the client registry and the enrollment token. Each write takes the policy
//! revision it expects (`If-Match`; `None` reads the current revision first and writes at it).

use cascade_core::PolicyDoc;
use cascade_proto as p;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{at_revision, call, Client, ClientError};

/// The admin API of one server.
#[derive(Debug, Clone)]
pub struct AdminClient {
    client: Client,
    token: String,
}

/// What must be escaped in one path segment (`[fd00::1]:8443` keeps its colons).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The limit for one program upload (the server's default `--upload-timeout` is 30 min).
pub const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `text` as one path segment.
fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

impl AdminClient {
    pub(crate) fn new(client: Client, token: String) -> Self {
        AdminClient { client, token }
    }

    /// The underlying client (base URL, client API).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        call(self.client.request(Method::GET, path, Some(&self.token))?).await
    }

    async fn write<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        at: Option<i64>,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut req = at_revision(self.client.request(method, path, Some(&self.token))?, at);
        if let Some(b) = body {
            req = req.json(b);
        }
        call(req).await
    }

    /// A policy write at revision `at`, or, when `None`, at the current revision read first
    /// (the server refuses policy writes without `If-Match` with 428).
    async fn write_at<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        at: Option<i64>,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let at = match at {
            Some(rev) => rev,
            None => self.settings().await?.revision,
        };
        self.write(method, path, Some(at), body).await
    }

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

    /// `GET /api/repo/mirror`: the last mirror run.
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn mirror_status(&self) -> Result<p::MirrorState, ClientError> {
        self.get("api/repo/mirror").await
    }

    /// `POST /api/repo/mirror`: mirrors the upstream now.
    ///
    /// # Errors
    /// Refused token, an upstream failure (502 naming the reason).
    pub async fn mirror_now(&self) -> Result<p::MirrorStatus, ClientError> {
        self.write::<(), _>(Method::POST, "api/repo/mirror", None, None)
            .await
    }

    /// `POST /api/notify`: Notify All Clients (update agents first).
    ///
    /// # Errors
    /// Refused token, a bad body (400).
    pub async fn notify(&self, body: &p::NotifyRequest) -> Result<p::NotifyResponse, ClientError> {
        self.write(Method::POST, "api/notify", None, Some(body))
            .await
    }

    /// `GET /api/clients`: the client registry, optionally only the stale ones.
    ///
    /// # Errors
    /// Refused token, a bad query (400).
    pub async fn clients(
        &self,
        query: &p::ClientsQuery,
    ) -> Result<p::ClientsResponse, ClientError> {
        let req = self
            .client
            .request(Method::GET, "api/clients", Some(&self.token))?
            .query(query);
        call(req).await
    }

    /// `GET /api/programs`: the published program builds and hotfixes.
    ///
    /// # Errors
    /// Refused token.
    pub async fn programs(&self) -> Result<p::ProgramsResponse, ClientError> {
        self.get("api/programs").await
    }

    /// `GET /api/rollouts`: every rollout, newest first (`docs/operating.md#rollouts`).
    ///
    /// # Errors
    /// Refused token.
    pub async fn rollouts(&self) -> Result<p::RolloutsResponse, ClientError> {
        self.get("api/rollouts").await
    }

    /// `GET /api/rollouts/{id}`: one rollout.
    ///
    /// # Errors
    /// Refused token, an unknown id (404).
    pub async fn rollout(&self, id: i64) -> Result<p::RolloutView, ClientError> {
        self.get(&format!("api/rollouts/{id}")).await
    }

    /// `POST /api/rollouts`: starts a rollout in rings.
    ///
    /// # Errors
    /// Refused token, a bad field (400), another rollout of the program rolling (409).
    pub async fn start_rollout(&self, body: &p::NewRollout) -> Result<p::RolloutView, ClientError> {
        self.write(Method::POST, "api/rollouts", None, Some(body))
            .await
    }

    /// `POST /api/rollouts/{id}/ACTION` (`promote`, `halt`, `rollback`).
    ///
    /// # Errors
    /// Refused token, an unknown id (404), a state that does not allow it (409).
    pub async fn rollout_action(
        &self,
        id: i64,
        action: &str,
        body: &p::RolloutAction,
    ) -> Result<p::RolloutView, ClientError> {
        let path = format!("api/rollouts/{id}/{}", segment(action));
        self.write(Method::POST, &path, None, Some(body)).await
    }

    /// `POST /api/programs/{name}/{version}`: uploads a build (`body`, `length` bytes,
    /// streamed) that the server signs and publishes as `programs/NAME/VERSION/FILE`.
    ///
    /// # Errors
    /// Refused token, a bad name or version (400), a version that exists (409), a build over
    /// the server's `--max-program-bytes` (413), a body that does not hash to `upload.sha256`.
    pub async fn upload_program(
        &self,
        name: &str,
        version: &str,
        upload: &p::ProgramUpload,
        body: reqwest::Body,
        length: u64,
    ) -> Result<p::ProgramView, ClientError> {
        let path = format!("api/programs/{}/{}", segment(name), segment(version));
        let req = self
            .client
            .request(Method::POST, &path, Some(&self.token))?
            .query(upload)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            // A build takes longer than a call: the server's `--upload-timeout` bounds it.
            .timeout(UPLOAD_TIMEOUT)
            .body(body);
        call(req).await
    }

    /// `PUT /api/delegations/{role}`: the site repository's targets role delegates
    /// `delegation.paths` to `role` (replacing its keys and paths when delegated already).
    ///
    /// # Errors
    /// Refused token, a bad delegation (400 `delegation.bad`), another publish holding the
    /// repository (503 `publish.busy`).
    pub async fn delegate(
        &self,
        role: &str,
        delegation: &p::NewDelegation,
    ) -> Result<p::Delegated, ClientError> {
        let path = format!("api/delegations/{}", segment(role));
        self.write(Method::PUT, &path, None, Some(delegation)).await
    }

    /// `PUT /api/delegations/{role}/files/{sha256}`: uploads a delegated build's content
    /// (`body`, `length` bytes, streamed), staged until the role's signed version lists it.
    ///
    /// # Errors
    /// Refused token, a bad role or hash (400), a body that does not hash to `sha256`, a
    /// build over the server's `--max-program-bytes` (413).
    pub async fn stage_delegated_file(
        &self,
        role: &str,
        sha256: &str,
        body: reqwest::Body,
        length: u64,
    ) -> Result<p::DelegatedFile, ClientError> {
        let path = format!(
            "api/delegations/{}/files/{}",
            segment(role),
            segment(sha256)
        );
        let req = self
            .client
            .request(Method::PUT, &path, Some(&self.token))?
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .timeout(UPLOAD_TIMEOUT)
            .body(body);
        call(req).await
    }

    /// `POST /api/delegations/{role}`: publishes `metadata`, the role's next version signed
    /// offline by the build team.
    ///
    /// # Errors
    /// Refused token, an unknown role (404), a version the delegation does not allow (400
    /// `delegation.refused`) or whose new content was not uploaded (400
    /// `delegation.file_missing`).
    pub async fn publish_delegated(
        &self,
        role: &str,
        metadata: Vec<u8>,
    ) -> Result<p::DelegatedPublished, ClientError> {
        let path = format!("api/delegations/{}", segment(role));
        let req = self
            .client
            .request(Method::POST, &path, Some(&self.token))?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(metadata);
        call(req).await
    }

    /// `GET /api/fleet/health`: every update agent's and URL source's health.
    ///
    /// # Errors
    /// Refused token.
    pub async fn fleet_health(&self) -> Result<p::FleetHealth, ClientError> {
        self.get("api/fleet/health").await
    }

    /// `GET /api/fleet/compliance`: compliance by version per category.
    ///
    /// # Errors
    /// Refused token.
    pub async fn compliance(&self) -> Result<p::ComplianceResponse, ClientError> {
        self.get("api/fleet/compliance").await
    }

    /// `GET /api/clients/{id}`: one client with its last update report.
    ///
    /// # Errors
    /// Refused token, an unknown id (404).
    pub async fn client_record(&self, id: &str) -> Result<p::ClientView, ClientError> {
        self.get(&format!("api/clients/{}", segment(id))).await
    }

    /// `DELETE /api/clients/{id}`: forgets a client; its credential stops working.
    ///
    /// # Errors
    /// Refused token, an unknown id (404).
    pub async fn delete_client(&self, id: &str) -> Result<p::ClientDeleted, ClientError> {
        let path = format!("api/clients/{}", segment(id));
        self.write::<(), _>(Method::DELETE, &path, None, None).await
    }

    /// `GET /api/enrollment-token`: when the current enrollment token was made.
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn enrollment_token(&self) -> Result<p::EnrollmentTokenInfo, ClientError> {
        self.get("api/enrollment-token").await
    }

    /// `POST /api/enrollment-token/rotate`: a new enrollment token (shown this once).
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn rotate_enrollment_token(&self) -> Result<p::EnrollmentToken, ClientError> {
        self.write::<(), _>(Method::POST, "api/enrollment-token/rotate", None, None)
            .await
    }

    /// `GET /api/users`: every user with its role (admin only).
    ///
    /// # Errors
    /// Unreachable server, refused token (403 below admin).
    pub async fn users(&self) -> Result<p::UsersResponse, ClientError> {
        self.get("api/users").await
    }

    /// `POST /api/users`: makes a user.
    ///
    /// # Errors
    /// Refused token, a bad name or password (400), a taken name (409).
    pub async fn create_user(&self, body: &p::NewUser) -> Result<p::UserView, ClientError> {
        self.write(Method::POST, "api/users", None, Some(body))
            .await
    }

    /// `PATCH /api/users/{name}`: changes a user's role or password.
    ///
    /// # Errors
    /// Refused token, an unknown user (404), demoting the last admin (403).
    pub async fn patch_user(
        &self,
        name: &str,
        body: &p::UserPatch,
    ) -> Result<p::UserView, ClientError> {
        let path = format!("api/users/{}", segment(name));
        self.write(Method::PATCH, &path, None, Some(body)).await
    }

    /// `DELETE /api/users/{name}`: deletes a user and revokes its tokens.
    ///
    /// # Errors
    /// Refused token, an unknown user (404), the last admin (403).
    pub async fn delete_user(&self, name: &str) -> Result<p::UserDeleted, ClientError> {
        let path = format!("api/users/{}", segment(name));
        self.write::<(), _>(Method::DELETE, &path, None, None).await
    }

    /// `GET /api/tokens`: the caller's API tokens (an admin's lists everyone's).
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn tokens(&self) -> Result<p::TokensResponse, ClientError> {
        self.get("api/tokens").await
    }

    /// `POST /api/tokens`: a new API token, shown this once.
    ///
    /// # Errors
    /// Refused token, a bad label or expiry (400), an unknown user (404).
    pub async fn create_token(&self, body: &p::NewToken) -> Result<p::IssuedToken, ClientError> {
        self.write(Method::POST, "api/tokens", None, Some(body))
            .await
    }

    /// `DELETE /api/tokens/{id}`: revokes an API token at once.
    ///
    /// # Errors
    /// Refused token, an unknown or already revoked id (404).
    pub async fn revoke_token(&self, id: &str) -> Result<p::TokenRevoked, ClientError> {
        let path = format!("api/tokens/{}", segment(id));
        self.write::<(), _>(Method::DELETE, &path, None, None).await
    }

    /// `GET /api/enrollment-tokens`: every enrollment token.
    ///
    /// # Errors
    /// Unreachable server, refused token.
    pub async fn enrollment_tokens(&self) -> Result<p::EnrollmentTokensResponse, ClientError> {
        self.get("api/enrollment-tokens").await
    }

    /// `POST /api/enrollment-tokens`: a new named enrollment token, shown this once.
    ///
    /// # Errors
    /// Refused token, a bad name, expiry or maximum (400).
    pub async fn create_enrollment_token(
        &self,
        body: &p::NewEnrollmentToken,
    ) -> Result<p::IssuedEnrollmentToken, ClientError> {
        self.write(Method::POST, "api/enrollment-tokens", None, Some(body))
            .await
    }

    /// `DELETE /api/enrollment-tokens/{id}`: revokes an enrollment token at once.
    ///
    /// # Errors
    /// Refused token, an unknown or already revoked id (404).
    pub async fn revoke_enrollment_token(&self, id: &str) -> Result<p::TokenRevoked, ClientError> {
        let path = format!("api/enrollment-tokens/{}", segment(id));
        self.write::<(), _>(Method::DELETE, &path, None, None).await
    }

    /// `POST /api/clients/{id}/approve-agent`: approves a client as the update agent at the
    /// address it enrolled with.
    ///
    /// # Errors
    /// Refused token, an unknown client (404), no address or another agent there (409).
    pub async fn approve_agent(&self, id: &str) -> Result<p::ClientView, ClientError> {
        let path = format!("api/clients/{}/approve-agent", segment(id));
        self.write::<(), _>(Method::POST, &path, None, None).await
    }

    /// `GET /api/audit`: the audit log, newest first.
    ///
    /// # Errors
    /// Unreachable server, refused token (403 below admin).
    pub async fn audit(&self) -> Result<p::AuditResponse, ClientError> {
        self.get("api/audit").await
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

#[cfg(test)]
mod tests {
    use super::segment;

    // Path segments keep addresses readable and escape what would change the path.
    #[test]
    fn segments_escape_only_what_they_must() {
        assert_eq!(segment("10.0.0.5:8443"), "10.0.0.5:8443");
        assert_eq!(segment("[fd00::1]:8443"), "%5Bfd00::1%5D:8443");
        assert_eq!(segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
    }
}
