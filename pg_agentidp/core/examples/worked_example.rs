//! The audit-log runbook's worked example of a signed checkpoint ("Signed checkpoints"), computed
//! with this crate so that the values in the runbook are the library's, not hand-made.
//! `tests/docs.sh` compares this program's output with the runbook, line for line.
//!
//! ```text
//! cargo run -q -p agentidp-core --example worked_example
//! ```
//!
//! The key is the published test key (seed SHA-256("agentidp test key")): never sign a real log
//! with it.

use std::fmt::Write as _;
use std::process::ExitCode;

use agentidp_core::checkpoint;
use agentidp_core::merkle::{self, leaf_hash, Tree};
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

const LOG: &str = "agentidp.example";
const CHAIN: &str = "global";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("worked_example: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, Box<dyn std::error::Error>> {
    let mut out = String::new();
    // Stored hashes as merkle.rs's tests make them: SHA-256 of the two bytes 'e' (0x65) and i.
    let events: Vec<[u8; 32]> = (1..=3u8)
        .map(|i| Sha256::digest([b'e', i]).into())
        .collect();
    for (i, e) in events.iter().enumerate() {
        writeln!(out, "event_hash[{}]: {}", i + 1, hex(e))?;
    }
    let leaves: Vec<_> = events.iter().map(leaf_hash).collect();
    for (i, l) in leaves.iter().enumerate() {
        writeln!(out, "leaf_hash[{i}]: {}", hex(&l.0))?;
    }
    let tree = Tree::of(&events);
    // The only interior node below the root: RFC 9162 splits 3 leaves as 2 + 1.
    let node = Tree::of(&events[..2]).root(2)?;
    writeln!(out, "node[0,1]: {}", hex(&node.0))?;
    let root = tree.root(3)?;
    writeln!(out, "root: {}", hex(&root.0))?;
    writeln!(out, "root_base64: {root}")?;

    let proof = tree.inclusion_proof(1, 3)?;
    // Printed only if it holds, so the runbook never shows a proof the library rejects.
    merkle::verify_inclusion(&proof, 3, root, 1, &events[1])?;
    for (i, p) in proof.iter().enumerate() {
        writeln!(out, "inclusion_proof[{i}]: {}", hex(&p.0))?;
    }

    let key = SigningKey::from_bytes(&Sha256::digest(b"agentidp test key").into());
    let public = key.verifying_key();
    writeln!(out, "public_key: {}", hex(public.as_bytes()))?;
    writeln!(out, "key_id: {:08x}", checkpoint::key_id(LOG, &public))?;
    let vkey = checkpoint::verifier_key(LOG, &public)?;
    writeln!(out, "verifier_key: {vkey}")?;

    let body = checkpoint::body(&checkpoint::origin(LOG, CHAIN), 3, root)?;
    let note = checkpoint::sign_locally(&body, LOG, &key)?;
    checkpoint::verify(&note, &[&vkey])?;
    let line = note
        .lines()
        .find_map(|l| l.strip_prefix(&format!("\u{2014} {LOG} ")))
        .ok_or("the note has no signature line")?;
    let signed = base64::engine::general_purpose::STANDARD.decode(line)?;
    let signature = signed.get(4..).ok_or("the signature line is too short")?;
    writeln!(out, "signature: {}", hex(signature))?;
    writeln!(out, "checkpoint body:")?;
    out.push_str(&body);
    writeln!(out, "note:")?;
    out.push_str(&note);
    Ok(out)
}
