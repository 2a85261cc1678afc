//! The walk engine: verifies chains event by event with `agentidp-core`, through the primary key
//! in chain order, or for every chain at once in one sequential pass in physical order.

use std::collections::HashMap;

use agentidp_core::chain::{ChainHead, Verifier};
use agentidp_core::chain_set::{ChainSetVerifier, ChainVerdict, PipelinedVerifier};
use agentidp_core::verdict::ChainOutcome;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::citus;
use crate::event_scan::{
    ChainScan, Direction, TableScan, Values, CHAIN_ID, EVENT_ID, PREV_HASH, SEQ,
};
use crate::events_relation::EventsRelation;
use crate::hash_thread::spawn_with_signals_blocked;
use crate::positions::trusted_start;
use crate::row_reader::RowReader;
use crate::spi_chain_scan::SpiChainScan;

/// Where a walk reads from: every stored event (so a forged one numbered before the start is
/// caught too), or those after a position already trusted.
#[derive(Clone, Copy)]
pub enum Start {
    Beginning,
    After(i64),
}

/// Events that may wait for their predecessor in a walk in physical order, about 150 bytes each.
/// Appended events wait little; past this, physical order is far from the chains' and walking each
/// chain through the primary key is cheaper than holding the table in memory.
const WAITING_LIMIT: usize = 1 << 20;

/// Walks each chain of `ids` from its trusted start. When they are all of the table's chains
/// (`every_chain`), one sequential pass in physical order checks them all, with the hashing on a
/// second thread: that reads about twice as fast as the primary key's order, and hashing (over
/// half the work) overlaps the reading. A chain's verdict is the same either way.
pub(crate) fn walk_from_starts(ids: Vec<String>, every_chain: bool) -> Vec<(String, ChainOutcome)> {
    let starts: Vec<(String, ChainHead)> = ids
        .into_iter()
        .map(|id| {
            let start = trusted_start(&id);
            (id, start)
        })
        .collect();
    // A distributed log's rows are in shards on other nodes: no scan here would see them.
    let in_physical_order = if every_chain && !citus::log_is_distributed() {
        walk_in_physical_order(&starts)
    } else {
        None
    };
    match in_physical_order {
        Some(mut verdicts) => starts
            .into_iter()
            .map(|(id, start)| {
                let verdict = verdicts
                    .remove(id.as_bytes())
                    .unwrap_or(ChainVerdict::Intact {
                        checked: 0,
                        head: start,
                    });
                (id, ChainOutcome::of(start, verdict))
            })
            .collect(),
        None => starts
            .into_iter()
            .map(|(id, start)| {
                let outcome = walk(&id, start, Start::Beginning, None);
                (id, outcome)
            })
            .collect(),
    }
}

/// Every chain's verdict from one sequential scan, or `None` when the events cannot be verified
/// in that order.
fn walk_in_physical_order(
    starts: &[(String, ChainHead)],
) -> Option<HashMap<Box<[u8]>, ChainVerdict>> {
    let events = EventsRelation::open();
    // SAFETY: the relation stays open for the scan's life, and a STABLE function reads on the
    // statement's active snapshot, which outlives this call.
    let mut scan =
        unsafe { TableScan::open(events.rel, events.columns, pg_sys::GetActiveSnapshot()) };
    let set = ChainSetVerifier::new(
        starts
            .iter()
            .map(|(id, start)| (id.as_bytes().to_vec(), *start)),
        WAITING_LIMIT,
    );
    let mut verifier =
        PipelinedVerifier::new(set, HASH_BATCH_ROWS, Box::new(spawn_with_signals_blocked));
    let mut rows = RowReader::new();
    let mut offered = Ok(());
    while let Some(row) = scan.next_row() {
        let chain_id = row.bytes(CHAIN_ID).expect("chain columns are NOT NULL");
        offered = rows.read(&row, chain_id, |event, stored_hash| {
            verifier.offer(event, stored_hash)
        });
        if offered.is_err() {
            break;
        }
    }
    match offered.and_then(|()| verifier.finish()) {
        Ok(verdicts) => Some(verdicts.into_iter().collect()),
        Err(reason) => {
            debug1!("agentidp: verifying through the primary key instead: {reason}");
            None
        }
    }
}

/// Events hashed per hand-over to the hashing thread: enough that the hand-over costs little,
/// few enough (about a megabyte) to stay in cache.
const HASH_BATCH_ROWS: usize = 4096;

/// Walks one chain's events, checking them against `start`, up to `last` (the end when `None`),
/// then checks that the event after `last` links to it.
pub(crate) fn walk(
    chain_id: &str,
    start: ChainHead,
    from: Start,
    last: Option<i64>,
) -> ChainOutcome {
    let after = match from {
        Start::Beginning => i64::MIN,
        Start::After(seq) => seq,
    };
    let mut scan = ChainRows::open(chain_id, after);
    let mut verifier = Verifier::starting_after(start);
    let mut rows = RowReader::new();
    let outcome = |v: &Verifier, broken| ChainOutcome {
        checked: v.checked(),
        head: v.head(),
        broken,
    };
    let not_null = "chain columns are NOT NULL";
    while let Some(row) = scan.next_row() {
        let seq = row.int8(SEQ).expect(not_null);
        if last.is_some_and(|last| seq > last) {
            let linked = verifier.check_successor_link(seq, row.bytes(PREV_HASH).expect(not_null));
            return outcome(
                &verifier,
                linked.err().map(|kind| (row.uuid(EVENT_ID).copied(), kind)),
            );
        }
        let checked = rows.read(&row, chain_id.as_bytes(), |event, stored_hash| {
            verifier.check(event, stored_hash)
        });
        if let Err(kind) = checked {
            return outcome(&verifier, Some((row.uuid(EVENT_ID).copied(), kind)));
        }
    }
    outcome(&verifier, None)
}

/// One chain's events after a position, in order: through the primary key, or through Citus when
/// the log is distributed.
enum ChainRows {
    // Fields drop in order: the relation, held open, after the scan over it.
    Local {
        scan: ChainScan,
        _events: EventsRelation,
    },
    Distributed(SpiChainScan),
}

impl ChainRows {
    fn open(chain_id: &str, after: i64) -> ChainRows {
        if citus::log_is_distributed() {
            return ChainRows::Distributed(SpiChainScan::open(chain_id, after));
        }
        let events = EventsRelation::open();
        // SAFETY: the relation stays open for the scan's life (it is dropped after it), and a
        // STABLE function reads on the statement's active snapshot, which outlives this call.
        let scan = unsafe {
            ChainScan::open(
                events.rel,
                events.columns,
                chain_id,
                Direction::ForwardAfter(after),
                pg_sys::GetActiveSnapshot(),
            )
        };
        ChainRows::Local {
            scan,
            _events: events,
        }
    }

    fn next_row(&mut self) -> Option<Values<'_>> {
        match self {
            ChainRows::Local { scan, .. } => scan.next_row(),
            ChainRows::Distributed(scan) => scan.next_row(),
        }
    }
}
