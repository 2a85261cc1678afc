//! Reading an export file: every event's hash and link verified, and the chain's tree built.
//!
//! Parsing and hashing the lines is most of the work of `bundle`, so it runs on every core: the
//! file is cut into blocks of whole lines, handed round-robin to workers, and each worker checks
//! its blocks with a `chain::Verifier` of its own, started from what the block's first event
//! claims about its predecessor. Taking the blocks back in order, each block's first event is held
//! to the previous block's last with `Verifier::check_successor_link`, so the verdict, and the
//! first failure named, are those of one walk from seq 1.

use std::fs::File;
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread;

use agentidp_core::chain::{BreakKind, ChainHead, Verifier, HASH_LEN};
use agentidp_core::export::{EventId, ExportError, ExportedEvent};
use agentidp_core::merkle::Tree;

use crate::failure::{Failure, Kind, Stop, Unusable};

/// A chain export whose every event verified, in `seq` order from 1.
#[derive(Debug, Clone, Default)]
pub struct Export {
    pub chain_id: String,
    /// Leaf `i` is event `seq = i + 1`.
    pub event_ids: Vec<EventId>,
}

impl Export {
    /// The id and seq of the event that is leaf `leaf`.
    pub fn event_at(&self, leaf: u64) -> Option<(EventId, i64)> {
        let id = *self.event_ids.get(usize::try_from(leaf).ok()?)?;
        Some((id, i64::try_from(leaf).ok()?.checked_add(1)?))
    }
}

/// Large enough that handing a block over costs nothing next to checking it, small enough that
/// the blocks in flight take little memory.
const BLOCK_LEN: usize = 4 << 20;

/// Reads and verifies the export in `path`, and builds its tree.
pub fn read(path: &Path) -> Result<(Export, Tree), Stop> {
    let workers = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    read_with(path, BLOCK_LEN, workers)
}

fn read_with(path: &Path, block_len: usize, workers: usize) -> Result<(Export, Tree), Stop> {
    let file = File::open(path).map_err(|e| Unusable::read(path, e))?;
    thread::scope(|scope| {
        let mut to_workers = Vec::with_capacity(workers);
        let mut from_workers = Vec::with_capacity(workers);
        // Checked blocks go back to be filled again: a fresh one would cost a page fault every
        // 4 KiB of the file.
        let (spent_tx, spent_rx) = mpsc::channel();
        for _ in 0..workers {
            let (block_tx, block_rx) = mpsc::sync_channel(2);
            let (checked_tx, checked_rx) = mpsc::sync_channel(2);
            let spent = spent_tx.clone();
            scope.spawn(move || check_blocks(block_rx, checked_tx, spent));
            to_workers.push(block_tx);
            from_workers.push(checked_rx);
        }
        drop(spent_tx);
        scope.spawn(move || cut_blocks(file, block_len, to_workers, spent_rx));
        join_blocks(path, from_workers)
    })
}

/// A block of whole lines, or why the file could not be read further.
type Block = io::Result<Vec<u8>>;

fn cut_blocks(
    mut file: File,
    block_len: usize,
    workers: Vec<SyncSender<Block>>,
    spent: Receiver<Vec<u8>>,
) {
    let mut carry = Vec::new();
    for worker in workers.iter().cycle() {
        let mut block = spent.try_recv().unwrap_or_default();
        block.clear();
        block.append(&mut carry);
        let block = match next_block(&mut file, block_len, block, &mut carry) {
            Ok(None) => return,
            Ok(Some(block)) => Ok(block),
            Err(e) => Err(e),
        };
        let failed = block.is_err();
        // A worker only stops listening when the verdict is already known.
        if worker.send(block).is_err() || failed {
            return;
        }
    }
}

/// Fills `block` up to the next block of whole lines (the file's last line may lack its
/// newline); `None` at the end. `carry` receives the start of the line the block cut through.
fn next_block(
    file: &mut File,
    block_len: usize,
    mut block: Vec<u8>,
    carry: &mut Vec<u8>,
) -> io::Result<Option<Vec<u8>>> {
    loop {
        block.reserve(block_len);
        if file
            .by_ref()
            .take(block_len as u64)
            .read_to_end(&mut block)?
            == 0
        {
            return Ok((!block.is_empty()).then_some(block));
        }
        if let Some(end) = block.iter().rposition(|&b| b == b'\n') {
            carry.extend_from_slice(&block[end + 1..]);
            block.truncate(end + 1);
            return Ok(Some(block));
        }
        // A line longer than a block: read on until it ends.
    }
}

/// What a worker found in one block.
#[derive(Debug, Default)]
struct Checked {
    /// The block's first event, whose claims only the previous block can check.
    first: Option<First>,
    /// The head after the block's last verified event.
    end: Option<ChainHead>,
    event_ids: Vec<EventId>,
    hashes: Vec<[u8; HASH_LEN]>,
    /// Where the block stopped being verified, by line within the block (from 0), and why.
    stop: Option<(u64, Halt)>,
}

#[derive(Debug)]
struct First {
    id: EventId,
    seq: i64,
    prev_hash: Vec<u8>,
    chain_id: Vec<u8>,
}

#[derive(Debug)]
enum Halt {
    Read(io::Error),
    Malformed(ExportError),
    OtherChain {
        id: EventId,
        seq: i64,
        chain: Vec<u8>,
    },
    Break(Failure),
}

fn check_blocks(blocks: Receiver<Block>, checked: SyncSender<Checked>, spent: Sender<Vec<u8>>) {
    for block in blocks {
        let result = match block {
            Ok(block) => {
                let result = check_block(&block);
                // The reader may be done already; then the block is simply freed.
                let _ = spent.send(block);
                result
            }
            Err(e) => Checked {
                stop: Some((0, Halt::Read(e))),
                ..Checked::default()
            },
        };
        if checked.send(result).is_err() {
            return;
        }
    }
}

fn check_block(block: &[u8]) -> Checked {
    let mut checked = Checked::default();
    let mut verifier = None;
    for (index, line) in (0u64..).zip(block.split_inclusive(|&b| b == b'\n')) {
        let exported = match ExportedEvent::parse(line, index + 1) {
            Ok(exported) => exported,
            Err(e) => {
                checked.stop = Some((index, Halt::Malformed(e)));
                return checked;
            }
        };
        let event = exported.event();
        let id = EventId(*event.event_id);
        let first = checked.first.get_or_insert_with(|| First {
            id,
            seq: event.seq,
            prev_hash: event.prev_hash.to_vec(),
            chain_id: event.chain_id.to_vec(),
        });
        if event.chain_id != first.chain_id.as_slice() {
            let chain = event.chain_id.to_vec();
            checked.stop = Some((
                index,
                Halt::OtherChain {
                    id,
                    seq: event.seq,
                    chain,
                },
            ));
            return checked;
        }
        // Takes the first event's claims on trust; `join_blocks` checks them.
        let verifier = verifier.get_or_insert_with(|| {
            Verifier::starting_after(ChainHead {
                seq: event.seq.saturating_sub(1),
                hash: event.prev_hash.try_into().unwrap_or_default(),
            })
        });
        if let Err(kind) = verifier.check(&event, exported.hash()) {
            let failure = chain_break(id, event.seq, kind, verifier.head());
            checked.stop = Some((index, Halt::Break(failure)));
            return checked;
        }
        checked.end = Some(verifier.head());
        checked.event_ids.push(id);
        checked.hashes.push(verifier.head().hash);
    }
    checked
}

/// Takes the workers' blocks back in the order they were cut, joins them into one verified run,
/// and grows the tree meanwhile.
fn join_blocks(path: &Path, workers: Vec<Receiver<Checked>>) -> Result<(Export, Tree), Stop> {
    let mut export = Export::default();
    let mut chain_id: Option<Vec<u8>> = None;
    let mut tree = Tree::default();
    let mut head = ChainHead::GENESIS;
    let mut lines_before = 0u64;
    // A worker's channel closes once the blocks are all cut and it has returned its last.
    for checked in workers
        .iter()
        .cycle()
        .map_while(|worker| worker.recv().ok())
    {
        if let Some(first) = &checked.first {
            let chain = chain_id.get_or_insert_with(|| first.chain_id.clone());
            if *chain != first.chain_id {
                let line = lines_before + 1;
                return Err(other_chain(line, first.id, first.seq, &first.chain_id, chain).into());
            }
            Verifier::starting_after(head)
                .check_successor_link(first.seq, &first.prev_hash)
                .map_err(|kind| chain_break(first.id, first.seq, kind, head))?;
        }
        checked.hashes.iter().for_each(|hash| tree.append(hash));
        export.event_ids.extend_from_slice(&checked.event_ids);
        if let Some((index, halt)) = checked.stop {
            let line = lines_before + index + 1;
            let chain = chain_id.unwrap_or_default();
            return Err(match halt {
                Halt::Read(e) => Unusable::read(path, e).into(),
                Halt::Malformed(e) => Unusable::malformed(path, renumbered(e, line)).into(),
                Halt::OtherChain { id, seq, chain: c } => {
                    other_chain(line, id, seq, &c, &chain).into()
                }
                Halt::Break(failure) => failure.into(),
            });
        }
        head = checked.end.unwrap_or(head);
        lines_before += checked.event_ids.len() as u64;
    }
    export.chain_id = String::from_utf8_lossy(&chain_id.unwrap_or_default()).into_owned();
    Ok((export, tree))
}

/// A worker numbers lines within its block; the file's numbering is known only in order.
fn renumbered(error: ExportError, line: u64) -> ExportError {
    match error {
        ExportError::Malformed {
            column, message, ..
        } => ExportError::Malformed {
            line,
            column,
            message,
        },
        other => other,
    }
}

fn other_chain(line: u64, id: EventId, seq: i64, chain: &[u8], export_chain: &[u8]) -> Failure {
    Failure::event(
        id,
        seq,
        Kind::OtherChain,
        format!(
            "line {line} is of chain {:?} in an export of chain {:?}: export one chain per file",
            String::from_utf8_lossy(chain),
            String::from_utf8_lossy(export_chain)
        ),
    )
}

fn chain_break(id: EventId, seq: i64, kind: BreakKind, head: ChainHead) -> Failure {
    let detail = match kind {
        BreakKind::SequenceGap => format!("expected seq {}", head.next_seq()),
        BreakKind::LinkBroken if head.seq == 0 => {
            "the first event's prev_hash is not the genesis hash".to_owned()
        }
        BreakKind::LinkBroken => format!("prev_hash is not the hash of seq {}", head.seq),
        _ => "the stored hash is not the hash of the event's fields".to_owned(),
    };
    Failure::event(id, seq, Kind::Chain(kind), detail)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use agentidp_core::chain::Event;
    use agentidp_core::export::write_line;

    use super::*;
    use crate::failure::Subject;

    struct Row {
        seq: i64,
        prev: Vec<u8>,
        id: [u8; 16],
        action: String,
        chain: String,
        hash: Vec<u8>,
    }

    impl Row {
        fn event(&self) -> Event<'_> {
            Event {
                chain_id: self.chain.as_bytes(),
                seq: self.seq,
                prev_hash: &self.prev,
                event_id: &self.id,
                occurred_at_unix_micros: self.seq,
                action: self.action.as_bytes(),
                outcome: b"success",
                agent_id: None,
                org_id: None,
                metadata: None,
            }
        }
    }

    fn chain(n: i64) -> Vec<Row> {
        let mut prev = vec![0; 32];
        (1..=n)
            .map(|seq| {
                let mut row = Row {
                    seq,
                    prev: prev.clone(),
                    id: [u8::try_from(seq % 256).unwrap_or(0); 16],
                    action: "a".repeat(usize::try_from(seq % 9).unwrap_or(0)),
                    chain: "global".to_owned(),
                    hash: Vec::new(),
                };
                row.hash = row.event().hash().to_vec();
                prev.clone_from(&row.hash);
                row
            })
            .collect()
    }

    fn file_of(rows: &[Row]) -> tempfile::NamedTempFile {
        let mut text = String::new();
        for row in rows {
            write_line(&row.event(), &row.hash, &mut text).expect("line");
        }
        let mut file = tempfile::NamedTempFile::new().expect("file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    /// The verdict at every block size and worker count, block edges anywhere in the lines.
    fn verdicts(rows: &[Row]) -> Vec<Result<(usize, Tree), String>> {
        let file = file_of(rows);
        let mut verdicts = Vec::new();
        for block_len in [1, 97, 250, 1000, 1 << 20] {
            for workers in [1, 2, 3] {
                verdicts.push(
                    read_with(file.path(), block_len, workers)
                        .map(|(export, tree)| (export.event_ids.len(), tree))
                        .map_err(|stop| match stop {
                            Stop::Failed(failure) => failure.to_string(),
                            Stop::Unusable(e) => format!("unusable: {e}"),
                        }),
                );
            }
        }
        verdicts
    }

    fn only(verdicts: Vec<Result<(usize, Tree), String>>) -> Result<(usize, Tree), String> {
        let first = verdicts[0].clone();
        assert!(verdicts.iter().all(|v| *v == first), "{verdicts:?}");
        first
    }

    #[test]
    fn an_intact_export_reads_the_same_however_it_is_cut() {
        let rows = chain(40);
        let hashes: Vec<[u8; 32]> = rows
            .iter()
            .map(|r| r.hash.as_slice().try_into().unwrap_or_default())
            .collect();
        assert_eq!(only(verdicts(&rows)), Ok((40, Tree::of(&hashes))));
        assert_eq!(only(verdicts(&[])), Ok((0, Tree::default())));
    }

    fn failure(rows: &[Row]) -> String {
        only(verdicts(rows)).map(|_| ()).expect_err("fails")
    }

    #[test]
    fn the_first_failure_is_named_however_the_export_is_cut() {
        let mut edited = chain(40);
        edited[17].action = "edited".to_owned();
        edited[30].action = "edited".to_owned();
        assert!(failure(&edited)
            .starts_with("event 12121212-1212-1212-1212-121212121212 seq 18 content_edited"));

        let mut gap = chain(40);
        gap.remove(20);
        assert!(failure(&gap).contains(" seq 22 sequence_gap: expected seq 21"));

        let mut relinked = chain(40);
        relinked[25].prev = vec![1; 32];
        relinked[25].hash = relinked[25].event().hash().to_vec();
        assert!(
            failure(&relinked).contains(" seq 26 link_broken: prev_hash is not the hash of seq 25")
        );

        let mut short = chain(40);
        short[9].prev = vec![1; 31];
        assert!(failure(&short).contains(" seq 10 link_broken"));

        let mut late_start = chain(5);
        late_start.remove(0);
        assert!(failure(&late_start).contains(" seq 2 sequence_gap: expected seq 1"));

        let mut mixed = chain(40);
        mixed[33].chain = "org:x".to_owned();
        mixed[33].hash = mixed[33].event().hash().to_vec();
        let line = failure(&mixed);
        assert!(
            line.contains(" seq 34 other_chain: line 34 is of chain \"org:x\" in an export of chain \"global\""),
            "{line}"
        );
    }

    #[test]
    fn a_malformed_line_is_named_by_its_number_in_the_file() {
        let rows = chain(40);
        let mut text = String::new();
        for row in &rows {
            write_line(&row.event(), &row.hash, &mut text).expect("line");
        }
        let text = text.replacen("\"seq\":23,", "\"seq\":\"23\",", 1);
        let mut file = tempfile::NamedTempFile::new().expect("file");
        file.write_all(text.as_bytes()).expect("write");
        for (block_len, workers) in [(1, 1), (300, 2), (1 << 20, 2)] {
            match read_with(file.path(), block_len, workers) {
                Err(Stop::Unusable(e)) => {
                    assert!(e.to_string().contains(": line 23, column "), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn chain_breaks_say_what_was_expected() {
        let id = EventId([0; 16]);
        let head = ChainHead {
            seq: 4,
            hash: [0; 32],
        };
        assert_eq!(
            chain_break(id, 6, BreakKind::SequenceGap, head).detail,
            "expected seq 5"
        );
        assert_eq!(
            chain_break(id, 5, BreakKind::LinkBroken, head).detail,
            "prev_hash is not the hash of seq 4"
        );
        let first = chain_break(id, 1, BreakKind::LinkBroken, ChainHead::GENESIS);
        assert_eq!(
            first.detail,
            "the first event's prev_hash is not the genesis hash"
        );
        assert_eq!(first.subject, Subject::Event { id, seq: 1 });
    }
}
