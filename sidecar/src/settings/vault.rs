//! Where the encryption keys come from: Vault KV v2 (address, token, secret path and fields), or
//! the development key file; and the backoff between failed loads.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;

use super::parse::positive;
use super::{invalid, ConfigError};
use crate::backoff::RetryPolicy;

pub const DEFAULT_VAULT_PATH: &str = "secret/data/agentidp/encryption-key";
pub const DEFAULT_VAULT_FIELD: &str = "encryptionKey";
/// Where `docs/encryption-runbook.md` ("Rotating the key", step 1) puts the key being replaced.
pub const DEFAULT_OLD_KEYS_VAULT_FIELD: &str = "previousEncryptionKey";

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "The encryption key")]
pub struct KeySourceSettings {
    /// Vault address; both VAULT_ADDR and VAULT_TOKEN, or neither. VAULT_CACERT and
    /// VAULT_SKIP_VERIFY are honoured as by the Vault CLI.
    #[arg(long, env = "VAULT_ADDR", value_name = "URL")]
    pub vault_addr: Option<String>,

    /// Vault token. A renewable token is renewed.
    #[arg(long, env = "VAULT_TOKEN", value_name = "TOKEN", value_parser = secret)]
    pub vault_token: Option<SecretString>,

    /// KV v2 path: <mount>/data/<path> (<mount>/<path> is accepted too).
    #[arg(long, env = "ENCRYPTION_KEY_VAULT_PATH", value_name = "PATH", default_value = DEFAULT_VAULT_PATH)]
    pub encryption_key_vault_path: String,

    /// Field of the secret holding the 64-hex-character key.
    #[arg(long, env = "ENCRYPTION_KEY_VAULT_FIELD", value_name = "FIELD", default_value = DEFAULT_VAULT_FIELD)]
    pub encryption_key_vault_field: String,

    /// Optional field of the same secret: the keys a rotation is moving away from,
    /// comma-separated. Must differ from ENCRYPTION_KEY_VAULT_FIELD.
    #[arg(long, env = "ENCRYPTION_OLD_KEYS_VAULT_FIELD", value_name = "FIELD", default_value = DEFAULT_OLD_KEYS_VAULT_FIELD)]
    pub encryption_old_keys_vault_field: String,

    /// Development key file (64 hex characters), used only when Vault is not configured.
    #[arg(long, env = "ENCRYPTION_KEY_FILE", value_name = "FILE")]
    pub encryption_key_file: Option<PathBuf>,

    /// First backoff, in milliseconds, between failed key loads (and token renewals); doubles,
    /// each delay stretched by a random part of up to itself, never past VAULT_RETRY_MAX_MS.
    #[arg(long, env = "VAULT_RETRY_INITIAL_MS", value_name = "MS", default_value_t = 1_000, value_parser = positive::<u64>)]
    pub vault_retry_initial_ms: u64,

    /// Cap of that backoff, in milliseconds.
    #[arg(long, env = "VAULT_RETRY_MAX_MS", value_name = "MS", default_value_t = 60_000, value_parser = positive::<u64>)]
    pub vault_retry_max_ms: u64,
}

fn secret(value: &str) -> Result<SecretString, String> {
    Ok(value.into())
}

#[derive(Clone, Debug)]
pub enum KeySourceConfig {
    Vault(VaultConfig),
    File(PathBuf),
    None,
}

#[derive(Clone)]
pub struct VaultConfig {
    pub addr: String,
    pub token: SecretString,
    /// KV v2 mount, e.g. `secret`.
    pub mount: String,
    /// Path of the secret inside the mount, e.g. `agentidp/encryption-key`.
    pub path: String,
    pub field: String,
    /// Optional field of the same secret: the keys of a rotation in progress, comma-separated.
    pub old_keys_field: String,
}

impl VaultConfig {
    /// The API path as operators write it in `ENCRYPTION_KEY_VAULT_PATH`.
    pub fn display_path(&self) -> String {
        format!("{}/data/{}", self.mount, self.path)
    }
}

// The token is a SecretString already; this keeps the log-friendly one-line form.
impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("addr", &self.addr)
            .field("token", &self.token)
            .field("path", &self.display_path())
            .field("field", &self.field)
            .field("old_keys_field", &self.old_keys_field)
            .finish()
    }
}

impl KeySourceSettings {
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(self.vault_retry_initial_ms),
            max: Duration::from_millis(self.vault_retry_max_ms),
        }
    }

    pub(super) fn resolve(&self, production: bool) -> Result<KeySourceConfig, ConfigError> {
        match (&self.vault_addr, &self.vault_token) {
            (Some(addr), Some(token)) => {
                let url = url::Url::parse(addr).map_err(|e| {
                    invalid(
                        "VAULT_ADDR",
                        format!("expected a URL such as https://vault:8200, got {addr:?}: {e}"),
                    )
                })?;
                match url.scheme() {
                    "https" => {}
                    "http" if !production => {}
                    "http" => {
                        return Err(invalid(
                            "VAULT_ADDR",
                            "production mode requires an https:// address, because the Vault token is sent with every request",
                        ))
                    }
                    other => {
                        return Err(invalid(
                            "VAULT_ADDR",
                            format!("expected an http:// or https:// URL, got scheme {other:?}"),
                        ))
                    }
                }
                let (mount, path) = split_kv2_path(&self.encryption_key_vault_path)?;
                let field = &self.encryption_key_vault_field;
                let old_keys_field = &self.encryption_old_keys_vault_field;
                // One field for both would make the current key its own old key: never a
                // rotation.
                if old_keys_field == field {
                    return Err(invalid(
                        "ENCRYPTION_OLD_KEYS_VAULT_FIELD",
                        format!("must differ from ENCRYPTION_KEY_VAULT_FIELD ({field:?})"),
                    ));
                }
                Ok(KeySourceConfig::Vault(VaultConfig {
                    addr: addr.clone(),
                    token: token.clone(),
                    mount,
                    path,
                    field: field.clone(),
                    old_keys_field: old_keys_field.clone(),
                }))
            }
            (Some(_), None) => Err(invalid("VAULT_TOKEN", "required when VAULT_ADDR is set")),
            (None, Some(_)) => Err(invalid("VAULT_ADDR", "required when VAULT_TOKEN is set")),
            (None, None) => match &self.encryption_key_file {
                Some(path) => Ok(KeySourceConfig::File(path.clone())),
                None if production => Err(invalid(
                    "VAULT_ADDR",
                    "production mode requires an encryption key source: set VAULT_ADDR and VAULT_TOKEN (or ENCRYPTION_KEY_FILE)",
                )),
                None => Ok(KeySourceConfig::None),
            },
        }
    }
}

/// Splits `mount/data/path` (the KV v2 API path) into mount and secret path. `mount/path`
/// (the form `vault kv get` takes) is accepted too. Errors name `var`, with `example`.
pub(super) fn split_kv2_path_of(
    var: &'static str,
    example: &str,
    raw: &str,
) -> Result<(String, String), ConfigError> {
    let trimmed = raw.trim_matches('/');
    let bad = || {
        invalid(
            var,
            format!("expected a KV v2 path such as {example:?}, got {raw:?}"),
        )
    };
    let (mount, rest) = trimmed.split_once('/').ok_or_else(bad)?;
    let path = rest.strip_prefix("data/").unwrap_or(rest);
    // `mount/data` alone names the data endpoint, not a secret.
    if mount.is_empty() || rest == "data" || path.split('/').any(str::is_empty) {
        return Err(bad());
    }
    Ok((mount.to_owned(), path.to_owned()))
}

fn split_kv2_path(raw: &str) -> Result<(String, String), ConfigError> {
    split_kv2_path_of("ENCRYPTION_KEY_VAULT_PATH", DEFAULT_VAULT_PATH, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv2_paths() {
        assert_eq!(
            split_kv2_path("kv/data/a/b").unwrap(),
            ("kv".into(), "a/b".into())
        );
        assert_eq!(split_kv2_path("kv/a").unwrap(), ("kv".into(), "a".into()));
        assert_eq!(
            split_kv2_path("/kv/data/a/").unwrap(),
            ("kv".into(), "a".into())
        );
        assert!(split_kv2_path("kv").is_err());
        assert!(split_kv2_path("kv/data/").is_err());
        assert!(split_kv2_path("kv//a").is_err());
    }
}
