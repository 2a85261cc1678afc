//! Vault's transit engine as the signature source: the private key never leaves Vault.
//!
//! The public key is read from `GET <mount>/keys/<key>` (its latest version; the key must be of
//! type `ed25519` and not derived) when the signer is built. Each signature is asked of
//! `POST <mount>/sign/<key>` with the note text, base64-encoded, as `input` and nothing else:
//! no `hash_algorithm`, no `prehashed` (vaultrs sends only the fields that are set), so Vault
//! signs the raw text with pure Ed25519, which is what a signed note needs. Vault answers
//! `vault:v<N>:<base64 signature>`; `N` must be the version of the public key held. When it is
//! not, the key was rotated in Vault: the public key is read again and the text signed again,
//! once.

use std::sync::{Arc, PoisonError, RwLock};

use agentidp_core::checkpoint;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use vaultrs::api::transit::responses::{ReadKeyData, ReadKeyResponse};
use vaultrs::api::transit::KeyType;
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;

use super::vault_client::{classify, client};
use super::SignError;
use crate::settings::TransitSignerConfig;

/// The public half of one version of the transit key.
#[derive(Debug)]
pub(super) struct PublicKey {
    pub(super) version: u64,
    pub(super) key: VerifyingKey,
    pub(super) verifier_key: String,
}

pub(super) struct TransitSource {
    vault: TransitKey,
    /// Replaced when Vault signs with a newer version than this one.
    current: RwLock<Arc<PublicKey>>,
}

/// The transit key as Vault's API reaches it.
struct TransitKey {
    client: VaultClient,
    addr: String,
    mount: String,
    key: String,
    log_name: String,
}

impl TransitSource {
    pub(super) async fn connect(
        log_name: &str,
        config: &TransitSignerConfig,
    ) -> Result<TransitSource, SignError> {
        let vault = TransitKey {
            client: client(&config.vault)?,
            addr: config.vault.addr.clone(),
            mount: config.mount.clone(),
            key: config.key.clone(),
            log_name: log_name.to_owned(),
        };
        let loaded = vault.load().await?;
        Ok(TransitSource {
            vault,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    pub(super) fn current(&self) -> Arc<PublicKey> {
        // A panic elsewhere while holding the lock cannot leave a half-written Arc behind.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "Vault transit key {} at {}",
            self.vault.keys_path(),
            self.vault.addr
        )
    }

    /// A raw signature over `text`, with the public key it was made with.
    pub(super) async fn sign(&self, text: &[u8]) -> Result<(Arc<PublicKey>, Vec<u8>), SignError> {
        let held = self.current();
        let (version, signature) = self.vault.request(text).await?;
        if version == held.version {
            return Ok((held, signature));
        }
        let reloaded = Arc::new(self.vault.load().await?);
        tracing::warn!(
            key = %self.vault.keys_path(),
            old_version = held.version,
            new_version = reloaded.version,
            signed_with = version,
            verifier_key = %reloaded.verifier_key,
            "Vault signed a checkpoint with another version of the transit key than the one loaded: the key was rotated; reloaded its public key, publish the new verifier key"
        );
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = reloaded.clone();
        let (version, signature) = self.vault.request(text).await?;
        if version != reloaded.version {
            return Err(SignError::KeyVersionMismatch {
                path: self.vault.keys_path(),
                loaded: reloaded.version,
                signed: version,
            });
        }
        Ok((reloaded, signature))
    }
}

impl TransitKey {
    fn keys_path(&self) -> String {
        format!("{}/keys/{}", self.mount, self.key)
    }

    fn sign_path(&self) -> String {
        format!("{}/sign/{}", self.mount, self.key)
    }

    /// The latest version of the key's public half.
    async fn load(&self) -> Result<PublicKey, SignError> {
        let path = self.keys_path();
        let answer = vaultrs::transit::key::read(&self.client, &self.mount, &self.key)
            .await
            .map_err(|e| self.classify_read(&path, e))?;
        public_key_of(&answer, &path, &self.log_name)
    }

    /// vaultrs knows only some of Vault's key types: the answer for another (`hmac`, say) does
    /// not parse, and is named by its type. A key description holds no private key, so reading
    /// its `type` is safe.
    fn classify_read(&self, path: &str, error: ClientError) -> SignError {
        if let ClientError::RestClientError {
            source:
                rustify::errors::ClientError::ResponseParseError {
                    content: Some(content),
                    ..
                },
        } = &error
        {
            let described: Option<serde_json::Value> = serde_json::from_str(content).ok();
            let key_type = described
                .as_ref()
                .and_then(|d| d.pointer("/data/type"))
                .and_then(serde_json::Value::as_str);
            if let Some(found) = key_type.filter(|t| *t != "ed25519") {
                return SignError::WrongKeyType {
                    path: path.to_owned(),
                    found: found.to_owned(),
                };
            }
        }
        classify(&self.addr, path, error)
    }

    /// One signature over `text` and the key version Vault made it with.
    async fn request(&self, text: &[u8]) -> Result<(u64, Vec<u8>), SignError> {
        let path = self.sign_path();
        let input = STANDARD.encode(text);
        let answer =
            vaultrs::transit::data::sign(&self.client, &self.mount, &self.key, &input, None)
                .await
                .map_err(|e| classify(&self.addr, &path, e))?;
        parse_signature(&answer.signature).map_err(|reason| SignError::MalformedSignature {
            source_name: format!("Vault {path}"),
            reason,
        })
    }
}

fn public_key_of(
    answer: &ReadKeyResponse,
    path: &str,
    log_name: &str,
) -> Result<PublicKey, SignError> {
    if !matches!(answer.key_type, KeyType::Ed25519) {
        return Err(SignError::WrongKeyType {
            path: path.to_owned(),
            found: type_name(answer.key_type),
        });
    }
    // A derived key signs with a key derived from a per-request context: its signatures do not
    // verify with the key's listed public key.
    if answer.derived {
        return Err(SignError::DerivedKey {
            path: path.to_owned(),
        });
    }
    let malformed = |reason: &str| SignError::MalformedResponse {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let ReadKeyData::Asymmetric(versions) = &answer.keys else {
        return Err(malformed("no public keys"));
    };
    let (version, entry) = versions
        .iter()
        .filter_map(|(version, entry)| Some((version.parse::<u64>().ok()?, entry)))
        .max_by_key(|(version, _)| *version)
        .ok_or_else(|| malformed("no key versions"))?;
    let bytes: [u8; 32] = STANDARD
        .decode(&entry.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("the public key is not 32 bytes of base64"))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| malformed("the public key is not an Ed25519 point"))?;
    let verifier_key = checkpoint::verifier_key(log_name, &key)
        .map_err(|_| SignError::InvalidLogName(log_name.to_owned()))?;
    Ok(PublicKey {
        version,
        key,
        verifier_key,
    })
}

/// As Vault spells it (`ecdsa-p256`), not as Rust does.
fn type_name(key_type: KeyType) -> String {
    match serde_json::to_value(key_type) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{key_type:?}"),
    }
}

/// `vault:v<N>:<base64>` into `N` and the signature's bytes.
fn parse_signature(text: &str) -> Result<(u64, Vec<u8>), String> {
    let bad = || "expected vault:v<version>:<base64 signature>".to_owned();
    let rest = text.strip_prefix("vault:v").ok_or_else(bad)?;
    let (version, signature) = rest.split_once(':').ok_or_else(bad)?;
    let version: u64 = version.parse().map_err(|_| bad())?;
    let signature = STANDARD
        .decode(signature)
        .map_err(|_| "the signature is not base64".to_owned())?;
    Ok((version, signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_parse_as_vault_writes_them() {
        assert_eq!(
            parse_signature("vault:v12:AAEC").unwrap(),
            (12, vec![0, 1, 2])
        );
        for bad in [
            "",
            "AAEC",
            "vault:AAEC",
            "vault:v:AAEC",
            "vault:vx:AAEC",
            "vault:v1",
            "vault:v1:not base64!",
        ] {
            assert!(parse_signature(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_types_are_named_as_vault_names_them() {
        assert_eq!(type_name(KeyType::EcdsaP256), "ecdsa-p256");
        assert_eq!(type_name(KeyType::Rsa2048), "rsa-2048");
        assert_eq!(type_name(KeyType::Aes256Gcm96), "aes256-gcm96");
    }
}
