use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::common::*;

const SIZES: [u64; 3] = [100, 300, 600];

/// `bundle` over `events`, with the checkpoint notes `notes` and further arguments.
fn bundle(events: &Path, notes: &[PathBuf], extra: &[&str]) -> Run {
    let mut args: Vec<OsString> = vec!["bundle".into(), "--events".into(), events.into()];
    for note in notes {
        args.push("--checkpoint".into());
        args.push(note.into());
    }
    args.push("--key".into());
    args.push(vkey().into());
    args.extend(extra.iter().map(OsString::from));
    run(args)
}

/// Writes the export of `rows` and the log's checkpoints of `signed` at `sizes`.
fn evidence(files: &Files, rows: &[Row], signed: &[Row], sizes: &[u64]) -> (PathBuf, Vec<PathBuf>) {
    let events = files.write("events.jsonl", export_text(rows));
    let tree = tree(signed);
    let notes = sizes
        .iter()
        .map(|&size| files.write(&format!("cp{size}.note"), note(&tree, size)))
        .collect();
    (events, notes)
}

#[test]
fn an_honest_bundle_verifies() {
    let files = Files::new();
    let rows = chain(600);
    let (events, notes) = evidence(&files, &rows, &rows, &SIZES);
    let run = bundle(&events, &notes, &[]);
    run.assert_ok();
    assert!(
        run.stdout.contains("events: 600 of chain org:acme"),
        "{}",
        run.stdout
    );
    for size in SIZES {
        assert!(
            run.stdout.contains(&format!("checkpoint {size} (")),
            "{}",
            run.stdout
        );
    }
    // Given in any order, the checkpoints are checked by size.
    let reversed: Vec<PathBuf> = notes.iter().rev().cloned().collect();
    bundle(&events, &reversed, &[]).assert_ok();
}

#[test]
fn an_edited_field_names_its_event() {
    let files = Files::new();
    let mut rows = chain(600);
    rows[41].action = "agent.token.revoked".to_owned();
    let (events, notes) = evidence(&files, &rows, &rows, &SIZES);
    let run = bundle(&events, &notes, &[]);
    assert_eq!(
        run.fail_line(),
        format!(
            "FAIL: event {} seq 42 content_edited: the stored hash is not the hash of the event's fields",
            rows[41].id()
        )
    );
}

#[test]
fn a_deleted_event_is_a_gap() {
    let files = Files::new();
    let mut rows = chain(600);
    rows.remove(9);
    let (events, notes) = evidence(&files, &rows, &rows, &[100]);
    let run = bundle(&events, &notes, &[]);
    assert_eq!(
        run.fail_line(),
        format!(
            "FAIL: event {} seq 11 sequence_gap: expected seq 10",
            rows[9].id()
        )
    );
}

/// History rewritten at seq 150 after checkpoint 300 was signed, every later hash recomputed: the
/// chain alone verifies, checkpoint 100 still matches, checkpoint 300 does not.
fn rewritten_at_150(files: &Files) -> (Vec<Row>, Vec<Row>, PathBuf, Vec<PathBuf>) {
    let honest = chain(600);
    let mut rewritten = honest.clone();
    rewritten[149].outcome = "failure".to_owned();
    rehash_from(&mut rewritten, 149);
    let (events, notes) = evidence(files, &rewritten, &honest, &[100, 300]);
    (honest, rewritten, events, notes)
}

#[test]
fn a_rewrite_names_its_first_event_from_the_tiles() {
    let files = Files::new();
    let (honest, rewritten, events, notes) = rewritten_at_150(&files);
    let tiles = files.dir("tiles");
    // The log published its tiles as it grew, past the checkpoint it is checked against.
    publish_tiles(&tiles, &tree(&honest), &[100, 300, 600]);
    let tiles_arg = tiles.to_str().expect("UTF-8 path");
    let run = bundle(&events, &notes, &["--tiles", tiles_arg]);
    assert_eq!(
        run.fail_line(),
        format!(
            "FAIL: event {} seq 150 rewritten: checkpoint 300 signed another event here",
            rewritten[149].id()
        )
    );
    assert!(run.stdout.contains("checkpoint 100 ("), "{}", run.stdout);
}

#[test]
fn a_rewrite_without_tiles_names_the_range_it_lies_in() {
    let files = Files::new();
    let (_, _, events, notes) = rewritten_at_150(&files);
    let run = bundle(&events, &notes, &[]);
    assert_eq!(
        run.fail_line(),
        "FAIL: checkpoint 300 root_mismatch: rewritten within seqs 101-300"
    );
}

#[test]
fn tiles_that_do_not_match_the_checkpoint_fall_back_to_the_range() {
    let files = Files::new();
    let (_, rewritten, events, notes) = rewritten_at_150(&files);
    let tiles = files.dir("tiles");
    publish_tiles(&tiles, &tree(&rewritten), &[600]);
    let tiles_arg = tiles.to_str().expect("UTF-8 path");
    let line = bundle(&events, &notes, &["--tiles", tiles_arg])
        .fail_line()
        .to_owned();
    assert!(
        line.starts_with("FAIL: checkpoint 300 root_mismatch: rewritten within seqs 101-300; the tiles did not help"),
        "{line}"
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_fails() {
    let files = Files::new();
    let rows = chain(300);
    let (events, mut notes) = evidence(&files, &rows, &rows, &[100]);
    let forged = note_signed_by(&tree(&rows), 300, CHAIN, &other_key());
    notes.push(files.write("forged.note", forged));
    let line = bundle(&events, &notes, &[]).fail_line().to_owned();
    assert!(
        line.starts_with("FAIL: checkpoint 300 bad_signature: "),
        "{line}"
    );
}

#[test]
fn a_checkpoint_edited_after_signing_fails() {
    let files = Files::new();
    let rows = chain(300);
    let signed = note(&tree(&rows), 300);
    let edited = signed.replacen("\n300\n", "\n299\n", 1);
    assert_ne!(edited, signed);
    let events = files.write("events.jsonl", export_text(&rows));
    let line = bundle(&events, &[files.write("cp.note", edited)], &[])
        .fail_line()
        .to_owned();
    assert!(
        line.starts_with("FAIL: checkpoint 299 bad_signature: "),
        "{line}"
    );
}

/// Checkpoint 300 was signed over a history forked at seq 50 from the one checkpoint 100 signed.
#[test]
fn inconsistent_checkpoints_fail() {
    let files = Files::new();
    let honest = chain(300);
    let mut forked = honest.clone();
    forked[49].agent_id = None;
    rehash_from(&mut forked, 49);
    let events = files.write("events.jsonl", export_text(&honest));
    let early = files.write("cp100.note", note(&tree(&honest), 100));
    let late = files.write("cp300.note", note(&tree(&forked), 300));
    let tiles = files.dir("tiles");
    publish_tiles(&tiles, &tree(&forked), &[300]);
    let tiles_arg = tiles.to_str().expect("UTF-8 path");
    let run = bundle(
        &events,
        &[early.clone(), late.clone()],
        &["--tiles", tiles_arg],
    );
    assert_eq!(
        run.fail_line(),
        "FAIL: checkpoint 300 inconsistent: it signed another event at seq 50 than checkpoint 100 did"
    );
    // Two checkpoints of one size and two roots cannot both be true, tiles or not.
    let twin = files.write("twin.note", note(&tree(&forked), 100));
    let run = bundle(&events, &[early, twin], &[]);
    assert_eq!(
        run.fail_line(),
        "FAIL: checkpoint 100 inconsistent: another checkpoint of this size has another root"
    );
}

#[test]
fn a_cut_tail_fails_against_a_later_checkpoint() {
    let files = Files::new();
    let rows = chain(300);
    let (events, notes) = evidence(&files, &rows[..250], &rows, &[100, 300]);
    assert_eq!(
        bundle(&events, &notes, &[]).fail_line(),
        "FAIL: checkpoint 300 truncated: the export ends at seq 250, before the signed tree does"
    );
}

#[test]
fn a_checkpoint_of_another_chain_fails() {
    let files = Files::new();
    let rows = chain(10);
    let events = files.write("events.jsonl", export_text(&rows));
    let other = files.write(
        "cp.note",
        note_signed_by(&tree(&rows), 10, "global", &log_key()),
    );
    let line = bundle(&events, &[other], &[]).fail_line().to_owned();
    assert!(
        line.starts_with("FAIL: checkpoint 10 wrong_origin: "),
        "{line}"
    );
}

#[test]
fn an_export_of_two_chains_is_refused() {
    let files = Files::new();
    let rows = chain(10);
    let other = chain_of("org:globex", 3);
    let mixed = format!("{}{}", export_text(&rows), export_text(&other));
    let events = files.write("events.jsonl", mixed);
    let notes = [files.write("cp.note", note(&tree(&rows), 10))];
    let line = bundle(&events, &notes, &[]).fail_line().to_owned();
    assert!(
        line.starts_with(&format!(
            "FAIL: event {} seq 1 other_chain: line 11 is of chain \"org:globex\"",
            other[0].id()
        )),
        "{line}"
    );
}

fn cosigned_evidence(files: &Files, witnesses: &[&str]) -> (PathBuf, Vec<PathBuf>) {
    let rows = chain(300);
    let events = files.write("events.jsonl", export_text(&rows));
    let tree = tree(&rows);
    let notes = [100, 300]
        .iter()
        .map(|&size| {
            files.write(
                &format!("cp{size}.note"),
                cosigned(&note(&tree, size), witnesses),
            )
        })
        .collect();
    (events, notes)
}

#[test]
fn cosignatures_are_reported_and_counted() {
    let files = Files::new();
    let (events, notes) = cosigned_evidence(&files, &[WITNESS]);
    let (w1, w2) = (witness_vkey(WITNESS), witness_vkey(OTHER_WITNESS));
    let run = bundle(&events, &notes, &["--witness-key", &w1, "--quorum", "1"]);
    run.assert_ok();
    assert!(
        run.stdout.contains(&format!("cosigned by {WITNESS}: ok\n")),
        "{}",
        run.stdout
    );
    let run = bundle(
        &events,
        &notes,
        &["--witness-key", &w1, "--witness-key", &w2, "--quorum", "2"],
    );
    assert_eq!(
        run.fail_line(),
        format!(
            "FAIL: checkpoint 100 no_quorum: {}: 1 of the 2 witnesses required cosigned it",
            notes[0].display()
        )
    );
    // Without witness keys the cosignatures are not checked, and none are required.
    let run = bundle(&events, &notes, &[]);
    run.assert_ok();
    assert!(run.stdout.contains("cosigned by none"), "{}", run.stdout);
}

#[test]
fn a_bad_cosignature_fails() {
    let files = Files::new();
    let rows = chain(300);
    let events = files.write("events.jsonl", export_text(&rows));
    let tree = tree(&rows);
    // The witness's cosignature of checkpoint 100, attached to checkpoint 300.
    let cosignature = cosigned(&note(&tree, 100), &[WITNESS]);
    let line = cosignature
        .lines()
        .last()
        .expect("a cosignature line")
        .to_owned();
    let forged = format!("{}{line}\n", note(&tree, 300));
    let notes = [files.write("cp300.note", forged)];
    let w1 = witness_vkey(WITNESS);
    let line = bundle(&events, &notes, &["--witness-key", &w1])
        .fail_line()
        .to_owned();
    assert!(
        line.starts_with("FAIL: checkpoint 300 bad_cosignature: "),
        "{line}"
    );
}

#[test]
fn unusable_input_exits_2() {
    let files = Files::new();
    let rows = chain(3);
    let events = files.write("events.jsonl", export_text(&rows));
    let notes = [files.write("cp.note", note(&tree(&rows), 3))];
    bundle(&events, &notes, &[]).assert_ok();

    let malformed = export_text(&rows).replacen("\"seq\":3", "\"seq\":\"3\"", 1);
    let malformed = files.write("malformed.jsonl", malformed);
    let run = bundle(&malformed, &notes, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: ") && run.stderr.contains(": line 3, column "),
        "{}",
        run.stderr
    );
    let missing = files.dir("nothing").join("missing.note");
    let run = bundle(&events, &[missing], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("missing.note"), "{}", run.stderr);
    let run = crate::common::run([
        OsString::from("bundle"),
        "--events".into(),
        events.clone().into(),
        "--checkpoint".into(),
        notes[0].clone().into(),
    ]);
    assert_eq!(run.code, Some(2), "no --key: {}", run.stderr);
    let run = bundle(&events, &notes, &["--quorum", "1"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: --quorum 1"),
        "{}",
        run.stderr
    );
}
