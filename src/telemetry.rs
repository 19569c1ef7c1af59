//! Logging: one line per request with a request id, and the subscriber set-up.
//!
//! Only the path is logged, never the query string: OAuth callbacks carry codes and states there.

use std::{sync::Arc, time::Instant};

use poem::{
    Endpoint, IntoResponse, Request, Response, Result,
    http::{HeaderName, HeaderValue},
};
use poem_openapi::OperationId;
use tracing::Instrument;
use tracing_subscriber::{EnvFilter, fmt};

use crate::{
    config::LogFormat,
    metrics::{self, Metrics},
};

pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber. `RUST_LOG` refines the default filter.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    // A second init (tests build several apps in one process) is harmless and ignored.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    install_panic_hook();
}

/// Routes panic messages through tracing so they keep the log format (one JSON object per line).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, %message, "panic");
    }));
}

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
    let fixed_route = Metrics::fixed_route(req.uri().path());
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
            let response = crate::error::render_error(err)
                .instrument(span.clone())
                .await;
            (response, operation)
        }
    };
    let took = started.elapsed();
    let latency_ms = took.as_secs_f64() * 1000.0;
    let status = response.status();
    metrics.http_request(method, fixed_route, operation.map(|o| o.0), status, took);
    let status = status.as_u16();
    span.in_scope(|| tracing::info!(status, latency_ms, "request finished"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
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
}
