//! The process's key source and what it knows about its key. The key's format and the
//! [`KeyProvider`] trait are in `key_source.rs`; the Vault provider is in `vault.rs`, the
//! development key file here. This module knows the sources only through the trait.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::zeroize::Zeroizing;

use crate::key_source::FetchFuture;
pub use crate::key_source::{EncryptionKey, KeyLoadError, KeyOrigin, KeyProvider, SessionKeys};

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

/// The key source the process was configured with, whichever kind it is.
pub struct KeySource(Box<dyn KeyProvider>);

impl KeySource {
    pub fn new(provider: impl KeyProvider + 'static) -> KeySource {
        KeySource(Box::new(provider))
    }

    pub async fn fetch(&self) -> Result<SessionKeys, KeyLoadError> {
        self.0.fetch().await
    }

    pub fn kind(&self) -> KeyOrigin {
        self.0.origin()
    }
}

/// Development only: a file holding the hex key, used when no Vault is configured.
#[derive(Clone, Debug)]
pub struct KeyFile(pub PathBuf);

impl KeyFile {
    async fn read(&self) -> Result<SessionKeys, KeyLoadError> {
        let path = &self.0;
        let origin = format!("key file {}", path.display());
        // Wiped once parsed: the key's only copy is then the EncryptionKey's.
        let text = Zeroizing::new(tokio::fs::read_to_string(path).await.map_err(|e| {
            KeyLoadError::FileUnreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?);
        // A development key file holds one key: rotations go through Vault.
        Ok(SessionKeys {
            key: EncryptionKey::from_hex(&text, &origin)?,
            old_keys: Vec::new(),
        })
    }
}

impl KeyProvider for KeyFile {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.read())
    }

    fn origin(&self) -> KeyOrigin {
        KeyOrigin::File
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

        let k = KeySource::new(KeyFile(good)).fetch().await.unwrap();
        assert_eq!(k.key.expose_hex(), KEY.to_ascii_lowercase());
        assert!(k.old_keys.is_empty());
        let e = KeySource::new(KeyFile(bad.clone()))
            .fetch()
            .await
            .unwrap_err();
        assert!(matches!(e, KeyLoadError::InvalidKey { .. }));
        assert!(e.to_string().contains(&bad.display().to_string()));
        assert!(!e.is_transient());
        let e = KeySource::new(KeyFile(dir.join("missing")))
            .fetch()
            .await
            .unwrap_err();
        assert!(matches!(e, KeyLoadError::FileUnreadable { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
