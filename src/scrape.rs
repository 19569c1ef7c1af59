//! The metrics listener (`METRICS_BIND_ADDR`): `GET /metrics` in Prometheus' text format, and
//! nothing else.

use std::{sync::Arc, time::Instant};

use poem::{
    Endpoint, EndpointExt, IntoResponse, Response, Route, get, handler,
    http::{StatusCode, header},
    web::Data,
};
use sea_orm::DatabaseConnection;

use crate::{
    chain::Chain,
    metrics::Metrics,
    store::{StoreError, connections},
};

/// The listener's routes.
pub(crate) fn routes(
    metrics: Arc<Metrics>,
    db: DatabaseConnection,
) -> impl Endpoint<Output = Response> {
    Route::new()
        .at("/metrics", get(scrape))
        .data(metrics)
        .data(db)
        .map_to_response()
        .catch_error(|_: poem::error::MethodNotAllowedError| async {
            Response::builder()
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .header(header::ALLOW, "GET, HEAD")
                .finish()
        })
}

#[handler]
async fn scrape(metrics: Data<&Arc<Metrics>>, db: Data<&DatabaseConnection>) -> Response {
    let counts = async {
        let counts = connections::count_by_key_and_status(db.0).await?;
        Ok::<_, StoreError>(
            counts
                .into_iter()
                .map(|(key_id, status, count)| (key_id, status.as_str().to_owned(), count))
                .collect(),
        )
    };
    let counted = metrics.count_connections(Instant::now(), counts).await;
    if let Err(e) = counted {
        tracing::error!(error = %Chain(&e), "counting connections for the metrics failed");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match metrics.encode() {
        Ok(text) => Response::builder()
            .content_type(prometheus::TEXT_FORMAT)
            .header(header::CACHE_CONTROL, "no-store")
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
