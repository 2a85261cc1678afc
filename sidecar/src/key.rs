//! The column-encryption key: its format, where it comes from, and what the process knows about it.
//!
//! The key's value leaves this module only through [`EncryptionKey::expose_hex`], whose callers
//! put it into the database sessions' startup options. Nothing here formats it: `Debug` is
//! redacted and no error carries it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use agentidp_core::crypto::{CryptoError, KeyId};

use crate::vault::VaultKeySource;

/// A validated AES-256 key, held as 64 lowercase hex characters (the form the extension's
/// `agentidp.encryption_key` setting takes), with the key id the extension derives from it.
#[derive(Clone)]
pub struct EncryptionKey {
    hex: Arc<str>,
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
                hex: text.to_ascii_lowercase().into(),
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

    pub fn expose_hex(&self) -> &str {
        &self.hex
    }

    /// Public by design (it is stamped on every v2 ciphertext), so logs and control details can
    /// name the key in use.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

impl PartialEq for EncryptionKey {
    fn eq(&self, other: &EncryptionKey) -> bool {
        self.hex == other.hex
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

/// Replaces every run of 64 or more hex digits with `<redacted>`.
///
/// PostgreSQL quotes a rejected setting's value in its error message ("invalid value for
/// parameter ..."), so a database error raised while opening a session could carry the key.
/// Every database error passes through here before it is logged or stored; the cost is that
/// SHA-256 hex digests in such messages are hidden too.
pub fn redact_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 64 {
            out.push_str("<redacted>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
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

pub enum KeySource {
    Vault(Box<VaultKeySource>),
    /// Development only: a file holding the hex key, used when no Vault is configured.
    File(PathBuf),
}

impl KeySource {
    pub async fn fetch(&self) -> Result<SessionKeys, KeyLoadError> {
        match self {
            KeySource::Vault(vault) => vault.fetch().await,
            KeySource::File(path) => {
                let origin = format!("key file {}", path.display());
                let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                    KeyLoadError::FileUnreadable {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
                // A development key file holds one key: rotations go through Vault.
                Ok(SessionKeys {
                    key: EncryptionKey::from_hex(&text, &origin)?,
                    old_keys: Vec::new(),
                })
            }
        }
    }

    pub fn kind(&self) -> KeyOrigin {
        match self {
            KeySource::Vault(_) => KeyOrigin::Vault,
            KeySource::File(_) => KeyOrigin::File,
        }
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

/// What this process knows about its key, published to the CC6.1 job and the metrics.
#[derive(Clone, Debug, Default)]
pub struct KeyState {
    /// The key the database sessions use; kept through a failed refresh so a Vault outage does
    /// not take encryption down with it.
    pub key: Option<EncryptionKey>,
    pub origin: Option<KeyOrigin>,
    /// The outcome of the latest attempt; `None` after a success.
    pub last_error: Option<Arc<KeyLoadError>>,
    pub attempted: bool,
    /// False when neither Vault nor a key file is configured.
    pub configured: bool,
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

    #[test]
    fn debug_is_redacted() {
        let k = EncryptionKey::from_hex(KEY, "test").unwrap();
        assert_eq!(
            format!("{k:?}"),
            format!("EncryptionKey(id {}, <redacted>)", k.id())
        );
        let keys = SessionKeys {
            key: k.clone(),
            old_keys: vec![k.clone()],
        };
        assert!(!format!("{keys:?}").to_ascii_lowercase().contains("aabbcc"));
        assert_eq!(keys.old_key_ids(), k.id().to_string());
        let state = KeyState {
            key: Some(k),
            ..KeyState::default()
        };
        assert!(!format!("{state:?}").to_ascii_lowercase().contains("aabbcc"));
    }

    #[test]
    fn redaction_hides_key_sized_hex_runs_only() {
        let msg = format!("invalid value for parameter \"agentidp.encryption_key\": \"{KEY}\"");
        assert_eq!(
            redact_keys(&msg),
            "invalid value for parameter \"agentidp.encryption_key\": \"<redacted>\""
        );
        assert_eq!(redact_keys("deadbeef cafe 42"), "deadbeef cafe 42");
        assert_eq!(redact_keys(KEY), "<redacted>");
    }

    #[tokio::test]
    async fn key_file() {
        let dir = std::env::temp_dir().join(format!("agentidp-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, format!("{KEY}\n")).unwrap();
        let bad = dir.join("bad");
        std::fs::write(&bad, "not a key").unwrap();

        let k = KeySource::File(good).fetch().await.unwrap();
        assert_eq!(k.key.expose_hex(), KEY.to_ascii_lowercase());
        assert!(k.old_keys.is_empty());
        let e = KeySource::File(bad.clone()).fetch().await.unwrap_err();
        assert!(matches!(e, KeyLoadError::InvalidKey { .. }));
        assert!(e.to_string().contains(&bad.display().to_string()));
        assert!(!e.is_transient());
        let e = KeySource::File(dir.join("missing"))
            .fetch()
            .await
            .unwrap_err();
        assert!(matches!(e, KeyLoadError::FileUnreadable { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
