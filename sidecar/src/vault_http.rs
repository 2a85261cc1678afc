//! The Vault HTTP client every Vault user here builds the same way (address, token, timeout, TLS
//! provider), and what a vaultrs error means, for each user to name in its own error type.
//!
//! vaultrs' errors can carry the response body (a secret) in their source chain: they are
//! classified here and never formatted.

use std::time::Duration;

use secrecy::ExposeSecret;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::settings::VaultConfig;

/// A slow Vault must not stall a refresh's backoff or a sealing run forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no client could be built: the reason names no secret.
#[derive(Debug)]
pub struct SetupFailure {
    pub reason: String,
}

pub fn client(config: &VaultConfig) -> Result<VaultClient, SetupFailure> {
    // The settings checked the address; a hand-built config is checked here, because the
    // builder's setter panics on a malformed URL.
    if let Err(e) = url::Url::parse(&config.addr) {
        return Err(SetupFailure {
            reason: format!("not a URL: {e}"),
        });
    }
    // reqwest is built without a bundled TLS crypto provider (that would be aws-lc and its C
    // build); ring becomes the process-wide one. Installing it twice fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The builder's other defaults honour VAULT_CACERT and VAULT_SKIP_VERIFY like the Vault CLI.
    let settings = VaultClientSettingsBuilder::default()
        .address(&config.addr)
        .token(config.token.expose_secret())
        .timeout(Some(REQUEST_TIMEOUT))
        .build()
        .map_err(|e| SetupFailure {
            reason: format!("invalid client settings: {e}"),
        })?;
    VaultClient::new(settings).map_err(|e| SetupFailure {
        reason: format!("cannot build the HTTP client: {e}"),
    })
}

/// What a failed Vault request means to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    PermissionDenied,
    /// 503 (sealed, or a standby without forwarding), 429 (rate limit), other 5xx: worth a retry.
    Unavailable(u16),
    /// Another refusal: a retry gets the same answer.
    Rejected(u16),
    /// No answer: the reason is reqwest's, which names the URL, not the token.
    Unreachable(String),
    /// An answer that is not Vault's API.
    Malformed,
}

pub fn classify(error: ClientError) -> Failure {
    match error {
        ClientError::APIError { code: 404, .. } => Failure::NotFound,
        ClientError::APIError { code: 403, .. } => Failure::PermissionDenied,
        ClientError::APIError { code, .. } if code == 429 || code >= 500 => {
            Failure::Unavailable(code)
        }
        ClientError::APIError { code, .. } => Failure::Rejected(code),
        ClientError::RestClientError { source } => match source {
            rustify::errors::ClientError::RequestError { source, .. }
            | rustify::errors::ClientError::ResponseError { source } => {
                Failure::Unreachable(format!("{source:#}"))
            }
            rustify::errors::ClientError::ServerResponseError { code, .. }
                if code == 429 || code >= 500 =>
            {
                Failure::Unavailable(code)
            }
            rustify::errors::ClientError::ServerResponseError { code, .. } => {
                Failure::Rejected(code)
            }
            _ => Failure::Malformed,
        },
        _ => Failure::Malformed,
    }
}
