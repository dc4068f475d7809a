//! The admin API's fleet calls: mirroring the upstream, Notify All Clients, the client
//! registry (one client, forgetting one, approving one as an update agent), fleet health and
//! compliance.

use cascade_proto as p;
use reqwest::Method;

use super::{segment, AdminClient};
use crate::{call, ClientError};

impl AdminClient {
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

    /// `POST /api/clients/{id}/approve-agent`: approves a client as the update agent at the
    /// address it enrolled with.
    ///
    /// # Errors
    /// Refused token, an unknown client (404), no address or another agent there (409).
    pub async fn approve_agent(&self, id: &str) -> Result<p::ClientView, ClientError> {
        let path = format!("api/clients/{}/approve-agent", segment(id));
        self.write::<(), _>(Method::POST, &path, None, None).await
    }
}
