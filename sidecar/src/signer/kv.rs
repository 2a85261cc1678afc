//! A signing key read from a Vault KV v2 secret, as the encryption key is (`crate::vault`): read
//! as loose JSON, so that no typed read fails inside serde with the key in its message, and every
//! string of the answer wiped once the key is parsed.

use ed25519_dalek::SigningKey;

use super::vault_client::{classify, client};
use super::{signing_key_from_pem, SignError};
use crate::settings::KvSignerConfig;
use crate::vault::wipe;

/// The key, and where it came from (for messages and `Debug`).
pub(super) async fn read(config: &KvSignerConfig) -> Result<(SigningKey, String), SignError> {
    let path = config.display_path();
    let client = client(&config.vault)?;
    let mut secret: serde_json::Value = vaultrs::kv2::read(&client, &config.mount, &config.path)
        .await
        .map_err(|e| classify(&config.vault.addr, &path, e))?;
    let origin = format!("Vault secret {path} field {}", config.field);
    let key = match secret
        .get(&config.field)
        .and_then(serde_json::Value::as_str)
    {
        Some(pem) => signing_key_from_pem(pem, &origin),
        None => Err(SignError::FieldMissing {
            path,
            field: config.field.clone(),
        }),
    };
    // The secret's text copies are wiped; the key's only copy is then the SigningKey's.
    wipe(&mut secret);
    Ok((key?, origin))
}
