//! TLS enforcement, the outermost API layer: in production a request that did not reach the
//! TLS-terminating proxy over HTTPS is sent there with a 301.
//!
//! The operational endpoints (`/health`, `/ready`, `/metrics`) are exempt: probes and scrapers
//! call the pod directly over the cluster network, and a redirect would make them fail (or, for
//! kubelet, silently pass) instead of checking anything.

use axum::extract::{Request, State};
use axum::http::{header, uri::Authority, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

pub const OPERATIONAL_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

fn forwarded_https(headers: &HeaderMap) -> bool {
    // With several proxies the header is a list; the first entry is the client-facing hop.
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let policy = &state.tls_redirect;
    if !policy.enabled
        || OPERATIONAL_PATHS.contains(&request.uri().path())
        || forwarded_https(request.headers())
    {
        return next.run(request).await;
    }
    let host = match &policy.public_host {
        Some(host) => Some(host.clone()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
            // HTTP/2 carries the host in the URI instead of a Host header.
            .or_else(|| request.uri().authority().cloned())
            .map(|a| a.to_string()),
    };
    let Some(host) = host else {
        return ApiError::MissingHost.into_response();
    };
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    match HeaderValue::try_from(format!("https://{host}{path_and_query}")) {
        Ok(location) => (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => ApiError::MissingHost.into_response(),
    }
}
