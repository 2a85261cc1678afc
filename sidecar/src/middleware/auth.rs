//! Bearer JWT authentication and scope checks, as a request layer; the verification itself is
//! in `jwt.rs`.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
pub use crate::jwt::{AuthenticatedClient, JwtVerifier};
use crate::state::AppState;

pub const AUDIT_READ: &str = "audit:read";

pub async fn require_audit_read(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = state.jwt.authenticate(request.headers(), AUDIT_READ)?;
    request.extensions_mut().insert(client);
    Ok(next.run(request).await)
}
