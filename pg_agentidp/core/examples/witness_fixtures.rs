//! Fixtures for the witness double's test (tests/witness/test_witness_double.sh), made with
//! `agentidp_core` so that the double (written independently, in Python) is checked against the
//! log's own trees, proofs and notes, and its answers against `agentidp_core::witness`.
//!
//! ```text
//! witness_fixtures gen DIR                 request bodies, notes and keys, one file each
//! witness_fixtures proofs N                every consistency proof of trees up to N leaves
//! witness_fixtures verify NOTE RESPONSE    a 200's cosignature over NOTE, with both keys
//! witness_fixtures conflict-size BODY      a 409's body, parsed
//! witness_fixtures cosign BODY TIMESTAMP   the test witness's cosignature line
//! ```
//!
//! Every key here is a published test key: never use one for a real log or witness.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use agentidp_core::checkpoint;
use agentidp_core::merkle::{Hash, Tree};
use agentidp_core::witness;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use signed_note::{Note, StandardVerifier, VerifierList};

const LOG: &str = "agentidp.example";
const OTHER_LOG: &str = "other.example";
const WITNESS: &str = "witness.agentidp.example";

fn key(seed: &str) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(seed.as_bytes()).into())
}

/// The log's test key (as in checkpoint.rs), the witness's, and two others.
fn log_key() -> SigningKey {
    key("agentidp test key")
}
fn witness_key() -> SigningKey {
    key("agentidp test witness")
}

fn event(i: u32) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"event ")
        .chain_update(i.to_be_bytes())
        .finalize()
        .into()
}

/// The log's tree of `n` events, and the one rewritten at event 3.
fn real(n: u32) -> Tree {
    Tree::of(&(1..=n).map(event).collect::<Vec<_>>())
}
fn forged(n: u32) -> Tree {
    let mut events: Vec<[u8; 32]> = (1..=n).map(event).collect();
    events[2] = Sha256::digest(b"a rewritten event").into();
    Tree::of(&events)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

type Fail = Box<dyn std::error::Error>;

fn note(chain: &str, size: u64, root: Hash, name: &str, key: &SigningKey) -> Result<String, Fail> {
    let origin = checkpoint::origin(name, chain);
    let body = checkpoint::body(&origin, size, root)?;
    Ok(checkpoint::sign_locally(&body, name, key)?)
}

fn log_note(chain: &str, tree: &Tree, size: u64) -> Result<String, Fail> {
    note(chain, size, tree.root(size)?, LOG, &log_key())
}

fn gen(dir: &Path) -> Result<(), Fail> {
    std::fs::create_dir_all(dir)?;
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text);
    let log_vkey = checkpoint::verifier_key(LOG, &log_key().verifying_key())?;
    write("log.vkey", &format!("{log_vkey}\n"))?;
    write("witness.name", &format!("{WITNESS}\n"))?;
    write(
        "witness.seed",
        &format!("{}\n", hex(witness_key().as_bytes())),
    )?;
    let witness_vkey = witness::witness_verifier_key(WITNESS, &witness_key().verifying_key())?;
    write("witness.vkey", &format!("{witness_vkey}\n"))?;

    let (tree, bad) = (real(12), forged(12));
    let request =
        |old: u64, proof: &[Hash], note: &str| witness::add_checkpoint_request(old, proof, note);
    let mut fixtures: Vec<(&str, String, String)> = Vec::new();
    let mut add = |name: &'static str, note: String, body: String| {
        fixtures.push((name, note, body));
    };
    // The first checkpoint of `global` (5 events), then 5 -> 9.
    let n5 = log_note("global", &tree, 5)?;
    add("first", n5.clone(), request(0, &[], &n5));
    let n9 = log_note("global", &tree, 9)?;
    add(
        "grow",
        n9.clone(),
        request(5, &tree.consistency_proof(5, 9)?, &n9),
    );
    // History rewritten at event 3: a checkpoint of 12, and a proof from 9 computed on the
    // forged tree, which cannot match the 9 the witness holds.
    let f12 = log_note("global", &bad, 12)?;
    add(
        "forged",
        f12.clone(),
        request(9, &bad.consistency_proof(9, 12)?, &f12),
    );
    // The forged tree's own checkpoint of 9: same size as the witness's, another root.
    let f9 = log_note("global", &bad, 9)?;
    add("forked", f9.clone(), request(9, &[], &f9));
    // The real checkpoint of 12 from a wrong old size; smaller than the witness's, both ways.
    let n12 = log_note("global", &tree, 12)?;
    add(
        "wrong-old",
        n12.clone(),
        request(5, &tree.consistency_proof(5, 12)?, &n12),
    );
    let n7 = log_note("global", &tree, 7)?;
    add("smaller", n7.clone(), request(9, &[], &n7));
    add("smaller-old", n7.clone(), request(7, &[], &n7));
    // A proof that was tampered with, and the right one: 9 -> 12.
    let mut garbled = tree.consistency_proof(9, 12)?;
    garbled[0].0[0] ^= 1;
    add("garbled-proof", n12.clone(), request(9, &garbled, &n12));
    add(
        "grow-again",
        n12.clone(),
        request(9, &tree.consistency_proof(9, 12)?, &n12),
    );
    // Another chain: a proof where none may be, then size 0 with a root that is not the empty
    // tree's, then the empty tree itself.
    let o3 = log_note("org:org-7", &tree, 3)?;
    add(
        "proof-from-zero",
        o3.clone(),
        request(0, &tree.consistency_proof(2, 3)?, &o3),
    );
    let z = note("empty", 0, tree.root(3)?, LOG, &log_key())?;
    add("empty-bad-root", z.clone(), request(0, &[], &z));
    let z = log_note("empty", &tree, 0)?;
    add("empty", z.clone(), request(0, &[], &z));
    // A log the witness does not know; a known origin signed by another key under the log's
    // name; and the log's own signature, one bit flipped.
    let other = note(
        "global",
        5,
        tree.root(5)?,
        OTHER_LOG,
        &key("agentidp other log"),
    )?;
    add("unknown-log", other.clone(), request(0, &[], &other));
    let impostor = note("global", 12, tree.root(12)?, LOG, &key("agentidp impostor"))?;
    add(
        "wrong-key",
        impostor.clone(),
        request(9, &tree.consistency_proof(9, 12)?, &impostor),
    );
    let flipped = flip_signature(&n12)?;
    add(
        "bad-signature",
        flipped.clone(),
        request(9, &tree.consistency_proof(9, 12)?, &flipped),
    );
    add("no-blank-line", n5.clone(), n5.replacen("\n\n", "\n", 1));
    add("old-leading-zero", n5.clone(), format!("old 05\n\n{n5}"));
    add("old-too-big", n5.clone(), format!("old 6\n\n{n5}"));
    add(
        "bad-proof-line",
        n9.clone(),
        format!("old 5\nnot base64\n\n{n9}"),
    );
    for (name, note, body) in fixtures {
        write(&format!("{name}.note"), &note)?;
        write(&format!("{name}.req"), &body)?;
    }
    Ok(())
}

/// `note` with one bit of its (only) signature flipped: the right key name and id, a signature
/// that does not verify.
fn flip_signature(note: &str) -> Result<String, Fail> {
    let (text, line) = note.rsplit_once("\n\n").ok_or("no signature")?;
    let sig = signed_note::Signature::from_bytes(line.trim_end().as_bytes())?;
    let mut bytes = sig.signature().to_vec();
    bytes[10] ^= 1;
    let sig = signed_note::Signature::new(sig.name().to_owned(), sig.id(), bytes)?;
    Ok(format!("{text}\n\n{}", String::from_utf8(sig.to_bytes())?))
}

/// One line per (old, new, 0 < old <= new <= n): `old new old_root new_root proof...`, for the
/// double's own verifier to be checked against; and the same with a forged old tree.
fn proofs(n: u32) -> Result<(), Fail> {
    let (tree, bad) = (real(n), forged(n));
    for old in 1..=u64::from(n) {
        for new in old..=u64::from(n) {
            let proof = tree.consistency_proof(old, new)?;
            let line = |kind: &str, old_root: Hash| {
                let mut line = format!("{kind} {old} {new} {old_root} {}", tree.root(new)?);
                for h in &proof {
                    line.push(' ');
                    line.push_str(&h.to_string());
                }
                Ok::<_, Fail>(line)
            };
            println!("{}", line("good", tree.root(old)?)?);
            if old >= 3 {
                println!("{}", line("bad", bad.root(old)?)?);
            }
        }
    }
    Ok(())
}

fn verify(note_file: &Path, response_file: &Path) -> Result<(), Fail> {
    let note = std::fs::read_to_string(note_file)?;
    let response = std::fs::read_to_string(response_file)?;
    let cosignatures = witness::parse_cosignatures(&response)?;
    let lines: Vec<String> = response.lines().map(str::to_owned).collect();
    let cosigned = witness::with_cosignatures(&note, &lines)?;
    let log_vkey = checkpoint::verifier_key(LOG, &log_key().verifying_key())?;
    let witness_vkey = witness::witness_verifier_key(WITNESS, &witness_key().verifying_key())?;
    let verifiers = VerifierList::new(vec![
        Box::new(StandardVerifier::new(&log_vkey)?),
        witness::cosignature_verifier(&witness_vkey)?,
    ]);
    let (verified, _) = Note::from_bytes(cosigned.as_bytes())?.verify(&verifiers)?;
    let names: Vec<&str> = verified.iter().map(|s| s.name()).collect();
    if names != [LOG, WITNESS] {
        return Err(format!("verified by {names:?}").into());
    }
    let timestamp = witness::cosignature_timestamp(&cosignatures[0])?;
    println!("verified by {} at {timestamp}", names.join(", "));
    Ok(())
}

fn run(args: &[String]) -> Result<(), Fail> {
    match args {
        [cmd, dir] if cmd == "gen" => gen(Path::new(dir)),
        [cmd, n] if cmd == "proofs" => proofs(n.parse()?),
        [cmd, note, response] if cmd == "verify" => verify(Path::new(note), Path::new(response)),
        [cmd, body] if cmd == "conflict-size" => {
            let size = witness::parse_conflict_size(&std::fs::read_to_string(body)?)?;
            println!("{size}");
            Ok(())
        }
        [cmd, body, timestamp] if cmd == "cosign" => {
            let body = std::fs::read_to_string(body)?;
            let line = witness::cosign(&body, WITNESS, &witness_key(), timestamp.parse()?)?;
            print!("{line}");
            Ok(())
        }
        _ => Err(
            "usage: witness_fixtures gen DIR | proofs N | verify NOTE RESPONSE | \
                  conflict-size BODY | cosign BODY TIMESTAMP"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("witness_fixtures: {e}");
            ExitCode::FAILURE
        }
    }
}
