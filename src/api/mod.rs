//! The HTTP API. Each resource owns its module with its `OpenApi` impl, request and response
//! objects and response enums; `openapi_service` assembles them into the one spec.

pub mod admin;
pub mod auth;
pub mod connections;
pub mod health;
pub mod notion_oauth;
pub mod payload;
pub mod search;
pub mod service;

use poem::{
    Request,
    http::{StatusCode, header},
};
use poem_openapi::{OpenApiService, Tags, payload::Json};

use crate::{config::Settings, error::Problem};

#[derive(Tags)]
pub enum ApiTags {
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
    /// Listings for administrators.
    Admin,
}

/// Every documented operation, mounted under `/api/v1`.
pub(crate) type Api = (
    service::ServiceApi,
    auth::AuthApi,
    auth::AccountApi,
    notion_oauth::NotionOAuthApi,
    connections::ConnectionsApi,
    search::SearchApi,
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
        .server("/api/v1")
}

/// The spec as pretty-printed JSON, ending with a newline.
pub fn spec_json() -> String {
    let mut spec = openapi_service().spec();
    spec.push('\n');
    spec
}

/// A problem body for an operation's own response enum, titled after its status.
pub(crate) fn problem(status: StatusCode, code: &str, detail: &str) -> Json<Problem> {
    let title = status.canonical_reason().unwrap_or("Error");
    Json(Problem::new(status, code, title, Some(detail.to_owned())))
}

/// A `Set-Cookie` value: HttpOnly always, Secure whenever the service is served over https.
/// An empty `value` with `max_age` 0 deletes the cookie.
pub(crate) fn set_cookie(
    settings: &Settings,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    same_site: &str,
) -> String {
    let secure = if settings.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    )
}

/// The value of cookie `name` in the request, if present and non-empty.
pub(crate) fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
}
