use std::path::{Path, PathBuf};

use agentidp_core::export::{ConsistencyProof, InclusionProof};
use agentidp_core::merkle::Hash;

use crate::common::*;

fn proof(event: &Path, proof: &Path, checkpoint: &Path) -> Run {
    run([
        "proof".as_ref(),
        "--event".as_ref(),
        event.as_os_str(),
        "--proof".as_ref(),
        proof.as_os_str(),
        "--checkpoint".as_ref(),
        checkpoint.as_os_str(),
        "--key".as_ref(),
        vkey().as_ref(),
    ])
}

fn consistency(old: &Path, new: &Path, proof: &Path) -> Run {
    run([
        "consistency".as_ref(),
        "--old".as_ref(),
        old.as_os_str(),
        "--new".as_ref(),
        new.as_os_str(),
        "--proof".as_ref(),
        proof.as_os_str(),
        "--key".as_ref(),
        vkey().as_ref(),
    ])
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("serializes")
}

struct Inclusion {
    files: Files,
    rows: Vec<Row>,
    checkpoint: PathBuf,
}

/// A chain of 40 events, and its checkpoint at 37.
fn inclusion() -> Inclusion {
    let files = Files::new();
    let rows = chain(40);
    let checkpoint = files.write("cp37.note", note(&tree(&rows), 37));
    Inclusion {
        files,
        rows,
        checkpoint,
    }
}

impl Inclusion {
    fn line(&self, seq: usize) -> PathBuf {
        self.files
            .write("event.json", export_text(&self.rows[seq - 1..seq]))
    }

    fn proof(&self, leaf_index: u64, tree_size: u64, edit: impl Fn(&mut Vec<Hash>)) -> PathBuf {
        let mut hashes = tree(&self.rows)
            .inclusion_proof(leaf_index, tree_size)
            .expect("proof");
        edit(&mut hashes);
        let proof = InclusionProof {
            leaf_index,
            tree_size,
            proof: hashes,
        };
        self.files.write("proof.json", json(&proof))
    }
}

#[test]
fn an_included_event_verifies() {
    let case = inclusion();
    for seq in [1, 20, 37] {
        let run = proof(
            &case.line(seq),
            &case.proof(seq as u64 - 1, 37, |_| ()),
            &case.checkpoint,
        );
        run.assert_ok();
        assert!(
            run.stdout.contains(&format!(
                "event {} seq {seq}: hash verified",
                case.rows[seq - 1].id()
            )),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn a_proof_of_another_leaf_fails() {
    let case = inclusion();
    let run = proof(
        &case.line(20),
        &case.proof(20, 37, |_| ()),
        &case.checkpoint,
    );
    assert_eq!(
        run.fail_line(),
        format!(
            "FAIL: event {} seq 20 wrong_leaf: the proof is for leaf 20, and seq 20 is leaf 19",
            case.rows[19].id()
        )
    );
}

#[test]
fn a_proof_for_another_tree_size_fails() {
    let case = inclusion();
    let run = proof(
        &case.line(20),
        &case.proof(19, 40, |_| ()),
        &case.checkpoint,
    );
    assert_eq!(
        run.fail_line(),
        "FAIL: checkpoint 37 wrong_size: the proof is for a tree of 40"
    );
}

#[test]
fn an_altered_proof_or_an_event_outside_the_tree_fails() {
    let case = inclusion();
    let altered = case.proof(19, 37, |hashes| hashes[1].0[0] ^= 1);
    let run = proof(&case.line(20), &altered, &case.checkpoint);
    assert!(
        run.fail_line().starts_with(&format!(
            "FAIL: event {} seq 20 not_included: not in checkpoint 37",
            case.rows[19].id()
        )),
        "{}",
        run.stderr
    );
    // Seq 39 is in the chain, but after checkpoint 37: no proof of its 37 leaves holds it.
    let outside = InclusionProof {
        leaf_index: 38,
        tree_size: 37,
        proof: vec![],
    };
    let outside = case.files.write("outside.json", json(&outside));
    let run = proof(&case.line(39), &outside, &case.checkpoint);
    assert!(
        run.fail_line().starts_with(&format!(
            "FAIL: event {} seq 39 not_included: not in checkpoint 37",
            case.rows[38].id()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn an_edited_event_line_fails() {
    let case = inclusion();
    let mut edited = case.rows[19].clone();
    edited.metadata = Some("{}".to_owned());
    let line = case
        .files
        .write("edited.json", export_text(std::slice::from_ref(&edited)));
    let run = proof(&line, &case.proof(19, 37, |_| ()), &case.checkpoint);
    assert_eq!(
        run.fail_line(),
        format!(
            "FAIL: event {} seq 20 content_edited: the stored hash is not the hash of the event's fields",
            edited.id()
        )
    );
}

#[test]
fn a_proof_against_a_checkpoint_of_another_key_fails() {
    let case = inclusion();
    let forged = case.files.write(
        "forged.note",
        note_signed_by(&tree(&case.rows), 37, CHAIN, &other_key()),
    );
    let run = proof(&case.line(20), &case.proof(19, 37, |_| ()), &forged);
    assert!(
        run.fail_line()
            .starts_with("FAIL: checkpoint 37 bad_signature: "),
        "{}",
        run.stderr
    );
}

struct Growth {
    files: Files,
    rows: Vec<Row>,
}

impl Growth {
    fn new() -> Growth {
        Growth {
            files: Files::new(),
            rows: chain(90),
        }
    }

    fn note(&self, name: &str, rows: &[Row], size: u64, chain: &str) -> PathBuf {
        self.files
            .write(name, note_signed_by(&tree(rows), size, chain, &log_key()))
    }

    fn proof(&self, old: u64, new: u64) -> PathBuf {
        let proof = ConsistencyProof {
            old_size: old,
            new_size: new,
            proof: tree(&self.rows).consistency_proof(old, new).expect("proof"),
        };
        self.files.write("consistency.json", json(&proof))
    }
}

#[test]
fn a_grown_log_is_consistent() {
    let log = Growth::new();
    let old = log.note("old.note", &log.rows, 33, CHAIN);
    let new = log.note("new.note", &log.rows, 90, CHAIN);
    let run = consistency(&old, &new, &log.proof(33, 90));
    run.assert_ok();
    assert!(run.stdout.contains("checkpoint 90 ("), "{}", run.stdout);
}

#[test]
fn a_rewritten_log_is_inconsistent() {
    let log = Growth::new();
    let mut forked = log.rows.clone();
    forked[10].action = "agent.deleted".to_owned();
    rehash_from(&mut forked, 10);
    let old = log.note("old.note", &log.rows, 33, CHAIN);
    let new = log.note("new.note", &forked, 90, CHAIN);
    // The proof the forked log would serve.
    let proof = ConsistencyProof {
        old_size: 33,
        new_size: 90,
        proof: tree(&forked).consistency_proof(33, 90).expect("proof"),
    };
    let proof = log.files.write("forked.json", json(&proof));
    let run = consistency(&old, &new, &proof);
    assert!(
        run.fail_line()
            .starts_with("FAIL: checkpoint 90 inconsistent: does not extend checkpoint 33"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_proof_between_other_sizes_or_logs_fails() {
    let log = Growth::new();
    let old = log.note("old.note", &log.rows, 33, CHAIN);
    let new = log.note("new.note", &log.rows, 90, CHAIN);
    assert_eq!(
        consistency(&old, &new, &log.proof(32, 90)).fail_line(),
        "FAIL: checkpoint 90 wrong_size: the proof is from a tree of 32 to one of 90, \
         the checkpoints are of 33 and 90"
    );
    let other = log.note("other.note", &log.rows, 90, "global");
    assert!(consistency(&old, &other, &log.proof(33, 90))
        .fail_line()
        .starts_with("FAIL: checkpoint 90 wrong_origin: "),);
    let forged = log.files.write(
        "forged.note",
        note_signed_by(&tree(&log.rows), 90, CHAIN, &other_key()),
    );
    assert!(consistency(&old, &forged, &log.proof(33, 90))
        .fail_line()
        .starts_with("FAIL: checkpoint 90 bad_signature: "));
    let garbage = log.files.write("garbage.json", "{\"old_size\":33}");
    assert_eq!(consistency(&old, &new, &garbage).code, Some(2));
}
