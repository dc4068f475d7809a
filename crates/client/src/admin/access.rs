//! The admin API's access calls: users and their roles, API tokens, enrollment tokens (the
//! single one and the named ones) and the audit log.

use cascade_proto as p;
use reqwest::Method;

use super::{segment, AdminClient};
use crate::ClientError;

impl AdminClient {
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

    /// `GET /api/audit`: the audit log, newest first.
    ///
    /// # Errors
    /// Unreachable server, refused token (403 below admin).
    pub async fn audit(&self) -> Result<p::AuditResponse, ClientError> {
        self.get("api/audit").await
    }
}
