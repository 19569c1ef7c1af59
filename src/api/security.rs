//! The security schemes: a bearer access token, checked by the accounts service before a
//! handler runs, so that no handler can forget the check. Administrators' operations use a second
//! scheme that also requires `is_admin`.

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};

use super::problem::ApiError;
use crate::{auth::liveness::Account, state::AppState};

/// The authenticated caller.
#[derive(Clone, Debug)]
pub(crate) struct CurrentUser {
    pub user: Account,
}

/// A JWT access token from `POST /auth/login` or `POST /auth/refresh`.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "authenticate"
)]
pub(crate) struct BearerAuth(pub CurrentUser);

/// The same bearer token, for operations that only administrators may use. It carries nothing:
/// those operations act on everyone's data, not on the caller's.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "authenticate_admin"
)]
pub(crate) struct AdminAuth(());

async fn authenticate(req: &Request, bearer: Bearer) -> poem::Result<CurrentUser> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("application state is missing"))?;
    let user = state
        .accounts
        .authenticate(&bearer.token)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::Unauthorized)?;
    Ok(CurrentUser { user })
}

async fn authenticate_admin(req: &Request, bearer: Bearer) -> poem::Result<()> {
    let current = authenticate(req, bearer).await?;
    if !current.user.is_admin {
        return Err(ApiError::Forbidden.into());
    }
    Ok(())
}
