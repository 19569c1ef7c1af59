//! Cross-origin requests from a separately hosted web app (`CORS_ALLOWED_ORIGINS`).
//!
//! A request is left alone when it carries no `Origin` or the service's own (`PUBLIC_URL`'s):
//! the bundled app is always served. An origin on the list gets the CORS headers, with
//! credentials (the refresh cookie); a preflight may ask only for the methods the API answers
//! to and the request headers it reads. Any other origin is refused with 403 when a list is
//! configured; without one, nothing is added and the browser's same-origin rule stands.

use std::sync::Arc;

use poem::{
    Endpoint, IntoResponse, Request, Response, Result,
    http::{HeaderValue, Method, StatusCode, header},
};

use crate::{api::problem::ApiError, config::Settings};

/// The methods of the API's operations (`HEAD` wherever `GET` is).
const METHODS: [Method; 4] = [Method::GET, Method::HEAD, Method::POST, Method::DELETE];
/// The request headers the API reads beyond those every browser may send.
const HEADERS: [header::HeaderName; 2] = [header::AUTHORIZATION, header::CONTENT_TYPE];
/// How long a browser may reuse a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Who may call the API from another origin.
pub(crate) struct CorsPolicy {
    /// `PUBLIC_URL`'s origin.
    own: Option<HeaderValue>,
    allowed: Vec<HeaderValue>,
}

impl CorsPolicy {
    pub(crate) fn new(settings: &Settings) -> Arc<Self> {
        let header = |origin: &str| HeaderValue::from_str(origin).ok();
        Arc::new(Self {
            own: header(&settings.public_url.origin().ascii_serialization()),
            allowed: settings
                .cors_allowed_origins
                .iter()
                .filter_map(|origin| header(origin))
                .collect(),
        })
    }
}

/// Applies `policy` to one request.
pub(crate) async fn apply<E: Endpoint>(
    next: E,
    req: Request,
    policy: Arc<CorsPolicy>,
) -> Result<Response> {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.call(req).await.map(IntoResponse::into_response);
    };
    if policy.own.as_ref() == Some(&origin) || policy.allowed.is_empty() {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    if !policy.allowed.contains(&origin) {
        return Err(ApiError::OriginNotAllowed.into());
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        preflight_answer(&req)?
    } else {
        match next.call(req).await {
            Ok(response) => response.into_response(),
            // Rendered here, so the page may read why it failed.
            Err(err) => crate::api::problem::render_error(err).await,
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if !preflight {
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
    Ok(response)
}

/// The answer to a preflight from an allowed origin, if it asks for nothing the API does not
/// use.
fn preflight_answer(req: &Request) -> Result<Response> {
    let refused = || ApiError::PreflightRefused {
        detail: "Cross-origin requests may use the methods GET, HEAD, POST and DELETE and the \
                 request headers Authorization and Content-Type."
            .to_owned(),
    };
    let method = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|value| Method::from_bytes(value.as_bytes()).ok());
    if !method.is_some_and(|method| METHODS.contains(&method)) {
        return Err(refused().into());
    }
    let requested = req
        .headers()
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("\u{0}").split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty());
    for name in requested {
        if !HEADERS
            .iter()
            .any(|known| name.eq_ignore_ascii_case(known.as_str()))
        {
            return Err(refused().into());
        }
    }
    Ok(Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET, HEAD, POST, DELETE",
        )
        .header(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Content-Type",
        )
        .header(header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE)
        .finish())
}
