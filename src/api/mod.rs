//! The HTTP API. Each resource owns its module with its `OpenApi` impl, request and response
//! objects and response enums; `openapi_service` assembles them into the one spec.

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod connections;
pub(crate) mod cookies;
pub(crate) mod health;
pub(crate) mod notion_oauth;
pub(crate) mod payload;
pub(crate) mod problem;
pub mod search;
pub(crate) mod security;
pub(crate) mod service;
pub(crate) mod spec;
pub(crate) mod unified_search;

use poem_openapi::{OpenApiService, Tags};

#[derive(Tags)]
pub(crate) enum ApiTags {
    /// How this server is set up.
    Service,
    /// Registration, login, token refresh and logout.
    Auth,
    /// The logged-in user.
    Account,
    /// Connecting a Notion workspace through OAuth.
    Notion,
    /// Your connected Notion workspaces.
    Connections,
    /// Searching all your workspaces at once.
    Search,
    /// Listings for administrators.
    Admin,
}

/// Every documented operation, mounted under `/api/v1`.
pub(crate) type Api = (
    service::ServiceApi,
    auth::AuthApi,
    account::AccountApi,
    notion_oauth::NotionOAuthApi,
    connections::ConnectionsApi,
    search::SearchApi,
    unified_search::UnifiedSearchApi,
    admin::AdminApi,
);

/// The API with its metadata. The committed `openapi/openapi.json` is this spec, printed by
/// `notion-connect openapi`.
pub(crate) fn openapi_service() -> OpenApiService<Api, ()> {
    OpenApiService::new(Api::default(), "notion-connect", env!("CARGO_PKG_VERSION"))
        .description(
            "Connect Notion workspaces through OAuth, keep their tokens encrypted, and search \
             them. Every error is an `application/problem+json` document with a stable `code`.",
        )
        .license(
            poem_openapi::LicenseObject::new(env!("CARGO_PKG_LICENSE"))
                .url("https://opensource.org/license/mit"),
        )
        .server("/api/v1")
}

/// The published spec as pretty-printed JSON, ending with a newline (see `spec`).
pub fn spec_json() -> String {
    spec::document().json.clone()
}
