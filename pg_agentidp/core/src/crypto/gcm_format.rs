//! The v2 format, `agentidp:v2:<key id>:<base64(nonce)>:<base64(ciphertext || tag)>`,
//! AES-256-GCM with the column bound in as associated data.

use aes_gcm::aead::AeadInOut;
use aes_gcm::Tag;

use super::key::{EncryptionKey, KeyId};
use super::{b64, with_scratch, CryptoError, KeyUsed, GCM_NONCE_LEN, V2_PREFIX};

const TAG_LEN: usize = 16;

/// Base64 of 12 bytes: 16 characters, no padding needed.
const NONCE_B64_LEN: usize = 16;

/// The value has the v2 prefix but not the rest of the v2 shape.
pub(super) struct Malformed;

/// A value that has the v2 shape. The sealed part's base64 is only checked for length here; it is
/// validated when decoded, so a per-row decrypt decodes it once.
pub(super) struct Parsed<'a> {
    pub(super) key_id: KeyId,
    nonce: [u8; GCM_NONCE_LEN],
    sealed_b64: &'a str,
    sealed_len: usize,
}

/// `None` when the value lacks the v2 prefix (so it may be another format or plaintext).
pub(super) fn parse(value: &str) -> Option<Result<Parsed<'_>, Malformed>> {
    let rest = value.strip_prefix(V2_PREFIX)?;
    Some(parse_after_prefix(rest).ok_or(Malformed))
}

fn parse_after_prefix(rest: &str) -> Option<Parsed<'_>> {
    let mut fields = rest.split(':');
    let (key_id, nonce_b64, sealed_b64) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || nonce_b64.len() != NONCE_B64_LEN {
        return None;
    }
    let key_id = KeyId::parse(key_id)?;
    let mut nonce = [0u8; GCM_NONCE_LEN];
    if !b64::decode_exact(nonce_b64, &mut nonce) {
        return None;
    }
    let sealed_len = b64::decoded_len(sealed_b64)?;
    if sealed_len < TAG_LEN {
        return None;
    }
    Some(Parsed {
        key_id,
        nonce,
        sealed_b64,
        sealed_len,
    })
}

impl Parsed<'_> {
    pub(super) fn payload_is_valid(&self) -> bool {
        b64::is_valid(self.sealed_b64, self.sealed_len)
    }

    /// Decrypts with the keys whose id the value names, in the order given.
    pub(super) fn open<'k>(
        &self,
        keys: impl Iterator<Item = (KeyUsed, &'k EncryptionKey)>,
        context: &str,
    ) -> Result<(String, KeyUsed), CryptoError> {
        // Decoded straight into what becomes the returned `String`; decryption is in place.
        let mut out = vec![0u8; self.sealed_len];
        if !b64::decode_exact(self.sealed_b64, &mut out) {
            return Err(CryptoError::MalformedV2);
        }
        let mut candidates = keys.filter(|(_, key)| key.id() == self.key_id).peekable();
        if candidates.peek().is_none() {
            return Err(CryptoError::UnknownKeyId(self.key_id));
        }
        let plaintext_len = self.sealed_len - TAG_LEN;
        let (ciphertext, tag) = out.split_at_mut(plaintext_len);
        let tag = Tag::try_from(&*tag).map_err(|_| CryptoError::MalformedV2)?;
        let opened = with_aad(self.key_id, context, |aad| {
            // GCM checks the tag before decrypting, so a failed candidate leaves the ciphertext
            // intact for the next one.
            candidates.find(|(_, key)| {
                key.gcm()
                    .decrypt_inout_detached(
                        &self.nonce.into(),
                        aad,
                        (&mut *ciphertext).into(),
                        &tag,
                    )
                    .is_ok()
            })
        });
        let (used, _) = opened.ok_or(CryptoError::AuthenticationFailed)?;
        out.truncate(plaintext_len);
        let text = String::from_utf8(out).map_err(|_| CryptoError::NotUtf8)?;
        Ok((text, used))
    }
}

pub(super) fn seal(
    plaintext: &[u8],
    key: &EncryptionKey,
    nonce: &[u8; GCM_NONCE_LEN],
    context: &str,
) -> Result<String, CryptoError> {
    let key_id = key.id();
    let sealed_len = plaintext
        .len()
        .checked_add(TAG_LEN)
        .ok_or(CryptoError::TooLong)?;
    let capacity = b64::encoded_len(sealed_len)
        .and_then(|len| len.checked_add(V2_PREFIX.len() + KeyId::HEX_LEN + NONCE_B64_LEN + 2))
        .ok_or(CryptoError::TooLong)?;
    let mut out = String::with_capacity(capacity);
    out.push_str(V2_PREFIX);
    out.extend(key_id.to_hex().map(char::from));
    out.push(':');
    b64::encode_into(nonce, &mut out);
    out.push(':');
    with_scratch(sealed_len, |buf| {
        let (message, tag_out) = buf.split_at_mut(plaintext.len());
        message.copy_from_slice(plaintext);
        let tag = with_aad(key_id, context, |aad| {
            key.gcm()
                .encrypt_inout_detached(&(*nonce).into(), aad, message.into())
        })
        .map_err(|_| CryptoError::TooLong)?;
        tag_out.copy_from_slice(&tag);
        b64::encode_into(buf, &mut out);
        Ok(out)
    })
}

/// Runs `f` on the associated data `agentidp:v2:<key id>:<context>`, built without allocating
/// for ordinary column names. The key id's fixed width keeps the encoding unambiguous.
fn with_aad<R>(key_id: KeyId, context: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    let header_len = V2_PREFIX.len() + KeyId::HEX_LEN + 1;
    with_scratch(header_len + context.len(), |aad| {
        let (header, tail) = aad.split_at_mut(header_len);
        header[..V2_PREFIX.len()].copy_from_slice(V2_PREFIX.as_bytes());
        header[V2_PREFIX.len()..header_len - 1].copy_from_slice(&key_id.to_hex());
        header[header_len - 1] = b':';
        tail.copy_from_slice(context.as_bytes());
        f(aad)
    })
}
