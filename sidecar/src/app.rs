//! The HTTP application: the router over [`AppState`], with no sockets, so tests drive it with
//! `oneshot`.

use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::panic_response;
use crate::middleware::auth;
use crate::middleware::http_metrics;
use crate::middleware::rate_limit;
use crate::middleware::tls_redirect;
use crate::routes;
use crate::state::AppState;

pub fn app(state: AppState) -> Router {
    // `route_layer`s run last-added first: authentication, then the per-client limit.
    // The audit routes share each client's budget: a proof or an export page costs the database
    // as much as a verification.
    let audit = Router::new()
        .route("/api/v1/audit/verify", get(routes::audit::verify))
        .route(
            "/api/v1/audit/events/{event_id}/proof",
            get(routes::transparency::inclusion),
        )
        .route("/api/v1/audit/export", get(routes::transparency::export))
        .route_layer(from_fn_with_state(state.clone(), rate_limit::per_client))
        .route_layer(from_fn_with_state(state.clone(), auth::require_audit_read));
    let controls = Router::new()
        .route("/api/v1/compliance/controls", get(routes::controls::list))
        .route(
            "/api/v1/transparency/verifier-key",
            get(routes::transparency::verifier_key),
        )
        .route(
            "/api/v1/transparency/checkpoints",
            get(routes::transparency::checkpoints),
        )
        .route(
            "/api/v1/transparency/checkpoints/{chain_id}",
            get(routes::transparency::checkpoint),
        )
        .route(
            "/api/v1/transparency/consistency/{chain_id}",
            get(routes::transparency::consistency),
        )
        .route("/tlog/{chain_id}/checkpoint", get(routes::tlog::checkpoint))
        .route("/tlog/{chain_id}/tile/{*path}", get(routes::tlog::tile))
        .route_layer(from_fn_with_state(state.clone(), rate_limit::per_ip));
    Router::new()
        .merge(audit)
        .merge(controls)
        .route("/health", get(routes::health::alive))
        .route("/ready", get(routes::health::ready))
        .route("/metrics", get(routes::metrics::render))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(state.clone(), tls_redirect::enforce))
        .layer(from_fn_with_state(state.clone(), http_metrics::record))
        .with_state(state)
}
