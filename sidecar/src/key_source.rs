//! What a key source delivers (the validated keys, or why there are none) and the trait every
//! source implements: Vault KV v2 (in `vault.rs`) and the development key file (in `key.rs`).
//! The bottom of the key modules: it imports neither of them.
//!
//! The key's value is held in a [`SecretString`], wiped from memory when the last clone of the
//! key is dropped, and leaves this module only through [`EncryptionKey::expose_hex`], whose one
//! caller puts it into the database sessions' startup options. Nothing here formats it: `Debug`
//! is redacted and no error carries it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use agentidp_core::crypto::{CryptoError, KeyId};
use secrecy::{ExposeSecret, SecretString};

/// A validated AES-256 key, held as 64 lowercase hex characters (the form the extension's
/// `agentidp.encryption_key` setting takes), with the key id the extension derives from it.
///
/// Clones share one copy of the text (the key state, the pool and the refresher each hold one),
/// so there is one place to wipe.
#[derive(Clone)]
pub struct EncryptionKey {
    hex: Arc<SecretString>,
    id: KeyId,
}

impl EncryptionKey {
    /// `origin` names where the text came from, for the error message. The format rule is the
    /// core crate's, so the sidecar never accepts a key the extension would refuse.
    pub fn from_hex(text: &str, origin: &str) -> Result<EncryptionKey, KeyLoadError> {
        // Key files end with a newline, and a value pasted into Vault's UI often carries spaces.
        let text = text.trim();
        match agentidp_core::crypto::EncryptionKey::from_hex(text) {
            Ok(parsed) => Ok(EncryptionKey {
                hex: Arc::new(SecretString::from(text.to_ascii_lowercase())),
                id: parsed.id(),
            }),
            Err(e) => Err(KeyLoadError::InvalidKey {
                origin: origin.to_owned(),
                reason: match e {
                    CryptoError::InvalidKey(reason) => reason.to_string(),
                    other => other.to_string(),
                },
            }),
        }
    }

    /// A comma-separated list, the form of the extension's `agentidp.encryption_old_keys`, split
    /// by the core crate's rule, so the sidecar reads a list as the extension does; `origin` and
    /// the entry's 1-based position name a bad entry.
    pub fn list_from_hex(text: &str, origin: &str) -> Result<Vec<EncryptionKey>, KeyLoadError> {
        agentidp_core::crypto::key_list::entries(text)
            .map(|(position, entry)| {
                EncryptionKey::from_hex(entry, &format!("{origin} entry {position}"))
            })
            .collect()
    }

    /// The plaintext, for the database sessions' startup options only.
    pub fn expose_hex(&self) -> &str {
        self.hex.expose_secret()
    }

    /// Public by design (it is stamped on every v2 ciphertext), so logs and control details can
    /// name the key in use.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

impl PartialEq for EncryptionKey {
    fn eq(&self, other: &EncryptionKey) -> bool {
        self.id == other.id && self.expose_hex() == other.expose_hex()
    }
}

impl Eq for EncryptionKey {}

/// What every database session is given: the key that encrypts and decrypts
/// (`agentidp.encryption_key`), and, during a rotation, the keys that only decrypt values not yet
/// rewritten (`agentidp.encryption_old_keys`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKeys {
    pub key: EncryptionKey,
    pub old_keys: Vec<EncryptionKey>,
}

impl SessionKeys {
    /// The old keys' public ids, comma-separated, for logs.
    pub fn old_key_ids(&self) -> String {
        let ids: Vec<String> = self.old_keys.iter().map(|k| k.id().to_string()).collect();
        ids.join(",")
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey(id {}, <redacted>)", self.id)
    }
}

/// Why a key could not be loaded. No variant holds the key or the Vault token.
#[derive(Debug, thiserror::Error)]
pub enum KeyLoadError {
    #[error("Vault is unreachable at {addr}: {reason}")]
    VaultUnreachable { addr: String, reason: String },
    #[error("Vault answered HTTP {status} for {path}: it may be sealed or overloaded")]
    VaultUnavailable { path: String, status: u16 },
    #[error("Vault secret {path} was not found (HTTP 404)")]
    SecretNotFound { path: String },
    #[error(
        "Vault denied access to {path} (HTTP 403 permission denied): check the token's policy"
    )]
    PermissionDenied { path: String },
    #[error("Vault rejected the request for {path} with HTTP {status}")]
    VaultRejected { path: String, status: u16 },
    #[error("Vault secret {path} has no string field {field:?}")]
    FieldMissing { path: String, field: String },
    #[error("Vault's answer for {path} is not a KV v2 secret")]
    MalformedResponse { path: String },
    #[error("cannot read the key file {path}: {reason}")]
    FileUnreadable { path: String, reason: String },
    #[error("Invalid encryption key in {origin} ({reason}): expected a 64-character hex string")]
    InvalidKey { origin: String, reason: String },
}

impl KeyLoadError {
    /// Transient failures say nothing about the key itself, so CC6.1 becomes `unknown` rather
    /// than `failing`.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KeyLoadError::VaultUnreachable { .. } | KeyLoadError::VaultUnavailable { .. }
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    Vault,
    File,
}

impl KeyOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOrigin::Vault => "vault",
            KeyOrigin::File => "file",
        }
    }
}

/// The answer of one [`KeyProvider::fetch`]: boxed, so providers can sit behind `dyn`.
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SessionKeys, KeyLoadError>> + Send + 'a>>;

/// Somewhere the keys can be read from, again and again (every refresh re-reads them).
pub trait KeyProvider: Send + Sync {
    /// The current key, and the old keys of a rotation in progress. A failure holds no key.
    fn fetch(&self) -> FetchFuture<'_>;

    /// Which kind of source this is, for logs, metrics and the CC6.1 details.
    fn origin(&self) -> KeyOrigin;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn accepts_64_hex_characters_and_normalizes_case() {
        let k = EncryptionKey::from_hex(&format!(" {KEY}\n"), "test").unwrap();
        assert_eq!(k.expose_hex(), KEY.to_ascii_lowercase());
    }

    #[test]
    fn rejects_anything_else_without_quoting_it() {
        for (bad, reason) in [
            ("", "got 0 characters"),
            (&KEY[..63], "got 63 characters"),
            (&format!("{KEY}0"), "got 65 characters"),
            (&KEY.replace('0', "g"), "character 1 is not a hex digit"),
        ] {
            let e = EncryptionKey::from_hex(bad, "Vault secret secret/data/x").unwrap_err();
            let msg = e.to_string();
            assert_eq!(
                msg,
                format!("Invalid encryption key in Vault secret secret/data/x ({reason}): expected a 64-character hex string")
            );
            assert!(bad.is_empty() || !msg.contains(bad));
        }
    }

    #[test]
    fn a_key_list_names_a_bad_entry_by_position_only() {
        let other = "ab".repeat(32);
        let keys = EncryptionKey::list_from_hex(&format!(" {KEY} ,,{other},"), "field f").unwrap();
        let hex: Vec<&str> = keys.iter().map(EncryptionKey::expose_hex).collect();
        assert_eq!(hex, [KEY.to_ascii_lowercase().as_str(), other.as_str()]);
        assert!(EncryptionKey::list_from_hex(" , ", "field f")
            .unwrap()
            .is_empty());

        let e = EncryptionKey::list_from_hex(&format!("{KEY},,{}", &other[..60]), "field f")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid encryption key in field f entry 2 (got 60 characters): expected a 64-character hex string"
        );
        assert!(!e.to_string().contains(&other[..60]));
        assert!(!e
            .to_string()
            .to_ascii_lowercase()
            .contains(&KEY.to_ascii_lowercase()));
    }
}
