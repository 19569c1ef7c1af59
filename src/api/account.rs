//! The logged-in user's own account: reading it, and deleting it.

use poem::{Request, http::StatusCode, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::{
    ApiTags,
    auth::{User, too_many_attempts},
    cookies::cookies,
    problem::{ApiError, Problem},
    security::BearerAuth,
};
use crate::{
    auth::{accounts::Deletion, device::DEVICE_COOKIE},
    client_ip,
    state::AppState,
};

/// The password of the account, to confirm a consequential change.
#[derive(Object)]
pub(crate) struct PasswordConfirmation {
    #[oai(write_only)]
    pub password: String,
}

#[derive(ApiResponse)]
pub(crate) enum DeleteAccountResponse {
    /// The account is gone, with its sessions and connections; revoking the connections' tokens
    /// at Notion is queued and retried until Notion confirms.
    #[oai(status = 204)]
    Deleted,
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// The password is wrong (`invalid_credentials`); nothing was changed.
    #[oai(status = 403, content_type = "application/problem+json")]
    WrongPassword(Json<Problem>),
    /// Too many attempts for this account or from this address (`too_many_attempts`).
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyAttempts(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

#[derive(ApiResponse)]
pub(crate) enum MeResponse {
    /// The account behind the access token.
    #[oai(status = 200)]
    Me(Json<User>),
    #[expect(
        dead_code,
        reason = "the security scheme gives this answer; the variant puts it in the document"
    )]
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
}

#[derive(Default)]
pub(crate) struct AccountApi;

#[OpenApi(tag = "ApiTags::Account")]
impl AccountApi {
    /// The current user
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(&self, auth: BearerAuth) -> Result<MeResponse, ApiError> {
        Ok(MeResponse::Me(Json(User::from(&auth.0.user))))
    }

    /// Delete your account
    ///
    /// Deletes the account, its sessions and its connections, and revokes every Notion token it
    /// held (queued durably and retried until Notion confirms). The password must be given
    /// again; attempts count towards the same limits as logging in.
    #[oai(path = "/me", method = "delete", operation_id = "delete_me")]
    async fn delete_me(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        req: &Request,
        body: Json<PasswordConfirmation>,
    ) -> Result<DeleteAccountResponse, ApiError> {
        let client = client_ip::of_request(req, &state.settings.trusted_proxies);
        let devices = cookies(&state.settings, req, DEVICE_COOKIE);
        let deletion = state
            .accounts
            .delete(client, auth.0.user.id, &body.0.password, &devices)
            .await?;
        Ok(match deletion {
            Deletion::Deleted => DeleteAccountResponse::Deleted,
            Deletion::Gone => {
                DeleteAccountResponse::Unauthorized(Json(ApiError::Unauthorized.problem()))
            }
            Deletion::WrongPassword => DeleteAccountResponse::WrongPassword(Problem::json(
                StatusCode::FORBIDDEN,
                "invalid_credentials",
                "The password is wrong.",
            )),
            Deletion::Throttled(wait) => {
                DeleteAccountResponse::TooManyAttempts(too_many_attempts(), wait)
            }
        })
    }
}
