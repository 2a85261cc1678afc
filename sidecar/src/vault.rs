//! Reads the encryption keys from a Vault KV v2 secret.
//!
//! vaultrs' own errors can carry the response body (and so a key) in their source chain, so they
//! are classified here and never formatted.

use std::time::Duration;

use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::config::VaultConfig;
use crate::key::{EncryptionKey, KeyLoadError, SessionKeys};

/// A slow Vault must not stall the refresh loop's backoff forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn client(config: &VaultConfig) -> Result<VaultClient, KeyLoadError> {
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
    VaultClient::new(settings).map_err(|e| KeyLoadError::VaultUnreachable {
        addr: config.addr.clone(),
        reason: format!("cannot build the HTTP client: {e}"),
    })
}

/// `path` is what the request was for, as the error message names it.
fn classify(addr: &str, path: &str, error: ClientError) -> KeyLoadError {
    let path = path.to_owned();
    match error {
        ClientError::APIError { code: 404, .. } => KeyLoadError::SecretNotFound { path },
        ClientError::APIError { code: 403, .. } => KeyLoadError::PermissionDenied { path },
        ClientError::APIError { code, .. } if code == 429 || code >= 500 => {
            KeyLoadError::VaultUnavailable { path, status: code }
        }
        ClientError::APIError { code, .. } => KeyLoadError::VaultRejected { path, status: code },
        ClientError::RestClientError { source } => match source {
            // Transport failures: the source is reqwest's, which names the URL, not the token.
            rustify::errors::ClientError::RequestError { source, .. }
            | rustify::errors::ClientError::ResponseError { source } => {
                KeyLoadError::VaultUnreachable {
                    addr: addr.to_owned(),
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

pub struct VaultKeySource {
    client: VaultClient,
    config: VaultConfig,
}

impl VaultKeySource {
    pub fn new(config: VaultConfig) -> Result<VaultKeySource, KeyLoadError> {
        Ok(VaultKeySource {
            client: client(&config)?,
            config,
        })
    }

    /// The current key, and the old keys of a rotation in progress when the secret has the
    /// old-keys field. A bad old key fails the whole read, like a bad current key: sessions
    /// without it could not read what it encrypted.
    pub async fn fetch(&self) -> Result<SessionKeys, KeyLoadError> {
        let path = self.config.display_path();
        // Read as loose JSON: a typed read would fail inside serde with the value in its message.
        let secret: serde_json::Value =
            vaultrs::kv2::read(&self.client, &self.config.mount, &self.config.path)
                .await
                .map_err(|e| classify(&self.config.addr, &path, e))?;
        let field = &self.config.field;
        let text = secret
            .get(field)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| KeyLoadError::FieldMissing {
                path: path.clone(),
                field: field.clone(),
            })?;
        let key = EncryptionKey::from_hex(text, &format!("Vault secret {path} field {field}"))?;

        let old_field = &self.config.old_keys_field;
        let old_origin = format!("Vault secret {path} field {old_field}");
        let old_keys = match secret.get(old_field) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(list)) => {
                EncryptionKey::list_from_hex(list, &old_origin)?
            }
            Some(_) => {
                return Err(KeyLoadError::InvalidKey {
                    origin: old_origin,
                    reason: "not a string".to_owned(),
                })
            }
        };
        Ok(SessionKeys { key, old_keys })
    }
}
