//! The checkpoint signer's three sources, through the real vaultrs client against a `wiremock`
//! double that speaks Vault's transit and KV v2 HTTP API as Vault does: it holds Ed25519 keys,
//! answers `keys/<key>` with their public halves and `sign/<key>` by signing the decoded input,
//! and refuses a request without the token. No PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentidp_core::checkpoint;
use agentidp_core::merkle::Hash;
use agentidp_sidecar::settings::{
    CheckpointConfig, CheckpointSignerConfig, KvSignerConfig, SignerKind, TransitSignerConfig,
    VaultConfig,
};
use agentidp_sidecar::signer::{CheckpointSigner, SignError, SignErrorKind};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde_json::{json, Value};
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "hvs.signer-test-token";
const LOG: &str = "agentidp.test";
const KEYS_PATH: &str = "/v1/transit/keys/agentidp-checkpoints";
const SIGN_PATH: &str = "/v1/transit/sign/agentidp-checkpoints";
const KV_PATH: &str = "/v1/secret/data/agentidp/checkpoint-signing-key";

/// A published test key, written by `openssl genpkey -algorithm ed25519`. Never use it for a log.
const PEM_BODY: &str = "MC4CAQAwBQYDK2VwBCIEIGlN3Ll9s1usPRQmYzmqLWYbovnl8o6HYo2LVBxN1Hhg";
/// Its public key, as `openssl pkey -pubout -outform DER | tail -c 32 | base64` printed it.
const OPENSSL_PUBLIC_KEY: &str = "VYEZ+7o8t/Qbqt2FtcaMBWWT33xyUAHhcyPOclVGiVc=";
/// A P-256 key, by `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.
const EC_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjTa4umiIUWN6WAb9
xvFsXBLQwrR7/LP0rhPNgbrzyaehRANCAATYVOS/uGMkURQP9/WOMPfkXZttHPYY
RcUvWUgDrXsr9Yoq3nA680xH1/KxjEGKHIrN9Cp8A50sTI7IjEZPQrUL
-----END PRIVATE KEY-----
";
const EC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPw6ZNpz7AlPxERgV5XI3Gk/n6s0z
sz5oNHaV1shTzXYU6Q7UrQ4+QmnDAHolZKOtW+qCljkbDAzpYmK4cdKbPQ==
-----END PUBLIC KEY-----
";

fn pem() -> String {
    format!("-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n")
}

/// The seed, read from the PEM's DER by hand (the PKCS#8 v1 prefix of an Ed25519 key, then the
/// 32 bytes), so that the double does not share the code under test.
fn seed() -> [u8; 32] {
    let der = STANDARD.decode(PEM_BODY).unwrap();
    assert_eq!(
        der[..16],
        [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20
        ]
    );
    der[16..].try_into().unwrap()
}

fn test_key() -> SigningKey {
    let key = SigningKey::from_bytes(&seed());
    assert_eq!(
        STANDARD.encode(key.verifying_key().as_bytes()),
        OPENSSL_PUBLIC_KEY
    );
    key
}

/// Every form of the private key that a careless `Debug` or message could show.
fn key_material() -> Vec<String> {
    let seed = seed();
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        PEM_BODY.to_owned(),
        PEM_BODY[20..40].to_owned(),
        hex.clone(),
        hex.to_ascii_uppercase(),
        hex[..16].to_owned(),
        STANDARD.encode(seed),
        format!("{seed:?}"),
        format!("{:?}", &seed[..8]).trim_end_matches(']').to_owned(),
        TOKEN.to_owned(),
    ]
}

fn assert_no_key_material(text: &str) {
    for secret in key_material() {
        assert!(!text.contains(&secret), "{secret:?} in {text}");
    }
}

fn body(chain: &str) -> String {
    checkpoint::body(&checkpoint::origin(LOG, chain), 3, Hash([7; 32])).unwrap()
}

/// How the double's `sign/<key>` misbehaves, if it does.
#[derive(Clone, Copy, PartialEq)]
enum Forge {
    None,
    /// A genuine signature by the key, over other text.
    OtherText,
    /// A signature over the input, by another key.
    OtherKey,
    /// 64 bytes that are no signature.
    Zeros,
    /// Not `vault:v<N>:<base64>`.
    Garbage,
}

struct State {
    key_type: &'static str,
    derived: bool,
    /// Version N is `versions[N - 1]`; the latest is the last.
    versions: Vec<SigningKey>,
    /// Sign with the latest key but label the signature with this version.
    label_version: Option<usize>,
    forge: Forge,
    sealed: bool,
    kv: Value,
    key_reads: usize,
    sign_requests: Vec<Value>,
}

/// Vault, as far as the signer needs it.
#[derive(Clone)]
struct Vault(Arc<Mutex<State>>);

impl Vault {
    fn new() -> Vault {
        Vault(Arc::new(Mutex::new(State {
            key_type: "ed25519",
            derived: false,
            versions: vec![test_key()],
            label_version: None,
            forge: Forge::None,
            sealed: false,
            kv: json!({ "signingKey": pem() }),
            key_reads: 0,
            sign_requests: Vec::new(),
        })))
    }

    fn with(self, change: impl FnOnce(&mut State)) -> Vault {
        change(&mut self.0.lock().unwrap());
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    async fn serve(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(path_regex("^/v1/"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }
}

fn vault_error(status: u16, errors: &[&str]) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "errors": errors }))
}

fn answer(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "request_id": "0c9e2a53-1f3c-4b0e-8d7d-6f0f4b6f7a11",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null
    }))
}

impl State {
    /// `GET <mount>/keys/<key>`, as Vault 1.15+ answers it.
    fn describe(&self) -> Value {
        let asymmetric = matches!(self.key_type, "ed25519" | "ecdsa-p256" | "rsa-2048");
        let keys: serde_json::Map<String, Value> = self
            .versions
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let entry = match self.key_type {
                    "ed25519" => json!({
                        "certificate_chain": "",
                        "creation_time": "2026-03-31T06:00:00.000000Z",
                        "name": "ed25519",
                        "public_key": STANDARD.encode(key.verifying_key().as_bytes()),
                    }),
                    _ if asymmetric => json!({
                        "certificate_chain": "",
                        "creation_time": "2026-03-31T06:00:00.000000Z",
                        "name": "P-256",
                        "public_key": EC_PUBLIC_PEM,
                    }),
                    // Symmetric keys list their versions' creation times only.
                    _ => json!(1_774_936_800),
                };
                ((i + 1).to_string(), entry)
            })
            .collect();
        json!({
            "allow_plaintext_backup": false,
            "auto_rotate_period": 0,
            "deletion_allowed": false,
            "derived": self.derived,
            "exportable": false,
            "imported_key": false,
            "keys": keys,
            "latest_version": self.versions.len(),
            "min_available_version": 0,
            "min_decryption_version": 1,
            "min_encryption_version": 0,
            "name": "agentidp-checkpoints",
            "supports_decryption": !asymmetric,
            "supports_derivation": self.key_type == "ed25519",
            "supports_encryption": !asymmetric,
            "supports_signing": asymmetric,
            "type": self.key_type,
        })
    }

    /// `POST <mount>/sign/<key>`: pure Ed25519 over the decoded input, as Vault signs with an
    /// ed25519 key.
    fn sign(&mut self, request: Value) -> ResponseTemplate {
        self.sign_requests.push(request.clone());
        if request.get("prehashed") == Some(&json!(true)) {
            return vault_error(400, &["prehashed input is not supported for ed25519 keys"]);
        }
        let Some(input) = request
            .get("input")
            .and_then(Value::as_str)
            .and_then(|i| STANDARD.decode(i).ok())
        else {
            return vault_error(400, &["missing input to process"]);
        };
        let Some(key) = self.versions.last() else {
            return vault_error(400, &["no key"]);
        };
        let signature = match self.forge {
            Forge::None => key.sign(&input).to_bytes(),
            Forge::OtherText => key.sign(b"something else").to_bytes(),
            Forge::OtherKey => SigningKey::from_bytes(&[7; 32]).sign(&input).to_bytes(),
            Forge::Zeros | Forge::Garbage => [0; 64],
        };
        let version = self.label_version.unwrap_or(self.versions.len());
        let signature = if self.forge == Forge::Garbage {
            format!("vault:{}", STANDARD.encode(signature))
        } else {
            format!("vault:v{version}:{}", STANDARD.encode(signature))
        };
        answer(json!({ "key_version": version, "signature": signature }))
    }
}

impl Respond for Vault {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        // Vault refuses a request without a valid token before looking at anything else.
        let token = request
            .headers
            .get("X-Vault-Token")
            .and_then(|t| t.to_str().ok());
        if token != Some(TOKEN) {
            return vault_error(403, &["permission denied"]);
        }
        let mut state = self.state();
        if state.sealed {
            return vault_error(503, &["Vault is sealed"]);
        }
        match (request.method.as_str(), request.url.path()) {
            ("GET", KEYS_PATH) => {
                state.key_reads += 1;
                answer(state.describe())
            }
            ("POST" | "PUT", SIGN_PATH) => {
                let body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                state.sign(body)
            }
            ("GET", KV_PATH) => answer(json!({
                "data": state.kv,
                "metadata": {
                    "created_time": "2026-03-31T06:00:00.000000Z",
                    "custom_metadata": null,
                    "deletion_time": "",
                    "destroyed": false,
                    "version": 1
                }
            })),
            _ => vault_error(404, &[]),
        }
    }
}

fn vault_config(addr: &str, token: &str) -> VaultConfig {
    VaultConfig {
        addr: addr.to_owned(),
        token: token.into(),
        mount: "secret".to_owned(),
        path: "agentidp/encryption-key".to_owned(),
        field: "encryptionKey".to_owned(),
        old_keys_field: "previousEncryptionKey".to_owned(),
    }
}

fn transit_config(server: &MockServer) -> TransitSignerConfig {
    TransitSignerConfig {
        vault: vault_config(&server.uri(), TOKEN),
        mount: "transit".to_owned(),
        key: "agentidp-checkpoints".to_owned(),
    }
}

fn kv_config(server: &MockServer) -> KvSignerConfig {
    KvSignerConfig {
        vault: vault_config(&server.uri(), TOKEN),
        mount: "secret".to_owned(),
        path: "agentidp/checkpoint-signing-key".to_owned(),
        field: "signingKey".to_owned(),
    }
}

async fn transit(vault: &Vault) -> (MockServer, Result<CheckpointSigner, SignError>) {
    let server = vault.serve().await;
    let signer = CheckpointSigner::transit(LOG, &transit_config(&server)).await;
    (server, signer)
}

/// A scratch directory of this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("agentidp-signer-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_key(path: &Path, text: &str, mode: u32) {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    // The process umask may have narrowed the mode asked for.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn transit_notes_verify_with_the_vault_key_and_only_with_it() {
    let vault = Vault::new();
    let (_server, signer) = transit(&vault).await;
    let signer = signer.unwrap();
    let public = test_key().verifying_key();
    assert_eq!(signer.kind(), SignerKind::Transit);
    assert_eq!(signer.name(), LOG);
    assert_eq!(signer.origin("global"), "agentidp.test/global");
    assert_eq!(signer.verifying_key(), public);
    assert_eq!(
        signer.verifier_key(),
        checkpoint::verifier_key(LOG, &public).unwrap()
    );

    let text = body("org:org-7");
    let note = signer.sign(&text).await.unwrap();
    let verified = checkpoint::verify(&note, &[&signer.verifier_key()]).unwrap();
    assert_eq!(verified.origin, "agentidp.test/org:org-7");
    assert_eq!(verified.size, 3);
    assert_eq!(verified.root, Hash([7; 32]));
    assert_eq!(verified.signed_by, [LOG]);
    // With the key openssl derived from the PEM, independently of the signer.
    let openssl_key = VerifyingKey::from_bytes(
        &STANDARD
            .decode(OPENSSL_PUBLIC_KEY)
            .unwrap()
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let openssl_vkey = checkpoint::verifier_key(LOG, &openssl_key).unwrap();
    assert!(checkpoint::verify(&note, &[&openssl_vkey]).is_ok());
    let other =
        checkpoint::verifier_key(LOG, &SigningKey::from_bytes(&[7; 32]).verifying_key()).unwrap();
    assert_eq!(
        checkpoint::verify(&note, &[&other]),
        Err(checkpoint::CheckpointError::NotVerified)
    );
    // Pure Ed25519 over the note text: the input alone, no hash_algorithm, no prehashed.
    assert_eq!(
        vault.state().sign_requests,
        [json!({ "input": STANDARD.encode(&text) })]
    );
    assert_eq!(vault.state().key_reads, 1);
}

#[tokio::test]
async fn a_token_vault_refuses_is_a_permission_problem_and_not_echoed() {
    let vault = Vault::new();
    let server = vault.serve().await;
    let mut config = transit_config(&server);
    config.vault = vault_config(&server.uri(), "hvs.not-the-token");
    let e = CheckpointSigner::transit(LOG, &config).await.unwrap_err();
    assert!(matches!(e, SignError::PermissionDenied { .. }), "{e:?}");
    assert_eq!(e.kind(), SignErrorKind::Misconfigured);
    assert!(
        e.to_string().contains("transit/keys/agentidp-checkpoints"),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains("hvs.not-the-token"));
    assert_eq!(vault.state().key_reads, 0);
}

#[tokio::test]
async fn a_transit_key_of_another_type_is_refused() {
    // ecdsa-p256 and rsa-2048 are types vaultrs knows; hmac and aes256-gcm96 ones it reads
    // differently or not at all: each is named.
    for key_type in ["ecdsa-p256", "rsa-2048", "hmac", "aes256-gcm96"] {
        let vault = Vault::new().with(|s| s.key_type = key_type);
        let (_server, signer) = transit(&vault).await;
        let e = signer.unwrap_err();
        assert!(
            matches!(&e, SignError::WrongKeyType { found, .. } if found == key_type),
            "{key_type}: {e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("the transit key transit/keys/agentidp-checkpoints is of type {key_type}: checkpoints need a key of type ed25519")
        );
        assert_eq!(e.kind(), SignErrorKind::Misconfigured);
        assert!(vault.state().sign_requests.is_empty());
    }
    let vault = Vault::new().with(|s| s.derived = true);
    let (_server, signer) = transit(&vault).await;
    let e = signer.unwrap_err();
    assert!(matches!(e, SignError::DerivedKey { .. }), "{e:?}");
    assert!(!e.is_transient());
}

#[tokio::test]
async fn a_signature_that_does_not_verify_never_becomes_a_note() {
    for forge in [Forge::OtherText, Forge::OtherKey, Forge::Zeros] {
        let vault = Vault::new();
        let (_server, signer) = transit(&vault).await;
        let signer = signer.unwrap();
        // The same signer signs while Vault behaves, so what is refused is the signature alone.
        assert!(signer.sign(&body("global")).await.is_ok());
        vault.state().forge = forge;
        let e = signer.sign(&body("global")).await.unwrap_err();
        assert!(matches!(e, SignError::NotVerified { .. }), "{e:?}");
        assert_eq!(e.kind(), SignErrorKind::BadSignature);
        assert!(e.to_string().contains("the note was discarded"), "{e}");
        assert!(e.to_string().contains(&signer.verifier_key()), "{e}");
    }
    let vault = Vault::new();
    let (_server, signer) = transit(&vault).await;
    let signer = signer.unwrap();
    vault.state().forge = Forge::Garbage;
    let e = signer.sign(&body("global")).await.unwrap_err();
    assert!(matches!(e, SignError::MalformedSignature { .. }), "{e:?}");
    assert_eq!(e.kind(), SignErrorKind::BadSignature);
}

#[tokio::test]
async fn a_sealed_or_unreachable_vault_is_transient() {
    let vault = Vault::new().with(|s| s.sealed = true);
    let (_server, signer) = transit(&vault).await;
    let e = signer.unwrap_err();
    assert!(
        matches!(e, SignError::VaultUnavailable { status: 503, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());
    assert_eq!(
        e.to_string(),
        "Vault answered HTTP 503 for transit/keys/agentidp-checkpoints: it may be sealed or overloaded"
    );

    // Sealed after the public key was read: the signature is what fails.
    let vault = Vault::new();
    let (_server, signer) = transit(&vault).await;
    let signer = signer.unwrap();
    vault.state().sealed = true;
    let e = signer.sign(&body("global")).await.unwrap_err();
    assert!(
        matches!(e, SignError::VaultUnavailable { status: 503, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());
    vault.state().sealed = false;
    assert!(signer.sign(&body("global")).await.is_ok());

    // Nothing listens on port 1.
    let config = TransitSignerConfig {
        vault: vault_config("http://127.0.0.1:1", TOKEN),
        mount: "transit".to_owned(),
        key: "agentidp-checkpoints".to_owned(),
    };
    let e = CheckpointSigner::transit(LOG, &config).await.unwrap_err();
    assert!(matches!(e, SignError::VaultUnreachable { .. }), "{e:?}");
    assert!(e.is_transient());
    assert_no_key_material(&format!("{e} {e:?}"));
}

#[tokio::test]
async fn a_key_rotated_in_vault_is_reloaded_and_the_text_signed_again() {
    let vault = Vault::new();
    let (_server, signer) = transit(&vault).await;
    let signer = signer.unwrap();
    let before = signer.verifier_key();
    let rotated = SigningKey::from_bytes(&[9; 32]);
    vault.state().versions.push(rotated.clone());

    let note = signer.sign(&body("global")).await.unwrap();
    let after = checkpoint::verifier_key(LOG, &rotated.verifying_key()).unwrap();
    assert_eq!(signer.verifier_key(), after);
    assert_eq!(signer.verifying_key(), rotated.verifying_key());
    assert!(checkpoint::verify(&note, &[&after]).is_ok());
    assert!(checkpoint::verify(&note, &[&before]).is_err());
    assert_eq!(vault.state().key_reads, 2);
    assert_eq!(vault.state().sign_requests.len(), 2);

    // A Vault whose signatures name a version its key list does not reach: tried again once,
    // then a transient error.
    let vault = Vault::new().with(|s| s.label_version = Some(2));
    let (_server, signer) = transit(&vault).await;
    let signer = signer.unwrap();
    let e = signer.sign(&body("global")).await.unwrap_err();
    assert!(
        matches!(
            e,
            SignError::KeyVersionMismatch {
                loaded: 1,
                signed: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_transient());
    assert_eq!(vault.state().key_reads, 2);
    assert_eq!(vault.state().sign_requests.len(), 2);
}

#[tokio::test]
async fn a_body_of_another_log_is_refused_before_vault_signs_it() {
    let vault = Vault::new();
    let (_server, signer) = transit(&vault).await;
    let signer = signer.unwrap();
    for origin in [
        "other.log/global",
        "agentidp.testing/global",
        "agentidp.test/",
        "agentidp.test",
        "xagentidp.test/global",
    ] {
        let text = checkpoint::body(origin, 3, Hash([7; 32])).unwrap();
        let e = signer.sign(&text).await.unwrap_err();
        assert!(
            matches!(e, SignError::ForeignOrigin { .. }),
            "{origin:?}: {e:?}"
        );
        assert_eq!(e.kind(), SignErrorKind::BadBody);
        assert_eq!(
            e.to_string(),
            "the checkpoint's origin is not of this log: expected agentidp.test/<chain id>"
        );
    }
    // Of this log, but no checkpoint: no newline at the end, no size and root, a bad size.
    let body = body("global");
    let bad_size = body.replacen("\n3\n", "\nthree\n", 1);
    for text in [body.trim_end(), "agentidp.test/global\n", &bad_size, ""] {
        let e = signer.sign(text).await.unwrap_err();
        assert!(matches!(e, SignError::InvalidBody(_)), "{text:?}: {e:?}");
        assert_eq!(e.kind(), SignErrorKind::BadBody);
    }
    assert!(vault.state().sign_requests.is_empty());
    assert!(signer.sign(&body).await.is_ok());
}

#[tokio::test]
async fn kv_file_and_transit_sign_byte_for_byte_alike() {
    let vault = Vault::new();
    let (server, transit) = transit(&vault).await;
    let transit = transit.unwrap();
    let kv = CheckpointSigner::kv(LOG, &kv_config(&server))
        .await
        .unwrap();
    let dir = scratch("alike");
    let file_path = dir.join("checkpoint.pem");
    write_key(&file_path, &pem(), 0o600);
    let file = CheckpointSigner::file(LOG, &file_path).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!((kv.kind(), file.kind()), (SignerKind::Kv, SignerKind::File));
    let text = body("global");
    let expected = checkpoint::sign_locally(&text, LOG, &test_key()).unwrap();
    for signer in [&transit, &kv, &file] {
        assert_eq!(signer.verifier_key(), transit.verifier_key());
        let note = signer.sign(&text).await.unwrap();
        assert_eq!(note, expected, "{signer:?}");
        assert!(checkpoint::verify(&note, &[&signer.verifier_key()]).is_ok());
    }
}

#[tokio::test]
async fn from_config_builds_the_configured_source_or_none() {
    let none = CheckpointConfig {
        log_name: LOG.to_owned(),
        signer: CheckpointSignerConfig::None,
    };
    assert!(CheckpointSigner::from_config(&none)
        .await
        .unwrap()
        .is_none());

    let vault = Vault::new();
    let server = vault.serve().await;
    for (signer, kind) in [
        (
            CheckpointSignerConfig::Transit(transit_config(&server)),
            SignerKind::Transit,
        ),
        (
            CheckpointSignerConfig::Kv(kv_config(&server)),
            SignerKind::Kv,
        ),
    ] {
        let config = CheckpointConfig {
            log_name: LOG.to_owned(),
            signer,
        };
        let built = CheckpointSigner::from_config(&config).await.unwrap();
        assert_eq!(built.map(|s| s.kind()), Some(kind));
    }
    let bad_name = CheckpointConfig {
        log_name: "with/slash".to_owned(),
        signer: CheckpointSignerConfig::Kv(kv_config(&server)),
    };
    let e = CheckpointSigner::from_config(&bad_name).await.unwrap_err();
    assert!(matches!(e, SignError::InvalidLogName(_)), "{e:?}");
}

#[tokio::test]
async fn a_bad_key_file_is_refused_clearly_without_echoing_it() {
    let dir = scratch("bad");
    let path = dir.join("checkpoint.pem");
    let shown = path.display().to_string();
    let corrupt = pem().replace("IGlN3Ll9", "IGlN3L!9");
    for (text, reason, fragment) in [
        (
            "s3cr3t-not-a-key-at-all\n".to_owned(),
            "not a PEM block labelled PRIVATE KEY",
            "s3cr3t-not-a-key",
        ),
        (
            corrupt.clone(),
            "not a PEM block labelled PRIVATE KEY",
            "IGlN3L!9",
        ),
        (EC_PEM.to_owned(), "not an Ed25519 key", "jTa4umiIUWN6WAb9"),
    ] {
        write_key(&path, &text, 0o600);
        let e = CheckpointSigner::file(LOG, &path).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("invalid checkpoint signing key in key file {shown} ({reason}): expected a PKCS#8 PEM Ed25519 private key, as `openssl genpkey -algorithm ed25519` writes it")
        );
        assert_eq!(e.kind(), SignErrorKind::Misconfigured);
        let output = format!("{e} {e:?}");
        assert!(!output.contains(fragment), "{output}");
        assert_no_key_material(&output);
    }

    // A good key that others may read is refused before it is read.
    write_key(&path, &pem(), 0o644);
    let e = CheckpointSigner::file(LOG, &path).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("the key file {shown} is accessible to its group or others (mode 0644): make it readable by the sidecar's user only (chmod 600)")
    );
    assert_no_key_material(&format!("{e} {e:?}"));
    write_key(&path, &pem(), 0o640);
    assert!(matches!(
        CheckpointSigner::file(LOG, &path).await.unwrap_err(),
        SignError::KeyFileTooOpen { mode: 0o640, .. }
    ));
    write_key(&path, &pem(), 0o400);
    assert!(CheckpointSigner::file(LOG, &path).await.is_ok());

    let missing = dir.join("missing.pem");
    let e = CheckpointSigner::file(LOG, &missing).await.unwrap_err();
    assert!(matches!(e, SignError::FileUnreadable { .. }), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_bad_kv_secret_is_refused_clearly_without_echoing_it() {
    for (kv, expected) in [
        (
            json!({ "otherField": pem() }),
            "Vault secret secret/data/agentidp/checkpoint-signing-key has no string field \"signingKey\"".to_owned(),
        ),
        (
            json!({ "signingKey": EC_PEM }),
            "invalid checkpoint signing key in Vault secret secret/data/agentidp/checkpoint-signing-key field signingKey (not an Ed25519 key): expected a PKCS#8 PEM Ed25519 private key, as `openssl genpkey -algorithm ed25519` writes it".to_owned(),
        ),
        (
            json!({ "signingKey": STANDARD.encode(seed()) }),
            "invalid checkpoint signing key in Vault secret secret/data/agentidp/checkpoint-signing-key field signingKey (not a PEM block labelled PRIVATE KEY): expected a PKCS#8 PEM Ed25519 private key, as `openssl genpkey -algorithm ed25519` writes it".to_owned(),
        ),
    ] {
        let vault = Vault::new().with(|s| s.kv = kv);
        let server = vault.serve().await;
        let e = CheckpointSigner::kv(LOG, &kv_config(&server)).await.unwrap_err();
        assert_eq!(e.to_string(), expected);
        assert_eq!(e.kind(), SignErrorKind::Misconfigured);
        let output = format!("{e} {e:?}");
        assert_no_key_material(&output);
        assert!(!output.contains("jTa4umiIUWN6WAb9"), "{output}");
    }
    let vault = Vault::new();
    let server = vault.serve().await;
    let mut config = kv_config(&server);
    config.path = "agentidp/nothing-here".to_owned();
    let e = CheckpointSigner::kv(LOG, &config).await.unwrap_err();
    assert!(matches!(e, SignError::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn no_signer_shows_its_key_or_the_token() {
    let vault = Vault::new();
    let (server, transit) = transit(&vault).await;
    let transit = transit.unwrap();
    let kv = CheckpointSigner::kv(LOG, &kv_config(&server))
        .await
        .unwrap();
    let dir = scratch("debug");
    let path = dir.join("checkpoint.pem");
    write_key(&path, &pem(), 0o600);
    let file = CheckpointSigner::file(LOG, &path).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    for signer in [&transit, &kv, &file] {
        let debug = format!("{signer:?}");
        assert_no_key_material(&debug);
        // What Debug does show: the source and the public verifier key.
        assert!(debug.contains(&signer.verifier_key()), "{debug}");
        assert!(debug.contains(signer.kind().as_str()), "{debug}");
    }
    assert!(format!("{kv:?}").contains("secret/data/agentidp/checkpoint-signing-key"));
    assert!(format!("{file:?}").contains("checkpoint.pem"));
    assert!(format!("{transit:?}").contains("transit/keys/agentidp-checkpoints"));
    let configs = format!(
        "{:?} {:?}",
        transit_config(&server),
        CheckpointSignerConfig::Kv(kv_config(&server))
    );
    assert_no_key_material(&configs);

    // The check is not vacuous: it finds the key where it is.
    for leaky in [
        pem(),
        format!("{:?}", seed()),
        format!("{:?}", seed().to_vec()),
        format!("{:?}", SigningKey::from_bytes(&seed()).to_bytes()),
    ] {
        assert!(std::panic::catch_unwind(|| assert_no_key_material(&leaky)).is_err());
    }
}

/// The sealing job holds the signer in an `Arc` and signs from spawned tasks.
#[tokio::test]
async fn the_signer_and_its_signing_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<F: std::future::Future + Send>(_: &F) {}
    let vault = Vault::new();
    let (_server, signer) = transit(&vault).await;
    let signer = Arc::new(signer.unwrap());
    send_sync(&signer);
    let text = body("global");
    let signing = signer.sign(&text);
    send(&signing);
    let note = tokio::spawn({
        let (signer, text) = (signer.clone(), text.clone());
        async move { signer.sign(&text).await }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(note, signing.await.unwrap());
}
