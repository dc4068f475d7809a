//! The admin API's publishing calls: published program builds and their upload, rollouts
//! in rings, and delegated targets roles (delegating, staging a build, publishing the role's
//! signed metadata).

use cascade_proto as p;
use reqwest::Method;

use super::{segment, AdminClient, UPLOAD_TIMEOUT};
use crate::{call, ClientError};

impl AdminClient {
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
}
