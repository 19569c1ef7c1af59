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
pub mod spec;

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
        .license(
            poem_openapi::LicenseObject::new(env!("CARGO_PKG_LICENSE"))
                .url("https://opensource.org/license/mit"),
        )
        .server("/api/v1")
}

/// The published spec as pretty-printed JSON, ending with a newline (see [`spec`]).
pub fn spec_json() -> String {
    spec::document().json.clone()
}

/// A problem body for an operation's own response enum, titled after its status.
pub(crate) fn problem(status: StatusCode, code: &str, detail: &str) -> Json<Problem> {
    let title = status.canonical_reason().unwrap_or("Error");
    Json(Problem::new(status, code, title, Some(detail.to_owned())))
}

/// The name a cookie of this service has. Over https it carries the `__Secure-` prefix, which
/// browsers accept only with the Secure attribute from a secure origin, so a plain-http page
/// cannot plant a cookie of that name.
pub(crate) fn cookie_name(settings: &Settings, base: &str) -> String {
    if settings.public_url.scheme() == "https" {
        format!("__Secure-{base}")
    } else {
        base.to_owned()
    }
}

/// A `Set-Cookie` value for the cookie called `base` (see [`cookie_name`]): HttpOnly always,
/// Secure whenever the service is served over https. An empty `value` with `max_age` 0 deletes
/// the cookie.
pub(crate) fn set_cookie(
    settings: &Settings,
    base: &str,
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
    let name = cookie_name(settings, base);
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    )
}

/// Every non-empty value of the cookie called `base` in the request. A browser sends several
/// when another page planted cookies of the same name, so callers must not simply take the
/// first.
pub(crate) fn cookies<'a>(settings: &Settings, req: &'a Request, base: &str) -> Vec<&'a str> {
    let name = cookie_name(settings, base);
    let mut values: Vec<&str> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
        .collect();
    values.dedup();
    values
}
