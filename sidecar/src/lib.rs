//! agentidp-sidecar: loads the pg_agentidp encryption key from Vault into its database sessions,
//! runs the scheduled SOC 2 compliance jobs, and serves the compliance REST API
//! (`/api/v1/audit/verify`, `/api/v1/compliance/controls`) and Prometheus metrics.
//!
//! A library as well as a binary so that `tests/` can drive the real modules.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod app;
pub mod audit_chain;
pub mod backoff;
pub mod controls;
pub mod db;
pub mod error;
pub mod jobs;
pub mod jwt;
pub mod key;
pub mod key_source;
pub mod leader;
pub mod limiter;
pub mod metrics;
pub mod middleware;
pub mod publish;
pub mod routes;
pub mod service;
pub mod settings;
pub mod signer;
pub mod snapshot;
pub mod state;
pub mod transparency_api;
pub mod transparency_metrics;
pub mod transparency_sql;
pub mod vault;
pub mod vault_http;
