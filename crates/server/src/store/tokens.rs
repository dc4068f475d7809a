//! Token rows: the admin and enrollment tokens (only their hashes are stored, and upgraded
//! from argon2 to the fast form on use), their
//! rotation, and the client credentials' hashes for authentication. Enrollment tokens are
//! several and named, each with an optional expiry and maximum number of uses
//! (`docs/operating.md#enrollment-tokens`); the one named `enrollment` is the one made at
//! first start and replaced by rotation.

use cascade_proto::EnrollmentTokenView;
use sqlx::any::AnyRow;
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

    /// Replaces token `id`'s stored hash `old` by `new` (an argon2 hash by the fast form,
    /// `docs/architecture.md#credentials`); `false` when the row no longer holds `old`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn upgrade_token_hash(
        &self,
        id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE tokens SET hash = $1 WHERE id = $2 AND hash = $3")
            .bind(new)
            .bind(id)
            .bind(old)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces client `client`'s stored credential hash `old` by `new`; `false` when the
    /// row no longer holds `old`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn upgrade_credential_hash(
        &self,
        client: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE clients SET credential_hash = $1 WHERE id = $2 AND credential_hash = $3",
        )
        .bind(new)
        .bind(client)
        .bind(old)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The live enrollment token's id and creation time.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enrollment_token(&self) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, created_at FROM tokens WHERE kind = 'enroll' AND label = 'enrollment' \
             AND revoked_at IS NULL ORDER BY created_at DESC, id",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("id")?, r.try_get("created_at")?)))
            .transpose()?)
    }

    /// Every enrollment token, newest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenView>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENROLL_COLUMNS} FROM tokens WHERE kind = 'enroll' ORDER BY created_at DESC, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(enroll_view).collect::<Result<_, _>>()?)
    }

    /// One enrollment token.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enrollment_token_view(
        &self,
        id: &str,
    ) -> Result<Option<EnrollmentTokenView>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENROLL_COLUMNS} FROM tokens WHERE kind = 'enroll' AND id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(enroll_view).transpose()?)
    }

    /// Stores a new named enrollment token.
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_enrollment_token(
        &self,
        id: &str,
        hash: &str,
        name: &str,
        expires_at: Option<i64>,
        max_uses: Option<i64>,
        agent: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (id, kind, hash, label, created_at, expires_at, max_uses, agent) \
             VALUES ($1, 'enroll', $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(hash)
        .bind(name)
        .bind(self.clock.now())
        .bind(expires_at)
        .bind(max_uses)
        .bind(i64::from(agent))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Revokes a live enrollment token; `false` when none is live at `id`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke_enrollment_token(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND kind = 'enroll' \
             AND revoked_at IS NULL",
        )
        .bind(self.clock.now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Revokes the live enrollment token and stores a new one (`id`, `hash`), in one
    /// transaction.
    ///
    /// # Errors
    /// Database errors; nothing changes then.
    pub async fn rotate_enrollment_token(&self, id: &str, hash: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE kind = 'enroll' AND label = 'enrollment' \
             AND revoked_at IS NULL",
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

const ENROLL_COLUMNS: &str = "id, label, created_at, expires_at, max_uses, uses, agent, revoked_at";

fn enroll_view(r: &AnyRow) -> Result<EnrollmentTokenView, sqlx::Error> {
    Ok(EnrollmentTokenView {
        id: r.try_get("id")?,
        name: r.try_get("label")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        max_uses: r.try_get("max_uses")?,
        uses: r.try_get("uses")?,
        agent: r.try_get::<i64, _>("agent")? != 0,
        revoked_at: r.try_get("revoked_at")?,
    })
}
