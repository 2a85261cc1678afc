//! The head of every chain this transaction appends to.
//!
//! The first append to a chain in a transaction takes the chain's advisory lock, held until
//! commit, and reads the head. From then on no other session can append to that chain, so the
//! head is kept here and the following appends cost no query at all: a million-row
//! `INSERT ... SELECT` stays linear, where a head row updated per insert is quadratic.
//!
//! Between transactions, a backend keeps the heads it committed, and uses one again without
//! reading it when a ticket drawn from `agentidp.chain_appends` proves nobody else appended in
//! between (`agentidp_core::head_cache`): a lone writer then reads no head at all.
//!
//! Savepoints: rows appended inside a subtransaction that rolls back are gone, and so is a lock
//! taken inside it, so the heads are an `agentidp_core::savepoints::SavepointMap`, which restores
//! each entry's state from before the subtransaction's first change to it on rollback (or drops
//! the entry, when the subtransaction created it).

use std::cell::{Cell, RefCell};

use agentidp_core::chain::{ChainHead, HASH_LEN};
use agentidp_core::head_cache::{HeadCache, Known};
use agentidp_core::savepoints::SavepointMap;
use pgrx::pg_sys;
use pgrx::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::raise;
use crate::event_scan::{ChainScan, Columns, Direction, HASH, SEQ};
use crate::spi::KeptPlan;

/// The advisory lock's first key (`classid` in `pg_locks`): "AIDP".
pub const LOCK_CLASS: u32 = u32::from_be_bytes(*b"AIDP");

/// `TopSubTransactionId` in xact.h: the top-level transaction itself.
const TOP_SUBTRANSACTION: pg_sys::SubTransactionId = 1;

/// The heads of the chains this transaction appended to, by chain id.
type Heads = SavepointMap<Vec<u8>, ChainHead, pg_sys::SubTransactionId>;

/// A subtransaction as `SavepointMap` names it: `None` for the top-level transaction.
fn savepoint(sub: pg_sys::SubTransactionId) -> Option<pg_sys::SubTransactionId> {
    (sub != TOP_SUBTRANSACTION).then_some(sub)
}

thread_local! {
    static HEADS: RefCell<Heads> = RefCell::new(Heads::new());
    /// Heads this backend read or committed, and whether they are still current (see
    /// `agentidp_core::head_cache`).
    static KNOWN: RefCell<HeadCache> = RefCell::new(HeadCache::default());
    /// The audit log whose heads KNOWN holds: a change to its definition stales them.
    static KNOWN_RELID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

pub fn init() {
    // SAFETY: registered once per backend from _PG_init; the callbacks only touch this module's
    // thread-locals.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_change), pg_sys::Datum::from(0));
    }
}

/// Where the chain's events live: the trigger's open relation and its columns.
#[derive(Clone, Copy)]
pub struct EventsTable {
    pub rel: pg_sys::Relation,
    pub columns: Columns,
}

/// Runs `append` with the chain's current head and stores the head it returns, locking and
/// reading the chain first when this transaction has not appended to it yet.
pub fn append<R>(
    table: EventsTable,
    chain_id: &[u8],
    append: impl FnOnce(ChainHead) -> (ChainHead, R),
) -> R {
    let current = HEADS
        .with_borrow(|heads| heads.get(chain_id))
        .unwrap_or_else(|| lock_and_read(table, chain_id));
    let (next, result) = append(current);
    // SAFETY: plain read of the executing subtransaction's id.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    HEADS.with_borrow_mut(|heads| heads.set(chain_id, next, savepoint(subxact)));
    result
}

/// Events were added without the chain (a restore): drops every head this transaction holds,
/// stales what this backend knows, and draws a ticket, so that every other backend's knowledge
/// is stale too.
pub fn forget_heads(events: pg_sys::Relation) {
    HEADS.with_borrow_mut(|heads| heads.clear());
    KNOWN.with_borrow_mut(HeadCache::invalidate);
    draw_ticket(events);
}

/// Stales what this backend knows of committed heads, so that its next first append to a chain
/// in a transaction reads the head. Before a record of a change to the log's protection: a
/// superuser who cut the tail with the guards off drew no ticket, and the record must follow the
/// real head, not the one this backend last committed.
pub fn forget_known_heads() {
    KNOWN.with_borrow_mut(HeadCache::invalidate);
}

/// Takes the chain's transaction-scoped advisory lock, then reads its head as committed now,
/// unless this backend knows it to be current.
///
/// The statement's snapshot predates the wait for the lock: a head read on it would miss the
/// rows of the session that held the lock and fork the chain (under REPEATABLE READ and
/// SERIALIZABLE the transaction snapshot is older still). The previous holder's commit is
/// visible by the time the lock is granted, since locks are released only once the commit is.
fn lock_and_read(table: EventsTable, chain_id: &[u8]) -> ChainHead {
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
    // SAFETY: the trigger's relation is open.
    let relid = unsafe { (*table.rel).rd_id };
    if KNOWN_RELID.replace(relid) != relid {
        KNOWN.with_borrow_mut(HeadCache::invalidate);
    }
    let ticket = draw_ticket(table.rel);
    let hint = match KNOWN.with_borrow_mut(|known| known.lookup(chain_id, ticket)) {
        Known::Head(head) => return head,
        Known::AtLeast(seq) => Some(seq),
        Known::Nothing => None,
    };
    // SAFETY: the trigger's relation is open and locked for the whole statement.
    let last = unsafe {
        hint.and_then(|seq| last_event(table, chain_id, seq))
            .or_else(|| last_event(table, chain_id, i64::MIN))
    };
    let head = last.unwrap_or_else(|| anchor_or_genesis(chain_id, owner(table.rel)));
    KNOWN.with_borrow_mut(|known| known.record(chain_id, head));
    head
}

/// The audit log's owner, who may use everything of the extension's.
fn owner(events: pg_sys::Relation) -> pg_sys::Oid {
    // SAFETY: the trigger's relation is open; rd_rel is its pg_class row.
    unsafe { (*(*events).rd_rel).relowner }
}

/// The next number of `agentidp.chain_appends`, drawn as the audit log's owner (the application
/// need not be granted it); `None` if the sequence is gone, so that nothing is ever taken as
/// current. Drawn while holding a chain's lock, it orders the appends that matter.
fn draw_ticket(events: pg_sys::Relation) -> Option<i64> {
    // SAFETY: the relation is open; a syscache lookup by name.
    let sequence = unsafe {
        let namespace = (*(*events).rd_rel).relnamespace;
        pg_sys::get_relname_relid(c"chain_appends".as_ptr(), namespace)
    };
    if sequence == pg_sys::InvalidOid {
        return None;
    }
    let _as_owner = AsUser::switch_to(owner(events));
    // SAFETY: nextval(regclass) on a relation that exists; it errors if it is no sequence.
    unsafe { pgrx::direct_function_call::<i64>(pg_sys::nextval_oid, &[sequence.into_datum()]) }
}

/// The lock's second key (`objid`): unrelated chains rarely share one, and when they do they
/// only wait on each other.
pub fn lock_key(chain_id: &[u8]) -> u32 {
    let digest = Sha256::digest(chain_id);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The chain's last event numbered `from` or later, read backward through the primary key.
///
/// SnapshotSelf: every committed row and this transaction's own. Under the lock no other session
/// has an append in progress, so that is exactly the head; and unlike an MVCC snapshot it takes
/// no SERIALIZABLE predicate lock, which would turn concurrent appends into serialization
/// failures although the lock already orders them.
///
/// # Safety
/// `table.rel` is the trigger's open `audit_events`.
unsafe fn last_event(table: EventsTable, chain_id: &[u8], from: i64) -> Option<ChainHead> {
    let id = chain_text(chain_id);
    let snapshot = std::ptr::addr_of_mut!(pg_sys::SnapshotSelfData);
    // SAFETY: the relation is open for the statement; SnapshotSelf is static.
    let mut scan = unsafe {
        ChainScan::open(
            table.rel,
            table.columns,
            id,
            Direction::BackwardFrom(from),
            snapshot,
        )
    };
    let row = scan.next_row()?;
    let seq = row.int8(SEQ).expect("seq is NOT NULL");
    let stored = row.bytes(HASH).expect("hash is NOT NULL");
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
    Some(ChainHead { seq, hash })
}

/// The chain id as text, checked. It is the org id's bytes behind an ASCII prefix
/// (`agentidp_core::chain::chain_id_into`), and the extension is only created in a UTF8
/// database (sql/schema.sql), so this holds; the check costs a pass over a short id once per
/// chain and transaction, and keeps a broken assumption an error rather than undefined behavior.
fn chain_text(chain_id: &[u8]) -> &str {
    std::str::from_utf8(chain_id).unwrap_or_else(|_| {
        raise(
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            "audit chain id is not valid UTF-8",
            Some("pg_agentidp requires a UTF8 database."),
        )
    })
}

static ANCHOR: KeptPlan = KeptPlan::new(
    c"SELECT seq, hash FROM agentidp.chain_anchors WHERE chain_id = $1",
    &[pg_sys::TEXTOID],
);

/// Where a chain with no events continues: after its retention anchor, or from the genesis.
/// Rare (a chain's first event, or the first after everything was archived), so SPI is fine.
///
/// Read as `owner` (the audit log's owner), as PostgreSQL's foreign-key triggers read the
/// referenced table: an application allowed to insert events needs no rights on the anchors.
fn anchor_or_genesis(chain_id: &[u8], owner: pg_sys::Oid) -> ChainHead {
    let _as_owner = AsUser::switch_to(owner);
    Spi::connect(|_| {
        let id = chain_text(chain_id);
        // SAFETY: a fresh snapshot, valid for the query: the statement's predates the lock.
        let snapshot = unsafe { pg_sys::GetLatestSnapshot() };
        let rows = ANCHOR.query(&[id.into_datum()], snapshot, 1);
        let Some(row) = rows.first() else {
            return ChainHead::GENESIS;
        };
        let seq = row.int8(1).expect("seq is NOT NULL");
        let hash = <[u8; HASH_LEN]>::try_from(row.bytes(2).expect("hash is NOT NULL"))
            .expect("chain_anchors.hash is CHECKed to be 32 bytes");
        ChainHead { seq, hash }
    })
}

/// The current user switched for the life of the value, for an internal query. An error inside
/// restores the user as the transaction or subtransaction aborts; on the way out, `drop` does.
struct AsUser {
    user: pg_sys::Oid,
    security_context: i32,
}

impl AsUser {
    fn switch_to(user: pg_sys::Oid) -> AsUser {
        let mut saved = AsUser {
            user: pg_sys::InvalidOid,
            security_context: 0,
        };
        // SAFETY: plain reads and writes of the backend's current user, as ri_triggers.c does.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved.user, &mut saved.security_context);
            pg_sys::SetUserIdAndSecContext(
                user,
                saved.security_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
        }
        saved
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        // SAFETY: restores what `switch_to` read.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.security_context) }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        // Still holding the chains' locks: nobody else has appended to them.
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => HEADS.with_borrow(|heads| {
            KNOWN.with_borrow_mut(|known| {
                for (chain_id, head) in heads.iter() {
                    known.record(chain_id, head);
                }
            })
        }),
        // Whoever commits the prepared transaction draws no ticket.
        XACT_EVENT_PREPARE => KNOWN.with_borrow_mut(HeadCache::invalidate),
        _ => {}
    }
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
        SUBXACT_EVENT_ABORT_SUB => heads.abort_sub(sub),
        SUBXACT_EVENT_COMMIT_SUB => heads.commit_sub(sub, savepoint(parent)),
        _ => {}
    });
}

/// A change to the audit log's definition, which every way around its triggers takes (disabling
/// one), or a reset of the whole relcache: rows may have come or gone unseen.
#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_change(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid || relid == KNOWN_RELID.get() {
        KNOWN.with_borrow_mut(HeadCache::invalidate);
    }
}
