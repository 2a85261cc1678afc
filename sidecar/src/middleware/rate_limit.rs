//! The rate-limit layers: 30 requests a minute per `client_id` on the audit route, 120 per
//! client IP on the controls route (the limiters are `crate::limiter`'s).
//!
//! The audit route's windows are kept in PostgreSQL (`agentidp.api_rate_windows`), so that its
//! budget holds across the sidecar's replicas: one atomic upsert per request counts it and says
//! where the window stands. The route queries the database anyway, and fails without it. The
//! controls route is public, served from memory, and its windows stay per replica: behind N
//! replicas a client IP gets up to N times its limit there.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::limiter::Decision;
use crate::middleware::auth::AuthenticatedClient;
use crate::state::AppState;

fn set_headers(headers: &mut HeaderMap, d: Decision) {
    for (name, value) in [
        ("x-ratelimit-limit", u64::from(d.limit)),
        ("x-ratelimit-remaining", u64::from(d.remaining)),
        ("x-ratelimit-reset", d.reset),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

async fn respond(decision: Decision, request: Request, next: Next) -> Response {
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        ApiError::RateLimited.into_response()
    };
    set_headers(response.headers_mut(), decision);
    response
}

/// After authentication, which put the client in the request.
pub async fn per_client(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(client) = request.extensions().get::<AuthenticatedClient>().cloned() else {
        return ApiError::internal("rate limit by client ran before authentication")
            .into_response();
    };
    // Without the database the route could not answer either: its JSON 500, as for a failed
    // verification.
    match state
        .audit_limiter
        .check(&state.backend, &client.client_id)
        .await
    {
        Ok(decision) => respond(decision, request, next).await,
        Err(e) => ApiError::internal(format!(
            "cannot count the request against its rate limit: {e}"
        ))
        .into_response(),
    }
}

pub async fn per_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // Without a peer address (never the case behind a real listener) all share one bucket.
    let ip = client_ip(peer, request.headers(), state.trusted_proxy_hops);
    respond(state.controls_limiter.check(&ip), request, next).await
}

/// The socket peer, unless `hops` proxies in front of us are trusted: each appends the address it
/// received the request from to `X-Forwarded-For`, so the client is the `hops`-th entry from the
/// right. Entries further left are whatever the client claimed and are ignored.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    entries
        .len()
        .checked_sub(hops)
        .and_then(|i| entries[i].parse().ok())
        .or(peer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn forwarded_for_is_used_only_with_trusted_hops() {
        let peer = Some("10.0.0.9".parse().unwrap());
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        assert_eq!(client_ip(peer, &h, 0), peer);
        assert_eq!(client_ip(peer, &h, 1), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(client_ip(peer, &h, 2), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(client_ip(peer, &h, 4), peer);
        assert_eq!(client_ip(peer, &HeaderMap::new(), 1), peer);
    }
}
