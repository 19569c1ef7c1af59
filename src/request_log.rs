//! One log line per request, with a request id, and its count in the metrics.
//!
//! Only the path is logged, never the query string: OAuth callbacks carry codes and states there.

use std::{sync::Arc, time::Instant};

use poem::{
    Endpoint, IntoResponse, Request, Response, Result,
    http::{HeaderName, HeaderValue},
};
use poem_openapi::OperationId;
use tracing::Instrument;

use crate::{
    api::{problem::render_error, spec::document},
    metrics::{self, Metrics},
    notion::SANDBOX_PATH,
};

const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// Wraps every request in a span carrying its id, and logs its outcome and latency. The id is
/// taken from an incoming `X-Request-Id` when that looks like an id (so a proxy's id is kept),
/// generated otherwise, and returned in the response.
///
/// The request is also counted in `metrics`, under its route template.
pub(crate) async fn log_request<E: Endpoint>(
    next: E,
    req: Request,
    metrics: Arc<Metrics>,
) -> Result<Response> {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_plausible_request_id(value))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let method = metrics::method_label(req.method());
    let fixed_route = fixed_route(req.uri().path());
    let started = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let (mut response, operation) = match result {
        Ok(response) => {
            let response = response.into_response();
            let operation = response.data::<OperationId>().copied();
            (response, operation)
        }
        Err(err) => {
            let operation = err.data::<OperationId>().copied();
            let response = render_error(err).instrument(span.clone()).await;
            (response, operation)
        }
    };
    let took = started.elapsed();
    let latency_ms = took.as_secs_f64() * 1000.0;
    let status = response.status();
    // Under its operation's route template when an API operation answered, else a fixed label.
    let route = operation
        .and_then(|operation| document().operations.template(operation.0))
        .unwrap_or(fixed_route);
    metrics.http_request(method, route, status, took);
    let status = status.as_u16();
    span.in_scope(|| tracing::info!(status, latency_ms, "request finished"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

/// The label of a request no API operation answers: one of the fixed routes outside the API,
/// `unmatched` under `/api/`, or the web app's `/`.
fn fixed_route(path: &str) -> &'static str {
    match path {
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/api/v1/openapi.json" => "/api/v1/openapi.json",
        _ if path == "/docs" || path.starts_with("/docs/") => "/docs",
        _ if path.starts_with(SANDBOX_PATH) => SANDBOX_PATH,
        _ if path.starts_with("/api/") => UNMATCHED,
        // Everything else is the web app's (its files, or its index for client routes).
        _ => "/",
    }
}

fn is_plausible_request_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_filtered() {
        assert!(is_plausible_request_id(
            "0195d7a6-3b1c-7cc3-9f1e-2f1f4c6d7e8f"
        ));
        assert!(!is_plausible_request_id(""));
        assert!(!is_plausible_request_id("a b"));
        assert!(!is_plausible_request_id("x\nforged log line"));
        assert!(!is_plausible_request_id(&"a".repeat(65)));
    }

    #[test]
    fn requests_outside_the_api_are_labelled_by_fixed_routes_never_by_raw_path() {
        assert_eq!(fixed_route("/api/v1/no/such/thing"), UNMATCHED);
        assert_eq!(fixed_route("/docs/index.css"), "/docs");
        assert_eq!(fixed_route("/docsx"), "/");
        assert_eq!(fixed_route("/some/client/route"), "/");
    }
}
