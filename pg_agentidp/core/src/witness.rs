//! Witnesses (C2SP tlog-witness and tlog-cosignature): the request a log sends to
//! `add-checkpoint`, the cosignatures that come back, and their verification.
//!
//! A witness keeps the latest checkpoint it cosigned for each origin and cosigns a new one only
//! if a consistency proof shows it extends that one. Its cosignature is a note signature of type
//! `0x04` (cosignature/v1, timestamped Ed25519): the signature bytes are an 8-byte big-endian
//! POSIX timestamp followed by an Ed25519 signature over
//!
//! ```text
//! cosignature/v1
//! time <timestamp>
//! <the checkpoint body, all of its lines>
//! ```
//!
//! and its key id is `SHA-256(<name> || "\n" || 0x04 || 32-byte public key)[:4]`, so neither a
//! log's plain Ed25519 signature (type `0x01`) nor a cosignature can pass for the other.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, Signature, Verifier};

use crate::merkle::Hash;

/// The signature type of a cosignature/v1 (timestamped Ed25519) witness key.
pub const COSIGNATURE_V1_TYPE: u8 = 0x04;

/// The content type of a 409 response's body, the witness's current tree size.
pub const CONFLICT_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The most consistency proof lines a client may send (C2SP tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;

/// The largest timestamp a cosignature may carry (C2SP tlog-cosignature: 2^63 - 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

const HEADER: &str = "cosignature/v1\n";
const TIMESTAMP_LEN: usize = 8;
const SIGNATURE_LEN: usize = TIMESTAMP_LEN + ed25519_dalek::SIGNATURE_LENGTH;

/// Why a witness exchange could not be built, parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("malformed cosignature/v1 verifier key")]
    BadVerifierKey,
    #[error("invalid key name {0:?}")]
    BadKeyName(String),
    #[error("malformed checkpoint or note")]
    MalformedNote,
    #[error("malformed add-checkpoint response: {0}")]
    MalformedResponse(&'static str),
    #[error("malformed tree size in a 409 response")]
    MalformedSize,
    #[error("cosignature timestamp {0} is out of range")]
    BadTimestamp(u64),
    #[error("not a cosignature/v1 signature")]
    NotACosignature,
}

/// The body of an `add-checkpoint` request: `old <size>`, one base64 line per proof hash, an
/// empty line, then the signed checkpoint note as the log publishes it.
///
/// `old_size` is the size of the latest checkpoint the witness cosigned (0, with an empty proof,
/// for a witness that has none), and `consistency_proof` proves the checkpoint extends it (RFC
/// 9162 §2.1.4, as [`crate::merkle::Tree::consistency_proof`] makes it). A proof has at most
/// [`MAX_PROOF_LINES`] hashes for any tree this log can hold.
pub fn add_checkpoint_request(
    old_size: u64,
    consistency_proof: &[Hash],
    checkpoint_note: &str,
) -> String {
    let mut body = format!("old {old_size}\n");
    for hash in consistency_proof {
        body.push_str(&hash.to_string());
        body.push('\n');
    }
    body.push('\n');
    body.push_str(checkpoint_note);
    body
}

/// The cosignatures of a 200 response: one or more note signature lines (`— <name> <base64>`),
/// each ending in a newline. They are not verified here: see [`cosignature_verifier`].
pub fn parse_cosignatures(response_body: &str) -> Result<Vec<Signature>, WitnessError> {
    if response_body.is_empty() {
        return Err(WitnessError::MalformedResponse("no signature lines"));
    }
    let lines = response_body
        .strip_suffix('\n')
        .ok_or(WitnessError::MalformedResponse(
            "the last line does not end",
        ))?;
    lines
        .split('\n')
        .map(|line| {
            Signature::from_bytes(line.as_bytes())
                .map_err(|_| WitnessError::MalformedResponse("not a note signature line"))
        })
        .collect()
}

/// The witness's current tree size from a 409 response's body: a decimal, no leading zeroes,
/// and a newline.
pub fn parse_conflict_size(body: &str) -> Result<u64, WitnessError> {
    let digits = body.strip_suffix('\n').ok_or(WitnessError::MalformedSize)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return Err(WitnessError::MalformedSize);
    }
    digits.parse().map_err(|_| WitnessError::MalformedSize)
}

/// The key id of the cosignature/v1 key `key` named `name`.
pub fn cosignature_key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut encoded = vec![COSIGNATURE_V1_TYPE];
    encoded.extend_from_slice(key.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// The verifier key (vkey) of a witness: `<name>+<hex key id>+base64(0x04 || public key)`.
pub fn witness_verifier_key(name: &str, key: &VerifyingKey) -> Result<String, WitnessError> {
    if !signed_note::is_key_name_valid(name) {
        return Err(WitnessError::BadKeyName(name.to_owned()));
    }
    let mut encoded = vec![COSIGNATURE_V1_TYPE];
    encoded.extend_from_slice(key.as_bytes());
    Ok(format!(
        "{name}+{:08x}+{}",
        cosignature_key_id(name, key),
        STANDARD.encode(encoded)
    ))
}

/// A cosignature/v1 verifier for a witness key.
#[derive(Debug, Clone)]
struct CosignatureV1Verifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl Verifier for CosignatureV1Verifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((timestamp, signature)) = split_signature(sig) else {
            return false;
        };
        if timestamp > MAX_TIMESTAMP {
            return false;
        }
        let signature = ed25519_dalek::Signature::from_bytes(&signature);
        self.key
            .verify_strict(&signed_message(msg, timestamp), &signature)
            .is_ok()
    }
}

/// The timestamp and the Ed25519 signature of a cosignature/v1 signature's bytes.
fn split_signature(sig: &[u8]) -> Option<(u64, [u8; 64])> {
    if sig.len() != SIGNATURE_LEN {
        return None;
    }
    let (timestamp, signature) = sig.split_at(TIMESTAMP_LEN);
    Some((
        u64::from_be_bytes(timestamp.try_into().ok()?),
        signature.try_into().ok()?,
    ))
}

/// What a cosignature/v1 signs: the header, the time line and the checkpoint body.
fn signed_message(body: &[u8], timestamp: u64) -> Vec<u8> {
    let mut msg = format!("{HEADER}time {timestamp}\n").into_bytes();
    msg.extend_from_slice(body);
    msg
}

/// A [`signed_note::Verifier`] for the witness key `vkey` (type `0x04`), to put in the
/// [`signed_note::VerifierList`] beside the log's keys so that [`Note::verify`] checks the log's
/// signature and the witnesses' cosignatures at once.
pub fn cosignature_verifier(vkey: &str) -> Result<Box<dyn Verifier>, WitnessError> {
    let (name, rest) = vkey.split_once('+').ok_or(WitnessError::BadVerifierKey)?;
    let (id_hex, key_b64) = rest.split_once('+').ok_or(WitnessError::BadVerifierKey)?;
    if !signed_note::is_key_name_valid(name) {
        return Err(WitnessError::BadKeyName(name.to_owned()));
    }
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WitnessError::BadVerifierKey);
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| WitnessError::BadVerifierKey)?;
    let encoded = STANDARD
        .decode(key_b64)
        .map_err(|_| WitnessError::BadVerifierKey)?;
    let (&kind, key) = encoded.split_first().ok_or(WitnessError::BadVerifierKey)?;
    if kind != COSIGNATURE_V1_TYPE || signed_note::key_id(name, &encoded) != id {
        return Err(WitnessError::BadVerifierKey);
    }
    let key: [u8; 32] = key.try_into().map_err(|_| WitnessError::BadVerifierKey)?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| WitnessError::BadVerifierKey)?;
    Ok(Box::new(CosignatureV1Verifier {
        name: name.to_owned(),
        id,
        key,
    }))
}

/// The timestamp a cosignature/v1 signature carries (not verified: verify the note first).
pub fn cosignature_timestamp(signature: &Signature) -> Result<u64, WitnessError> {
    split_signature(signature.signature())
        .map(|(timestamp, _)| timestamp)
        .ok_or(WitnessError::NotACosignature)
}

/// The text of a checkpoint note, or the body itself when given one without signatures.
fn checkpoint_text(checkpoint_note_or_body: &str) -> Result<Vec<u8>, WitnessError> {
    let text = if checkpoint_note_or_body.contains("\n\n") {
        Note::from_bytes(checkpoint_note_or_body.as_bytes())
            .map_err(|_| WitnessError::MalformedNote)?
            .text()
            .to_vec()
    } else {
        checkpoint_note_or_body.as_bytes().to_vec()
    };
    tlog_tiles::checkpoint::Checkpoint::from_bytes(&text)
        .map_err(|_| WitnessError::MalformedNote)?;
    Ok(text)
}

/// The cosignature line (`— <name> <base64>` and a newline) of the witness key `key` named
/// `name` over a checkpoint at `timestamp`, as a witness returns it. `checkpoint_note_or_body`
/// is the signed note (its signatures are not checked) or the bare checkpoint body.
pub fn cosign(
    checkpoint_note_or_body: &str,
    name: &str,
    key: &SigningKey,
    timestamp: u64,
) -> Result<String, WitnessError> {
    if !signed_note::is_key_name_valid(name) {
        return Err(WitnessError::BadKeyName(name.to_owned()));
    }
    if timestamp > MAX_TIMESTAMP {
        return Err(WitnessError::BadTimestamp(timestamp));
    }
    let text = checkpoint_text(checkpoint_note_or_body)?;
    let mut sig = timestamp.to_be_bytes().to_vec();
    sig.extend_from_slice(&key.sign(&signed_message(&text, timestamp)).to_bytes());
    let id = cosignature_key_id(name, &key.verifying_key());
    let line = Signature::new(name.to_owned(), id, sig)
        .map_err(|_| WitnessError::BadKeyName(name.to_owned()))?
        .to_bytes();
    String::from_utf8(line).map_err(|_| WitnessError::MalformedNote)
}

/// `note` with `cosignature_lines` appended (each with or without its final newline), as it is
/// stored and served. A line from a key that already signed the note replaces that key's earlier
/// signature. Nothing is verified here.
pub fn with_cosignatures(note: &str, cosignature_lines: &[String]) -> Result<String, WitnessError> {
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|_| WitnessError::MalformedNote)?;
    // `Note` keeps its signatures to itself: read them from the block after the last blank line,
    // which `from_bytes` has just checked.
    let (_, block) = note
        .rsplit_once("\n\n")
        .ok_or(WitnessError::MalformedNote)?;
    let mut signatures = block
        .lines()
        .map(|line| Signature::from_bytes(line.as_bytes()).map_err(|_| WitnessError::MalformedNote))
        .collect::<Result<Vec<_>, _>>()?;
    for line in cosignature_lines {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.contains('\n') {
            return Err(WitnessError::MalformedResponse("more than one line"));
        }
        let new = Signature::from_bytes(line.as_bytes())
            .map_err(|_| WitnessError::MalformedResponse("not a note signature line"))?;
        signatures.retain(|old| (old.name(), old.id()) != (new.name(), new.id()));
        signatures.push(new);
    }
    let note = Note::new(parsed.text(), &signatures).map_err(|_| WitnessError::MalformedNote)?;
    String::from_utf8(note.to_bytes()).map_err(|_| WitnessError::MalformedNote)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use signed_note::{StandardVerifier, VerifierList};

    use super::*;
    use crate::checkpoint;
    use crate::merkle::Tree;

    const WITNESS: &str = "witness.agentidp.example";
    const LOG: &str = "agentidp.example";
    const TIME: u64 = 1_700_000_000;

    /// The published test witness key: its seed is SHA-256("agentidp test witness").
    fn witness_key() -> SigningKey {
        SigningKey::from_bytes(&Sha256::digest(b"agentidp test witness").into())
    }

    /// The log's published test key (checkpoint.rs): SHA-256("agentidp test key").
    fn log_key() -> SigningKey {
        SigningKey::from_bytes(&Sha256::digest(b"agentidp test key").into())
    }

    fn tree(n: u8) -> Tree {
        let events: Vec<[u8; 32]> = (1..=n).map(|i| Sha256::digest([b'e', i]).into()).collect();
        Tree::of(&events)
    }

    /// The checkpoint of the runbook's three-event tree, `agentidp.example/global`, size 3.
    fn body() -> String {
        let root = tree(3).root(3).expect("root");
        checkpoint::body(&checkpoint::origin(LOG, "global"), 3, root).expect("body")
    }

    fn log_note(body: &str) -> String {
        checkpoint::sign_locally(body, LOG, &log_key()).expect("note")
    }

    fn witness_vkey() -> String {
        witness_verifier_key(WITNESS, &witness_key().verifying_key()).expect("vkey")
    }

    fn log_vkey() -> String {
        checkpoint::verifier_key(LOG, &log_key().verifying_key()).expect("vkey")
    }

    /// Verifies `note` with the log's key and the witness's, returning the names that signed.
    fn verify(note: &str, vkeys: Vec<Box<dyn Verifier>>) -> Result<Vec<String>, String> {
        let note = Note::from_bytes(note.as_bytes()).map_err(|e| e.to_string())?;
        let (verified, _) = note
            .verify(&VerifierList::new(vkeys))
            .map_err(|e| e.to_string())?;
        Ok(verified.iter().map(|s| s.name().to_owned()).collect())
    }

    fn both_verifiers() -> Vec<Box<dyn Verifier>> {
        vec![
            Box::new(StandardVerifier::new(&log_vkey()).expect("log vkey")),
            cosignature_verifier(&witness_vkey()).expect("witness vkey"),
        ]
    }

    #[test]
    fn the_published_vector() {
        // Printed so the vector can be copied into the docs: `cargo test -- --nocapture`.
        let line = cosign(&body(), WITNESS, &witness_key(), TIME).expect("cosign");
        println!("body:\n{}vkey: {}\nline: {line}", body(), witness_vkey());
        assert_eq!(
            body(),
            "agentidp.example/global\n3\nbFEkTWhl/AxZHRo/waV1FIEJ6dk0UWayIsgKs14Bk4c=\n"
        );
        assert_eq!(
            witness_vkey(),
            "witness.agentidp.example+3029cc29+BH09OgIT3XgfcDrpPWSjMuB5MOQPlHsPISqehdRuTnNj"
        );
        assert_eq!(
            line,
            "— witness.agentidp.example MCnMKQAAAABlU/EAY6p9OgAXKoLO4NtdNS9h3s5DDyEnLmo1H5i0EDQ63jVE\
             lRxVct4tYUzHKtU7Mz9iUeYp4tkFUn4WcQIb2KLrDQ==\n"
        );
        let sig = Signature::from_bytes(line.trim_end().as_bytes()).expect("line");
        assert_eq!(cosignature_timestamp(&sig), Ok(TIME));
        // The note form and the bare body give the same cosignature.
        assert_eq!(
            cosign(&log_note(&body()), WITNESS, &witness_key(), TIME),
            Ok(line)
        );
    }

    #[test]
    fn a_real_witness_cosignature_verifies() {
        // A checkpoint of a public staging CT log with the cosignature of the public witness
        // remora.n621.de, and that witness's published vkey (type 0x04).
        let note = "arche2025h1.staging.ct.transparency.dev\n1432088532\n\
                    U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n\n\
                    — remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI\
                    +aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==\n";
        let vkey = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
        let verifier = cosignature_verifier(vkey).expect("vkey");
        assert_eq!(verifier.key_id(), 0xda77_ade7);
        assert_eq!(
            verify(note, vec![verifier]),
            Ok(vec!["remora.n621.de".to_owned()])
        );
        let forged = note.replacen("1432088532", "1432088533", 1);
        let verifier = cosignature_verifier(vkey).expect("vkey");
        assert!(verify(&forged, vec![verifier]).is_err());
    }

    #[test]
    fn a_cosigned_note_verifies_with_the_log_and_the_witness_keys() {
        let note = log_note(&body());
        let line = cosign(&note, WITNESS, &witness_key(), TIME).expect("cosign");
        let response = parse_cosignatures(&line).expect("response");
        assert_eq!(response.len(), 1);
        assert_eq!(response[0].name(), WITNESS);
        let cosigned = with_cosignatures(&note, std::slice::from_ref(&line)).expect("cosigned");
        assert_eq!(cosigned, format!("{note}{line}"));
        assert_eq!(
            verify(&cosigned, both_verifiers()),
            Ok(vec![LOG.to_owned(), WITNESS.to_owned()])
        );
        // Only the witness's key: the log's signature is unknown, the cosignature still holds.
        let witness_only = vec![cosignature_verifier(&witness_vkey()).expect("vkey")];
        assert_eq!(
            verify(&cosigned, witness_only),
            Ok(vec![WITNESS.to_owned()])
        );
        // A second cosignature by the same key replaces the first; another witness's is added.
        let later = cosign(&note, WITNESS, &witness_key(), TIME + 60).expect("cosign");
        let other_key = SigningKey::from_bytes(&[9; 32]);
        let other = cosign(&note, "w2.example", &other_key, TIME).expect("cosign");
        let recosigned =
            with_cosignatures(&cosigned, &[later.trim_end().to_owned(), other.clone()])
                .expect("cosigned");
        assert_eq!(recosigned, format!("{note}{later}{other}"));
    }

    #[test]
    fn a_cosignature_over_another_body_or_time_fails() {
        let note = log_note(&body());
        let line = cosign(&note, WITNESS, &witness_key(), TIME).expect("cosign");
        // Another size.
        let root4 = tree(4).root(4).expect("root");
        let body4 = checkpoint::body(&checkpoint::origin(LOG, "global"), 4, root4).expect("body");
        let moved =
            with_cosignatures(&log_note(&body4), std::slice::from_ref(&line)).expect("note");
        assert!(verify(&moved, both_verifiers())
            .is_err_and(|e| e.contains("invalid signature for key witness.agentidp.example")));
        // Another time: rewrite the timestamp inside the signature.
        let sig = Signature::from_bytes(line.trim_end().as_bytes()).expect("line");
        let mut bytes = sig.signature().to_vec();
        bytes[7] ^= 1;
        let retimed = Signature::new(WITNESS.to_owned(), sig.id(), bytes).expect("sig");
        let retimed = String::from_utf8(retimed.to_bytes()).expect("utf-8");
        let retimed = with_cosignatures(&note, &[retimed]).expect("note");
        assert!(verify(&retimed, both_verifiers()).is_err());
        // The right time, the wrong key under the witness's name and id.
        let impostor = cosign(&note, WITNESS, &SigningKey::from_bytes(&[3; 32]), TIME).expect("x");
        let impostor = Signature::from_bytes(impostor.trim_end().as_bytes()).expect("line");
        let relabelled =
            Signature::new(WITNESS.to_owned(), sig.id(), impostor.signature().into()).expect("sig");
        let relabelled = String::from_utf8(relabelled.to_bytes()).expect("utf-8");
        let relabelled = with_cosignatures(&note, &[relabelled]).expect("note");
        assert!(verify(&relabelled, both_verifiers()).is_err());
    }

    #[test]
    fn a_log_signature_is_not_a_cosignature_and_back() {
        // The witness key signing the checkpoint as a plain Ed25519 note signer (type 0x01): its
        // key id differs, so a cosignature verifier does not even consider it...
        let plain = checkpoint::sign_locally(&body(), WITNESS, &witness_key()).expect("note");
        let witness_only = vec![cosignature_verifier(&witness_vkey()).expect("vkey")];
        assert!(verify(&plain, witness_only).is_err_and(|e| e.contains("no verifiable")));
        // ...and its bytes do not verify as one even under the right id.
        let sig = Signature::from_bytes(
            plain
                .rsplit_once("\n\n")
                .map(|(_, s)| s.trim_end())
                .unwrap_or_default()
                .as_bytes(),
        )
        .expect("sig");
        let verifier = cosignature_verifier(&witness_vkey()).expect("vkey");
        assert!(!verifier.verify(body().as_bytes(), sig.signature()));
        let mut padded = vec![0u8; 8];
        padded.extend_from_slice(sig.signature());
        assert!(!verifier.verify(body().as_bytes(), &padded));
        // A cosignature is not a log signature: a plain vkey of the same key ignores it.
        let line = cosign(&body(), WITNESS, &witness_key(), TIME).expect("cosign");
        let cosigned = with_cosignatures(&log_note(&body()), &[line]).expect("note");
        let plain_vkey =
            checkpoint::verifier_key(WITNESS, &witness_key().verifying_key()).expect("vkey");
        let plain_verifier: Vec<Box<dyn Verifier>> =
            vec![Box::new(StandardVerifier::new(&plain_vkey).expect("vkey"))];
        assert!(verify(&cosigned, plain_verifier).is_err_and(|e| e.contains("no verifiable")));
        // And a log's vkey (type 0x01) is refused as a witness key.
        assert_eq!(
            cosignature_verifier(&log_vkey()).err(),
            Some(WitnessError::BadVerifierKey)
        );
    }

    #[test]
    fn the_request_body_follows_the_spec() {
        let full = tree(9);
        let proof = full.consistency_proof(5, 9).expect("proof");
        let note = log_note(
            &checkpoint::body(
                &checkpoint::origin(LOG, "global"),
                9,
                full.root(9).expect("root"),
            )
            .expect("body"),
        );
        let request = add_checkpoint_request(5, &proof, &note);
        let (head, rest) = request.split_once("\n\n").expect("blank line");
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("old 5"));
        let hashes: Vec<String> = lines.map(str::to_owned).collect();
        assert_eq!(
            hashes,
            proof.iter().map(|h| h.to_string()).collect::<Vec<_>>()
        );
        assert!(!hashes.is_empty() && hashes.len() <= MAX_PROOF_LINES);
        assert_eq!(rest, note);
        assert_eq!(
            add_checkpoint_request(0, &[], &note),
            format!("old 0\n\n{note}")
        );
    }

    #[test]
    fn responses_that_do_not_parse() {
        let line = cosign(&body(), WITNESS, &witness_key(), TIME).expect("cosign");
        assert_eq!(
            parse_cosignatures(&format!("{line}{line}")).map(|s| s.len()),
            Ok(2)
        );
        for bad in [
            String::new(),
            "\n".to_owned(),
            line.trim_end().to_owned(),
            format!("{line}\n"),
            "- witness.agentidp.example AAAA\n".to_owned(),
            "— witness.agentidp.example\n".to_owned(),
            "— witness.agentidp.example !!!!\n".to_owned(),
            "old 3\n".to_owned(),
        ] {
            assert!(parse_cosignatures(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_conflict_size("20852014\n"), Ok(20_852_014));
        assert_eq!(parse_conflict_size("0\n"), Ok(0));
        for bad in [
            "",
            "\n",
            "12",
            "012\n",
            "-1\n",
            "1 \n",
            "1\n\n",
            "x\n",
            "99999999999999999999\n",
        ] {
            assert_eq!(
                parse_conflict_size(bad),
                Err(WitnessError::MalformedSize),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_and_inputs_that_are_refused() {
        let vkey = witness_vkey();
        let (name, rest) = vkey.split_once('+').expect("vkey");
        let (id, key) = rest.split_once('+').expect("vkey");
        for bad in [
            String::new(),
            name.to_owned(),
            format!("{name}+{id}"),
            format!("{name}+00000000+{key}"),
            format!("other.example+{id}+{key}"),
            format!("{name}+{id}+{}", &key[..key.len() - 4]),
            format!("{name}+{id}+not base64"),
        ] {
            assert!(cosignature_verifier(&bad).is_err(), "{bad:?}");
        }
        assert!(witness_verifier_key("a b", &witness_key().verifying_key()).is_err());
        assert!(cosign(&body(), "a+b", &witness_key(), TIME).is_err());
        assert_eq!(
            cosign(&body(), WITNESS, &witness_key(), MAX_TIMESTAMP + 1),
            Err(WitnessError::BadTimestamp(MAX_TIMESTAMP + 1))
        );
        assert!(cosign(&body(), WITNESS, &witness_key(), MAX_TIMESTAMP).is_ok());
        assert_eq!(
            cosign("not a checkpoint\n", WITNESS, &witness_key(), TIME),
            Err(WitnessError::MalformedNote)
        );
        assert!(
            with_cosignatures(&body(), &[]).is_err(),
            "a body is not a note"
        );
        assert!(with_cosignatures(&log_note(&body()), &["garbage".to_owned()]).is_err());
        let line = cosign(&body(), WITNESS, &witness_key(), TIME).expect("cosign");
        assert!(with_cosignatures(&log_note(&body()), &[format!("{line}{line}")]).is_err());
        // A timestamp past 2^63 - 1 does not verify even if correctly signed.
        let huge = u64::MAX;
        let mut sig = huge.to_be_bytes().to_vec();
        sig.extend_from_slice(
            &witness_key()
                .sign(&signed_message(body().as_bytes(), huge))
                .to_bytes(),
        );
        let verifier = cosignature_verifier(&vkey).expect("vkey");
        assert!(!verifier.verify(body().as_bytes(), &sig));
        let mut ok = TIME.to_be_bytes().to_vec();
        ok.extend_from_slice(
            &witness_key()
                .sign(&signed_message(body().as_bytes(), TIME))
                .to_bytes(),
        );
        assert!(verifier.verify(body().as_bytes(), &ok));
    }
}
