//! Property tests: decryption and recognition take arbitrary column contents, so whatever they
//! are fed they must return passthrough, plaintext or a clean error, never panic, and agree with
//! each other.

use agentidp_core::crypto::{
    decrypt, decrypt_with_any, encrypt, identify, is_encrypted, CryptoError, Decrypted,
    EncryptionKey, Envelope, Format, KeyUsed, V2_PREFIX,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use proptest::prelude::*;

const CURRENT_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
const OLD_HEX: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const CONTEXT: &str = "public.users.email";

fn keys() -> (EncryptionKey, [EncryptionKey; 1]) {
    let current = EncryptionKey::from_hex(CURRENT_HEX).expect("valid key");
    let old = EncryptionKey::from_hex(OLD_HEX).expect("valid key");
    (current, [old])
}

/// The contract every input must meet, whatever its shape.
fn check_contract(value: &str) -> Result<(), TestCaseError> {
    let (current, olds) = keys();
    let recognised = identify(value);
    prop_assert_eq!(is_encrypted(value), recognised.is_some());
    let outcome = decrypt_with_any(value, &current, &olds, CONTEXT);
    match (&outcome, recognised) {
        (Ok(Decrypted::NotEncrypted(passed)), None) => {
            prop_assert!(std::ptr::eq(*passed, value));
            prop_assert!(!value.starts_with(V2_PREFIX));
        }
        (Err(CryptoError::MalformedV2), None) => prop_assert!(value.starts_with(V2_PREFIX)),
        (Ok(Decrypted::Plaintext { format, .. }), Some(envelope)) => {
            prop_assert_eq!(*format, envelope.format());
        }
        (Err(CryptoError::KeyMismatch), Some(Envelope::Cbc)) => {}
        (
            Err(CryptoError::AuthenticationFailed | CryptoError::NotUtf8),
            Some(Envelope::GcmV2 { .. }),
        ) => {}
        (Err(CryptoError::UnknownKeyId(id)), Some(Envelope::GcmV2 { key_id })) => {
            prop_assert_eq!(*id, key_id);
        }
        _ => prop_assert!(
            false,
            "{value:?}: {outcome:?} with identify = {recognised:?}"
        ),
    }
    // The single-key entry point obeys the same rules.
    let _ = decrypt(value, &current, CONTEXT);
    Ok(())
}

fn base64_of(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), len).prop_map(|bytes| STANDARD.encode(bytes))
}

/// Values assembled from well-formed parts of roughly the right sizes, so the checks past the
/// first few characters, and the decryption itself, are actually reached; random strings almost
/// never get that far.
fn format_shaped() -> impl Strategy<Value = String> {
    let (current, olds) = keys();
    let key_id = prop_oneof![
        Just(current.id().to_string()),
        Just(olds[0].id().to_string()),
        "[0-9a-f]{8}",
    ];
    let seed = (base64_of(15..18), base64_of(0..70))
        .prop_map(|(iv, ciphertext)| format!("{iv}:{ciphertext}"));
    let v2 = (key_id, base64_of(11..14), base64_of(0..70))
        .prop_map(|(id, nonce, sealed)| format!("{V2_PREFIX}{id}:{nonce}:{sealed}"));
    prop_oneof![seed, v2]
}

/// Small edits of a valid value: replace, insert or delete one character, or cut it short.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let c = prop_oneof![
        proptest::char::range('+', 'z'),
        Just(':'),
        Just('='),
        Just(' '),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), c.clone()).prop_map(|(at, c)| Mutation::Replace(at, c)),
        (any::<usize>(), c).prop_map(|(at, c)| Mutation::Insert(at, c)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Applies `mutation`; positions wrap around the value's length.
fn apply(value: &str, mutation: &Mutation) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    let len = chars.len();
    match *mutation {
        Mutation::Insert(at, c) => chars.insert(at % (len + 1), c),
        _ if len == 0 => {}
        Mutation::Replace(at, c) => chars[at % len] = c,
        Mutation::Delete(at) => {
            chars.remove(at % len);
        }
        Mutation::Truncate(at) => chars.truncate(at % len),
    }
    chars.into_iter().collect()
}

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Cbc), Just(Format::GcmV2)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_meet_the_contract(value in any::<String>()) {
        check_contract(&value)?;
    }

    #[test]
    fn format_shaped_strings_meet_the_contract(
        value in format_shaped(),
        mutations in proptest::collection::vec(mutation(), 0..2),
    ) {
        let value = mutations.iter().fold(value, |value, mutation| apply(&value, mutation));
        check_contract(&value)?;
    }

    #[test]
    fn mutated_values_meet_the_contract(
        plaintext in ".{0,40}",
        format in format(),
        under_old_key in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let (current, olds) = keys();
        let key = if under_old_key { &olds[0] } else { &current };
        let original = encrypt(&plaintext, key, format, CONTEXT).expect("encrypts");
        let mut value = original.clone();
        for mutation in &mutations {
            value = apply(&value, mutation);
        }
        check_contract(&value)?;
        // GCM's promise: any change at all, and the value no longer decrypts.
        if format == Format::GcmV2 && value != original {
            let outcome = decrypt_with_any(&value, &current, &olds, CONTEXT);
            prop_assert!(
                !matches!(outcome, Ok(Decrypted::Plaintext { .. })),
                "{value:?} decrypted after mutation: {outcome:?}"
            );
        }
    }

    #[test]
    fn encryption_round_trips(
        plaintext in any::<String>(),
        context in ".{0,600}",
        format in format(),
        under_old_key in any::<bool>(),
    ) {
        let (current, olds) = keys();
        let (key, expected) = if under_old_key {
            (&olds[0], KeyUsed::Old(0))
        } else {
            (&current, KeyUsed::Current)
        };
        let value = encrypt(&plaintext, key, format, &context).expect("encrypts");
        prop_assert!(is_encrypted(&value));
        let decrypted = decrypt_with_any(&value, &current, &olds, &context);
        // A seed value under the old key is tried with the current key first, which may, about
        // once in a few hundred thousand values, "succeed" with garbage; that is the documented
        // weakness of the unauthenticated format, so only the authenticated one is held to an
        // exact key here.
        match (format, under_old_key) {
            (Format::Cbc, true) => prop_assert!(decrypted.is_ok()),
            _ => prop_assert_eq!(
                decrypted,
                Ok(Decrypted::Plaintext { text: plaintext, format, key: expected })
            ),
        }
    }
}
