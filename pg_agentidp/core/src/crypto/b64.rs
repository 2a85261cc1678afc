//! Strict base64 and the small buffers the per-row paths decode into.
//!
//! "Strict" is the standard alphabet with canonical `=` padding and zero trailing bits: exactly
//! what Node's `Buffer#toString('base64')` writes, and one spelling per byte string, so a value
//! cannot be re-spelt (URL-safe alphabet, dropped padding, stray whitespace) and still be
//! recognised.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The exact number of bytes `encoded` decodes to, if its length is possible for padded base64.
/// Says nothing about whether the characters are valid.
pub(super) fn decoded_len(encoded: &str) -> Option<usize> {
    let bytes = encoded.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let padding = bytes
        .iter()
        .rev()
        .take(2)
        .take_while(|&&c| c == b'=')
        .count();
    (bytes.len() / 4 * 3).checked_sub(padding)
}

/// Decodes `encoded` into `out`, succeeding only if it is strict base64 of exactly `out.len()`
/// bytes.
pub(super) fn decode_exact(encoded: &str, out: &mut [u8]) -> bool {
    matches!(STANDARD.decode_slice(encoded, out), Ok(written) if written == out.len())
}

/// Whether `encoded` is strict base64 of exactly `len` bytes, without allocating for short
/// values.
pub(super) fn is_valid(encoded: &str, len: usize) -> bool {
    super::with_scratch(len, |scratch| decode_exact(encoded, scratch))
}

/// Appends the strict base64 of `bytes` to `out`.
pub(super) fn encode_into(bytes: &[u8], out: &mut String) {
    STANDARD.encode_string(bytes, out);
}

/// Length of the strict base64 of `len` bytes.
pub(super) fn encoded_len(len: usize) -> Option<usize> {
    base64::encoded_len(len, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_len_counts_padding() {
        assert_eq!(decoded_len(""), Some(0));
        assert_eq!(decoded_len("QQ=="), Some(1));
        assert_eq!(decoded_len("QUI="), Some(2));
        assert_eq!(decoded_len("QUJD"), Some(3));
        assert_eq!(decoded_len("QUJ"), None);
    }

    #[test]
    fn decode_exact_accepts_an_exactly_sized_buffer_only() {
        let mut two = [0u8; 2];
        assert!(decode_exact("QUI=", &mut two));
        assert_eq!(&two, b"AB");
        let mut three = [0u8; 3];
        assert!(!decode_exact("QUI=", &mut three));
        let mut one = [0u8; 1];
        assert!(!decode_exact("QUI=", &mut one));
    }

    #[test]
    fn decode_exact_rejects_non_canonical_spellings() {
        let mut two = [0u8; 2];
        // Non-zero trailing bits, missing padding, URL-safe alphabet, whitespace.
        assert!(!decode_exact("QUJ=", &mut two));
        let mut two = [0u8; 2];
        assert!(!decode_exact("QUI", &mut two));
        let mut three = [0u8; 3];
        assert!(!decode_exact("-_-_", &mut three));
        assert!(!decode_exact(" QUJD", &mut three));
    }

    #[test]
    fn large_values_use_the_heap_path() {
        let bytes = vec![7u8; super::super::STACK_SCRATCH_LEN * 2];
        let mut encoded = String::new();
        encode_into(&bytes, &mut encoded);
        assert!(is_valid(&encoded, bytes.len()));
        assert!(!is_valid(&encoded, bytes.len() - 1));
    }
}
