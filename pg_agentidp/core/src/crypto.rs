//! Column encryption: the two value formats, key handling, and key rotation.
//!
//! Both formats are text, so an encrypted value fits the `text` column that held the plaintext,
//! and both are recognisable, so a column can hold a mix of plaintext rows (not yet migrated),
//! seed-format rows and v2 rows while it is being converted.
//!
//! # The seed format (`Format::Cbc`)
//!
//! `base64(iv):base64(ciphertext)`: AES-256-CBC with PKCS#7 padding, a fresh random 16-byte IV per
//! value, standard base64 with padding. It is byte-compatible with the Node.js `EncryptionService`
//! the project started from, so values that service wrote decrypt here and the other way round.
//!
//! It has no integrity protection. CBC is malleable: whoever can write the column can flip chosen
//! bits of the first plaintext block by editing the IV, splice blocks between values, or move a
//! value to another row or column, and decryption still succeeds. A wrong key is detected only by
//! the padding check (and, here, by the result having to be UTF-8), which garbage passes about
//! once in 256 tries on short values. Keep it for compatibility, not for new data.
//!
//! # The authenticated format (`Format::GcmV2`)
//!
//! `agentidp:v2:<key id>:<base64(nonce)>:<base64(ciphertext || tag)>`
//!
//! * `agentidp:v2:` is a literal prefix, so the format is visible and can never be mistaken for
//!   the seed format (which has exactly one `:`).
//! * `<key id>` is 8 lowercase hex digits naming the key that encrypted the value (see
//!   [`KeyId`]), so rotation picks the right key instead of trying each one, and an operator can
//!   count the values still under an old key with plain SQL.
//! * `<nonce>` is 12 random bytes, 16 base64 characters.
//! * `<ciphertext || tag>` is AES-256-GCM output with its 16-byte tag appended, standard base64
//!   with padding.
//!
//! The additional authenticated data is the UTF-8 text `agentidp:v2:<key id>:<context>`, where
//! `context` names the column, e.g. `public.users.email`. A value edited, truncated, or copied to
//! another column (or another database whose callers pass a different context) therefore fails to
//! decrypt instead of yielding attacker-chosen or misplaced plaintext. The binding is to the
//! column, not the row: swapping the values of two rows of one column goes undetected, because
//! binding to a row key would make every primary-key change a re-encryption.
//!
//! Nonces are random, so one key should encrypt fewer than 2³² values (NIST SP 800-38D, 8.3);
//! rotate well before that.
//!
//! # Plaintext passthrough
//!
//! A value in neither format is "not encrypted": [`decrypt`] hands it back as
//! [`Decrypted::NotEncrypted`]. Whether a read passes it through (a column being migrated) or
//! refuses it (strict mode), and what a read without a key may do, is [`read`]'s rule, which the
//! extension's `agentidp_decrypt` and its key census both apply. The one exception is a value
//! carrying the `agentidp:v2:` prefix without being a well-formed v2 value: that is a damaged
//! ciphertext, never plaintext, so it is an error.
//!
//! Recognition is structural, so a plaintext that happens to look like a seed-format value
//! (24 base64 characters, a colon, a multiple of 16 bytes of base64) is taken for one and fails
//! to decrypt. The v2 prefix makes that impossible for v2 values.

mod b64;
mod cbc_format;
mod gcm_format;
mod key;
pub mod key_list;
pub mod key_setting;

use std::borrow::Cow;
use std::fmt;

pub use key::{EncryptionKey, KeyId, KEY_HEX_LEN};
pub use key_setting::KeySetting;

/// Length of the seed format's IV.
pub const CBC_IV_LEN: usize = 16;

/// Length of the v2 format's nonce.
pub const GCM_NONCE_LEN: usize = 12;

/// The literal start of every v2 value.
pub const V2_PREFIX: &str = "agentidp:v2:";

/// Which format [`encrypt`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The seed format: AES-256-CBC, compatible with the Node.js service, not authenticated.
    Cbc,
    /// The authenticated format: AES-256-GCM, bound to its column, names its key.
    GcmV2,
}

/// What a well-formed encrypted value says about itself, without decrypting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Envelope {
    /// A seed-format value; it does not say which key encrypted it.
    Cbc,
    /// A v2 value encrypted under the key with this id.
    GcmV2 { key_id: KeyId },
}

impl Envelope {
    pub fn format(self) -> Format {
        match self {
            Envelope::Cbc => Format::Cbc,
            Envelope::GcmV2 { .. } => Format::GcmV2,
        }
    }
}

/// Which of the keys given to [`decrypt_with_any`] decrypted a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsed {
    Current,
    /// Index into the `olds` slice.
    Old(usize),
}

/// The outcome of decrypting one column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decrypted<'a> {
    /// The value was in neither format and is returned unchanged, borrowed from the input.
    NotEncrypted(&'a str),
    /// The value was encrypted and has been decrypted.
    Plaintext {
        text: String,
        format: Format,
        key: KeyUsed,
    },
}

impl<'a> Decrypted<'a> {
    /// The text, whether it was decrypted or passed through.
    pub fn as_str(&self) -> &str {
        match self {
            Decrypted::NotEncrypted(value) => value,
            Decrypted::Plaintext { text, .. } => text,
        }
    }

    pub fn into_text(self) -> Cow<'a, str> {
        match self {
            Decrypted::NotEncrypted(value) => Cow::Borrowed(value),
            Decrypted::Plaintext { text, .. } => Cow::Owned(text),
        }
    }

    pub fn was_encrypted(&self) -> bool {
        matches!(self, Decrypted::Plaintext { .. })
    }
}

/// Why a key could not be parsed. Never contains any part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKeyReason {
    /// The key has this many characters instead of 64.
    WrongLength { chars: usize },
    /// The character at this 1-based position is not a hex digit.
    NotHex { position: usize },
}

impl fmt::Display for InvalidKeyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidKeyReason::WrongLength { chars } => write!(f, "got {chars} characters"),
            InvalidKeyReason::NotHex { position } => {
                write!(f, "character {position} is not a hex digit")
            }
        }
    }
}

/// Everything that can go wrong. The messages are part of the extension's interface: operators
/// and tests match on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Callers raise this when the key setting is empty or unset.
    #[error("No encryption key configured: set agentidp.encryption_key")]
    KeyMissing,

    #[error("Invalid encryption key ({0}): expected a 64-character hex string")]
    InvalidKey(InvalidKeyReason),

    /// `InvalidKey` for entry `position` (1-based) of `agentidp.encryption_old_keys`.
    #[error(
        "Invalid encryption key in agentidp.encryption_old_keys (entry {position}: {reason}): expected a 64-character hex string"
    )]
    InvalidOldKey {
        position: usize,
        reason: InvalidKeyReason,
    },

    /// The setting held a value before a statement of the session loaded the library: until
    /// then it was an unprotected placeholder that anyone running SQL in the session could read.
    /// See [`key_setting`].
    #[error(
        "{0} refused: it was set before the pg_agentidp library was loaded, when SHOW could read it back"
    )]
    KeyReadableBeforeLoad(KeySetting),

    /// A seed-format value did not decrypt to padded UTF-8 under any of the keys tried.
    #[error("AES-256-CBC decryption failed — possible key mismatch")]
    KeyMismatch,

    /// A v2 value's tag did not verify under the key its key id names.
    #[error("authenticated decryption failed — wrong key, or value moved from another column")]
    AuthenticationFailed,

    /// A v2 value names a key that is neither the current key nor one of the old keys.
    #[error("value was encrypted under key id {0}, which is not among the configured keys")]
    UnknownKeyId(KeyId),

    /// A value starts with `agentidp:v2:` but is not a well-formed v2 value.
    #[error("malformed agentidp:v2 value — truncated or altered")]
    MalformedV2,

    /// An authenticated v2 value decrypted to bytes that are not UTF-8; only a writer holding
    /// the key, but not using this library, could have made it.
    #[error("authenticated decryption produced bytes that are not UTF-8 text")]
    NotUtf8,

    #[error("the operating system's random number generator failed")]
    RandomUnavailable,

    #[error("value too long to encrypt")]
    TooLong,

    /// [`read`] met a plaintext value in strict mode (`agentidp.encryption_strict`).
    #[error("value is not encrypted, and agentidp.encryption_strict is on")]
    PlaintextRefused,
}

impl CryptoError {
    /// Whether the session's key settings are at fault rather than a value: until they are fixed,
    /// no value can be encrypted or decrypted, so callers raise these instead of classifying the
    /// value (`KeyMissing`, which callers handle on their own, is not one).
    pub fn is_setting_error(&self) -> bool {
        matches!(
            self,
            CryptoError::InvalidKey(_)
                | CryptoError::InvalidOldKey { .. }
                | CryptoError::KeyReadableBeforeLoad(_)
        )
    }
}

/// Whether `value` is a well-formed value of either format. Never decrypts; cheap enough to call
/// per row.
pub fn is_encrypted(value: &str) -> bool {
    identify(value).is_some()
}

/// The format (and for v2 the key id) of a well-formed encrypted value; `None` for anything else,
/// including a damaged v2 value.
pub fn identify(value: &str) -> Option<Envelope> {
    match gcm_format::parse(value) {
        Some(Ok(parsed)) => parsed.payload_is_valid().then_some(Envelope::GcmV2 {
            key_id: parsed.key_id,
        }),
        Some(Err(gcm_format::Malformed)) => None,
        None => cbc_format::parse(value)
            .filter(cbc_format::Parsed::payload_is_valid)
            .map(|_| Envelope::Cbc),
    }
}

/// Encrypts `plaintext` in `format` with a fresh random IV or nonce.
///
/// `context` names the column (e.g. `public.users.email`) and is bound into v2 values; the seed
/// format ignores it.
pub fn encrypt(
    plaintext: &str,
    key: &EncryptionKey,
    format: Format,
    context: &str,
) -> Result<String, CryptoError> {
    match format {
        Format::Cbc => {
            let mut iv = [0u8; CBC_IV_LEN];
            fill_random(&mut iv)?;
            Ok(encrypt_cbc_with_iv(plaintext, key, &iv))
        }
        Format::GcmV2 => {
            let mut nonce = [0u8; GCM_NONCE_LEN];
            fill_random(&mut nonce)?;
            encrypt_gcm_with_nonce(plaintext, key, &nonce, context)
        }
    }
}

/// Seed-format encryption with a caller-chosen IV, for known-answer tests and interop checks.
/// Production code uses [`encrypt`]: a predictable IV leaks whether two values share a prefix.
pub fn encrypt_cbc_with_iv(plaintext: &str, key: &EncryptionKey, iv: &[u8; CBC_IV_LEN]) -> String {
    cbc_format::seal(plaintext.as_bytes(), key, iv)
}

/// v2 encryption with a caller-chosen nonce, for known-answer tests and interop checks.
/// Production code uses [`encrypt`]: reusing a nonce under one key reveals the XOR of the two
/// plaintexts and lets anyone forge tags.
pub fn encrypt_gcm_with_nonce(
    plaintext: &str,
    key: &EncryptionKey,
    nonce: &[u8; GCM_NONCE_LEN],
    context: &str,
) -> Result<String, CryptoError> {
    gcm_format::seal(plaintext.as_bytes(), key, nonce, context)
}

/// Decrypts one column value with a single key. See [`decrypt_with_any`].
pub fn decrypt<'a>(
    value: &'a str,
    key: &EncryptionKey,
    context: &str,
) -> Result<Decrypted<'a>, CryptoError> {
    decrypt_with_any(value, key, &[], context)
}

/// Decrypts one column value with the current key or, during a rotation, one of the old keys.
///
/// A v2 value is decrypted with the key its key id names (current first, then `olds` in order,
/// should two ids collide). A seed-format value names no key, so the keys are tried in the same
/// order and the first whose result has valid padding and is UTF-8 wins. Without a MAC that is a
/// heuristic: a wrong key yields valid padding about once in 256 values, and garbage that is also
/// UTF-8 far more rarely, so a seed-format value can, very rarely, decrypt under a wrong old key
/// to garbage. Re-encrypting to v2 ends that.
///
/// `Ok(Decrypted::Plaintext { key, .. })` tells which key worked, so callers can count the
/// values still to re-encrypt.
pub fn decrypt_with_any<'a>(
    value: &'a str,
    current: &EncryptionKey,
    olds: &[EncryptionKey],
    context: &str,
) -> Result<Decrypted<'a>, CryptoError> {
    let keys = std::iter::once((KeyUsed::Current, current)).chain(
        olds.iter()
            .enumerate()
            .map(|(index, key)| (KeyUsed::Old(index), key)),
    );
    match gcm_format::parse(value) {
        Some(Ok(parsed)) => {
            let (text, key) = parsed.open(keys, context)?;
            Ok(Decrypted::Plaintext {
                text,
                format: Format::GcmV2,
                key,
            })
        }
        Some(Err(gcm_format::Malformed)) => Err(CryptoError::MalformedV2),
        None => match cbc_format::parse(value) {
            None => Ok(Decrypted::NotEncrypted(value)),
            Some(parsed) => Ok(match parsed.open(keys)? {
                Some((text, key)) => Decrypted::Plaintext {
                    text,
                    format: Format::Cbc,
                    key,
                },
                // Shaped like a seed value, but the ciphertext is not strict base64.
                None => Decrypted::NotEncrypted(value),
            }),
        },
    }
}

/// Whether `value` is plaintext to a read: in neither format, and not a damaged v2 value. Exactly
/// the values [`decrypt_with_any`] hands back as [`Decrypted::NotEncrypted`], recognised without
/// a key.
pub fn is_plaintext(value: &str) -> bool {
    identify(value).is_none() && !value.starts_with(V2_PREFIX)
}

/// Reads one column value: the plaintext-passthrough rule, in one place.
///
/// `keys` are the current and the old keys, `None` when no key is configured; `strict` is
/// `agentidp.encryption_strict`.
///
/// * An encrypted value (or a damaged v2 one) is decrypted with `keys`, as [`decrypt_with_any`]
///   does; with no key that is `KeyMissing`.
/// * A plaintext value is passed through as [`Decrypted::NotEncrypted`], with or without a key:
///   columns being migrated hold both. In strict mode it is refused with `PlaintextRefused`.
///
/// A key setting that is set but unusable is the caller's error, raised before any value is read:
/// only a setting that is empty counts as "no key".
pub fn read<'a>(
    value: &'a str,
    keys: Option<(&EncryptionKey, &[EncryptionKey])>,
    strict: bool,
    context: &str,
) -> Result<Decrypted<'a>, CryptoError> {
    let read = match keys {
        Some((current, olds)) => decrypt_with_any(value, current, olds, context)?,
        None if is_plaintext(value) => Decrypted::NotEncrypted(value),
        None => return Err(CryptoError::KeyMissing),
    };
    if strict && !read.was_encrypted() {
        return Err(CryptoError::PlaintextRefused);
    }
    Ok(read)
}

/// Values up to this many bytes are worked on in a stack buffer; typical column values (e-mail
/// addresses, tokens, secrets) are far shorter.
const STACK_SCRATCH_LEN: usize = 512;

/// Runs `f` on a zeroed buffer of `len` bytes: on the stack when small, else on the heap, so the
/// per-row paths allocate nothing but their result.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    if len <= STACK_SCRATCH_LEN {
        let mut buf = [0u8; STACK_SCRATCH_LEN];
        f(&mut buf[..len])
    } else {
        f(&mut vec![0u8; len])
    }
}

fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::RandomUnavailable)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CURRENT: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const OLD: &str = "abababababababababababababababababababababababababababababababab";
    const CONTEXT: &str = "public.t.c";

    fn key(hex: &str) -> EncryptionKey {
        EncryptionKey::from_hex(hex).unwrap()
    }

    /// Every kind of value a column can hold, with what it reads as when its key is there.
    fn values(current: &EncryptionKey, old: &EncryptionKey) -> Vec<(String, Option<&'static str>)> {
        let gcm = encrypt("secret", current, Format::GcmV2, CONTEXT).unwrap();
        let cbc = encrypt("secret", current, Format::Cbc, CONTEXT).unwrap();
        let under_old = encrypt("secret", old, Format::GcmV2, CONTEXT).unwrap();
        vec![
            ("plain".to_owned(), None),
            (String::new(), None),
            ("a:b".to_owned(), None),
            // Shaped like a seed value, but its ciphertext is not strict base64: plaintext.
            ("AAECAwQFBgcICQoLDA0ODw==:!!!!".to_owned(), None),
            (gcm, Some("secret")),
            (cbc, Some("secret")),
            (under_old, Some("secret")),
        ]
    }

    #[test]
    fn plaintext_is_what_decryption_passes_through() {
        let (current, old) = (key(CURRENT), key(OLD));
        for (value, _) in values(&current, &old) {
            let decrypted = decrypt_with_any(&value, &current, std::slice::from_ref(&old), CONTEXT);
            assert_eq!(
                is_plaintext(&value),
                matches!(decrypted, Ok(Decrypted::NotEncrypted(_))),
                "{value}"
            );
        }
        assert!(!is_plaintext("agentidp:v2:damaged"));
    }

    #[test]
    fn with_a_key_values_decrypt_and_plaintext_passes_unless_strict() {
        let (current, old) = (key(CURRENT), key(OLD));
        let olds = std::slice::from_ref(&old);
        for (value, secret) in values(&current, &old) {
            let lax = read(&value, Some((&current, olds)), false, CONTEXT).unwrap();
            let strict = read(&value, Some((&current, olds)), true, CONTEXT);
            match secret {
                Some(secret) => {
                    assert!(lax.was_encrypted());
                    assert_eq!(lax.as_str(), secret);
                    assert_eq!(strict.unwrap().as_str(), secret);
                }
                None => {
                    assert_eq!(lax, Decrypted::NotEncrypted(&value));
                    assert_eq!(strict, Err(CryptoError::PlaintextRefused));
                }
            }
        }
    }

    #[test]
    fn without_a_key_plaintext_passes_unless_strict_and_the_rest_needs_one() {
        let (current, old) = (key(CURRENT), key(OLD));
        for (value, secret) in values(&current, &old) {
            let lax = read(&value, None, false, CONTEXT);
            let strict = read(&value, None, true, CONTEXT);
            match secret {
                Some(_) => {
                    assert_eq!(lax, Err(CryptoError::KeyMissing));
                    assert_eq!(strict, Err(CryptoError::KeyMissing));
                }
                None => {
                    assert_eq!(lax, Ok(Decrypted::NotEncrypted(&value)));
                    assert_eq!(strict, Err(CryptoError::PlaintextRefused));
                }
            }
        }
    }

    #[test]
    fn a_damaged_v2_value_is_never_plaintext() {
        let current = key(CURRENT);
        let damaged = "agentidp:v2:0123abcd:short";
        for strict in [false, true] {
            assert_eq!(
                read(damaged, Some((&current, &[])), strict, CONTEXT),
                Err(CryptoError::MalformedV2)
            );
            assert_eq!(
                read(damaged, None, strict, CONTEXT),
                Err(CryptoError::KeyMissing)
            );
        }
    }

    #[test]
    fn a_wrong_key_is_an_error_not_a_passthrough() {
        let (current, old) = (key(CURRENT), key(OLD));
        let under_old = encrypt("secret", &old, Format::GcmV2, CONTEXT).unwrap();
        assert!(matches!(
            read(&under_old, Some((&current, &[])), false, CONTEXT),
            Err(CryptoError::UnknownKeyId(_))
        ));
        // A seed value names no key: a wrong one fails (or, rarely, yields garbage), but the value
        // is never taken for plaintext.
        let cbc_under_old = encrypt_cbc_with_iv("secret", &old, &[7; CBC_IV_LEN]);
        assert!(!matches!(
            read(&cbc_under_old, Some((&current, &[])), false, CONTEXT),
            Ok(Decrypted::NotEncrypted(_))
        ));
    }

    #[test]
    fn the_refusal_text_is_pinned() {
        assert_eq!(
            CryptoError::PlaintextRefused.to_string(),
            "value is not encrypted, and agentidp.encryption_strict is on"
        );
        assert!(!CryptoError::PlaintextRefused.is_setting_error());
    }
}
