//! The request layers, outermost first: metrics, TLS redirect, authentication, rate limit.

pub mod auth;
pub mod http_metrics;
pub mod rate_limit;
pub mod tls_redirect;
