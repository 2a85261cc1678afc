//! The checkpoint signer: signs the audit log's checkpoints (C2SP tlog-checkpoint bodies) into
//! C2SP signed notes with an Ed25519 key that the database never sees.
//!
//! Three sources, chosen by `CHECKPOINT_SIGNER` (see `settings/checkpoints.rs`):
//!
//! * `transit` (preferred): Vault's transit engine signs, and the private key never leaves Vault
//!   (`signer/transit.rs`). A key rotated in Vault is picked up at the first signature Vault
//!   makes with the new version: the signer then holds, and names, the new public key.
//! * `kv`: a PKCS#8 PEM private key read from a Vault KV v2 secret (`signer/kv.rs`).
//! * `file`: a PKCS#8 PEM private key file, for local development (`signer/file.rs`); refused
//!   when its group or others may access it, as ssh refuses such keys.
//!
//! `kv` and `file` hold the same format, what `openssl genpkey -algorithm ed25519` writes, and
//! read it once, when the signer is built (a new key is picked up at restart). With none
//! configured there is no signer ([`CheckpointSigner::from_config`] returns `None`), and the
//! sealing job only seals.
//!
//! Whatever the source, [`CheckpointSigner::sign`] assembles the note with the core crate's
//! [`checkpoint::signed`] and verifies it with the signer's own verifier key before returning it,
//! so a misbehaving source (a signature over other text, by another key, or garbage) never yields
//! a note: [`SignError::NotVerified`] instead. It signs only bodies whose origin is
//! `<log name>/...`, so the signer cannot be made to sign for another log, nor sign other text.
//!
//! No private key is ever formatted: `Debug` names the source and the public verifier key, and no
//! [`SignError`] carries key material or the Vault token.

mod file;
mod kv;
mod transit;
mod vault_client;

use std::fmt;

use agentidp_core::checkpoint::{self, CheckpointError};
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::settings::{
    CheckpointConfig, CheckpointSignerConfig, KvSignerConfig, SignerKind, TransitSignerConfig,
};
use transit::TransitSource;

/// What a job can do about a [`SignError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignErrorKind {
    /// Vault unreachable, sealed, overloaded, or rotating the key right now: retry later.
    Transient,
    /// The configuration (or Vault's policy, or the key) is wrong: retrying will not help.
    Misconfigured,
    /// The source returned a signature that is not a valid one over the body by the signer's
    /// key: the source misbehaves; nothing was signed.
    BadSignature,
    /// The body given to [`CheckpointSigner::sign`] is not a checkpoint of this log: a bug in
    /// the caller.
    BadBody,
}

/// Why a signer could not be built, or a note not signed. No variant holds key material or the
/// Vault token.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("Vault is unreachable at {addr}: {reason}")]
    VaultUnreachable { addr: String, reason: String },
    #[error("Vault answered HTTP {status} for {path}: it may be sealed or overloaded")]
    VaultUnavailable { path: String, status: u16 },
    #[error("Vault has no {path} (HTTP 404): check the mount and the key or secret name")]
    NotFound { path: String },
    #[error(
        "Vault denied access to {path} (HTTP 403 permission denied): check the token's policy"
    )]
    PermissionDenied { path: String },
    #[error("Vault rejected the request for {path} with HTTP {status}")]
    VaultRejected { path: String, status: u16 },
    #[error("Vault's answer for {path} is malformed: {reason}")]
    MalformedResponse { path: String, reason: String },
    #[error("the transit key {path} is of type {found}: checkpoints need a key of type ed25519")]
    WrongKeyType { path: String, found: String },
    #[error("the transit key {path} is a derived key: checkpoints need an ed25519 key created without derivation")]
    DerivedKey { path: String },
    #[error("Vault signed with version {signed} of {path}, but version {loaded} is the latest it lists, even after reloading it: retry")]
    KeyVersionMismatch {
        path: String,
        loaded: u64,
        signed: u64,
    },
    #[error("Vault secret {path} has no string field {field:?}")]
    FieldMissing { path: String, field: String },
    #[error("cannot read the key file {path}: {reason}")]
    FileUnreadable { path: String, reason: String },
    #[error("the key file {path} is accessible to its group or others (mode {mode:04o}): make it readable by the sidecar's user only (chmod 600)")]
    KeyFileTooOpen { path: String, mode: u32 },
    #[error("invalid checkpoint signing key in {origin} ({reason}): expected a PKCS#8 PEM Ed25519 private key, as `openssl genpkey -algorithm ed25519` writes it")]
    InvalidKey { origin: String, reason: String },
    #[error("invalid checkpoint log name {0:?}: expected a signed-note key name without '/' (no spaces, no '+')")]
    InvalidLogName(String),
    #[error("{source_name} returned a malformed signature: {reason}")]
    MalformedSignature { source_name: String, reason: String },
    #[error("the signature from {source_name} does not verify with the signer's key {verifier_key}: the note was discarded")]
    NotVerified {
        source_name: String,
        verifier_key: String,
    },
    #[error("the checkpoint's origin is not of this log: expected {expected}")]
    ForeignOrigin { expected: String },
    #[error("the checkpoint body is malformed: {0}")]
    InvalidBody(CheckpointError),
}

impl SignError {
    pub fn kind(&self) -> SignErrorKind {
        match self {
            SignError::VaultUnreachable { .. }
            | SignError::VaultUnavailable { .. }
            | SignError::KeyVersionMismatch { .. } => SignErrorKind::Transient,
            SignError::NotFound { .. }
            | SignError::PermissionDenied { .. }
            | SignError::VaultRejected { .. }
            | SignError::MalformedResponse { .. }
            | SignError::WrongKeyType { .. }
            | SignError::DerivedKey { .. }
            | SignError::FieldMissing { .. }
            | SignError::FileUnreadable { .. }
            | SignError::KeyFileTooOpen { .. }
            | SignError::InvalidKey { .. }
            | SignError::InvalidLogName(_) => SignErrorKind::Misconfigured,
            SignError::MalformedSignature { .. } | SignError::NotVerified { .. } => {
                SignErrorKind::BadSignature
            }
            SignError::ForeignOrigin { .. } | SignError::InvalidBody(_) => SignErrorKind::BadBody,
        }
    }

    /// A Vault outage (or a key rotation under way), which says nothing about the signer's
    /// configuration: retry with backoff.
    pub fn is_transient(&self) -> bool {
        self.kind() == SignErrorKind::Transient
    }
}

/// Signs checkpoints as `name`, with the key of one source.
pub struct CheckpointSigner {
    name: String,
    source: Source,
}

enum Source {
    // Boxed, both: the two differ much in size, and a signer is built once.
    Transit(Box<TransitSource>),
    /// `kv` and `file`: the private key held here.
    Local(Box<LocalKey>),
}

struct LocalKey {
    kind: SignerKind,
    /// Where the key was read from, for messages.
    origin: String,
    key: SigningKey,
    verifier_key: String,
}

impl LocalKey {
    fn new(
        kind: SignerKind,
        origin: String,
        key: SigningKey,
        name: &str,
    ) -> Result<LocalKey, SignError> {
        let verifier_key = verifier_key(name, &key.verifying_key())?;
        Ok(LocalKey {
            kind,
            origin,
            key,
            verifier_key,
        })
    }
}

fn verifier_key(name: &str, key: &VerifyingKey) -> Result<String, SignError> {
    checkpoint::verifier_key(name, key).map_err(|_| SignError::InvalidLogName(name.to_owned()))
}

fn note_error(e: CheckpointError) -> SignError {
    match e {
        CheckpointError::BadKeyName(name) => SignError::InvalidLogName(name),
        other => SignError::InvalidBody(other),
    }
}

fn check_log_name(name: &str) -> Result<(), SignError> {
    if checkpoint::is_log_name_valid(name) {
        Ok(())
    } else {
        Err(SignError::InvalidLogName(name.to_owned()))
    }
}

impl CheckpointSigner {
    /// The signer the settings configure, or `None` when `CHECKPOINT_SIGNER` is unset. Reads the
    /// key (kv, file) or the public key (transit) now: an error with
    /// [`SignError::is_transient`] is a Vault outage, worth retrying with backoff.
    pub async fn from_config(
        config: &CheckpointConfig,
    ) -> Result<Option<CheckpointSigner>, SignError> {
        let name = &config.log_name;
        Ok(Some(match &config.signer {
            CheckpointSignerConfig::None => return Ok(None),
            CheckpointSignerConfig::Transit(transit) => {
                CheckpointSigner::transit(name, transit).await?
            }
            CheckpointSignerConfig::Kv(kv) => CheckpointSigner::kv(name, kv).await?,
            CheckpointSignerConfig::File(path) => CheckpointSigner::file(name, path).await?,
        }))
    }

    /// Signs through Vault's transit engine; reads the key's public half now.
    pub async fn transit(
        log_name: &str,
        config: &TransitSignerConfig,
    ) -> Result<CheckpointSigner, SignError> {
        check_log_name(log_name)?;
        Ok(CheckpointSigner {
            name: log_name.to_owned(),
            source: Source::Transit(Box::new(TransitSource::connect(log_name, config).await?)),
        })
    }

    /// Signs with the key of a Vault KV v2 secret, read now.
    pub async fn kv(
        log_name: &str,
        config: &KvSignerConfig,
    ) -> Result<CheckpointSigner, SignError> {
        check_log_name(log_name)?;
        let (key, origin) = kv::read(config).await?;
        CheckpointSigner::local(log_name, SignerKind::Kv, origin, key)
    }

    /// Signs with the key of a file, read now.
    pub async fn file(
        log_name: &str,
        path: &std::path::Path,
    ) -> Result<CheckpointSigner, SignError> {
        check_log_name(log_name)?;
        let key = file::read(path).await?;
        let origin = format!("key file {}", path.display());
        CheckpointSigner::local(log_name, SignerKind::File, origin, key)
    }

    fn local(
        name: &str,
        kind: SignerKind,
        origin: String,
        key: SigningKey,
    ) -> Result<CheckpointSigner, SignError> {
        Ok(CheckpointSigner {
            name: name.to_owned(),
            source: Source::Local(Box::new(LocalKey::new(kind, origin, key, name)?)),
        })
    }

    /// The note signer name: `CHECKPOINT_LOG_NAME`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> SignerKind {
        match &self.source {
            Source::Transit(_) => SignerKind::Transit,
            Source::Local(local) => local.kind,
        }
    }

    /// The origin of `chain_id`'s checkpoints: `<log name>/<chain id>`.
    pub fn origin(&self, chain_id: &str) -> String {
        checkpoint::origin(&self.name, chain_id)
    }

    /// The public key notes are signed with now (a transit key rotated in Vault changes it at
    /// the next [`sign`](Self::sign)).
    pub fn verifying_key(&self) -> VerifyingKey {
        match &self.source {
            Source::Transit(transit) => transit.current().key,
            Source::Local(local) => local.key.verifying_key(),
        }
    }

    /// The verifier key of [`verifying_key`](Self::verifying_key), `<name>+<key id>+<base64>`, as
    /// `checkpoint::verify` and note verifiers take it.
    pub fn verifier_key(&self) -> String {
        match &self.source {
            Source::Transit(transit) => transit.current().verifier_key.clone(),
            Source::Local(local) => local.verifier_key.clone(),
        }
    }

    /// The signed note of `body` (a checkpoint body of this log, `checkpoint::body`), verified
    /// with the verifier key of the key that signed it before it is returned.
    pub async fn sign(&self, body: &str) -> Result<String, SignError> {
        // Checked before any source is asked to sign, so that nothing but a checkpoint of this
        // log is ever signed: the note with a placeholder signature, read back as the core crate
        // reads one.
        let claimed = checkpoint::signed(body, &self.name, &self.verifying_key(), &[0; 64])
            .and_then(|unsigned| checkpoint::read_unverified(&unsigned))
            .map_err(note_error)?;
        let log = claimed.origin.split_once('/').map(|(log, _)| log);
        if log != Some(self.name.as_str()) || checkpoint::chain_of_origin(&claimed.origin).is_none()
        {
            return Err(SignError::ForeignOrigin {
                expected: format!("{}/<chain id>", self.name),
            });
        }
        let (key, verifier_key, signature, source_name) = match &self.source {
            Source::Transit(transit) => {
                let (public, signature) = transit.sign(body.as_bytes()).await?;
                (
                    public.key,
                    public.verifier_key.clone(),
                    signature,
                    transit.describe(),
                )
            }
            Source::Local(local) => {
                use ed25519_dalek::Signer as _;
                (
                    local.key.verifying_key(),
                    local.verifier_key.clone(),
                    local.key.sign(body.as_bytes()).to_bytes().to_vec(),
                    local.origin.clone(),
                )
            }
        };
        let note = checkpoint::signed(body, &self.name, &key, &signature).map_err(note_error)?;
        match checkpoint::verify(&note, &[&verifier_key]) {
            Ok(verified) if verified.signed_by == [self.name.as_str()] => Ok(note),
            Ok(_) | Err(CheckpointError::NotVerified) => Err(SignError::NotVerified {
                source_name,
                verifier_key,
            }),
            // The signature verified; the body is what does not read as a checkpoint.
            Err(e) => Err(SignError::InvalidBody(e)),
        }
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Transit(transit) => transit.describe(),
            Source::Local(local) => local.origin.clone(),
        };
        f.debug_struct("CheckpointSigner")
            .field("name", &self.name)
            .field("kind", &self.kind().as_str())
            .field("source", &source)
            .field("verifier_key", &self.verifier_key())
            .finish()
    }
}

/// The one place a PKCS#8 PEM becomes a signing key. `origin` names where the text came from;
/// the reasons name what is wrong, never the text.
fn signing_key_from_pem(pem: &str, origin: &str) -> Result<SigningKey, SignError> {
    use ed25519_dalek::pkcs8::{spki::der, Error};
    // Files end with a newline; a value pasted into Vault's UI often carries spaces.
    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| SignError::InvalidKey {
        origin: origin.to_owned(),
        reason: match e {
            Error::Asn1(e) if matches!(e.kind(), der::ErrorKind::Pem(_)) => {
                "not a PEM block labelled PRIVATE KEY"
            }
            Error::Asn1(_) => "not a PKCS#8 private key",
            Error::PublicKey(_) | Error::ParametersMalformed => "not an Ed25519 key",
            Error::KeyMalformed => "a malformed Ed25519 key",
            _ => "unreadable",
        }
        .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed of `tests/signer.rs`'s published test key, which `openssl genpkey` wrote.
    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGlN3Ll9s1usPRQmYzmqLWYbovnl8o6HYo2LVBxN1Hhg\n-----END PRIVATE KEY-----\n";

    #[test]
    fn pem_reasons_never_quote_the_text() {
        assert!(signing_key_from_pem(PEM, "test").is_ok());
        let cases = [
            (
                "not a key at all".to_owned(),
                "not a PEM block labelled PRIVATE KEY",
            ),
            (
                PEM.replace("PRIVATE KEY", "EC PRIVATE KEY"),
                "not a PEM block labelled PRIVATE KEY",
            ),
            (
                // Base64 that decodes, to a DER that is not a PKCS#8 structure.
                "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2Vw\n-----END PRIVATE KEY-----\n"
                    .to_owned(),
                "not a PKCS#8 private key",
            ),
        ];
        for (text, reason) in cases {
            let e = signing_key_from_pem(&text, "key file k.pem").unwrap_err();
            let message = e.to_string();
            assert!(message.contains(&format!("({reason})")), "{message}");
            assert!(!message.contains("MC4CAQ") && !message.contains("not a key at all"));
            assert_eq!(e.kind(), SignErrorKind::Misconfigured);
        }
    }
}
