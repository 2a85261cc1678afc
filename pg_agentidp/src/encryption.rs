//! Column encryption in SQL: encrypt, decrypt and recognise values, and the one place where a
//! `CryptoError` becomes a PostgreSQL error with a SQLSTATE.
//!
//! The formats and the cryptography are `agentidp-core`'s; this module picks the key (`keys`),
//! the format (`agentidp.encryption_format`) and whether reads are strict
//! (`agentidp.encryption_strict`); what a plaintext read means is `crypto::read`'s rule.

use std::cell::Cell;

use agentidp_core::crypto::{self, CryptoError, Decrypted, Envelope, Format, V2_PREFIX};
use pgrx::prelude::*;

use crate::error::raise_crypto;
use crate::gucs::{self, EncryptionFormat};
use crate::keys;

thread_local! {
    /// Values `agentidp_decrypt` passed through unencrypted in this backend.
    static PLAINTEXT_READS: Cell<i64> = const { Cell::new(0) };
}

/// The format new values are written in.
pub fn configured_format() -> Format {
    match gucs::encryption_format() {
        EncryptionFormat::Cbc => Format::Cbc,
        EncryptionFormat::Gcm => Format::GcmV2,
    }
}

/// Encrypts under the current key in the configured format. Raises when no usable key is set:
/// nothing falls back to storing the plaintext.
pub fn encrypt_value(plaintext: &str, context: &str) -> String {
    keys::with_current(|key| crypto::encrypt(plaintext, key, configured_format(), context))
        .and_then(|sealed| sealed)
        .unwrap_or_else(|e| raise_crypto(e))
}

/// Whether a value is encrypted for the triggers' purpose: well-formed in either format. A value
/// with the v2 prefix that is not well-formed is a damaged ciphertext, never plaintext to seal.
pub fn is_sealed(value: &str) -> bool {
    if crypto::is_encrypted(value) {
        return true;
    }
    if value.starts_with(V2_PREFIX) {
        raise_crypto(CryptoError::MalformedV2);
    }
    false
}

/// Encrypts `plaintext` under the current key, in the format `agentidp.encryption_format` names.
/// `context` names the column the value is for (`agentidp.<table>.<column>`) and is bound into
/// `gcm` values, which then decrypt only with the same context; `cbc` ignores it.
#[pg_extern(volatile, strict, parallel_safe)]
fn agentidp_encrypt(plaintext: &str, context: default!(&str, "''")) -> String {
    encrypt_value(plaintext, context)
}

/// Decrypts a value of either format with the current key or an old one. A value in neither
/// format is returned unchanged and counted (`agentidp_plaintext_reads()`), or refused when
/// `agentidp.encryption_strict` is on: columns being migrated hold both. No key is needed to pass
/// a plaintext through.
///
/// PARALLEL RESTRICTED: a worker's count would be lost with the worker.
#[pg_extern(stable, strict, parallel_restricted)]
fn agentidp_decrypt(value: &str, context: default!(&str, "''")) -> String {
    match read_value(value, gucs::encryption_strict(), context) {
        Ok(Decrypted::Plaintext { text, .. }) => text,
        Ok(Decrypted::NotEncrypted(plain)) => {
            PLAINTEXT_READS.set(PLAINTEXT_READS.get().saturating_add(1));
            plain.to_owned()
        }
        Err(e) => raise_crypto(e),
    }
}

/// `crypto::read` with the session's keys: decrypts, passes a plaintext through or refuses it.
/// An empty key setting is "no key"; any other problem with the settings is the error.
pub fn read_value<'a>(
    value: &'a str,
    strict: bool,
    context: &str,
) -> Result<Decrypted<'a>, CryptoError> {
    match keys::with_keys(|current, olds| {
        crypto::read(value, Some((current, olds)), strict, context)
    }) {
        Ok(read) => read,
        Err(CryptoError::KeyMissing) => crypto::read(value, None, strict, context),
        Err(e) => Err(e),
    }
}

/// Whether a value is a well-formed value of either format. Never decrypts, needs no key.
#[pg_extern(immutable, strict, parallel_safe)]
fn agentidp_is_encrypted(value: &str) -> bool {
    crypto::is_encrypted(value)
}

/// The format of an encrypted value, `cbc` or `gcm`; NULL for anything else.
#[pg_extern(immutable, strict, parallel_safe)]
fn agentidp_encrypted_format(value: &str) -> Option<&'static str> {
    crypto::identify(value).map(|envelope| match envelope {
        Envelope::Cbc => "cbc",
        Envelope::GcmV2 { .. } => "gcm",
    })
}

/// How many plaintext values `agentidp_decrypt` has passed through in this session.
#[pg_extern(volatile, parallel_restricted)]
fn agentidp_plaintext_reads() -> i64 {
    PLAINTEXT_READS.get()
}
