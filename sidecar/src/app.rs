//! The HTTP application: state and routes, with no sockets, so tests drive it with `oneshot`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::db::ApiBackend;
use crate::error::panic_response;
use crate::metrics::Metrics;
use crate::middleware::auth::{self, JwtVerifier};
use crate::middleware::http_metrics;
use crate::middleware::rate_limit::{self, FixedWindowLimiter};
use crate::middleware::tls_redirect::{self, TlsRedirect};
use crate::routes;
use crate::settings::Config;
use crate::snapshot::SnapshotCell;

/// Cheap to clone (one reference count), as every middleware layer clones it per request.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub backend: Arc<dyn ApiBackend>,
    pub snapshot: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub jwt: JwtVerifier,
    pub audit_limiter: FixedWindowLimiter<String>,
    pub controls_limiter: FixedWindowLimiter<Option<IpAddr>>,
    pub tls_redirect: TlsRedirect,
    pub trusted_proxy_hops: usize,
}

impl AppState {
    pub fn new(
        config: &Config,
        backend: Arc<dyn ApiBackend>,
        snapshot: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
    ) -> AppState {
        AppState(Arc::new(AppStateInner {
            backend,
            snapshot,
            metrics,
            jwt: JwtVerifier::new(&config.jwt),
            audit_limiter: FixedWindowLimiter::per_minute(config.audit_rate_limit_per_minute),
            controls_limiter: FixedWindowLimiter::per_minute(config.controls_rate_limit_per_minute),
            tls_redirect: TlsRedirect {
                enabled: config.production,
                public_host: config.public_host.clone(),
            },
            trusted_proxy_hops: config.trusted_proxy_hops,
        }))
    }
}

pub fn app(state: AppState) -> Router {
    // `route_layer`s run last-added first: authentication, then the per-client limit.
    let audit = Router::new()
        .route("/api/v1/audit/verify", get(routes::audit::verify))
        .route_layer(from_fn_with_state(state.clone(), rate_limit::per_client))
        .route_layer(from_fn_with_state(state.clone(), auth::require_audit_read));
    let controls = Router::new()
        .route("/api/v1/compliance/controls", get(routes::controls::list))
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
