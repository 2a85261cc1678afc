//! The behaviour callers rely on: error texts, format recognition, passthrough, key rotation,
//! and the v2 format's binding to its column.

use aes::Aes256;
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use agentidp_core::crypto::{
    decrypt, decrypt_with_any, encrypt, encrypt_cbc_with_iv, encrypt_gcm_with_nonce, identify,
    is_encrypted, CryptoError, Decrypted, EncryptionKey, Envelope, Format, InvalidKeyReason,
    KeySetting, KeyUsed,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit};

const CURRENT_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
const OLD0_HEX: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const OLD1_HEX: &str = "5555555555555555555555555555555555555555555555555555555555555555";
const CONTEXT: &str = "public.users.email";

fn key(hex: &str) -> EncryptionKey {
    EncryptionKey::from_hex(hex).expect("valid key")
}

fn current() -> EncryptionKey {
    key(CURRENT_HEX)
}

fn text(result: Result<Decrypted<'_>, CryptoError>) -> Result<String, CryptoError> {
    result.map(|decrypted| decrypted.into_text().into_owned())
}

// ---------------------------------------------------------------------------------------------
// Error texts: part of the interface, so pinned verbatim.

#[test]
fn error_texts_are_exactly_the_specified_ones() {
    let cases = [
        (
            CryptoError::KeyMissing,
            "No encryption key configured: set agentidp.encryption_key",
        ),
        (
            CryptoError::InvalidKey(InvalidKeyReason::WrongLength { chars: 12 }),
            "Invalid encryption key (got 12 characters): expected a 64-character hex string",
        ),
        (
            CryptoError::InvalidKey(InvalidKeyReason::NotHex { position: 5 }),
            "Invalid encryption key (character 5 is not a hex digit): expected a 64-character \
             hex string",
        ),
        (
            CryptoError::InvalidOldKey {
                position: 2,
                reason: InvalidKeyReason::WrongLength { chars: 4 },
            },
            "Invalid encryption key in agentidp.encryption_old_keys (entry 2: got 4 characters): \
             expected a 64-character hex string",
        ),
        (
            CryptoError::KeyReadableBeforeLoad(KeySetting::Current),
            "agentidp.encryption_key refused: it was set before the pg_agentidp library was \
             loaded, when SHOW could read it back",
        ),
        (
            CryptoError::KeyMismatch,
            "AES-256-CBC decryption failed \u{2014} possible key mismatch",
        ),
        (
            CryptoError::AuthenticationFailed,
            "authenticated decryption failed \u{2014} wrong key, or value moved from another \
             column",
        ),
        (
            CryptoError::MalformedV2,
            "malformed agentidp:v2 value \u{2014} truncated or altered",
        ),
        (
            CryptoError::NotUtf8,
            "authenticated decryption produced bytes that are not UTF-8 text",
        ),
        (
            CryptoError::RandomUnavailable,
            "the operating system's random number generator failed",
        ),
        (CryptoError::TooLong, "value too long to encrypt"),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
    let value = encrypt("x", &key(OLD1_HEX), Format::GcmV2, CONTEXT).expect("encrypts");
    let unknown = decrypt(&value, &current(), CONTEXT);
    let Err(err @ CryptoError::UnknownKeyId(id)) = unknown else {
        panic!("expected UnknownKeyId, got {unknown:?}");
    };
    assert_eq!(id, key(OLD1_HEX).id());
    assert_eq!(
        err.to_string(),
        format!("value was encrypted under key id {id}, which is not among the configured keys")
    );
}

// ---------------------------------------------------------------------------------------------
// Keys.

#[test]
fn key_parsing_accepts_64_hex_digits_in_either_case() {
    let lower = key(CURRENT_HEX);
    let upper = key(&CURRENT_HEX.to_uppercase());
    assert_eq!(lower.id(), upper.id());
    let value = encrypt("x", &lower, Format::Cbc, "").expect("encrypts");
    assert_eq!(text(decrypt(&value, &upper, "")), Ok("x".to_owned()));
}

#[test]
fn key_parsing_rejects_everything_else_without_echoing_the_key() {
    let secret = "c0ffee".repeat(10); // 60 characters
    let cases = [
        (String::new(), "got 0 characters"),
        (secret.clone(), "got 60 characters"),
        (format!("{secret}0000a"), "got 65 characters"),
        (format!(" {secret}000"), "character 1 is not a hex digit"),
        (format!("{secret}000\n"), "character 64 is not a hex digit"),
        (format!("{secret}00g0"), "character 63 is not a hex digit"),
        (format!("0x{secret}00"), "character 2 is not a hex digit"),
        // 64 bytes but 63 characters: counted as characters, as a person would.
        (format!("{secret}0é"), "got 62 characters"),
        (format!("{secret}00é0"), "character 63 is not a hex digit"),
    ];
    for (input, reason) in cases {
        let err = EncryptionKey::from_hex(&input).expect_err("invalid key");
        let message = err.to_string();
        assert_eq!(
            message,
            format!("Invalid encryption key ({reason}): expected a 64-character hex string"),
            "input {input:?}"
        );
        assert!(!message.contains("c0ffee"), "{message}");
        assert!(!format!("{err:?}").contains("c0ffee"));
    }
}

#[test]
fn keys_never_print_their_bytes() {
    let key = current();
    assert_eq!(format!("{key:?}"), "EncryptionKey(<redacted>)");
    assert_eq!(format!("{key:#?}"), "EncryptionKey(<redacted>)");
    assert_eq!(
        format!("{:?}", Some(&key)),
        "Some(EncryptionKey(<redacted>))"
    );
}

#[test]
fn distinct_keys_have_distinct_ids() {
    let ids = [current().id(), key(OLD0_HEX).id(), key(OLD1_HEX).id()];
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    assert_ne!(ids[0], ids[2]);
    for id in ids {
        let hex = id.to_string();
        assert_eq!(hex.len(), 8);
        assert!(hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips.

fn plaintexts() -> Vec<String> {
    let mut texts: Vec<String> = ["", "a", "fifteen bytes!!", "sixteen bytes!!!", "a:b:c"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    texts.push("agentidp:v2:looks-like-a-prefix".to_owned());
    texts.push("pässwörd — 密码 — 🔑".to_owned());
    // Either side of the stack buffer's size, and well past it.
    for len in [495, 496, 497, 511, 512, 513, 5000] {
        texts.push("y".repeat(len));
    }
    texts
}

#[test]
fn both_formats_round_trip() {
    let key = current();
    for format in [Format::Cbc, Format::GcmV2] {
        for plaintext in plaintexts() {
            let value = encrypt(&plaintext, &key, format, CONTEXT).expect("encrypts");
            assert!(is_encrypted(&value), "{value}");
            assert_eq!(identify(&value).map(Envelope::format), Some(format));
            assert_eq!(
                decrypt(&value, &key, CONTEXT),
                Ok(Decrypted::Plaintext {
                    text: plaintext.clone(),
                    format,
                    key: KeyUsed::Current,
                })
            );
        }
    }
}

#[test]
fn each_encryption_uses_a_fresh_iv_or_nonce() {
    let key = current();
    for format in [Format::Cbc, Format::GcmV2] {
        let first = encrypt("same", &key, format, CONTEXT).expect("encrypts");
        let second = encrypt("same", &key, format, CONTEXT).expect("encrypts");
        assert_ne!(first, second);
    }
}

#[test]
fn identify_names_the_format_and_the_v2_key() {
    let key = current();
    let cbc = encrypt("x", &key, Format::Cbc, "").expect("encrypts");
    let v2 = encrypt("x", &key, Format::GcmV2, CONTEXT).expect("encrypts");
    assert_eq!(identify(&cbc), Some(Envelope::Cbc));
    assert_eq!(identify(&v2), Some(Envelope::GcmV2 { key_id: key.id() }));
    assert!(v2.starts_with(&format!("agentidp:v2:{}:", key.id())));
    assert_eq!(identify("plain"), None);
}

// ---------------------------------------------------------------------------------------------
// Recognition of the seed format.

/// A valid seed value: 16 zero bytes of IV, then 16 bytes of ciphertext.
const IV_ZERO: &str = "AAAAAAAAAAAAAAAAAAAAAA==";
const CT_16: &str = "+/v7+/v7+/v7+/v7+/v7+w==";

#[test]
fn seed_format_recognition_is_strict() {
    let valid = format!("{IV_ZERO}:{CT_16}");
    assert!(is_encrypted(&valid));
    let ct_15 = STANDARD.encode([0u8; 15]);
    let ct_17 = STANDARD.encode([0u8; 17]);
    let ct_32 = STANDARD.encode([0u8; 32]);
    assert!(is_encrypted(&format!("{IV_ZERO}:{ct_32}")));

    let not_encrypted = [
        String::new(),
        ":".to_owned(),
        "plain text".to_owned(),
        IV_ZERO.to_owned(),
        CT_16.to_owned(),
        // IV: wrong lengths, wrong decoded size, missing padding, non-canonical, URL-safe.
        format!("AAAAAAAAAAAAAAAAAAAAA==:{CT_16}"),
        format!("AAAAAAAAAAAAAAAAAAAAAAA==:{CT_16}"),
        format!("AAAAAAAAAAAAAAAAAAAAAAA=:{CT_16}"),
        format!("AAAAAAAAAAAAAAAAAAAAAAAA:{CT_16}"),
        format!("AAAAAAAAAAAAAAAAAAAAAA:{CT_16}"),
        format!("AAAAAAAAAAAAAAAAAAAAAB==:{CT_16}"),
        format!("AAAAAAAAAAAAAAAAAAAA-w==:{CT_16}"),
        // Ciphertext: empty, 15 and 17 bytes, missing padding, URL-safe alphabet,
        // non-canonical trailing bits, non-base64.
        format!("{IV_ZERO}:"),
        format!("{IV_ZERO}:{ct_15}"),
        format!("{IV_ZERO}:{ct_17}"),
        format!("{IV_ZERO}:+/v7+/v7+/v7+/v7+/v7+w"),
        format!("{IV_ZERO}:-_v7-_v7-_v7-_v7-_v7-w=="),
        format!("{IV_ZERO}:+/v7+/v7+/v7+/v7+/v7+x=="),
        format!("{IV_ZERO}:+/v7+/v7+/v7+/v7+/v7+w=!"),
        format!("{IV_ZERO}:+/v7+/v7+/v7+/v7+/v7é=="),
        // Whitespace anywhere.
        format!(" {valid}"),
        format!("{valid}\n"),
        format!("{valid} "),
        format!("{IV_ZERO} :{CT_16}"),
        format!("{IV_ZERO}: {CT_16}"),
        format!("{IV_ZERO}:+/v7+/v7+/v7\n+/v7+/v7+w=="),
        // Separators.
        format!("{IV_ZERO}:{CT_16}:"),
        format!("{IV_ZERO}:{CT_16}:{CT_16}"),
        format!(":{IV_ZERO}:{CT_16}"),
        format!("{IV_ZERO}{CT_16}"),
        format!("{IV_ZERO};{CT_16}"),
    ];
    for value in &not_encrypted {
        assert!(!is_encrypted(value), "{value:?}");
        assert_eq!(identify(value), None, "{value:?}");
        // Anything not recognised passes through unchanged, borrowed, whatever the key.
        match decrypt(value, &current(), CONTEXT) {
            Ok(Decrypted::NotEncrypted(passed)) => assert!(std::ptr::eq(passed, value.as_str())),
            other => panic!("{value:?} should pass through, got {other:?}"),
        }
    }
}

#[test]
fn passthrough_is_reported_as_such() {
    let decrypted = decrypt("alice@example.com", &current(), CONTEXT).expect("passes through");
    assert!(!decrypted.was_encrypted());
    assert_eq!(decrypted.as_str(), "alice@example.com");
    assert_eq!(decrypted, Decrypted::NotEncrypted("alice@example.com"));
}

// ---------------------------------------------------------------------------------------------
// Seed-format decryption failures.

#[test]
fn a_wrong_key_is_a_key_mismatch() {
    let value = encrypt_cbc_with_iv("alice@example.com", &key(OLD0_HEX), &[9; 16]);
    assert_eq!(
        decrypt(&value, &current(), ""),
        Err(CryptoError::KeyMismatch)
    );
}

#[test]
fn bytes_that_are_not_utf8_are_a_key_mismatch() {
    let iv = [3u8; 16];
    let key_raw: [u8; 32] = hex::decode(CURRENT_HEX)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let mut buf = [0u8; 16];
    let ciphertext = cbc::Encryptor::<Aes256>::new(&key_raw.into(), &iv.into())
        .encrypt_padded_b2b::<Pkcs7>(b"caf\xe9", &mut buf)
        .expect("one block is enough");
    let value = format!("{}:{}", STANDARD.encode(iv), STANDARD.encode(ciphertext));
    assert!(is_encrypted(&value));
    assert_eq!(
        decrypt(&value, &current(), ""),
        Err(CryptoError::KeyMismatch)
    );
}

/// Documents the seed format's weakness rather than a feature: flipping a bit of the IV flips
/// the same bit of the first plaintext block, and decryption cannot tell.
#[test]
fn seed_values_are_malleable() {
    let key = current();
    let value = encrypt_cbc_with_iv("pay alice", &key, &[0; 16]);
    let (iv_b64, ciphertext_b64) = value.split_once(':').expect("colon");
    let mut iv = STANDARD.decode(iv_b64).expect("base64");
    for (i, (from, to)) in "alice".bytes().zip("mallo".bytes()).enumerate() {
        iv[4 + i] ^= from ^ to;
    }
    let forged = format!("{}:{ciphertext_b64}", STANDARD.encode(&iv));
    assert_eq!(text(decrypt(&forged, &key, "")), Ok("pay mallo".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// The v2 format.

#[test]
fn v2_values_are_bound_to_their_column() {
    let key = current();
    let value = encrypt("alice@example.com", &key, Format::GcmV2, CONTEXT).expect("encrypts");
    assert_eq!(
        text(decrypt(&value, &key, CONTEXT)),
        Ok("alice@example.com".to_owned())
    );
    for other in [
        "public.users.phone",
        "public.admins.email",
        "",
        "public.users.email ",
    ] {
        assert_eq!(
            decrypt(&value, &key, other),
            Err(CryptoError::AuthenticationFailed),
            "context {other:?}"
        );
    }
}

#[test]
fn v2_values_resist_tampering() {
    let key = current();
    let value =
        encrypt_gcm_with_nonce("alice@example.com", &key, &[1; 12], CONTEXT).expect("encrypts");
    let (head, sealed_b64) = value.rsplit_once(':').expect("colons");
    let mut sealed = STANDARD.decode(sealed_b64).expect("base64");
    for index in [0, sealed.len() / 2, sealed.len() - 1] {
        sealed[index] ^= 0x80;
        let tampered = format!("{head}:{}", STANDARD.encode(&sealed));
        sealed[index] ^= 0x80;
        assert_eq!(
            decrypt(&tampered, &key, CONTEXT),
            Err(CryptoError::AuthenticationFailed),
            "byte {index}"
        );
    }
    // Cut to a shorter but well-formed value: the tag no longer matches.
    let shortened = format!("{head}:{}", STANDARD.encode(&sealed[..sealed.len() - 3]));
    assert_eq!(
        decrypt(&shortened, &key, CONTEXT),
        Err(CryptoError::AuthenticationFailed)
    );
    // A different nonce.
    let renonced = value.replace(&STANDARD.encode([1u8; 12]), &STANDARD.encode([2u8; 12]));
    assert_ne!(renonced, value);
    assert_eq!(
        decrypt(&renonced, &key, CONTEXT),
        Err(CryptoError::AuthenticationFailed)
    );
}

#[test]
fn a_v2_value_relabelled_with_another_key_id_fails_authentication() {
    let current = current();
    let old = key(OLD0_HEX);
    let value = encrypt("x", &old, Format::GcmV2, CONTEXT).expect("encrypts");
    let relabelled = value.replace(&old.id().to_string(), &current.id().to_string());
    assert_eq!(
        decrypt_with_any(&relabelled, &current, &[old], CONTEXT),
        Err(CryptoError::AuthenticationFailed)
    );
}

#[test]
fn damaged_v2_values_are_errors_not_plaintext() {
    let key = current();
    let value =
        encrypt_gcm_with_nonce("alice@example.com", &key, &[1; 12], CONTEXT).expect("encrypts");
    let id = key.id().to_string();
    let nonce = STANDARD.encode([1u8; 12]);
    let tag_only = STANDARD.encode([0u8; 16]);
    let damaged = [
        "agentidp:v2:".to_owned(),
        value[..value.len() - 1].to_owned(),
        format!("{value}:"),
        format!("{value}="),
        value.replace(&id, &id.to_uppercase()),
        value.replace(&id, &id[..7]),
        value.replace(&nonce, &nonce[..15]),
        value.replace(&nonce, &format!("{}=", &nonce[..15])),
        format!("agentidp:v2:{id}:{nonce}:"),
        format!("agentidp:v2:{id}:{nonce}:{}", STANDARD.encode([0u8; 15])),
        format!("agentidp:v2:{id}:{nonce}"),
        format!("agentidp:v2:{id}:{nonce}:{tag_only} "),
        format!("agentidp:v2:{id}:{nonce}:{}", tag_only.replace('A', "-")),
    ];
    assert!(is_encrypted(&format!(
        "agentidp:v2:{id}:{nonce}:{tag_only}"
    )));
    for value in &damaged {
        assert!(!is_encrypted(value), "{value:?}");
        assert_eq!(
            decrypt(value, &key, CONTEXT),
            Err(CryptoError::MalformedV2),
            "{value:?}"
        );
    }
}

#[test]
fn only_the_exact_prefix_marks_a_v2_value() {
    let key = current();
    let value = encrypt("x", &key, Format::GcmV2, CONTEXT).expect("encrypts");
    for lookalike in [
        value.replacen("agentidp:v2:", "agentidp:v3:", 1),
        value.replacen("agentidp:v2:", "AGENTIDP:v2:", 1),
        value.replacen("agentidp:v2:", " agentidp:v2:", 1),
        "agentidp:v2".to_owned(),
    ] {
        assert!(!is_encrypted(&lookalike));
        assert_eq!(
            decrypt(&lookalike, &key, CONTEXT),
            Ok(Decrypted::NotEncrypted(&lookalike))
        );
    }
}

#[test]
fn authenticated_bytes_that_are_not_utf8_are_reported() {
    let key_raw: [u8; 32] = hex::decode(CURRENT_HEX)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let key = current();
    let nonce = [5u8; 12];
    let aad = format!("agentidp:v2:{}:{CONTEXT}", key.id());
    let mut sealed = b"caf\xe9".to_vec();
    let tag = Aes256Gcm::new(&key_raw.into())
        .encrypt_inout_detached(&nonce.into(), aad.as_bytes(), sealed.as_mut_slice().into())
        .expect("encrypts");
    sealed.extend_from_slice(&tag);
    let value = format!(
        "agentidp:v2:{}:{}:{}",
        key.id(),
        STANDARD.encode(nonce),
        STANDARD.encode(&sealed)
    );
    assert_eq!(decrypt(&value, &key, CONTEXT), Err(CryptoError::NotUtf8));
}

// ---------------------------------------------------------------------------------------------
// Rotation.

#[test]
fn rotation_reports_which_key_decrypted_each_value() {
    let current = current();
    let olds = [key(OLD0_HEX), key(OLD1_HEX)];
    let cases = [
        (&current, KeyUsed::Current),
        (&olds[0], KeyUsed::Old(0)),
        (&olds[1], KeyUsed::Old(1)),
    ];
    for format in [Format::Cbc, Format::GcmV2] {
        for (encrypting_key, expected) in cases {
            let value =
                encrypt("alice@example.com", encrypting_key, format, CONTEXT).expect("encrypts");
            assert_eq!(
                decrypt_with_any(&value, &current, &olds, CONTEXT),
                Ok(Decrypted::Plaintext {
                    text: "alice@example.com".to_owned(),
                    format,
                    key: expected,
                }),
                "{format:?} under {expected:?}"
            );
        }
    }
}

#[test]
fn rotation_fails_cleanly_when_no_key_fits() {
    let current = current();
    let olds = [key(OLD0_HEX)];
    let stranger = key(OLD1_HEX);

    let cbc = encrypt_cbc_with_iv("alice@example.com", &stranger, &[4; 16]);
    assert_eq!(
        decrypt_with_any(&cbc, &current, &olds, CONTEXT),
        Err(CryptoError::KeyMismatch)
    );

    let v2 = encrypt("alice@example.com", &stranger, Format::GcmV2, CONTEXT).expect("encrypts");
    assert_eq!(
        decrypt_with_any(&v2, &current, &olds, CONTEXT),
        Err(CryptoError::UnknownKeyId(stranger.id()))
    );
}

#[test]
fn without_old_keys_a_value_under_an_old_key_does_not_decrypt() {
    let old = key(OLD0_HEX);
    let v2 = encrypt("x", &old, Format::GcmV2, CONTEXT).expect("encrypts");
    assert_eq!(
        decrypt(&v2, &current(), CONTEXT),
        Err(CryptoError::UnknownKeyId(old.id()))
    );
}
