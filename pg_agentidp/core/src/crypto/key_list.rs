//! The list form of `agentidp.encryption_old_keys`, which the sidecar also reads from Vault:
//! comma-separated keys, blanks (ASCII whitespace) around an entry trimmed, empty entries
//! ignored. An entry is named by its 1-based position among the non-empty ones, never quoted.

use std::ops::Range;

use super::{CryptoError, EncryptionKey};

/// The non-empty entries of `list`, trimmed, each with its 1-based position, as byte ranges of
/// `list`.
pub fn entry_ranges(list: &[u8]) -> impl Iterator<Item = (usize, Range<usize>)> + '_ {
    let mut next = 0;
    list.split(|&b| b == b',')
        .map(move |entry| {
            let start = next + (entry.len() - entry.trim_ascii_start().len());
            next += entry.len() + 1;
            start..start + entry.trim_ascii().len()
        })
        .filter(|range| !range.is_empty())
        .enumerate()
        .map(|(i, range)| (i + 1, range))
}

/// [`entry_ranges`] of a text: the entries themselves.
pub fn entries(list: &str) -> impl Iterator<Item = (usize, &str)> {
    // Commas and ASCII blanks are single bytes, so every range falls on character boundaries.
    entry_ranges(list.as_bytes()).map(move |(position, range)| (position, &list[range]))
}

/// Parses every entry as a key. A bad entry is `InvalidOldKey` with its position; the error holds
/// nothing of the entry.
pub fn parse(list: &[u8]) -> Result<Vec<EncryptionKey>, CryptoError> {
    entry_ranges(list)
        .map(|(position, range)| {
            EncryptionKey::from_hex_bytes(&list[range]).map_err(|e| match e {
                CryptoError::InvalidKey(reason) => CryptoError::InvalidOldKey { position, reason },
                other => other,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crypto::InvalidKeyReason;

    const A: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
    const B: &str = "abababababababababababababababababababababababababababababababab";

    fn listed(list: &str) -> Vec<(usize, &str)> {
        entries(list).collect()
    }

    #[test]
    fn entries_are_trimmed_and_empty_ones_skipped() {
        assert_eq!(listed(""), []);
        assert_eq!(listed(" , ,\t,"), []);
        assert_eq!(listed("a"), [(1, "a")]);
        assert_eq!(listed(" a ,,\tb\n,"), [(1, "a"), (2, "b")]);
        assert_eq!(listed(",,a,, b c ,"), [(1, "a"), (2, "b c")]);
    }

    #[test]
    fn ranges_index_the_input() {
        let list = b" x, ,yy ";
        let ranges: Vec<_> = entry_ranges(list).collect();
        assert_eq!(ranges, [(1, 1..2), (2, 5..7)]);
        assert_eq!(&list[5..7], b"yy");
    }

    #[test]
    fn non_ascii_text_keeps_its_characters() {
        assert_eq!(listed(" é ,ü"), [(1, "é"), (2, "ü")]);
        // Only ASCII blanks are trimmed: a no-break space is part of the entry.
        assert_eq!(listed("\u{a0}a"), [(1, "\u{a0}a")]);
    }

    #[test]
    fn parses_keys_in_order() {
        let keys = parse(format!(" {A} ,,{B},").as_bytes()).unwrap();
        let ids: Vec<_> = keys.iter().map(EncryptionKey::id).collect();
        assert_eq!(
            ids,
            [
                EncryptionKey::from_hex(A).unwrap().id(),
                EncryptionKey::from_hex(B).unwrap().id()
            ]
        );
        assert!(parse(b" , ").unwrap().is_empty());
    }

    #[test]
    fn a_bad_entry_is_named_by_position_among_non_empty_ones() {
        let e = parse(format!("{A},,{}", &B[..60]).as_bytes()).unwrap_err();
        assert_eq!(
            e,
            CryptoError::InvalidOldKey {
                position: 2,
                reason: InvalidKeyReason::WrongLength { chars: 60 }
            }
        );
        assert!(!e.to_string().contains(&B[..60]));
        let e = parse(format!("{A}, {}g", &B[..63]).as_bytes()).unwrap_err();
        assert_eq!(
            e,
            CryptoError::InvalidOldKey {
                position: 2,
                reason: InvalidKeyReason::NotHex { position: 64 }
            }
        );
    }

    #[test]
    fn a_byte_that_is_not_utf8_is_not_a_hex_digit() {
        let mut list = format!("{A},{B}").into_bytes();
        list[65 + 3] = 0xff;
        assert_eq!(
            parse(&list).unwrap_err(),
            CryptoError::InvalidOldKey {
                position: 2,
                reason: InvalidKeyReason::NotHex { position: 4 }
            }
        );
    }
}
