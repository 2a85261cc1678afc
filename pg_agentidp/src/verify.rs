//! Chain verification in SQL: by time range, from a checkpoint, and against an exported digest.
//!
//! The functions here only choose where a walk starts and ends; `agentidp-core` decides whether
//! each event holds. Every read runs on the caller's snapshot and nothing is written (except by
//! `agentidp_verify_incremental`, which records checkpoints), so verification runs on a standby.

// pgrx reads each result column's name from the `name!` in the signature, so the row types cannot
// hide behind an alias.
#![allow(clippy::type_complexity)]

use std::collections::HashMap;

use agentidp_core::chain::{self, BreakKind, ChainHead, Verifier, HASH_LEN};
use agentidp_core::chain_set::{ChainSetVerifier, ChainVerdict, PipelinedVerifier};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgMemoryContexts, Uuid};

use crate::error::raise;
use crate::event_scan::{
    ChainScan, Columns, Direction, JsonbText, TableScan, Values, CHAIN_ID, EVENT_ID, HASH,
    PREV_HASH, SEQ,
};
use crate::spi::{KeptPlan, Row};

/// One verdict row: see `Verdict::into_row`.
type VerdictRow = (
    bool,
    i64,
    Option<Uuid>,
    Option<&'static str>,
    Option<String>,
);

/// Verifies every event whose `occurred_at` lies in [from_ts, to_ts] (either bound optional), and
/// the events between them in chain order, on every chain or one.
#[pg_extern(stable, parallel_safe)]
fn agentidp_verify_chain(
    from_ts: default!(Option<TimestampWithTimeZone>, "NULL"),
    to_ts: default!(Option<TimestampWithTimeZone>, "NULL"),
    chain: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(verified, bool),
        name!(checked_count, i64),
        name!(broken_at_event_id, Option<Uuid>),
        name!(break_kind, Option<&'static str>),
        name!(broken_chain_id, Option<String>),
    ),
> {
    if let (Some(from), Some(to)) = (from_ts, to_ts) {
        if from > to {
            raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "from_ts must be before or equal to to_ts",
                None,
            );
        }
    }
    let verdict = Spi::connect(|_| {
        let mut verdict = Verdict::default();
        if from_ts.is_none() && to_ts.is_none() {
            for (id, outcome) in walk_from_starts(chain_ids(chain), chain.is_none()) {
                verdict.add(&id, outcome);
                if verdict.broken.is_some() {
                    break;
                }
            }
        } else {
            let bounds =
                RANGE_BOUNDS.query(&[from_ts.into_datum(), to_ts.into_datum()], NO_SNAPSHOT, 0);
            for row in bounds.iter() {
                let id = text(&row, 1);
                if chain.is_some_and(|c| c != id) {
                    continue;
                }
                let lo = row.int8(2).expect("min(seq) of a non-empty group");
                let hi = row.int8(3).expect("max(seq) of a non-empty group");
                let (start, from) = match predecessor(&id, lo) {
                    Some(p) => (p, From::After(p.seq)),
                    None => (trusted_start(&id), From::Beginning),
                };
                verdict.add(&id, walk(&id, start, from, Some(hi)));
                if verdict.broken.is_some() {
                    break;
                }
            }
        }
        verdict
    });
    TableIterator::once(verdict.into_row())
}

/// Verifies each chain from its last checkpoint (all of it when `full_walk`) and, when it holds,
/// moves the checkpoint to its head: an hourly check then costs the new rows only.
#[pg_extern(volatile, parallel_unsafe)]
fn agentidp_verify_incremental(
    full_walk: default!(bool, "false"),
) -> TableIterator<
    'static,
    (
        name!(verified, bool),
        name!(checked_count, i64),
        name!(broken_at_event_id, Option<Uuid>),
        name!(break_kind, Option<&'static str>),
        name!(broken_chain_id, Option<String>),
    ),
> {
    let verdict = Spi::connect(|_| {
        let mut verdict = Verdict::default();
        let outcomes = if full_walk {
            walk_from_starts(chain_ids(None), true)
        } else {
            chain_ids(None)
                .into_iter()
                .map(|id| {
                    let outcome = match checkpoint(&id) {
                        Some(cp) => match check_against(&id, &cp) {
                            Ok(()) => walk(&id, cp, From::After(cp.seq), None),
                            Err(broken) => broken,
                        },
                        None => walk(&id, trusted_start(&id), From::Beginning, None),
                    };
                    (id, outcome)
                })
                .collect()
        };
        for (id, outcome) in outcomes {
            if outcome.broken.is_some() {
                // A checkpoint vouches for everything before it: a broken chain keeps none, so the
                // next incremental run walks it whole and stays failing until the break is dealt
                // with, instead of passing by starting after it.
                drop_checkpoint(&id);
            } else if outcome.head.seq > 0 {
                save_checkpoint(&id, &outcome.head);
            }
            verdict.add(&id, outcome);
            if verdict.broken.is_some() {
                break;
            }
        }
        verdict
    });
    TableIterator::once(verdict.into_row())
}

/// Each chain's current head, to export to a store outside this database: a later
/// `agentidp_verify_digest` against it reveals a cut tail or a rewritten history.
#[pg_extern(stable, parallel_safe)]
fn agentidp_chain_heads(
    chain: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(chain_id, String),
        name!(seq, i64),
        name!(hash, Vec<u8>),
        name!(occurred_at, Option<TimestampWithTimeZone>),
    ),
> {
    let heads = Spi::connect(|_| {
        chain_ids(chain)
            .into_iter()
            .filter_map(|id| {
                let rows = HEAD.query(&[id.as_str().into_datum()], NO_SNAPSHOT, 1);
                let row = rows.first()?;
                let seq = row.int8(1)?;
                let hash = row.bytes(2)?.to_vec();
                let at = row
                    .datum(3)
                    .and_then(|d| unsafe { TimestampWithTimeZone::from_datum(d, false) });
                Some((id, seq, hash, at))
            })
            .collect::<Vec<_>>()
    });
    TableIterator::new(heads)
}

/// Verifies a whole chain, and that it still contains the head exported earlier.
#[pg_extern(stable, parallel_safe)]
fn agentidp_verify_digest(
    chain_id: &str,
    seq: i64,
    hash: &[u8],
) -> TableIterator<
    'static,
    (
        name!(verified, bool),
        name!(checked_count, i64),
        name!(broken_at_event_id, Option<Uuid>),
        name!(break_kind, Option<&'static str>),
        name!(broken_chain_id, Option<String>),
    ),
> {
    let Ok(hash) = <[u8; HASH_LEN]>::try_from(hash) else {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("a digest hash is 32 bytes, got {}", hash.len()),
            None,
        );
    };
    let digest = ChainHead { seq, hash };
    let verdict = Spi::connect(|_| {
        let mut verdict = Verdict::default();
        let outcome = walk(chain_id, trusted_start(chain_id), From::Beginning, None);
        let outcome = if outcome.broken.is_some() {
            outcome
        } else {
            match check_against(chain_id, &digest) {
                Ok(()) => outcome,
                Err(broken) => ChainOutcome {
                    checked: outcome.checked,
                    ..broken
                },
            }
        };
        verdict.add(chain_id, outcome);
        verdict
    });
    TableIterator::once(verdict.into_row())
}

#[derive(Default)]
struct Verdict {
    checked: i64,
    broken: Option<(Option<[u8; 16]>, BreakKind, String)>,
}

impl Verdict {
    fn add(&mut self, chain_id: &str, outcome: ChainOutcome) {
        self.checked += i64::try_from(outcome.checked).expect("fewer than 2^63 rows");
        if self.broken.is_none() {
            self.broken = outcome
                .broken
                .map(|(event, kind)| (event, kind, chain_id.to_owned()));
        }
    }

    fn into_row(self) -> VerdictRow {
        match self.broken {
            None => (true, self.checked, None, None, None),
            Some((event, kind, chain)) => (
                false,
                self.checked,
                event.map(Uuid::from_bytes),
                Some(kind.as_str()),
                Some(chain),
            ),
        }
    }
}

/// Where one walk ended: the last event that held, and the first break with its event, if any.
pub(crate) struct ChainOutcome {
    pub checked: u64,
    /// The last event that held. A chain verified out of order that breaks vouches for none of its
    /// events, and keeps its start here.
    pub head: ChainHead,
    pub broken: Option<(Option<[u8; 16]>, BreakKind)>,
}

impl ChainOutcome {
    fn of(start: ChainHead, verdict: ChainVerdict) -> ChainOutcome {
        match verdict {
            ChainVerdict::Intact { checked, head } => ChainOutcome {
                checked,
                head,
                broken: None,
            },
            ChainVerdict::Broken {
                checked,
                event_id,
                kind,
            } => ChainOutcome {
                checked,
                head: start,
                broken: Some((Some(event_id), kind)),
            },
        }
    }
}

/// The transaction's own snapshot: what a STABLE function must read.
const NO_SNAPSHOT: pg_sys::Snapshot = std::ptr::null_mut();

static CHAIN_IDS: KeptPlan = KeptPlan::new(
    // A loose index scan over the primary key: one probe per chain, not a scan of every event.
    c"WITH RECURSIVE c(id) AS (
        (SELECT chain_id FROM agentidp.audit_events ORDER BY chain_id LIMIT 1)
        UNION ALL
        SELECT (SELECT e.chain_id FROM agentidp.audit_events e
                 WHERE e.chain_id > c.id ORDER BY e.chain_id LIMIT 1)
          FROM c WHERE c.id IS NOT NULL)
      SELECT id FROM c WHERE id IS NOT NULL
      UNION SELECT chain_id FROM agentidp.chain_anchors
      ORDER BY 1",
    &[],
);

static RANGE_BOUNDS: KeptPlan = KeptPlan::new(
    c"SELECT chain_id, min(seq), max(seq) FROM agentidp.audit_events
       WHERE occurred_at >= coalesce($1, '-infinity') AND occurred_at <= coalesce($2, 'infinity')
       GROUP BY chain_id ORDER BY chain_id",
    &[pg_sys::TIMESTAMPTZOID, pg_sys::TIMESTAMPTZOID],
);

static PREDECESSOR: KeptPlan = KeptPlan::new(
    c"SELECT seq, hash FROM agentidp.audit_events
       WHERE chain_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT 1",
    &[pg_sys::TEXTOID, pg_sys::INT8OID],
);

static ANCHOR: KeptPlan = KeptPlan::new(
    c"SELECT seq, hash FROM agentidp.chain_anchors WHERE chain_id = $1",
    &[pg_sys::TEXTOID],
);

static CHECKPOINT: KeptPlan = KeptPlan::new(
    c"SELECT seq, hash FROM agentidp.chain_checkpoints WHERE chain_id = $1",
    &[pg_sys::TEXTOID],
);

static HEAD: KeptPlan = KeptPlan::new(
    c"SELECT seq, hash, occurred_at FROM agentidp.audit_events
       WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1",
    &[pg_sys::TEXTOID],
);

static ROW_AT: KeptPlan = KeptPlan::new(
    c"SELECT hash, event_id FROM agentidp.audit_events WHERE chain_id = $1 AND seq = $2
      UNION ALL
      SELECT hash, event_id FROM agentidp.audit_events_archive WHERE chain_id = $1 AND seq = $2
      UNION ALL
      SELECT hash, NULL FROM agentidp.chain_anchors WHERE chain_id = $1 AND seq = $2
      LIMIT 1",
    &[pg_sys::TEXTOID, pg_sys::INT8OID],
);

/// The chains to visit: the one named, or every chain with events or an anchor.
pub(crate) fn chain_ids(only: Option<&str>) -> Vec<String> {
    match only {
        Some(id) => vec![id.to_owned()],
        None => CHAIN_IDS
            .query(&[], NO_SNAPSHOT, 0)
            .iter()
            .map(|row| text(&row, 1))
            .collect(),
    }
}

fn text(row: &Row<'_>, col: i32) -> String {
    String::from_utf8_lossy(row.bytes(col).expect("text column is NOT NULL")).into_owned()
}

fn head_at(rows: &crate::spi::Rows) -> Option<ChainHead> {
    let row = rows.first()?;
    let seq = row.int8(1)?;
    let hash = <[u8; HASH_LEN]>::try_from(row.bytes(2)?).ok()?;
    Some(ChainHead { seq, hash })
}

/// Where a walk from the start of a chain begins: after its retention anchor, or at genesis.
pub(crate) fn trusted_start(chain_id: &str) -> ChainHead {
    head_at(&ANCHOR.query(&[chain_id.into_datum()], NO_SNAPSHOT, 1)).unwrap_or(ChainHead::GENESIS)
}

fn predecessor(chain_id: &str, seq: i64) -> Option<ChainHead> {
    head_at(&PREDECESSOR.query(&[chain_id.into_datum(), seq.into_datum()], NO_SNAPSHOT, 1))
}

fn checkpoint(chain_id: &str) -> Option<ChainHead> {
    head_at(&CHECKPOINT.query(&[chain_id.into_datum()], NO_SNAPSHOT, 1))
}

fn save_checkpoint(chain_id: &str, head: &ChainHead) {
    Spi::run_with_args(
        "INSERT INTO agentidp.chain_checkpoints (chain_id, seq, hash) VALUES ($1, $2, $3)
         ON CONFLICT (chain_id) DO UPDATE
            SET seq = excluded.seq, hash = excluded.hash, verified_at = now()",
        &[
            chain_id.into(),
            head.seq.into(),
            head.hash.as_slice().into(),
        ],
    )
    .unwrap_or_else(|e| error!("recording the checkpoint of chain {chain_id:?} failed: {e}"));
}

fn drop_checkpoint(chain_id: &str) {
    Spi::run_with_args(
        "DELETE FROM agentidp.chain_checkpoints WHERE chain_id = $1",
        &[chain_id.into()],
    )
    .unwrap_or_else(|e| error!("dropping the checkpoint of chain {chain_id:?} failed: {e}"));
}

/// Checks that the chain still holds a head recorded earlier at its position.
fn check_against(chain_id: &str, recorded: &ChainHead) -> Result<(), ChainOutcome> {
    let last = HEAD.query(&[chain_id.into_datum()], NO_SNAPSHOT, 1);
    let last_seq = head_at(&last).map_or_else(|| trusted_start(chain_id).seq, |h| h.seq);
    let at = ROW_AT.query(
        &[chain_id.into_datum(), recorded.seq.into_datum()],
        NO_SNAPSHOT,
        1,
    );
    let row = at.first();
    let stored = row
        .and_then(|r| r.bytes(1))
        .and_then(|b| <[u8; HASH_LEN]>::try_from(b).ok());
    chain::check_digest(recorded, last_seq, stored.as_ref()).map_err(|kind| ChainOutcome {
        checked: 0,
        head: *recorded,
        broken: Some((row.and_then(|r| r.uuid(2)).copied(), kind)),
    })
}

/// Where a walk reads from: every stored event (so a forged one numbered before the start is
/// caught too), or those after a position already trusted.
#[derive(Clone, Copy)]
pub(crate) enum From {
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
fn walk_from_starts(ids: Vec<String>, every_chain: bool) -> Vec<(String, ChainOutcome)> {
    let starts: Vec<(String, ChainHead)> = ids
        .into_iter()
        .map(|id| {
            let start = trusted_start(&id);
            (id, start)
        })
        .collect();
    let in_physical_order = if every_chain {
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
                let outcome = walk(&id, start, From::Beginning, None);
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

/// Starts the verifier's hashing thread with every signal blocked, so that PostgreSQL's handlers
/// (cancel, terminate, timeouts) keep running on the backend's own thread. The thread only
/// hashes bytes it was handed, and is joined before verification returns or unwinds.
fn spawn_with_signals_blocked(
    work: Box<dyn FnOnce() + Send>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // SAFETY: plain signal-mask calls on this thread, restored before returning; the new thread
    // inherits the blocked mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        let spawned = std::thread::Builder::new()
            .name("agentidp-hash".to_owned())
            .spawn(work);
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned
    }
}

/// Turns stored rows into events, with the memory that takes: detoasted values and rendered
/// jsonb land in a scratch context, freed every few thousand rows.
struct RowReader {
    metadata: JsonbText,
    scratch: PgMemoryContexts,
    rows: u64,
}

impl RowReader {
    fn new() -> RowReader {
        RowReader {
            // SAFETY: the current context is the function call's, which outlives the reader.
            metadata: JsonbText::new_in(unsafe { pg_sys::CurrentMemoryContext }),
            scratch: PgMemoryContexts::new("agentidp_verify_chain"),
            rows: 0,
        }
    }

    /// Calls `check` with the row's event and stored hash.
    fn read<T>(
        &mut self,
        row: &Values<'_>,
        chain_id: &[u8],
        check: impl FnOnce(&chain::Event<'_>, &[u8]) -> T,
    ) -> T {
        let not_null = "chain columns are NOT NULL";
        let metadata = &mut self.metadata;
        // SAFETY: nothing allocated in the scratch context outlives this closure.
        let checked = unsafe {
            self.scratch.switch_to(|_| {
                let md = row.metadata_text(metadata);
                let seq = row.int8(SEQ).expect(not_null);
                let prev_hash = row.bytes(PREV_HASH).expect(not_null);
                let event = row.event(chain_id, seq, prev_hash, md);
                check(&event, row.bytes(HASH).expect(not_null))
            })
        };
        self.rows += 1;
        if self.rows.is_multiple_of(SCRATCH_ROWS) {
            // SAFETY: no value from the scratch context is held across rows.
            unsafe { self.scratch.reset() };
        }
        checked
    }
}

/// Walks one chain's events, checking them against `start`, up to `last` (the end when `None`),
/// then checks that the event after `last` links to it.
pub(crate) fn walk(
    chain_id: &str,
    start: ChainHead,
    from: From,
    last: Option<i64>,
) -> ChainOutcome {
    let after = match from {
        From::Beginning => i64::MIN,
        From::After(seq) => seq,
    };
    let events = EventsRelation::open();
    // SAFETY: the relation stays open for the scan's life, and a STABLE function reads on the
    // statement's active snapshot, which outlives this call.
    let mut scan = unsafe {
        ChainScan::open(
            events.rel,
            events.columns,
            chain_id,
            Direction::ForwardAfter(after),
            pg_sys::GetActiveSnapshot(),
        )
    };
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

/// Rows between two resets of the scratch memory context.
const SCRATCH_ROWS: u64 = 4096;

/// `agentidp.audit_events`, opened for reading and closed on drop.
struct EventsRelation {
    rel: pg_sys::Relation,
    columns: Columns,
}

impl EventsRelation {
    fn open() -> EventsRelation {
        // SAFETY: catalog lookups and an AccessShareLock open, as any query of the table does.
        unsafe {
            let namespace = pg_sys::get_namespace_oid(c"agentidp".as_ptr(), false);
            let relid = pg_sys::get_relname_relid(c"audit_events".as_ptr(), namespace);
            if relid == pg_sys::InvalidOid {
                raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                    "agentidp.audit_events does not exist",
                    None,
                );
            }
            let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            EventsRelation {
                rel,
                columns: Columns::of(rel),
            }
        }
    }
}

impl Drop for EventsRelation {
    fn drop(&mut self) {
        // SAFETY: opened once in `open`; the lock is kept until the transaction ends.
        unsafe { pg_sys::table_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE) }
    }
}
