//! Signed checkpoints: a chain's tree head as a C2SP tlog-checkpoint, in a C2SP signed note with
//! an Ed25519 signature, through the `tlog_tiles` and `signed_note` crates.
//!
//! The signature itself may come from elsewhere (Vault's transit engine signs the note's text and
//! never lets the key out): [`signed`] assembles a note from the text and a signature, and
//! [`verify`] checks one against verifier keys in the note format `name+hash+base64`.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, Signature, StandardVerifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint;

use crate::merkle::Hash;

/// Why a checkpoint could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint")]
    Malformed,
    #[error("malformed verifier key")]
    BadVerifierKey,
    #[error("invalid key name {0:?}")]
    BadKeyName(String),
    #[error("the note is not signed by any of the given keys, or a signature is invalid")]
    NotVerified,
}

/// A chain's checkpoint origin: `<log name>/<chain id>`, so each chain is a log of its own (see
/// [`is_log_name_valid`]).
pub fn origin(log_name: &str, chain_id: &str) -> String {
    format!("{log_name}/{chain_id}")
}

/// The checkpoint body (C2SP tlog-checkpoint): origin, tree size and base64 root, each on a line.
pub fn body(origin: &str, size: u64, root: Hash) -> Result<String, CheckpointError> {
    let checkpoint =
        Checkpoint::new(origin, size, root, "").map_err(|_| CheckpointError::Malformed)?;
    String::from_utf8(checkpoint.to_bytes()).map_err(|_| CheckpointError::Malformed)
}

/// The verifier key of `key`, named `name`, in the note format `name+hash+base64`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> Result<String, CheckpointError> {
    if !signed_note::is_key_name_valid(name) {
        return Err(CheckpointError::BadKeyName(name.to_owned()));
    }
    Ok(signed_note::new_ed25519_verifier_key(name, key))
}

/// The key id a signature line carries for `key` named `name` (C2SP signed-note: the first four
/// bytes of SHA-256 of the name, a newline, the algorithm byte and the public key).
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut encoded = vec![1u8];
    encoded.extend_from_slice(key.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// The signed note of `body`, with the Ed25519 `signature` made by `key` named `name` over the
/// body's bytes.
pub fn signed(
    body: &str,
    name: &str,
    key: &VerifyingKey,
    signature: &[u8],
) -> Result<String, CheckpointError> {
    let sig = Signature::new(name.to_owned(), key_id(name, key), signature.to_vec())
        .map_err(|_| CheckpointError::BadKeyName(name.to_owned()))?;
    let note = Note::new(body.as_bytes(), &[sig]).map_err(|_| CheckpointError::Malformed)?;
    String::from_utf8(note.to_bytes()).map_err(|_| CheckpointError::Malformed)
}

/// Signs `body` with a key held here (a key file in local development; tests).
pub fn sign_locally(body: &str, name: &str, key: &SigningKey) -> Result<String, CheckpointError> {
    let signature = key.sign(body.as_bytes());
    signed(body, name, &key.verifying_key(), &signature.to_bytes())
}

/// What a checkpoint note claims, before anyone checked who signed it: for the database, which
/// holds no key, to file a note under the tree it describes and to check its root against the
/// tiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Reads a signed note's checkpoint without verifying any signature.
pub fn read_unverified(note: &str) -> Result<Claimed, CheckpointError> {
    let note = Note::from_bytes(note.as_bytes()).map_err(|_| CheckpointError::Malformed)?;
    let checkpoint = Checkpoint::from_bytes(note.text()).map_err(|_| CheckpointError::Malformed)?;
    Ok(Claimed {
        origin: checkpoint.origin().to_owned(),
        size: checkpoint.size(),
        root: *checkpoint.hash(),
    })
}

/// Whether `name` may name a log: a valid note key name without `/`, so that an origin
/// `<log name>/<chain id>` splits at its first `/` even though a chain id may hold more
/// (`org:<org_id>`).
pub fn is_log_name_valid(name: &str) -> bool {
    signed_note::is_key_name_valid(name) && !name.contains('/')
}

/// The chain a checkpoint origin names: what follows the log name and its `/`.
pub fn chain_of_origin(origin: &str) -> Option<&str> {
    match origin.split_once('/') {
        Some((log, chain)) if is_log_name_valid(log) && !chain.is_empty() => Some(chain),
        _ => None,
    }
}

/// The chain's directory name where checkpoints and tiles are published: the chain id with every
/// byte outside `[A-Za-z0-9._-]` percent-encoded, so that an org id can name no other path
/// (`org:a/../b` stays one segment) and two chains never share one.
pub fn path_segment(chain_id: &str) -> String {
    let mut out = String::with_capacity(chain_id.len() + 8);
    for &b in chain_id.as_bytes() {
        if b.is_ascii_alphanumeric()
            || (matches!(b, b'.' | b'_' | b'-') && !(out.is_empty() && b == b'.'))
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a verified checkpoint says.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The names of the keys whose signatures verified.
    pub signed_by: Vec<String>,
}

/// Verifies `note` against `verifier_keys` (at least one must have signed it, and every
/// signature by a known key must hold), and reads its checkpoint.
pub fn verify(note: &str, verifier_keys: &[&str]) -> Result<Verified, CheckpointError> {
    let verifiers = verifier_keys
        .iter()
        .map(|k| {
            StandardVerifier::new(k)
                .map(|v| Box::new(v) as Box<dyn signed_note::Verifier>)
                .map_err(|_| CheckpointError::BadVerifierKey)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let note = Note::from_bytes(note.as_bytes()).map_err(|_| CheckpointError::Malformed)?;
    let (verified, _unknown) = note
        .verify(&VerifierList::new(verifiers))
        .map_err(|_| CheckpointError::NotVerified)?;
    let checkpoint = Checkpoint::from_bytes(note.text()).map_err(|_| CheckpointError::Malformed)?;
    Ok(Verified {
        origin: checkpoint.origin().to_owned(),
        size: checkpoint.size(),
        root: *checkpoint.hash(),
        signed_by: verified.iter().map(|s| s.name().to_owned()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::merkle::Tree;

    /// The published test key: its seed is SHA-256("agentidp test key"). Never use it for a log.
    fn test_key() -> SigningKey {
        SigningKey::from_bytes(&Sha256::digest(b"agentidp test key").into())
    }

    fn three_event_root() -> Hash {
        let events: Vec<[u8; 32]> = (1..=3u8)
            .map(|i| Sha256::digest([b'e', i]).into())
            .collect();
        Tree::of(&events).root(3).expect("root")
    }

    #[test]
    fn the_body_is_origin_size_and_base64_root() {
        let root = three_event_root();
        let text = body(&origin("agentidp.example", "global"), 3, root).expect("body");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "agentidp.example/global");
        assert_eq!(lines[1], "3");
        assert_eq!(lines[2], root.to_string());
        assert!(text.ends_with('\n'));
        assert!(body("", 3, root).is_err(), "an origin is required");
    }

    #[test]
    fn a_signed_checkpoint_verifies_with_its_key_and_only_with_it() {
        let key = test_key();
        let name = "agentidp.example";
        let vkey = verifier_key(name, &key.verifying_key()).expect("vkey");
        assert!(vkey.starts_with("agentidp.example+"));
        let text = body(&origin(name, "org:org-7"), 3, three_event_root()).expect("body");
        let note = sign_locally(&text, name, &key).expect("note");
        let verified = verify(&note, &[&vkey]).expect("verifies");
        assert_eq!(verified.origin, "agentidp.example/org:org-7");
        assert_eq!(verified.size, 3);
        assert_eq!(verified.root, three_event_root());
        assert_eq!(verified.signed_by, vec![name.to_owned()]);

        let other = SigningKey::from_bytes(&[7; 32]);
        let other_vkey = verifier_key(name, &other.verifying_key()).expect("vkey");
        assert_eq!(
            verify(&note, &[&other_vkey]),
            Err(CheckpointError::NotVerified)
        );
        // A size changed after signing.
        let forged = note.replacen("\n3\n", "\n4\n", 1);
        assert_eq!(verify(&forged, &[&vkey]), Err(CheckpointError::NotVerified));
    }

    #[test]
    fn a_signature_made_elsewhere_assembles_into_the_same_note() {
        let key = test_key();
        let name = "agentidp.example";
        let text = body(&origin(name, "global"), 3, three_event_root()).expect("body");
        // As Vault's transit engine would return it: the raw 64-byte Ed25519 signature.
        let raw = key.sign(text.as_bytes()).to_bytes();
        let assembled = signed(&text, name, &key.verifying_key(), &raw).expect("note");
        assert_eq!(
            assembled,
            sign_locally(&text, name, &key).expect("note"),
            "Ed25519 is deterministic"
        );
    }

    #[test]
    fn an_unverified_read_gives_what_the_note_claims() {
        let key = test_key();
        let text = body(
            &origin("agentidp.example", "org:a/b"),
            3,
            three_event_root(),
        )
        .expect("body");
        let note = sign_locally(&text, "agentidp.example", &key).expect("note");
        let claimed = read_unverified(&note).expect("reads");
        assert_eq!(claimed.origin, "agentidp.example/org:a/b");
        assert_eq!(claimed.size, 3);
        assert_eq!(claimed.root, three_event_root());
        assert_eq!(chain_of_origin(&claimed.origin), Some("org:a/b"));
        assert_eq!(chain_of_origin("/global"), None, "a log name is required");
        assert_eq!(chain_of_origin("agentidp.example/"), None, "and a chain");
        assert_eq!(chain_of_origin("global"), None);
        assert!(is_log_name_valid("agentidp.example"));
        assert!(!is_log_name_valid("agentidp.example/prod"));
        assert!(!is_log_name_valid("with space"));
        assert_eq!(
            read_unverified(&text),
            Err(CheckpointError::Malformed),
            "unsigned"
        );
    }

    #[test]
    fn a_chain_publishes_under_one_safe_segment() {
        assert_eq!(path_segment("global"), "global");
        assert_eq!(path_segment("org:acme-1"), "org%3Aacme-1");
        assert_eq!(path_segment("org:a/../b"), "org%3Aa%2F..%2Fb");
        assert_eq!(path_segment(".hidden"), "%2Ehidden");
        assert_eq!(path_segment("org:é"), "org%3A%C3%A9");
        assert_ne!(path_segment("org:a%3Ab"), path_segment("org:a:b"));
    }

    #[test]
    fn key_names_follow_the_note_format() {
        let key = test_key().verifying_key();
        assert!(verifier_key("with space", &key).is_err());
        assert!(verifier_key("with+plus", &key).is_err());
        assert!(verifier_key("agentidp.example/prod", &key).is_ok());
    }
}
