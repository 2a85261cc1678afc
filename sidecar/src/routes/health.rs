//! Liveness and readiness probes.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// The process answers: nothing else is checked, so a database outage does not get it restarted.
pub async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers, so a load balancer stops sending traffic that would only fail.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.backend.ping().await {
        Ok(()) => Ok(Json(json!({ "status": "ready" }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::NotReady)
        }
    }
}
