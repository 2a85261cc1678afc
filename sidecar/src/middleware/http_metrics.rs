//! Request counts and latencies, labelled by route template (`/api/v1/audit/verify`), never by
//! raw URL, so a scanner probing random paths cannot blow up the series count.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // `MatchedPath` is a reference-counted string: cloning it does not allocate.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let response = next.run(request).await;
    state.metrics.record_http(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_str(),
        started.elapsed().as_secs_f64(),
    );
    response
}
