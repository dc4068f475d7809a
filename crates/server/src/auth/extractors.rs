//! Extractors for handlers: the caller is a user whose role is at least admin, operator or
//! viewer (403, logged, otherwise), an enrolled client, or a holder of the enrollment token.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use cascade_proto::UserRole;

use crate::error::ApiError;

use super::{authenticate, Actor, Principal, Verifier};

/// The calling user when their role is at least `needed`.
async fn user_with<S>(parts: &Parts, state: &S, needed: UserRole) -> Result<Actor, ApiError>
where
    Verifier: FromRef<S>,
{
    let principal = authenticate(&Verifier::from_ref(state), parts).await?;
    if let (Principal::User(actor), Some(slot)) = (
        &principal,
        parts.extensions.get::<crate::audit::AuditSlot>(),
    ) {
        slot.set(actor.label());
    }
    match principal {
        Principal::User(actor) if actor.role.allows(needed) => Ok(actor),
        Principal::User(actor) => {
            tracing::warn!(
                user = %actor.user,
                role = actor.role.as_str(),
                needed = needed.as_str(),
                method = %parts.method,
                path = parts.uri.path(),
                "refused: the user's role does not allow this"
            );
            Err(ApiError::Forbidden(match needed {
                UserRole::Admin => "this call needs a user with the admin role",
                UserRole::Operator => "this call needs a user with the operator or admin role",
                UserRole::Viewer => "this call needs a user token",
            }))
        }
        _ => {
            tracing::warn!(
                method = %parts.method,
                path = parts.uri.path(),
                "refused: not a user token"
            );
            Err(ApiError::Forbidden("this call needs an admin token"))
        }
    }
}

/// Extractor: the caller is a user with the admin role; holds the actor's label.
#[derive(Debug, Clone)]
pub struct Admin(pub String);

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Admin(
            user_with(parts, state, UserRole::Admin).await?.label(),
        ))
    }
}

/// Extractor: the caller is a user with the operator or admin role; holds the actor's label.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

impl<S> FromRequestParts<S> for Operator
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Operator(
            user_with(parts, state, UserRole::Operator).await?.label(),
        ))
    }
}

/// Extractor: the caller is any user (viewer and up); holds the actor.
#[derive(Debug, Clone)]
pub struct Viewer(pub Actor);

impl<S> FromRequestParts<S> for Viewer
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Viewer(user_with(parts, state, UserRole::Viewer).await?))
    }
}

/// Extractor: the caller is a user with the admin role; holds the whole actor.
#[derive(Debug, Clone)]
pub struct AdminActor(pub Actor);

impl<S> FromRequestParts<S> for AdminActor
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(AdminActor(user_with(parts, state, UserRole::Admin).await?))
    }
}

/// Extractor: the caller is an enrolled client; holds its client id.
#[derive(Debug, Clone)]
pub struct ClientAuth(pub String);

impl<S> FromRequestParts<S> for ClientAuth
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match authenticate(&Verifier::from_ref(state), parts).await? {
            Principal::Client(id) => Ok(ClientAuth(id)),
            _ => Err(ApiError::Forbidden("this call needs a client credential")),
        }
    }
}

/// Extractor: the caller holds an enrollment token; holds its id (whether it is still
/// usable is checked when the enrollment is stored).
#[derive(Debug, Clone)]
pub struct Enroller(pub String);

impl<S> FromRequestParts<S> for Enroller
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match authenticate(&Verifier::from_ref(state), parts).await? {
            Principal::Enroll(id) => Ok(Enroller(id)),
            _ => Err(ApiError::Forbidden("enrollment needs the enrollment token")),
        }
    }
}
