//! Users and their API tokens (`docs/operating.md#users-roles-and-tokens`): a user has a
//! name, a role and an argon2id password hash; an API token row (`tokens`, kind `admin`)
//! names the user it acts as and may expire. Only hashes are stored.

use cascade_proto::{TokenView, UserRole, UserView};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

/// A live API token as verification needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The secret's hash.
    pub hash: String,
    /// The user it acts as (`None`: a token made before users existed, an admin).
    pub user: Option<String>,
    /// The user's role now (`None` when the user is gone).
    pub role: Option<UserRole>,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<i64>,
}

fn role(text: &str) -> Result<UserRole, StoreError> {
    UserRole::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown role `{text}`")))
}

fn user_view(r: &AnyRow) -> Result<UserView, StoreError> {
    let text: String = r.try_get("role")?;
    Ok(UserView {
        name: r.try_get("name")?,
        role: role(&text)?,
        created_at: r.try_get("created_at")?,
    })
}

fn token_view(r: &AnyRow) -> Result<TokenView, StoreError> {
    let user: Option<String> = r.try_get("user_name")?;
    Ok(TokenView {
        id: r.try_get("id")?,
        user: user.unwrap_or_else(|| "admin".to_owned()),
        label: r.try_get("label")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

const TOKEN_COLUMNS: &str = "id, user_name, label, created_at, expires_at, revoked_at";

impl Store {
    /// Every user, by name.
    ///
    /// # Errors
    /// Database errors.
    pub async fn users(&self) -> Result<Vec<UserView>, StoreError> {
        let rows = sqlx::query("SELECT name, role, created_at FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_view).collect()
    }

    /// One user.
    ///
    /// # Errors
    /// Database errors.
    pub async fn user(&self, name: &str) -> Result<Option<UserView>, StoreError> {
        let row = sqlx::query("SELECT name, role, created_at FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_view).transpose()
    }

    /// A user's password hash.
    ///
    /// # Errors
    /// Database errors.
    pub async fn password_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("password_hash")).transpose()?)
    }

    /// Makes a user; `false` when the name is taken (nothing changes then).
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_user(
        &self,
        name: &str,
        role: UserRole,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let taken = sqlx::query("SELECT name FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if taken {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(self.clock.now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Changes a user's role and/or password hash; `false` when there is no such user. A role
    /// change ends the user's console sessions (on every replica: their rows are deleted).
    ///
    /// # Errors
    /// Database errors.
    pub async fn update_user(
        &self,
        name: &str,
        role: Option<UserRole>,
        password_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let done = sqlx::query(
            "UPDATE users SET role = COALESCE($1, role), \
             password_hash = COALESCE($2, password_hash) WHERE name = $3",
        )
        .bind(role.map(UserRole::as_str))
        .bind(password_hash)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(role) = role {
            sqlx::query("DELETE FROM console_sessions WHERE user_name = $1 AND role <> $2")
                .bind(name)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a user, revokes its tokens and ends its console sessions, in one transaction;
    /// `false` when there was none.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
        )
        .bind(self.clock.now())
        .bind(name)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM console_sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// How many users hold the admin role.
    ///
    /// # Errors
    /// Database errors.
    pub async fn admin_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// A live API token's grant (not revoked; expiry is the caller's check).
    ///
    /// # Errors
    /// Database errors.
    pub async fn token_grant(&self, id: &str) -> Result<Option<TokenGrant>, StoreError> {
        let row = sqlx::query(
            "SELECT t.hash AS hash, t.user_name AS user_name, t.expires_at AS expires_at, \
             u.role AS role FROM tokens t LEFT JOIN users u ON u.name = t.user_name \
             WHERE t.id = $1 AND t.kind = 'admin' AND t.revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let role_text: Option<String> = r.try_get("role")?;
        Ok(Some(TokenGrant {
            hash: r.try_get("hash")?,
            user: r.try_get("user_name")?,
            role: role_text.as_deref().map(role).transpose()?,
            expires_at: r.try_get("expires_at")?,
        }))
    }

    /// Stores a new API token for `user`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_token(
        &self,
        id: &str,
        hash: &str,
        user: &str,
        label: &str,
        expires_at: Option<i64>,
    ) -> Result<TokenView, StoreError> {
        let now = self.clock.now();
        sqlx::query(
            "INSERT INTO tokens (id, kind, hash, label, created_at, user_name, expires_at) \
             VALUES ($1, 'admin', $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(hash)
        .bind(label)
        .bind(now)
        .bind(user)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(TokenView {
            id: id.to_owned(),
            user: user.to_owned(),
            label: label.to_owned(),
            created_at: now,
            expires_at,
            revoked_at: None,
        })
    }

    /// API tokens, newest first: of `user`, or of everyone when `None`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenView>, StoreError> {
        let rows = match user {
            Some(u) => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind = 'admin' AND user_name = $1 \
                     ORDER BY created_at DESC, id"
                ))
                .bind(u)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind = 'admin' \
                     ORDER BY created_at DESC, id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(token_view).collect()
    }

    /// One API token.
    ///
    /// # Errors
    /// Database errors.
    pub async fn token(&self, id: &str) -> Result<Option<TokenView>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind = 'admin' AND id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_view).transpose()
    }

    /// Revokes a live API token and ends the console sessions opened with it; `false` when
    /// there is none live at `id`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = crate::db::begin_write(&mut conn).await?;
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND kind = 'admin' \
             AND revoked_at IS NULL",
        )
        .bind(self.clock.now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM console_sessions WHERE token_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
