//! The head of every chain this transaction appends to.
//!
//! The first append to a chain in a transaction takes the chain's advisory lock, held until
//! commit, and reads the head. From then on no other session can append to that chain, so the
//! head is kept here and the following appends cost no query at all: a million-row
//! `INSERT ... SELECT` stays linear, where a head row updated per insert is quadratic.
//!
//! Savepoints: rows appended inside a subtransaction that rolls back are gone, and so is a lock
//! taken inside it, so each subtransaction's first change to an entry saves the entry's previous
//! state, restored on rollback (or the entry dropped, when the subtransaction created it).

use std::cell::RefCell;
use std::collections::HashMap;

use agentidp_core::chain::{ChainHead, HASH_LEN};
use pgrx::pg_sys;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::raise;
use crate::spi::KeptPlan;

/// The advisory lock's first key (`classid` in `pg_locks`): "AIDP".
pub const LOCK_CLASS: u32 = u32::from_be_bytes(*b"AIDP");

/// `TopSubTransactionId` in xact.h: the top-level transaction itself.
const TOP_SUBTRANSACTION: pg_sys::SubTransactionId = 1;

struct Entry {
    head: ChainHead,
    /// (subtransaction, state before its first change), innermost last; `None`: no entry then.
    saved: Vec<(pg_sys::SubTransactionId, Option<ChainHead>)>,
}

thread_local! {
    static HEADS: RefCell<HashMap<Vec<u8>, Entry>> = RefCell::new(HashMap::new());
}

pub fn init() {
    // SAFETY: registered once per backend from _PG_init; the callbacks only touch HEADS.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    }
}

/// Runs `append` with the chain's current head and stores the head it returns, locking and
/// reading the chain first when this transaction has not appended to it yet.
pub fn append<R>(chain_id: &[u8], append: impl FnOnce(ChainHead) -> (ChainHead, R)) -> R {
    let cached = HEADS.with_borrow(|heads| heads.get(chain_id).map(|e| e.head));
    let (current, is_new) = match cached {
        Some(head) => (head, false),
        None => (lock_and_read(chain_id), true),
    };
    let (next, result) = append(current);
    // SAFETY: plain read of the executing subtransaction's id.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    HEADS.with_borrow_mut(|heads| {
        let entry = heads.entry(chain_id.to_vec()).or_insert(Entry {
            head: current,
            saved: Vec::new(),
        });
        let before = (!is_new).then_some(current);
        if subxact != TOP_SUBTRANSACTION && entry.saved.last().map(|s| s.0) != Some(subxact) {
            entry.saved.push((subxact, before));
        }
        entry.head = next;
    });
    result
}

/// Takes the chain's transaction-scoped advisory lock, then reads its head on the latest
/// snapshot.
///
/// The statement's snapshot predates the wait for the lock: a head read on it would miss the
/// rows of the session that held the lock and fork the chain (under REPEATABLE READ and
/// SERIALIZABLE the transaction snapshot is older still). The previous holder's commit is
/// visible to a snapshot taken after the lock is granted, since locks are released only once
/// the commit is visible.
fn lock_and_read(chain_id: &[u8]) -> ChainHead {
    let tag = pg_sys::LOCKTAG {
        // SAFETY: MyDatabaseId is set for the whole life of a backend running queries.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: LOCK_CLASS,
        locktag_field3: lock_key(chain_id),
        // 2: the two-int4 form, so `pg_locks` shows it as pg_advisory_xact_lock(classid, objid).
        locktag_field4: 2,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    };
    // SAFETY: a well-formed advisory tag; waits like pg_advisory_xact_lock, errors on deadlock.
    unsafe {
        pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, false);
    }
    read_head(chain_id)
}

/// The lock's second key (`objid`): unrelated chains rarely share one, and when they do they
/// only wait on each other.
pub fn lock_key(chain_id: &[u8]) -> u32 {
    let digest = Sha256::digest(chain_id);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

static HEAD: KeptPlan = KeptPlan::new(
    c"SELECT seq, hash FROM (
        (SELECT seq, hash FROM agentidp.audit_events WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1)
        UNION ALL
        (SELECT seq, hash FROM agentidp.chain_anchors WHERE chain_id = $1)
      ) h ORDER BY seq DESC LIMIT 1",
    &[pg_sys::TEXTOID],
);

fn read_head(chain_id: &[u8]) -> ChainHead {
    Spi::connect(|_| {
        // SAFETY: chain ids are built from text columns and are valid UTF-8.
        let id = unsafe { std::str::from_utf8_unchecked(chain_id) };
        // SAFETY: GetLatestSnapshot returns a snapshot valid until the next one is taken, which
        // SPI_execute_snapshot pushes for the duration of the query.
        let snapshot = unsafe { pg_sys::GetLatestSnapshot() };
        let rows = HEAD.query(&[id.into_datum()], snapshot, 1);
        if rows.is_empty() {
            return ChainHead::GENESIS;
        }
        let row = rows.row(0);
        let seq = row.int8(1).expect("seq is NOT NULL");
        let stored = row.bytes(2).expect("hash is NOT NULL");
        let Ok(hash) = <[u8; HASH_LEN]>::try_from(stored) else {
            raise(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!(
                    "the head of audit chain \"{id}\" (seq {seq}) has a {}-byte hash, not 32",
                    stored.len()
                ),
                Some("Run agentidp.agentidp_verify_chain() and see docs/audit-log-runbook.md."),
            );
        };
        ChainHead { seq, hash }
    })
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PARALLEL_ABORT
            | XACT_EVENT_PREPARE
    ) {
        HEADS.with_borrow_mut(|heads| heads.clear());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    sub: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    HEADS.with_borrow_mut(|heads| match event {
        SUBXACT_EVENT_ABORT_SUB => heads.retain(|_, e| {
            match e.saved.last() {
                Some(&(s, before)) if s == sub => {
                    e.saved.pop();
                    match before {
                        Some(head) => e.head = head,
                        None => return false,
                    }
                }
                _ => {}
            }
            true
        }),
        SUBXACT_EVENT_COMMIT_SUB => {
            for e in heads.values_mut() {
                let n = e.saved.len();
                if n > 0 && e.saved[n - 1].0 == sub {
                    // The parent keeps the older of the two saved states.
                    if parent == TOP_SUBTRANSACTION || (n > 1 && e.saved[n - 2].0 == parent) {
                        e.saved.pop();
                    } else {
                        e.saved[n - 1].0 = parent;
                    }
                }
            }
        }
        _ => {}
    });
}
