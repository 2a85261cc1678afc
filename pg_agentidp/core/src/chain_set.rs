//! Verification of whole chains from their events in any order: the order a sequential scan of the
//! table returns them in, which is twice as fast to read as the primary key's order.
//!
//! Each chain is checked exactly as [`Verifier`] checks it in sequence order, and gives the same
//! verdict: the same count and the same first broken event (when two events share a sequence
//! number, which the primary key forbids, either may be the one reported). An event that arrives
//! before its predecessor waits, hashed, until the predecessor comes. Events are appended in
//! sequence order, so few wait; too many waiting means the table's physical order is far from the
//! chain's (after retention freed early pages, say), and the caller is told to walk in order
//! instead.

use std::collections::{BTreeMap, HashMap};

mod pipeline;
pub use pipeline::{Abandoned, PipelinedVerifier, Spawn};

#[cfg(doc)]
use crate::chain::Verifier;
use crate::chain::{BreakKind, ChainHead, Event, Hash};

/// Waiting events exceeded the limit given to [`ChainSetVerifier::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyWaiting;

/// A chain's verdict: what [`Verifier`] would have reached walking it in sequence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainVerdict {
    Intact {
        /// Events checked.
        checked: u64,
        /// The last event (the start when the chain had none after it).
        head: ChainHead,
    },
    Broken {
        /// Events checked in sequence order up to and including the broken one.
        checked: u64,
        event_id: [u8; 16],
        kind: BreakKind,
    },
}

/// Each chain's id and verdict, in the byte order of the ids.
pub type Verdicts = Vec<(Box<[u8]>, ChainVerdict)>;

/// Verifies every chain of a set of events offered in any order.
pub struct ChainSetVerifier {
    starts: HashMap<Box<[u8]>, ChainHead>,
    chains: Vec<(Box<[u8]>, ChainState)>,
    by_id: HashMap<Box<[u8]>, usize>,
    /// Events of one chain usually arrive together: the last chain's index saves a hash lookup.
    last: Option<usize>,
    waiting: usize,
    waiting_limit: usize,
    scratch: Vec<u8>,
}

impl ChainSetVerifier {
    /// `starts` gives the trusted head each chain is verified after (its retention anchor); a
    /// chain not named there starts at the genesis. At most `waiting_limit` events wait at once.
    pub fn new(
        starts: impl IntoIterator<Item = (Vec<u8>, ChainHead)>,
        waiting_limit: usize,
    ) -> ChainSetVerifier {
        let mut set = ChainSetVerifier {
            starts: starts
                .into_iter()
                .map(|(id, head)| (id.into_boxed_slice(), head))
                .collect(),
            chains: Vec::new(),
            by_id: HashMap::new(),
            last: None,
            waiting: 0,
            waiting_limit,
            scratch: Vec::with_capacity(256),
        };
        // A chain whose events were all archived has only its anchor, and still gets a verdict.
        let anchored: Vec<Box<[u8]>> = set.starts.keys().cloned().collect();
        for id in &anchored {
            set.chain_index(id);
        }
        set
    }

    /// Checks one stored event, or holds it until its predecessor is offered.
    pub fn offer(&mut self, event: &Event<'_>, stored_hash: &[u8]) -> Result<(), TooManyWaiting> {
        let chain = self.chain_index(event.chain_id);
        let hashed = Hashed::of(event, stored_hash, &mut self.scratch);
        self.offer_hashed(chain, event.seq, hashed)
    }

    /// [`ChainSetVerifier::offer`] for an event already hashed, of the chain `chain_index` named.
    fn offer_hashed(
        &mut self,
        chain: usize,
        seq: i64,
        event: Hashed,
    ) -> Result<(), TooManyWaiting> {
        let state = &mut self.chains[chain].1;
        self.waiting -= state.waiting.len();
        state.offer(seq, event);
        self.waiting += state.waiting.len();
        if self.waiting > self.waiting_limit {
            return Err(TooManyWaiting);
        }
        Ok(())
    }

    /// Each chain's verdict.
    pub fn finish(self) -> Verdicts {
        let mut verdicts: Vec<_> = self
            .chains
            .into_iter()
            .map(|(id, state)| (id, state.finish()))
            .collect();
        verdicts.sort_by(|a, b| a.0.cmp(&b.0));
        verdicts
    }

    fn chain_index(&mut self, chain_id: &[u8]) -> usize {
        if let Some(i) = self.last {
            if *self.chains[i].0 == *chain_id {
                return i;
            }
        }
        let i = match self.by_id.get(chain_id) {
            Some(&i) => i,
            None => {
                let start = self
                    .starts
                    .get(chain_id)
                    .copied()
                    .unwrap_or(ChainHead::GENESIS);
                self.chains
                    .push((chain_id.into(), ChainState::after(start)));
                self.by_id.insert(chain_id.into(), self.chains.len() - 1);
                self.chains.len() - 1
            }
        };
        self.last = Some(i);
        i
    }
}

/// An event, checked for what it alone decides: whether its content matches its stored hash.
struct Hashed {
    event_id: [u8; 16],
    /// `None` when the stored previous hash is not 32 bytes long: it links to nothing.
    prev_hash: Option<Hash>,
    /// The recomputed hash, when it equals the stored one.
    hash: Option<Hash>,
}

impl Hashed {
    fn of(event: &Event<'_>, stored_hash: &[u8], scratch: &mut Vec<u8>) -> Hashed {
        let hash = event.hash_with(scratch);
        Hashed {
            event_id: *event.event_id,
            prev_hash: Hash::try_from(event.prev_hash).ok(),
            hash: (stored_hash == hash.as_slice()).then_some(hash),
        }
    }
}

/// A break found so far. An event offered later can reveal an earlier one (one numbered below
/// events already checked), so breaks compare by their place in sequence order.
#[derive(Clone, Copy)]
struct Break {
    /// Events before it in sequence order, plus itself.
    checked: u64,
    seq: i64,
    event_id: [u8; 16],
    kind: BreakKind,
}

impl Break {
    fn precedes(&self, other: &Break) -> bool {
        (self.checked, self.seq) < (other.checked, other.seq)
    }
}

/// One chain: the run checked so far, from its start to `head`, and the events waiting beyond it.
/// The checks are [`Verifier::check`]'s, in its order: sequence, link, content.
struct ChainState {
    start: ChainHead,
    head: ChainHead,
    checked: u64,
    /// Events that arrived before their predecessor.
    waiting: BTreeMap<i64, Hashed>,
    broken: Option<Break>,
}

impl ChainState {
    fn after(start: ChainHead) -> ChainState {
        ChainState {
            start,
            head: start,
            checked: 0,
            waiting: BTreeMap::new(),
            broken: None,
        }
    }

    fn offer(&mut self, seq: i64, event: Hashed) {
        if seq <= self.head.seq {
            // In sequence order this event comes right after the checked one of its number (or
            // before all, when numbered at or before the start), where it is out of sequence.
            let before = u64::try_from(seq.saturating_sub(self.start.seq)).unwrap_or(0);
            return self.record(Break {
                checked: before + 1,
                seq,
                event_id: event.event_id,
                kind: BreakKind::SequenceGap,
            });
        }
        if self.broken.is_some_and(|b| b.seq <= seq) {
            // Past the first break nothing is checked, as in an ordered walk.
            return;
        }
        let event_id = event.event_id;
        if seq == self.head.next_seq() {
            if self.accept(seq, event) {
                self.drain_waiting();
            }
        } else if self.waiting.insert(seq, event).is_some() {
            // Two events with one number ahead of the checked run: in order, the second follows
            // the first, out of sequence (unless a gap before them is met first).
            self.record(Break {
                checked: u64::try_from(seq - self.start.seq).unwrap_or(u64::MAX) + 1,
                seq,
                event_id,
                kind: BreakKind::SequenceGap,
            });
        }
    }

    /// Checks the event numbered right after the run; extends the run when it holds.
    fn accept(&mut self, seq: i64, event: Hashed) -> bool {
        self.checked += 1;
        let kind = match (event.prev_hash == Some(self.head.hash), event.hash) {
            (true, Some(hash)) => {
                self.head = ChainHead { seq, hash };
                return true;
            }
            (false, _) => BreakKind::LinkBroken,
            (true, None) => BreakKind::ContentEdited,
        };
        self.record(Break {
            checked: self.checked,
            seq,
            event_id: event.event_id,
            kind,
        });
        false
    }

    /// Checks the waiting events that now follow the run, up to a break.
    fn drain_waiting(&mut self) {
        while self.broken.is_none_or(|b| b.seq > self.head.seq) {
            let Some(entry) = self.waiting.first_entry() else {
                return;
            };
            if *entry.key() != self.head.next_seq() {
                return;
            }
            let (seq, next) = entry.remove_entry();
            if !self.accept(seq, next) {
                return;
            }
        }
    }

    fn record(&mut self, found: Break) {
        if self.broken.is_none_or(|known| found.precedes(&known)) {
            self.broken = Some(found);
        }
        // What waits beyond the first break is never checked. An event of the break's own number
        // stays: when the break is its duplicate, it comes first.
        let limit = self.broken.map_or(i64::MAX, |b| b.seq);
        self.waiting.retain(|&seq, _| seq <= limit);
    }

    fn finish(mut self) -> ChainVerdict {
        if let Some((&seq, first)) = self.waiting.first_key_value() {
            // The run stopped before it: the events in between are missing.
            self.record(Break {
                checked: self.checked + 1,
                seq,
                event_id: first.event_id,
                kind: BreakKind::SequenceGap,
            });
        }
        match self.broken {
            Some(b) => ChainVerdict::Broken {
                checked: b.checked,
                event_id: b.event_id,
                kind: b.kind,
            },
            None => ChainVerdict::Intact {
                checked: self.checked,
                head: self.head,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::chain::Verifier;

    /// A stored row, owned. Its event id is its index at creation, so a verdict names it.
    #[derive(Debug, Clone)]
    struct Row {
        chain: Vec<u8>,
        seq: i64,
        prev: Vec<u8>,
        id: [u8; 16],
        action: Vec<u8>,
        hash: Vec<u8>,
    }

    impl Row {
        fn event(&self) -> Event<'_> {
            Event {
                chain_id: &self.chain,
                seq: self.seq,
                prev_hash: &self.prev,
                event_id: &self.id,
                occurred_at_unix_micros: 1_774_915_200_123_456,
                action: &self.action,
                outcome: b"success",
                agent_id: Some(b"agent-42"),
                org_id: None,
                metadata: None,
            }
        }

        fn rehash(&mut self) {
            self.hash = self.event().hash().to_vec();
        }
    }

    fn id(n: usize) -> [u8; 16] {
        let mut id = [0; 16];
        id[..8].copy_from_slice(&(n as u64).to_be_bytes());
        id
    }

    /// `len` events of chain `chain` after `start`, ids numbered from `first_id`.
    fn chain(chain: &[u8], start: ChainHead, len: usize, first_id: usize) -> Vec<Row> {
        let mut head = start;
        (0..len)
            .map(|i| {
                let mut row = Row {
                    chain: chain.to_vec(),
                    seq: head.next_seq(),
                    prev: head.hash.to_vec(),
                    id: id(first_id + i),
                    action: b"agent.token.issued".to_vec(),
                    hash: Vec::new(),
                };
                row.rehash();
                head = ChainHead {
                    seq: row.seq,
                    hash: row.event().hash(),
                };
                row
            })
            .collect()
    }

    /// What an ordered walk of each chain says: the reference the set verifier must match.
    fn walked(rows: &[Row], starts: &[(Vec<u8>, ChainHead)]) -> Vec<(Vec<u8>, ChainVerdict)> {
        let mut ids: Vec<Vec<u8>> = rows.iter().map(|r| r.chain.clone()).collect();
        ids.extend(starts.iter().map(|(id, _)| id.clone()));
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .map(|chain_id| {
                let start = starts
                    .iter()
                    .find(|(id, _)| *id == chain_id)
                    .map_or(ChainHead::GENESIS, |(_, head)| *head);
                let mut own: Vec<&Row> = rows.iter().filter(|r| r.chain == chain_id).collect();
                own.sort_by_key(|r| r.seq);
                let mut verifier = Verifier::starting_after(start);
                let broken = own.iter().find_map(|r| {
                    let kind = verifier.check(&r.event(), &r.hash).err()?;
                    Some((r.id, kind))
                });
                let verdict = match broken {
                    None => ChainVerdict::Intact {
                        checked: verifier.checked(),
                        head: verifier.head(),
                    },
                    Some((event_id, kind)) => ChainVerdict::Broken {
                        checked: verifier.checked(),
                        event_id,
                        kind,
                    },
                };
                (chain_id, verdict)
            })
            .collect()
    }

    fn offered(
        rows: &[Row],
        starts: &[(Vec<u8>, ChainHead)],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, ChainVerdict)>, TooManyWaiting> {
        let mut set = ChainSetVerifier::new(starts.iter().cloned(), limit);
        for row in rows {
            set.offer(&row.event(), &row.hash)?;
        }
        Ok(set
            .finish()
            .into_iter()
            .map(|(id, verdict)| (id.into_vec(), verdict))
            .collect())
    }

    /// As [`offered`], through a pipelined verifier: on a thread when `threaded`, else inline.
    fn pipelined(
        rows: &[Row],
        starts: &[(Vec<u8>, ChainHead)],
        limit: usize,
        batch_rows: usize,
        threaded: bool,
    ) -> Result<Vec<(Vec<u8>, ChainVerdict)>, Abandoned> {
        let set = ChainSetVerifier::new(starts.iter().cloned(), limit);
        let spawn: Box<Spawn<'_>> = if threaded {
            Box::new(|work| std::thread::Builder::new().spawn(work))
        } else {
            Box::new(|_| Err(std::io::Error::other("no threads here")))
        };
        let mut verifier = PipelinedVerifier::new(set, batch_rows, spawn);
        assert_eq!(verifier.is_pipelined(), threaded);
        for row in rows {
            verifier.offer(&row.event(), &row.hash)?;
        }
        Ok(verifier
            .finish()?
            .into_iter()
            .map(|(id, verdict)| (id.into_vec(), verdict))
            .collect())
    }

    fn intact(checked: u64, head: &Row) -> ChainVerdict {
        ChainVerdict::Intact {
            checked,
            head: ChainHead {
                seq: head.seq,
                hash: head.event().hash(),
            },
        }
    }

    #[test]
    fn an_intact_chain_verifies_in_any_order() {
        let rows = chain(b"global", ChainHead::GENESIS, 6, 0);
        let mut shuffled = rows.clone();
        shuffled.swap(0, 5);
        shuffled.swap(1, 3);
        let expected = vec![(b"global".to_vec(), intact(6, &rows[5]))];
        assert_eq!(offered(&rows, &[], 0), Ok(expected.clone()));
        assert_eq!(offered(&shuffled, &[], 10), Ok(expected));
    }

    #[test]
    fn a_chain_with_only_an_anchor_has_a_verdict() {
        let anchor = ChainHead {
            seq: 40,
            hash: [7; 32],
        };
        assert_eq!(
            offered(&[], &[(b"org-1".to_vec(), anchor)], 0),
            Ok(vec![(
                b"org-1".to_vec(),
                ChainVerdict::Intact {
                    checked: 0,
                    head: anchor
                }
            )])
        );
    }

    #[test]
    fn a_missing_event_is_a_gap_before_the_first_that_waits() {
        let mut rows = chain(b"global", ChainHead::GENESIS, 5, 0);
        rows.remove(2);
        rows.reverse();
        let expected = ChainVerdict::Broken {
            checked: 3,
            event_id: id(3),
            kind: BreakKind::SequenceGap,
        };
        assert_eq!(
            offered(&rows, &[], 10),
            Ok(vec![(b"global".to_vec(), expected)])
        );
    }

    #[test]
    fn a_duplicate_number_is_out_of_sequence_after_its_namesake() {
        let mut rows = chain(b"global", ChainHead::GENESIS, 5, 0);
        let mut dup = rows[1].clone();
        dup.id = id(99);
        rows.push(dup);
        let expected = ChainVerdict::Broken {
            checked: 3,
            event_id: id(99),
            kind: BreakKind::SequenceGap,
        };
        assert_eq!(
            offered(&rows, &[], 10),
            Ok(vec![(b"global".to_vec(), expected)])
        );
    }

    #[test]
    fn too_many_waiting_events_are_refused() {
        let mut rows = chain(b"global", ChainHead::GENESIS, 20, 0);
        rows.reverse();
        assert_eq!(offered(&rows, &[], 5), Err(TooManyWaiting));
        assert!(offered(&rows, &[], 19).is_ok());
    }

    /// One way to tamper with stored rows, as a superuser with the guards disabled could.
    #[derive(Debug, Clone)]
    enum Tamper {
        Edit(usize),
        EditAndRehash(usize),
        Delete(usize),
        SwapNumbers(usize, usize),
        Relink(usize),
        Forge { number: i64, copy_of: usize },
    }

    fn tamper() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            any::<usize>().prop_map(Tamper::Edit),
            any::<usize>().prop_map(Tamper::EditAndRehash),
            any::<usize>().prop_map(Tamper::Delete),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::SwapNumbers(a, b)),
            any::<usize>().prop_map(Tamper::Relink),
            (-3i64..80, any::<usize>())
                .prop_map(|(number, copy_of)| Tamper::Forge { number, copy_of }),
        ]
    }

    fn apply(rows: &mut Vec<Row>, tamper: &Tamper, forged_id: usize) {
        if rows.is_empty() {
            return;
        }
        let n = rows.len();
        match *tamper {
            Tamper::Edit(i) => rows[i % n].action = b"agent.token.revoked".to_vec(),
            Tamper::EditAndRehash(i) => {
                rows[i % n].action = b"agent.token.revoked".to_vec();
                rows[i % n].rehash();
            }
            Tamper::Delete(i) => {
                rows.remove(i % n);
            }
            Tamper::SwapNumbers(a, b) => {
                let (a, b) = (a % n, b % n);
                if rows[a].chain == rows[b].chain {
                    (rows[a].seq, rows[b].seq) = (rows[b].seq, rows[a].seq);
                }
            }
            Tamper::Relink(i) => rows[i % n].prev = vec![9; 32],
            Tamper::Forge { number, copy_of } => {
                let taken = rows
                    .iter()
                    .any(|r| r.chain == rows[copy_of % n].chain && r.seq == number);
                // The primary key keeps numbers unique; forging over a free one is what it allows.
                if !taken {
                    let mut forged = rows[copy_of % n].clone();
                    forged.seq = number;
                    forged.id = id(forged_id);
                    forged.rehash();
                    rows.push(forged);
                }
            }
        }
    }

    #[test]
    fn a_pipeline_gives_up_when_too_many_wait() {
        let mut rows = chain(b"global", ChainHead::GENESIS, 20, 0);
        rows.reverse();
        for threaded in [true, false] {
            assert_eq!(
                pipelined(&rows, &[], 5, 3, threaded),
                Err(Abandoned::TooManyWaiting)
            );
        }
    }

    proptest! {
        #[test]
        fn a_pipeline_gives_the_same_verdicts(
            len in 0usize..60,
            tampers in proptest::collection::vec(tamper(), 0..3),
            batch_rows in 1usize..9,
            threaded in any::<bool>(),
        ) {
            let mut rows = chain(b"global", ChainHead::GENESIS, len, 0);
            rows.extend(chain(b"org-1", ChainHead::GENESIS, len / 2, len));
            for (i, t) in tampers.iter().enumerate() {
                apply(&mut rows, t, 1000 + i);
            }
            rows.reverse();
            let expected = offered(&rows, &[], usize::MAX).expect("no limit");
            prop_assert_eq!(pipelined(&rows, &[], usize::MAX, batch_rows, threaded), Ok(expected));
        }

        #[test]
        fn any_order_gives_the_ordered_walks_verdict(
            lens in proptest::collection::vec(0usize..40, 1..4),
            anchored in any::<bool>(),
            tampers in proptest::collection::vec(tamper(), 0..3),
            order in any::<proptest::sample::Index>(),
            locality in 1usize..50,
        ) {
            let mut rows = Vec::new();
            let mut starts = Vec::new();
            for (c, &len) in lens.iter().enumerate() {
                let name = format!("org-{c}").into_bytes();
                let start = if anchored {
                    let anchor = ChainHead { seq: 10, hash: [c as u8 + 1; 32] };
                    starts.push((name.clone(), anchor));
                    anchor
                } else {
                    ChainHead::GENESIS
                };
                rows.extend(chain(&name, start, len, rows.len()));
            }
            for (i, t) in tampers.iter().enumerate() {
                apply(&mut rows, t, 1000 + i);
            }
            let expected = walked(&rows, &starts);
            // Physical order: mostly the insertion order, chains interleaved, with runs of
            // `locality` rows rotated, as pages filled out of order would give.
            let mut physical = rows.clone();
            for run in physical.chunks_mut(locality) {
                let by = order.index(run.len());
                run.rotate_left(by);
            }
            prop_assert_eq!(offered(&physical, &starts, usize::MAX), Ok(expected.clone()));
            physical.reverse();
            prop_assert_eq!(offered(&physical, &starts, usize::MAX), Ok(expected));
        }
    }
}
