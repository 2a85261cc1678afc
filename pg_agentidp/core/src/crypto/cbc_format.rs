//! The seed format, `base64(iv):base64(ciphertext)`, AES-256-CBC with PKCS#7 padding.

use aes::Aes256;
use cbc::cipher::array::Array;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit};

use super::key::EncryptionKey;
use super::{b64, with_scratch, CryptoError, KeyUsed, CBC_IV_LEN};

const BLOCK_LEN: usize = 16;

/// Base64 of 16 bytes: 22 characters and `==`.
const IV_B64_LEN: usize = 24;

/// The cipher is borrowed, so the key schedule built once in [`EncryptionKey`] is reused.
type Encryptor<'k> = cbc::Encryptor<&'k Aes256>;
type Decryptor<'k> = cbc::Decryptor<&'k Aes256>;

/// A value that has the seed format's shape. Its ciphertext's base64 is only checked for length
/// here; it is validated when decoded, so a per-row decrypt decodes it once.
pub(super) struct Parsed<'a> {
    iv: [u8; CBC_IV_LEN],
    ciphertext_b64: &'a str,
    ciphertext_len: usize,
}

pub(super) fn parse(value: &str) -> Option<Parsed<'_>> {
    let (iv_b64, ciphertext_b64) = value.split_once(':')?;
    if iv_b64.len() != IV_B64_LEN || ciphertext_b64.contains(':') {
        return None;
    }
    let mut iv = [0u8; CBC_IV_LEN];
    if !b64::decode_exact(iv_b64, &mut iv) {
        return None;
    }
    let ciphertext_len = b64::decoded_len(ciphertext_b64)?;
    if ciphertext_len == 0 || !ciphertext_len.is_multiple_of(BLOCK_LEN) {
        return None;
    }
    Some(Parsed {
        iv,
        ciphertext_b64,
        ciphertext_len,
    })
}

impl Parsed<'_> {
    pub(super) fn payload_is_valid(&self) -> bool {
        b64::is_valid(self.ciphertext_b64, self.ciphertext_len)
    }

    /// Decrypts with the first key under which the padding is valid and the plaintext is UTF-8.
    /// `Ok(None)` means the ciphertext is not strict base64, so the value is not encrypted after
    /// all.
    pub(super) fn open<'k>(
        &self,
        keys: impl Iterator<Item = (KeyUsed, &'k EncryptionKey)>,
    ) -> Result<Option<(String, KeyUsed)>, CryptoError> {
        with_scratch(self.ciphertext_len, |ciphertext| {
            if !b64::decode_exact(self.ciphertext_b64, ciphertext) {
                return Ok(None);
            }
            // Becomes the returned `String` without a copy, so the only allocation is the result.
            let mut out = vec![0u8; self.ciphertext_len];
            for (used, key) in keys {
                out.resize(self.ciphertext_len, 0);
                let decryptor = Decryptor::inner_iv_init(key.cbc(), &self.iv.into());
                let Ok(plaintext) = decryptor.decrypt_padded_b2b::<Pkcs7>(ciphertext, &mut out)
                else {
                    continue;
                };
                let plaintext_len = plaintext.len();
                out.truncate(plaintext_len);
                match String::from_utf8(out) {
                    Ok(text) => return Ok(Some((text, used))),
                    Err(not_utf8) => out = not_utf8.into_bytes(),
                }
            }
            Err(CryptoError::KeyMismatch)
        })
    }
}

pub(super) fn seal(plaintext: &[u8], key: &EncryptionKey, iv: &[u8; CBC_IV_LEN]) -> String {
    // PKCS#7 always adds 1 to 16 bytes, so a whole block of padding follows an aligned plaintext.
    let padded_len = (plaintext.len() / BLOCK_LEN + 1) * BLOCK_LEN;
    let capacity = b64::encoded_len(padded_len).map_or(0, |len| IV_B64_LEN + 1 + len);
    let mut out = String::with_capacity(capacity);
    b64::encode_into(iv, &mut out);
    out.push(':');
    with_scratch(padded_len, |buf| {
        // Padding by hand rather than through `encrypt_padded_b2b` leaves no error path for a
        // buffer size this function has just computed.
        let (message, padding) = buf.split_at_mut(plaintext.len());
        message.copy_from_slice(plaintext);
        // `padding` is 1..=16 bytes long, so its length fits in a byte.
        padding.fill(padding.len() as u8);
        let (blocks, _) = Array::slice_as_chunks_mut(buf);
        Encryptor::inner_iv_init(key.cbc(), &(*iv).into()).encrypt_blocks(blocks);
        b64::encode_into(buf, &mut out);
    });
    out
}
