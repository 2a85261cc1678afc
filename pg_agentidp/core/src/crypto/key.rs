//! The encryption key: parsed once, expanded once, never printed.

use std::fmt::{self, Write as _};

use aes::{Aes256, Aes256Enc};
use aes_gcm::aead::consts::U12;
use aes_gcm::{AesGcm, KeyInit};
use sha2::{Digest, Sha256};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use super::{CryptoError, InvalidKeyReason};

/// Length of a key in hex characters.
pub const KEY_HEX_LEN: usize = 64;

const KEY_LEN: usize = KEY_HEX_LEN / 2;

/// Domain separation for [`KeyId`], so the id is not a hash of the bare key that some other
/// system might also publish.
const KEY_ID_DOMAIN: &[u8] = b"agentidp-key-id";

pub(super) type Aes256Gcm = AesGcm<Aes256Enc, U12>;

/// An AES-256 key, ready for both formats.
///
/// The AES key schedules are computed once here, so encrypting or decrypting a value costs only
/// its blocks. The raw key bytes are not kept; the schedules are wiped on drop. `Debug` prints
/// no key material, and there is deliberately no `Display`.
#[derive(Clone)]
pub struct EncryptionKey {
    /// The seed format needs both directions of the cipher.
    cbc: Aes256,
    /// GCM only ever runs AES forwards, so it gets the smaller encrypt-only schedule.
    gcm: Aes256Gcm,
    id: KeyId,
}

impl EncryptionKey {
    /// Parses the 64-hex-digit form used by `agentidp.encryption_key` and the Node.js service
    /// (either case). Unlike Node's `Buffer.from(key, 'hex')`, which silently stops at the first
    /// bad character, anything else is rejected. The error never contains the key.
    pub fn from_hex(hex: &str) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        let mut chars = 0;
        let mut first_bad = None;
        for (index, c) in hex.chars().enumerate() {
            chars = index + 1;
            if index >= KEY_HEX_LEN {
                continue;
            }
            match c.to_digit(16) {
                // `to_digit(16)` is below 16, so the cast is lossless.
                Some(nibble) => bytes[index / 2] |= (nibble as u8) << (4 * (1 - index % 2)),
                None => {
                    first_bad.get_or_insert(index + 1);
                }
            }
        }
        if chars != KEY_HEX_LEN {
            return Err(CryptoError::InvalidKey(InvalidKeyReason::WrongLength {
                chars,
            }));
        }
        if let Some(position) = first_bad {
            return Err(CryptoError::InvalidKey(InvalidKeyReason::NotHex {
                position,
            }));
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// [`EncryptionKey::from_hex`] of a setting's bytes, as PostgreSQL hands them over: a byte
    /// sequence that is not UTF-8 counts as one character that is not a hex digit.
    pub fn from_hex_bytes(setting: &[u8]) -> Result<Self, CryptoError> {
        let text = Zeroizing::new(String::from_utf8_lossy(setting).into_owned());
        Self::from_hex(&text)
    }

    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(KEY_ID_DOMAIN);
        hasher.update(bytes);
        let digest = hasher.finalize();
        let mut id = [0u8; 4];
        id.copy_from_slice(&digest[..4]);
        Self {
            cbc: Aes256::new(bytes.into()),
            gcm: Aes256Gcm::new(bytes.into()),
            id: KeyId(id),
        }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(super) fn cbc(&self) -> &Aes256 {
        &self.cbc
    }

    pub(super) fn gcm(&self) -> &Aes256Gcm {
        &self.gcm
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

// Both ciphers wipe their schedules in their own `Drop` (the `zeroize` features in Cargo.toml);
// `KeyId` is public by design.
impl ZeroizeOnDrop for EncryptionKey {}

/// A short public name for a key: the first 4 bytes of SHA-256("agentidp-key-id" || key),
/// written as 8 lowercase hex digits.
///
/// It identifies, it does not authenticate: 32 bits keep collisions among the handful of keys a
/// deployment holds negligible, and revealing it costs nothing, since finding a 256-bit random
/// key from its hash is infeasible.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 4]);

impl KeyId {
    /// Length of the hex form.
    pub const HEX_LEN: usize = 8;

    pub fn to_bytes(self) -> [u8; 4] {
        self.0
    }

    /// The 8 lowercase hex digits, as ASCII bytes.
    pub fn to_hex(self) -> [u8; Self::HEX_LEN] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; Self::HEX_LEN];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        hex
    }

    /// Parses exactly 8 lowercase hex digits, the only spelling the v2 format allows.
    pub fn parse(hex: &str) -> Option<Self> {
        let hex = hex.as_bytes();
        if hex.len() != Self::HEX_LEN {
            return None;
        }
        let mut id = [0u8; 4];
        for (byte, pair) in id.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (lower_hex_digit(pair[0])? << 4) | lower_hex_digit(pair[1])?;
        }
        Some(Self(id))
    }
}

fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_hex()
            .into_iter()
            .try_for_each(|c| f.write_char(char::from(c)))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

// Checked by the compiler, not by a test run. If a dependency update dropped the `zeroize`
// feature, this stops compiling rather than silently leaving key schedules in freed memory; and
// the sidecar holds its keys in an `Arc` shared by its worker threads.
const _: () = {
    const fn wipes_on_drop<T: ZeroizeOnDrop>() {}
    const fn shareable<T: Send + Sync>() {}
    wipes_on_drop::<Aes256>();
    wipes_on_drop::<Aes256Gcm>();
    shareable::<EncryptionKey>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_bytes_parse_as_their_text() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let from_bytes = EncryptionKey::from_hex_bytes(hex.as_bytes()).map(|k| k.id());
        assert_eq!(from_bytes, EncryptionKey::from_hex(hex).map(|k| k.id()));
        // A non-UTF-8 byte is one character, and not a hex digit: the length still counts 64.
        let mut bad = hex.as_bytes().to_vec();
        bad[5] = 0xc3;
        assert_eq!(
            EncryptionKey::from_hex_bytes(&bad).map(|k| k.id()),
            Err(CryptoError::InvalidKey(InvalidKeyReason::NotHex {
                position: 6
            }))
        );
        assert_eq!(
            EncryptionKey::from_hex_bytes(b"").map(|k| k.id()),
            Err(CryptoError::InvalidKey(InvalidKeyReason::WrongLength {
                chars: 0
            }))
        );
    }

    #[test]
    fn key_id_round_trips_through_its_hex_form() {
        let id = KeyId([0x01, 0xab, 0xcd, 0xef]);
        assert_eq!(id.to_string(), "01abcdef");
        assert_eq!(KeyId::parse("01abcdef"), Some(id));
        assert_eq!(KeyId::parse("01ABCDEF"), None);
        assert_eq!(KeyId::parse("01abcde"), None);
        assert_eq!(KeyId::parse("01abcdeg"), None);
        assert_eq!(KeyId::parse("01abcdef0"), None);
    }
}
