//! The HTTP handlers, one file per resource.

use crate::error::ApiError;

pub mod audit;
pub mod controls;
pub mod health;
pub mod metrics;
pub mod params;
pub mod tlog;
pub mod transparency;

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
