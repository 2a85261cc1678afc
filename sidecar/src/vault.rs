//! Reads the encryption key from a Vault KV v2 secret.
//!
//! vaultrs' own errors can carry the response body (and so the key) in their source chain, so
//! they are classified here and never formatted.

use std::time::Duration;

use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::config::VaultConfig;
use crate::key::{EncryptionKey, KeyLoadError};

/// A slow Vault must not stall the refresh loop's backoff forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct VaultKeySource {
    client: VaultClient,
    config: VaultConfig,
}

impl VaultKeySource {
    pub fn new(config: VaultConfig) -> Result<VaultKeySource, KeyLoadError> {
        // reqwest is built without a bundled TLS crypto provider (that would be aws-lc and its C
        // build); ring becomes the process-wide one. Installing it twice fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The address was validated as a URL in config, so the builder's panicking setter is safe;
        // its other defaults honour VAULT_CACERT and VAULT_SKIP_VERIFY like the Vault CLI.
        let settings = VaultClientSettingsBuilder::default()
            .address(&config.addr)
            .token(config.token.clone())
            .timeout(Some(REQUEST_TIMEOUT))
            .build()
            .map_err(|e| KeyLoadError::VaultUnreachable {
                addr: config.addr.clone(),
                reason: format!("invalid client settings: {e}"),
            })?;
        let client = VaultClient::new(settings).map_err(|e| KeyLoadError::VaultUnreachable {
            addr: config.addr.clone(),
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(VaultKeySource { client, config })
    }

    pub async fn fetch(&self) -> Result<EncryptionKey, KeyLoadError> {
        let path = self.config.display_path();
        // Read as loose JSON: a typed read would fail inside serde with the value in its message.
        let secret: serde_json::Value =
            vaultrs::kv2::read(&self.client, &self.config.mount, &self.config.path)
                .await
                .map_err(|e| self.classify(e))?;
        let text = secret
            .get(&self.config.field)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| KeyLoadError::FieldMissing {
                path: path.clone(),
                field: self.config.field.clone(),
            })?;
        EncryptionKey::from_hex(
            text,
            &format!("Vault secret {path} field {}", self.config.field),
        )
    }

    fn classify(&self, error: ClientError) -> KeyLoadError {
        let path = self.config.display_path();
        match error {
            ClientError::APIError { code: 404, .. } => KeyLoadError::SecretNotFound { path },
            ClientError::APIError { code: 403, .. } => KeyLoadError::PermissionDenied { path },
            ClientError::APIError { code, .. } if code == 429 || code >= 500 => {
                KeyLoadError::VaultUnavailable { path, status: code }
            }
            ClientError::APIError { code, .. } => {
                KeyLoadError::VaultRejected { path, status: code }
            }
            ClientError::RestClientError { source } => match source {
                // Transport failures: the source is reqwest's, which names the URL, not the token.
                rustify::errors::ClientError::RequestError { source, .. }
                | rustify::errors::ClientError::ResponseError { source } => {
                    KeyLoadError::VaultUnreachable {
                        addr: self.config.addr.clone(),
                        reason: format!("{source:#}"),
                    }
                }
                rustify::errors::ClientError::ServerResponseError { code, .. } if code >= 500 => {
                    KeyLoadError::VaultUnavailable { path, status: code }
                }
                _ => KeyLoadError::MalformedResponse { path },
            },
            _ => KeyLoadError::MalformedResponse { path },
        }
    }
}
