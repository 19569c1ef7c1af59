//! What a client needs to know about this server before anyone signs in.

use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};

use super::ApiTags;
use crate::state::AppState;

/// How this server is set up, as far as it concerns its clients.
#[derive(Object, Debug, PartialEq, Eq)]
pub(crate) struct ServiceInfo {
    /// Whether anyone may create an account with `POST /auth/register`.
    pub registration_open: bool,
    /// Whether the built-in Notion sandbox stands in for Notion: connecting a workspace then
    /// reaches a pretend workspace served by this server, never real Notion data.
    pub notion_sandbox: bool,
    /// The origin browsers must use: sessions and the Notion connection flow are bound to it.
    pub public_url: String,
}

#[derive(Default)]
pub(crate) struct ServiceApi;

#[OpenApi(tag = "ApiTags::Service")]
impl ServiceApi {
    /// About this server
    ///
    /// Needs no login, so that a client can show the right screens before signing in.
    #[oai(path = "/info", method = "get", operation_id = "get_service_info")]
    async fn info(&self, state: Data<&AppState>) -> Json<ServiceInfo> {
        Json(ServiceInfo {
            registration_open: state.settings.allow_registration,
            notion_sandbox: state.settings.sandbox_enabled(),
            public_url: state.settings.public_url.origin().ascii_serialization(),
        })
    }
}
