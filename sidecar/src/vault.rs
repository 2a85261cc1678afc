//! Reads the encryption keys from a Vault KV v2 secret, and keeps the sidecar's Vault token alive.
//!
//! vaultrs' own errors can carry the response body (and so a key or the token) in their source
//! chain, so they are classified here and never formatted.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::zeroize::Zeroize;
use tokio_util::sync::CancellationToken;
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;

use crate::backoff::RetryPolicy;
use crate::key_source::{
    EncryptionKey, FetchFuture, KeyLoadError, KeyOrigin, KeyProvider, SessionKeys,
};
use crate::metrics::Metrics;
use crate::settings::VaultConfig;
use crate::vault_http::{self, Failure};

const LOOKUP_SELF: &str = "auth/token/lookup-self";
const RENEW_SELF: &str = "auth/token/renew-self";

fn client(config: &VaultConfig) -> Result<VaultClient, KeyLoadError> {
    vault_http::client(config).map_err(|f| KeyLoadError::VaultUnreachable {
        addr: config.addr.clone(),
        reason: f.reason,
    })
}

/// `path` is what the request was for, as the error message names it.
fn classify(addr: &str, path: &str, error: ClientError) -> KeyLoadError {
    let path = path.to_owned();
    match vault_http::classify(error) {
        Failure::NotFound => KeyLoadError::SecretNotFound { path },
        Failure::PermissionDenied => KeyLoadError::PermissionDenied { path },
        Failure::Unavailable(status) => KeyLoadError::VaultUnavailable { path, status },
        Failure::Rejected(status) => KeyLoadError::VaultRejected { path, status },
        Failure::Unreachable(reason) => KeyLoadError::VaultUnreachable {
            addr: addr.to_owned(),
            reason,
        },
        Failure::Malformed => KeyLoadError::MalformedResponse { path },
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
    async fn read(&self) -> Result<SessionKeys, KeyLoadError> {
        let path = self.config.display_path();
        // Read as loose JSON: a typed read would fail inside serde with the value in its message.
        let mut secret: serde_json::Value =
            vaultrs::kv2::read(&self.client, &self.config.mount, &self.config.path)
                .await
                .map_err(|e| classify(&self.config.addr, &path, e))?;
        let keys = self.keys_of(&secret, &path);
        // The secret's text copies are wiped; the keys' only copies are the EncryptionKeys'.
        wipe(&mut secret);
        keys
    }

    fn keys_of(&self, secret: &serde_json::Value, path: &str) -> Result<SessionKeys, KeyLoadError> {
        let field = &self.config.field;
        let text = secret
            .get(field)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| KeyLoadError::FieldMissing {
                path: path.to_owned(),
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

/// Overwrites every string in a JSON value with zeros before it is dropped.
pub(crate) fn wipe(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => text.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(wipe),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(wipe),
        _ => {}
    }
}

impl KeyProvider for VaultKeySource {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.read())
    }

    fn origin(&self) -> KeyOrigin {
        KeyOrigin::Vault
    }
}

/// What Vault says about the token's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    /// No TTL (a root token, or one created with `-ttl=0` under a policy allowing it).
    Unlimited,
    /// Expires after `ttl`, and cannot be renewed.
    Fixed { ttl: Duration },
    /// Expires after `ttl` unless renewed.
    Renewable { ttl: Duration },
}

impl Lease {
    fn new(ttl_seconds: u64, renewable: bool) -> Lease {
        let ttl = Duration::from_secs(ttl_seconds);
        match (ttl_seconds, renewable) {
            (0, _) => Lease::Unlimited,
            (_, false) => Lease::Fixed { ttl },
            (_, true) => Lease::Renewable { ttl },
        }
    }
}

/// The shortest wait between renewals, so a token down to its last seconds is not renewed in a
/// tight loop.
const MIN_RENEW_INTERVAL: Duration = Duration::from_secs(1);

/// Renews the sidecar's Vault token (`VAULT_TOKEN`) before its TTL runs out, so a renewable token
/// keeps working for as long as the process runs (up to the token's maximum TTL). Renewal
/// happens when half the TTL Vault last reported is left, which leaves the other half for
/// retries when Vault is down. Failures are logged (never with the token) and retried with the
/// key loads' backoff; the service goes on meanwhile.
pub struct TokenRenewer {
    client: VaultClient,
    addr: String,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
}

impl TokenRenewer {
    pub fn new(
        config: &VaultConfig,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Result<TokenRenewer, KeyLoadError> {
        Ok(TokenRenewer {
            client: client(config)?,
            addr: config.addr.clone(),
            retry,
            metrics,
        })
    }

    fn record(&self, ttl: Duration, renewal_extends: bool) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.metrics
            .record_vault_token((now + ttl).as_secs_f64(), renewal_extends);
    }

    /// The typed answers hold the token (`id`, `client_token`), so only the lease is kept.
    async fn lookup(&self) -> Result<Lease, KeyLoadError> {
        let info = vaultrs::token::lookup_self(&self.client)
            .await
            .map_err(|e| classify(&self.addr, LOOKUP_SELF, e))?;
        Ok(Lease::new(info.ttl, info.renewable.unwrap_or(false)))
    }

    async fn renew(&self) -> Result<Lease, KeyLoadError> {
        let auth = vaultrs::token::renew_self(&self.client, None)
            .await
            .map_err(|e| classify(&self.addr, RENEW_SELF, e))?;
        Ok(Lease::new(auth.lease_duration, auth.renewable))
    }

    /// Runs until cancelled, or until the token turns out not to need (or allow) renewal.
    pub async fn run(self, cancel: CancellationToken) {
        let mut renewing = false;
        let mut failures: u32 = 0;
        let mut last_ttl: Option<Duration> = None;
        loop {
            let (step, result) = if renewing {
                ("renew", self.renew().await)
            } else {
                ("look up", self.lookup().await)
            };
            let wait = match result {
                Ok(Lease::Unlimited) => {
                    tracing::info!("the Vault token has no TTL: nothing to renew");
                    return;
                }
                Ok(Lease::Fixed { ttl }) => {
                    self.record(ttl, false);
                    tracing::warn!(
                        ttl_s = ttl.as_secs(),
                        "the Vault token is not renewable: key loads will fail with HTTP 403 once its TTL ends; issue a new VAULT_TOKEN and restart before then"
                    );
                    return;
                }
                Ok(Lease::Renewable { ttl }) => {
                    failures = 0;
                    // Vault caps a renewal at the token's maximum TTL, so a shrinking TTL means
                    // renewal no longer helps.
                    let capped = renewing && last_ttl.is_some_and(|last| ttl < last);
                    self.record(ttl, !capped);
                    if renewing {
                        if capped {
                            tracing::warn!(
                                ttl_s = ttl.as_secs(),
                                "the Vault token is near its maximum TTL and renewal no longer extends it: issue a new VAULT_TOKEN and restart before it ends"
                            );
                        } else {
                            tracing::info!(ttl_s = ttl.as_secs(), "Vault token renewed");
                        }
                    } else {
                        tracing::info!(
                            ttl_s = ttl.as_secs(),
                            "the Vault token is renewable; renewing it when half its TTL is left"
                        );
                    }
                    renewing = true;
                    last_ttl = Some(ttl);
                    (ttl / 2).max(MIN_RENEW_INTERVAL)
                }
                Err(e) => {
                    let delay = self.retry.delay(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = delay.as_millis(),
                        "cannot {step} the Vault token (an expired or revoked token is refused with HTTP 403: then issue a new VAULT_TOKEN and restart)"
                    );
                    delay
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_empties_every_string() {
        let mut secret = serde_json::json!({
            "encryptionKey": "ab".repeat(32),
            "previousEncryptionKey": ["cd".repeat(32)],
            "nested": {"x": "y", "n": 1},
        });
        wipe(&mut secret);
        assert_eq!(
            secret,
            serde_json::json!({
                "encryptionKey": "",
                "previousEncryptionKey": [""],
                "nested": {"x": "", "n": 1},
            })
        );
    }
}
