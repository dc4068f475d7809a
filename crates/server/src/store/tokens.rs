//! Token rows: the admin and enrollment tokens (only their hashes are stored), their
//! rotation, and the client credentials' hashes for authentication.

use sqlx::Row;

use super::{Store, StoreError};

/// What a row of `tokens` grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The admin API and the console.
    Admin,
    /// Enrollment of new clients.
    Enroll,
}

impl TokenKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::Enroll => "enroll",
        }
    }
}

impl Store {
    /// The hash of a live (not revoked) token of `kind`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn token_hash(
        &self,
        id: &str,
        kind: TokenKind,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT hash FROM tokens WHERE id = $1 AND kind = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("hash")).transpose()?)
    }

    /// The hash of an enrolled client's credential.
    ///
    /// # Errors
    /// Database errors.
    pub async fn credential_hash(&self, client: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT credential_hash FROM clients WHERE id = $1")
            .bind(client)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("credential_hash")).transpose()?)
    }

    /// The live enrollment token's id and creation time.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enrollment_token(&self) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, created_at FROM tokens WHERE kind = 'enroll' AND revoked_at IS NULL",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("created_at")?)))
            .transpose()?)
    }

    /// Revokes the live enrollment token and stores a new one (`id`, `hash`), in one
    /// transaction.
    ///
    /// # Errors
    /// Database errors; nothing changes then.
    pub async fn rotate_enrollment_token(&self, id: &str, hash: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE kind = 'enroll' AND revoked_at IS NULL",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO tokens (id, kind, hash, label, created_at) VALUES ($1, 'enroll', $2, 'enrollment', $3)",
        )
        .bind(id)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
