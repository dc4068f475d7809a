//! Users and their API tokens (`docs/operating.md#users-roles-and-tokens`). Only an admin
//! manages users; every user lists, makes and revokes its own tokens (an admin anyone's).
//! Changing a user or revoking a token forgets the verified-token cache at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use cascade_proto::{
    AuditResponse, IssuedToken, NewToken, NewUser, TokenRevoked, TokensResponse, UserDeleted,
    UserPatch, UserRole, UserView, UsersResponse,
};

use crate::auth::{self, AdminActor, Viewer};
use crate::error::{ApiError, ApiJson};
use crate::openapi::{NotFound, Refusals, Taken, TooLarge};
use crate::state::AppState;

/// A user name: 1 to 64 letters, digits, `.`, `_`, `-`.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(
            "request.name",
            "name",
            format!("name: `{name}` must be 1 to 64 letters, digits, `.`, `_` or `-`"),
        ))
    }
}

/// A password of 12 to 1024 characters.
fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if (12..=1024).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::bad(
            "request.password",
            "password",
            format!("password: {n} characters; 12 to 1024 are accepted"),
        ))
    }
}

/// `GET /api/users`.
#[utoipa::path(get, path = "/api/users", tag = "accounts",
    summary = "Every user with its role (admin only)",
    security(("admin" = [])),
    responses((status = 200, description = "The users", body = UsersResponse), Refusals))]
pub async fn list_users(
    _: AdminActor,
    State(st): State<AppState>,
) -> Result<Json<UsersResponse>, ApiError> {
    Ok(Json(UsersResponse {
        users: st.store.users().await?,
    }))
}

/// `POST /api/users`.
#[utoipa::path(post, path = "/api/users", tag = "accounts",
    summary = "Make a user with a role and a password (admin only)",
    security(("admin" = [])),
    request_body = NewUser,
    responses((status = 201, description = "The user", body = UserView), Refusals, Taken, TooLarge))]
pub async fn create_user(
    AdminActor(actor): AdminActor,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    check_name(&body.name)?;
    check_password(&body.password)?;
    let hash = st.auth.hash_password(&body.password).await?;
    if !st.store.create_user(&body.name, body.role, &hash).await? {
        return Err(ApiError::Exists {
            what: "user",
            id: body.name,
        });
    }
    tracing::info!(user = %body.name, role = body.role.as_str(), by = %actor.user, "user created");
    let view = st
        .store
        .user(&body.name)
        .await?
        .ok_or_else(|| ApiError::Internal("the new user is gone".into()))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Refuses a change that would leave no admin user.
async fn keep_an_admin(st: &AppState, name: &str) -> Result<(), ApiError> {
    let is_admin = st
        .store
        .user(name)
        .await?
        .is_some_and(|u| u.role == UserRole::Admin);
    if is_admin && st.store.admin_count().await? <= 1 {
        tracing::warn!(
            user = name,
            "refused: the last admin user must stay an admin"
        );
        return Err(ApiError::Forbidden(
            "the last user with the admin role cannot be removed or demoted",
        ));
    }
    Ok(())
}

/// `PATCH /api/users/{name}`.
#[utoipa::path(patch, path = "/api/users/{name}", tag = "accounts",
    summary = "Change a user's role or password (admin only)",
    security(("admin" = [])),
    params(("name" = String, Path, description = "The user's name")),
    request_body = UserPatch,
    responses((status = 200, description = "The user", body = UserView), Refusals, NotFound, TooLarge))]
pub async fn patch_user(
    AdminActor(actor): AdminActor,
    State(st): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    if let Some(p) = &body.password {
        check_password(p)?;
    }
    if body.role.is_some_and(|r| r != UserRole::Admin) {
        keep_an_admin(&st, &name).await?;
    }
    let hash = match &body.password {
        Some(p) => Some(st.auth.hash_password(p).await?),
        None => None,
    };
    if !st
        .store
        .update_user(&name, body.role, hash.as_deref())
        .await?
    {
        return Err(ApiError::NotFound {
            what: "user",
            id: name,
        });
    }
    st.auth.forget();
    tracing::info!(user = %name, by = %actor.user, "user changed");
    let view = st.store.user(&name).await?.ok_or(ApiError::NotFound {
        what: "user",
        id: name,
    })?;
    Ok(Json(view))
}

/// `DELETE /api/users/{name}`.
#[utoipa::path(delete, path = "/api/users/{name}", tag = "accounts",
    summary = "Delete a user and revoke its tokens (admin only; never the last admin)",
    security(("admin" = [])),
    params(("name" = String, Path, description = "The user's name")),
    responses((status = 200, description = "Deleted", body = UserDeleted), Refusals, NotFound))]
pub async fn delete_user(
    AdminActor(actor): AdminActor,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UserDeleted>, ApiError> {
    keep_an_admin(&st, &name).await?;
    if !st.store.delete_user(&name).await? {
        return Err(ApiError::NotFound {
            what: "user",
            id: name,
        });
    }
    st.auth.forget();
    tracing::info!(user = %name, by = %actor.user, "user deleted");
    Ok(Json(UserDeleted { deleted: name }))
}

/// `GET /api/tokens`.
#[utoipa::path(get, path = "/api/tokens", tag = "accounts",
    summary = "API tokens: the caller's own (an admin sees everyone's)",
    security(("admin" = [])),
    responses((status = 200, description = "The tokens, newest first", body = TokensResponse), Refusals))]
pub async fn list_tokens(
    Viewer(actor): Viewer,
    State(st): State<AppState>,
) -> Result<Json<TokensResponse>, ApiError> {
    let whose = (actor.role != UserRole::Admin).then_some(actor.user.as_str());
    Ok(Json(TokensResponse {
        tokens: st.store.tokens(whose).await?,
    }))
}

/// `POST /api/tokens`.
#[utoipa::path(post, path = "/api/tokens", tag = "accounts",
    summary = "Make an API token (shown once) for the caller, or for another user (admin only)",
    security(("admin" = [])),
    request_body = NewToken,
    responses((status = 201, description = "The token, shown once", body = IssuedToken), Refusals, NotFound, TooLarge))]
pub async fn create_token(
    Viewer(actor): Viewer,
    State(st): State<AppState>,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let label = body.label.trim();
    if label.is_empty() || label.chars().count() > 200 {
        return Err(ApiError::bad(
            "request.label",
            "label",
            format!("label: `{}` must be 1 to 200 characters", body.label),
        ));
    }
    let user = body.user.clone().unwrap_or_else(|| actor.user.clone());
    if user != actor.user && actor.role != UserRole::Admin {
        tracing::warn!(user = %actor.user, for_user = %user, "refused: a token for another user");
        return Err(ApiError::Forbidden(
            "only an admin may make a token for another user",
        ));
    }
    if st.store.user(&user).await?.is_none() {
        return Err(ApiError::NotFound {
            what: "user",
            id: user,
        });
    }
    let expires_at = super::expiry(st.clock.now(), body.expires_in_secs)?;
    let id = auth::random_hex(&st.random, 8)?;
    let (token, hash) = auth::new_token(&st.random, "adm", &id)?;
    let info = st
        .store
        .create_token(&id, &hash, &user, label, expires_at)
        .await?;
    tracing::info!(token = %id, user = %user, by = %actor.user, "API token created");
    Ok((StatusCode::CREATED, Json(IssuedToken { info, token })))
}

/// `DELETE /api/tokens/{id}`.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "accounts",
    summary = "Revoke an API token: the caller's own, or anyone's for an admin",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 200, description = "Revoked", body = TokenRevoked), Refusals, NotFound))]
pub async fn revoke_token(
    Viewer(actor): Viewer,
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TokenRevoked>, ApiError> {
    let found = st
        .store
        .token(&id)
        .await?
        .filter(|t| t.revoked_at.is_none());
    let Some(token) = found else {
        return Err(ApiError::NotFound { what: "token", id });
    };
    if token.user != actor.user && actor.role != UserRole::Admin {
        tracing::warn!(user = %actor.user, token = %id, "refused: revoking another user's token");
        return Err(ApiError::NotFound { what: "token", id });
    }
    st.store.revoke_token(&id).await?;
    st.auth.forget();
    tracing::info!(token = %id, by = %actor.user, "API token revoked");
    Ok(Json(TokenRevoked { revoked: id }))
}

/// `GET /api/audit`: the newest 1,000 audit records.
#[utoipa::path(get, path = "/api/audit", tag = "accounts",
    summary = "The audit log, newest first (1,000 records): changes and refused admin actions",
    security(("admin" = [])),
    responses((status = 200, description = "The records", body = AuditResponse), Refusals))]
pub async fn audit(
    _: AdminActor,
    State(st): State<AppState>,
) -> Result<Json<AuditResponse>, ApiError> {
    Ok(Json(AuditResponse {
        entries: st.store.audit(1000).await?,
    }))
}
