//! Published known-answer vectors: they prove the primitives, and that the formats use them the
//! way the module documentation says.

use aes::Aes256;
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Tag};
use agentidp_core::crypto::{
    decrypt, encrypt_cbc_with_iv, encrypt_gcm_with_nonce, Decrypted, EncryptionKey, Format, KeyUsed,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cbc::cipher::array::Array;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use sha2::{Digest, Sha256};

fn unhex(hex: &str) -> Vec<u8> {
    hex::decode(hex).expect("test vector is hex")
}

fn key_bytes(hex: &str) -> [u8; 32] {
    unhex(hex).try_into().expect("test key is 32 bytes")
}

// NIST SP 800-38A, appendix F.2.5 (CBC-AES256.Encrypt) and F.2.6 (CBC-AES256.Decrypt).
const SP800_38A_KEY: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
const SP800_38A_IV: &str = "000102030405060708090a0b0c0d0e0f";
const SP800_38A_PLAINTEXT: &str = "6bc1bee22e409f96e93d7e117393172a\
                                   ae2d8a571e03ac9c9eb76fac45af8e51\
                                   30c81c46a35ce411e5fbc1191a0a52ef\
                                   f69f2445df4f9b17ad2b417be66c3710";
const SP800_38A_CIPHERTEXT: &str = "f58c4c04d6e5f1ba779eabfb5f7bfbd6\
                                    9cfc4e967edb808d679f777bc6702c7d\
                                    39f23369a9d9bacfa530e26304231461\
                                    b2eb05e2c39be9fcda6c19078c6a9d1b";

type CbcEnc = cbc::Encryptor<Aes256>;
type CbcDec = cbc::Decryptor<Aes256>;

fn sp800_38a_key_iv() -> ([u8; 32], [u8; 16]) {
    let iv: [u8; 16] = unhex(SP800_38A_IV).try_into().expect("16-byte IV");
    (key_bytes(SP800_38A_KEY), iv)
}

#[test]
fn sp800_38a_f_2_5_cbc_aes256_encrypt() {
    let (key, iv) = sp800_38a_key_iv();
    let mut buf = unhex(SP800_38A_PLAINTEXT);
    let (blocks, rest) = Array::slice_as_chunks_mut(&mut buf);
    assert!(rest.is_empty());
    CbcEnc::new(&key.into(), &iv.into()).encrypt_blocks(blocks);
    assert_eq!(hex::encode(&buf), SP800_38A_CIPHERTEXT);
}

#[test]
fn sp800_38a_f_2_6_cbc_aes256_decrypt() {
    let (key, iv) = sp800_38a_key_iv();
    let mut buf = unhex(SP800_38A_CIPHERTEXT);
    let (blocks, rest) = Array::slice_as_chunks_mut(&mut buf);
    assert!(rest.is_empty());
    CbcDec::new(&key.into(), &iv.into()).decrypt_blocks(blocks);
    assert_eq!(hex::encode(&buf), SP800_38A_PLAINTEXT);
}

/// The seed format must be plain CBC with PKCS#7: a block-aligned plaintext gets one whole block
/// of 0x10 bytes, and the value is the IV and that ciphertext in strict base64.
#[test]
fn seed_format_is_plain_cbc_with_pkcs7_padding() {
    let (key_raw, iv) = sp800_38a_key_iv();
    let key = EncryptionKey::from_hex(SP800_38A_KEY).expect("valid key");
    let message = "0123456789abcdef".repeat(3);
    let value = encrypt_cbc_with_iv(&message, &key, &iv);

    let mut expected = message.as_bytes().to_vec();
    expected.extend_from_slice(&[16; 16]);
    let (blocks, _) = Array::slice_as_chunks_mut(&mut expected);
    CbcEnc::new(&key_raw.into(), &iv.into()).encrypt_blocks(blocks);
    assert_eq!(
        value,
        format!("{}:{}", STANDARD.encode(iv), STANDARD.encode(&expected))
    );
}

/// A full known-answer round trip of the seed format, pinned so any change to the encoding
/// (alphabet, padding, separator, IV placement) is caught.
#[test]
fn seed_format_known_answer_round_trip() {
    let key = EncryptionKey::from_hex(SP800_38A_KEY).expect("valid key");
    let (_, iv) = sp800_38a_key_iv();
    let value = encrypt_cbc_with_iv("alice@example.com", &key, &iv);
    // Computed independently with:
    // printf %s alice@example.com | openssl enc -aes-256-cbc -K <key> -iv <iv> -base64 -A
    assert_eq!(
        value,
        "AAECAwQFBgcICQoLDA0ODw==:rLu8TZIRCVgSbqivGaNl2dZ0q6fyKJk/Z0SRuy7TqnQ="
    );
    assert_eq!(
        decrypt(&value, &key, "ignored.for.cbc"),
        Ok(Decrypted::Plaintext {
            text: "alice@example.com".to_owned(),
            format: Format::Cbc,
            key: KeyUsed::Current,
        })
    );
}

/// The GCM test cases for AES-256 from McGrew and Viega, "The Galois/Counter Mode of Operation",
/// as reprinted in the NIST GCM specification: (key, nonce, plaintext, aad, ciphertext, tag).
const MCGREW_VIEGA_AES256: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "test case 13",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000",
        "",
        "",
        "",
        "530f8afbc74536b9a963b4f1c4cb738b",
    ),
    (
        "test case 14",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000",
        "00000000000000000000000000000000",
        "",
        "cea7403d4d606b6e074ec5d3baf39d18",
        "d0d1c8a799996bf0265b98b5d48ab919",
    ),
    (
        "test case 15",
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        "",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
         8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        "b094dac5d93471bdec1a502270e3cc6c",
    ),
    (
        "test case 16",
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
         8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        "76fc6ece0f4e1768cddf8853bb2d551b",
    ),
];

#[test]
fn mcgrew_viega_aes256_gcm_test_cases_13_to_16() {
    for &(name, key, nonce, plaintext, aad, ciphertext, tag) in MCGREW_VIEGA_AES256 {
        let cipher = Aes256Gcm::new(&key_bytes(key).into());
        let nonce: [u8; 12] = unhex(nonce).try_into().expect("12-byte nonce");
        let aad = unhex(aad);

        let mut buf = unhex(plaintext);
        let got_tag = cipher
            .encrypt_inout_detached(&nonce.into(), &aad, buf.as_mut_slice().into())
            .expect("encrypts");
        assert_eq!(hex::encode(&buf), ciphertext, "{name}: ciphertext");
        assert_eq!(hex::encode(got_tag), tag, "{name}: tag");

        let tag = Tag::try_from(unhex(tag).as_slice()).expect("16-byte tag");
        cipher
            .decrypt_inout_detached(&nonce.into(), &aad, buf.as_mut_slice().into(), &tag)
            .expect("decrypts");
        assert_eq!(hex::encode(&buf), plaintext, "{name}: plaintext");

        if !buf.is_empty() {
            buf[0] ^= 1;
            assert!(
                cipher
                    .decrypt_inout_detached(&nonce.into(), &aad, buf.as_mut_slice().into(), &tag)
                    .is_err(),
                "{name}: a flipped bit must fail the tag"
            );
        }
    }
}

/// Rebuilds a v2 value from the module documentation alone, with the raw primitives, and checks
/// the library writes exactly that: the documentation is the spec another implementation would
/// follow.
#[test]
fn v2_format_matches_its_documented_construction() {
    let key_raw = key_bytes("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
    let key = EncryptionKey::from_bytes(&key_raw);
    let nonce: [u8; 12] = unhex("cafebabefacedbaddecaf888")
        .try_into()
        .expect("12 bytes");
    let context = "public.users.email";
    let plaintext = "alice@example.com";

    let key_id = hex::encode(
        &Sha256::new_with_prefix(b"agentidp-key-id")
            .chain_update(key_raw)
            .finalize()[..4],
    );
    assert_eq!(key.id().to_string(), key_id);

    let aad = format!("agentidp:v2:{key_id}:{context}");
    let mut sealed = plaintext.as_bytes().to_vec();
    let tag = Aes256Gcm::new(&key_raw.into())
        .encrypt_inout_detached(&nonce.into(), aad.as_bytes(), sealed.as_mut_slice().into())
        .expect("encrypts");
    sealed.extend_from_slice(&tag);
    let expected = format!(
        "agentidp:v2:{key_id}:{}:{}",
        STANDARD.encode(nonce),
        STANDARD.encode(&sealed)
    );

    let value = encrypt_gcm_with_nonce(plaintext, &key, &nonce, context).expect("encrypts");
    assert_eq!(value, expected);
    // Pinned, so a change to any of the above shows up as a diff here too. The key id was checked
    // with `(printf agentidp-key-id; printf <key> | xxd -r -p) | sha256sum`.
    assert_eq!(
        value,
        "agentidp:v2:27463f48:yv66vvrO263eyviI:6nCatgSSHpowS04K4F8HiI/DPC1/KX6K2Mpla88nQkPR"
    );
    assert_eq!(
        decrypt(&value, &key, context).map(Decrypted::into_text),
        Ok(plaintext.into())
    );
}
