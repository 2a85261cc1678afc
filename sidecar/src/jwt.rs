//! Bearer JWT verification: the signature with the configured HS256 secret or RS256 public key,
//! `exp` and `nbf` (with a small leeway for clock skew), `iss` / `aud` when configured, and the
//! scopes. Tokens are issued elsewhere (`POST /token` of the platform). The middleware that
//! applies it to requests is `middleware/auth.rs`.

use std::collections::HashSet;

use axum::http::{header, HeaderMap};
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use crate::error::ApiError;
use crate::settings::JwtConfig;

/// Who made the request, for the per-client rate limit.
#[derive(Clone, Debug)]
pub struct AuthenticatedClient {
    pub client_id: String,
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Text(String),
    List(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    client_id: Option<String>,
    sub: Option<String>,
    /// OAuth 2.0 (RFC 8693 4.2) uses a space-separated string; some issuers emit an array.
    scope: Option<ScopeClaim>,
    scopes: Option<Vec<String>>,
}

impl Claims {
    fn scopes(&self) -> HashSet<&str> {
        let mut set = HashSet::new();
        match &self.scope {
            Some(ScopeClaim::Text(s)) => set.extend(s.split_ascii_whitespace()),
            Some(ScopeClaim::List(l)) => set.extend(l.iter().map(String::as_str)),
            None => {}
        }
        set.extend(self.scopes.iter().flatten().map(String::as_str));
        set
    }
}

impl JwtVerifier {
    /// The RS256 key was parsed (and refused if malformed) when the settings were read.
    pub fn new(config: &JwtConfig) -> JwtVerifier {
        let key = config.key.decoding_key();
        // One algorithm only: accepting several invites the HS256-with-a-public-key confusion.
        let mut validation = Validation::new(config.key.algorithm());
        validation.leeway = config.leeway_seconds;
        validation.validate_nbf = true;
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        JwtVerifier { key, validation }
    }

    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        required_scope: &'static str,
    ) -> Result<AuthenticatedClient, ApiError> {
        let token = bearer_token(headers).ok_or(ApiError::Unauthorized)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| {
                tracing::debug!(reason = %e, "rejected bearer token");
                ApiError::Unauthorized
            })?
            .claims;
        // A token that names no client cannot be rate limited per client, so it is not accepted.
        let client_id = claims
            .client_id
            .clone()
            .or_else(|| claims.sub.clone())
            .filter(|id| !id.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        if !claims.scopes().contains(required_scope) {
            return Err(ApiError::InsufficientScope(required_scope));
        }
        Ok(AuthenticatedClient { client_id })
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
