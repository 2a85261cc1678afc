//! The one error type of the HTTP API. Every error response is `{code, message, details?}` JSON,
//! with the messages the OpenAPI spec gives. Internal causes are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("A valid Bearer token is required to access this resource.")]
    Unauthorized,
    #[error("The '{0}' scope is required to verify the audit chain.")]
    InsufficientScope(&'static str),
    #[error("Invalid query parameter value.")]
    InvalidParameter {
        field: &'static str,
        reason: &'static str,
    },
    #[error("Invalid date range.")]
    InvalidDateRange { reason: &'static str },
    #[error("Too many requests. Please retry after the rate limit window resets.")]
    RateLimited,
    #[error("The request has no valid Host header to redirect to.")]
    MissingHost,
    #[error("The requested resource was not found.")]
    NotFound,
    #[error(
        "The event is not yet covered by a signed checkpoint. Please retry after the next one."
    )]
    NotYetSigned,
    #[error("The method is not allowed for this resource.")]
    MethodNotAllowed,
    #[error("The service is not ready: the database is not reachable.")]
    NotReady,
    #[error("An unexpected error occurred. Please try again later.")]
    Internal(String),
}

impl ApiError {
    /// `cause` goes to the log only; it must already be free of secrets.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(cause.to_string())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::InvalidParameter { .. }
            | ApiError::InvalidDateRange { .. }
            | ApiError::MissingHost => StatusCode::BAD_REQUEST,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::NotYetSigned => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "UNAUTHORIZED",
            ApiError::InsufficientScope(_) => "INSUFFICIENT_SCOPE",
            ApiError::InvalidParameter { .. } | ApiError::InvalidDateRange { .. } => {
                "VALIDATION_ERROR"
            }
            ApiError::MissingHost => "BAD_REQUEST",
            ApiError::RateLimited => "RATE_LIMIT_EXCEEDED",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::NotYetSigned => "NOT_YET_SIGNED",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::NotReady => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::InvalidParameter { field, reason } => {
                Some(json!({ "field": field, "reason": reason }))
            }
            ApiError::InvalidDateRange { reason } => Some(json!({ "reason": reason })),
            _ => None,
        }
    }

    /// The body alone, for callers that build the response around it.
    pub fn body(&self) -> Value {
        let mut body = json!({ "code": self.code(), "message": self.to_string() });
        if let Some(details) = self.details() {
            body["details"] = details;
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if matches!(self, ApiError::Unauthorized) {
            // RFC 6750 3: a 401 for a bearer-protected resource names the scheme.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// For `CatchPanicLayer`: a panic still answers with the JSON 500 body.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_spec_examples() {
        assert_eq!(
            ApiError::Unauthorized.body(),
            json!({"code": "UNAUTHORIZED", "message": "A valid Bearer token is required to access this resource."})
        );
        assert_eq!(
            ApiError::InsufficientScope("audit:read").body(),
            json!({"code": "INSUFFICIENT_SCOPE", "message": "The 'audit:read' scope is required to verify the audit chain."})
        );
        assert_eq!(
            ApiError::RateLimited.body(),
            json!({"code": "RATE_LIMIT_EXCEEDED", "message": "Too many requests. Please retry after the rate limit window resets."})
        );
        assert_eq!(
            ApiError::internal("secret cause").body(),
            json!({"code": "INTERNAL_SERVER_ERROR", "message": "An unexpected error occurred. Please try again later."})
        );
        assert_eq!(
            ApiError::InvalidDateRange {
                reason: "fromDate must be before or equal to toDate."
            }
            .body(),
            json!({"code": "VALIDATION_ERROR", "message": "Invalid date range.", "details": {"reason": "fromDate must be before or equal to toDate."}})
        );
    }
}
