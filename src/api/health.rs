//! Liveness and readiness probes for orchestrators and load balancers.

use poem::{
    handler,
    web::{Data, Json},
};
use serde_json::{Value, json};

use crate::{api::problem::ApiError, db, state::AppState};

/// The process is up and serving HTTP.
#[handler]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The service can do useful work: the database answers. 503 (problem+json) otherwise; the
/// probe recovers by itself once the database is back, because the pool reconnects.
#[handler]
pub(crate) async fn readyz(state: Data<&AppState>) -> Result<Json<Value>, ApiError> {
    db::check_ready(&state.db, &state.settings.database_url)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(json!({ "status": "ready" })))
}
