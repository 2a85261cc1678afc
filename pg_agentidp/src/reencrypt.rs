//! Key rotation, value by value: where a value stands against the configured keys and format,
//! and its rewrite under the current ones.
//!
//! The batches that walk the sensitive columns (`agentidp_reencrypt`, `agentidp_reencrypt_all`)
//! and the census (`agentidp_encryption_status`) are SQL, in sql/encryption.sql: an UPDATE that
//! computes the new value from the row it locks is what keeps a concurrent write from being lost,
//! and SQL says that most plainly.

use agentidp_core::crypto::{self, CryptoError, Decrypted, Format, KeyUsed};
use pgrx::prelude::*;

use crate::encryption::{configured_format, encrypt_value, read_value};
use crate::error::raise_crypto;
use crate::keys;

/// Where one value stands.
enum KeyState {
    Plaintext,
    Encrypted {
        old_key: bool,
        format: Format,
    },
    /// Under none of the configured keys, or damaged: it cannot be rewritten.
    Undecryptable,
}

/// `None` when the value is encrypted and no key is configured, so nothing can be said of it.
/// Strict mode governs reads, not this census: a plaintext is classified, not refused.
fn classify(value: &str, context: &str) -> Option<KeyState> {
    match read_value(value, false, context) {
        Ok(Decrypted::NotEncrypted(_)) => Some(KeyState::Plaintext),
        Ok(Decrypted::Plaintext { format, key, .. }) => Some(KeyState::Encrypted {
            old_key: matches!(key, KeyUsed::Old(_)),
            format,
        }),
        Err(CryptoError::KeyMissing) => None,
        Err(e) if e.is_setting_error() => raise_crypto(e),
        Err(_) => Some(KeyState::Undecryptable),
    }
}

/// `plaintext`, `current` (decrypts with the current key), `old` (with an old key) or
/// `undecryptable` (with none of them, or damaged); NULL when the value is encrypted and no key
/// is configured. Decrypts, so a v2 value also proves its integrity.
#[pg_extern(stable, strict, parallel_safe)]
fn agentidp_key_state(value: &str, context: default!(&str, "''")) -> Option<&'static str> {
    classify(value, context).map(|state| match state {
        KeyState::Plaintext => "plaintext",
        KeyState::Encrypted { old_key: false, .. } => "current",
        KeyState::Encrypted { old_key: true, .. } => "old",
        KeyState::Undecryptable => "undecryptable",
    })
}

/// Whether `agentidp_reencrypt_value` would change the value: plaintext, under an old key, or in
/// the format not configured. An undecryptable value does not: it cannot be rewritten, and
/// `agentidp_encryption_status()` counts it.
#[pg_extern(stable, strict, parallel_safe)]
fn agentidp_needs_reencryption(value: &str, context: &str) -> bool {
    match classify(value, context) {
        Some(KeyState::Plaintext) => true,
        Some(KeyState::Encrypted { old_key, format }) => old_key || format != configured_format(),
        Some(KeyState::Undecryptable) => false,
        None => raise_crypto(CryptoError::KeyMissing),
    }
}

/// The value under the current key and format: unchanged if it already is, encrypted if it was
/// plaintext, decrypted and encrypted again otherwise. Raises if it cannot be decrypted, so a
/// value is never replaced by anything but its own plaintext, sealed.
#[pg_extern(volatile, strict, parallel_safe)]
fn agentidp_reencrypt_value(value: &str, context: &str) -> String {
    let decrypted =
        keys::with_keys(|current, olds| crypto::decrypt_with_any(value, current, olds, context))
            .and_then(|decrypted| decrypted)
            .unwrap_or_else(|e| raise_crypto(e));
    match decrypted {
        Decrypted::Plaintext {
            key: KeyUsed::Current,
            format,
            ..
        } if format == configured_format() => value.to_owned(),
        other => encrypt_value(other.as_str(), context),
    }
}
