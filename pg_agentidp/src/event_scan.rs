//! Reading `agentidp.audit_events` without the executor: along one chain through its primary key,
//! or the whole table in physical order.
//!
//! Verification reads every event and the trigger reads one head per transaction; an SPI query
//! would spend most of that time starting an executor and copying tuples. Here a scan hands out
//! each row's columns in place.

use std::ffi::CStr;

use agentidp_core::chain::Event;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::raise;
use crate::spi::varlena_bytes;

/// The columns of `audit_events` the chain covers, by name.
pub const COLUMNS: [&CStr; 11] = [
    c"event_id",
    c"occurred_at",
    c"action",
    c"outcome",
    c"agent_id",
    c"org_id",
    c"metadata",
    c"chain_id",
    c"seq",
    c"prev_hash",
    c"hash",
];
/// The type each of [`COLUMNS`] must have: `Columns::of` refuses a table where one differs, so a
/// row's datums can be read as these types.
const TYPES: [pg_sys::Oid; 11] = [
    pg_sys::UUIDOID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::TEXTOID,
    pg_sys::JSONBOID,
    pg_sys::TEXTOID,
    pg_sys::INT8OID,
    pg_sys::BYTEAOID,
    pg_sys::BYTEAOID,
];
pub const EVENT_ID: usize = 0;
pub const OCCURRED_AT: usize = 1;
pub const ACTION: usize = 2;
pub const OUTCOME: usize = 3;
pub const AGENT_ID: usize = 4;
pub const ORG_ID: usize = 5;
pub const METADATA: usize = 6;
pub const CHAIN_ID: usize = 7;
pub const SEQ: usize = 8;
pub const PREV_HASH: usize = 9;
pub const HASH: usize = 10;

/// Where each of [`COLUMNS`] sits in a relation's rows (attribute numbers, from 1).
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    pub attnums: [i32; COLUMNS.len()],
    /// The highest of them: how far a row must be deformed.
    pub last: i32,
}

impl Columns {
    /// SAFETY: `rel` is open.
    pub unsafe fn of(rel: pg_sys::Relation) -> Columns {
        let desc = unsafe { (*rel).rd_att };
        let natts = usize::try_from(unsafe { (*desc).natts }).expect("natts is small");
        let mut attnums = [0i32; COLUMNS.len()];
        for (column, (slot, name)) in attnums.iter_mut().zip(COLUMNS).enumerate() {
            let found = (0..natts).find(|&i| {
                // SAFETY: i < natts.
                let att = unsafe { &*(*desc).attrs.as_ptr().add(i) };
                !att.attisdropped && unsafe { CStr::from_ptr(att.attname.data.as_ptr()) } == name
            });
            *slot = match found {
                // SAFETY: i < natts.
                Some(i) if unsafe { (*(*desc).attrs.as_ptr().add(i)).atttypid } != TYPES[column] => {
                    raise(
                        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                        format!("agentidp.audit_events column {name:?} has another type than the chain reads"),
                        Some("The table's shape is part of the chain; see docs/audit-log-runbook.md."),
                    )
                }
                Some(i) => i32::try_from(i).expect("small") + 1,
                None => raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!("agentidp.audit_events has no column {name:?}"),
                    Some("The table's shape is part of the chain; see docs/audit-log-runbook.md."),
                ),
            };
        }
        let last = attnums.iter().copied().max().expect("eleven columns");
        Columns { attnums, last }
    }
}

/// One deformed row: values as PostgreSQL holds them, valid until the scan moves on.
#[derive(Clone, Copy)]
pub struct Values<'a> {
    columns: &'a Columns,
    values: *const pg_sys::Datum,
    nulls: *const bool,
}

impl<'a> Values<'a> {
    /// # Safety
    /// `values` and `nulls` hold at least `columns.last` entries: a row of the relation
    /// `columns` was resolved from, deformed that far, whose datums stay valid for `'a`.
    pub unsafe fn from_raw(
        columns: &'a Columns,
        values: *const pg_sys::Datum,
        nulls: *const bool,
    ) -> Values<'a> {
        Values {
            columns,
            values,
            nulls,
        }
    }

    pub fn datum(&self, column: usize) -> Option<pg_sys::Datum> {
        let i = usize::try_from(self.columns.attnums[column] - 1).expect("attnums start at 1");
        // SAFETY: the arrays hold at least `columns.last` entries.
        unsafe { (!*self.nulls.add(i)).then(|| *self.values.add(i)) }
    }

    /// A text or bytea column's bytes.
    pub fn bytes(&self, column: usize) -> Option<&'a [u8]> {
        assert!(
            matches!(TYPES[column], pg_sys::TEXTOID | pg_sys::BYTEAOID),
            "column {column} is not text or bytea"
        );
        // SAFETY: the column is a varlena (checked above, and by Columns::of against the
        // relation); the row outlives 'a.
        self.datum(column).map(|d| unsafe { varlena_bytes(d) })
    }

    pub fn int8(&self, column: usize) -> Option<i64> {
        self.datum(column).map(|d| d.value() as i64)
    }

    pub fn uuid(&self, column: usize) -> Option<&'a [u8; 16]> {
        assert!(
            TYPES[column] == pg_sys::UUIDOID,
            "column {column} is not a uuid"
        );
        // SAFETY: a uuid datum points at 16 bytes, valid as long as the row.
        self.datum(column)
            .map(|d| unsafe { &*d.cast_mut_ptr::<[u8; 16]>() })
    }

    /// The `jsonb` metadata as its text output (what `metadata::text` gives), written into
    /// `buf`, which is reused across rows.
    pub fn metadata_text<'b>(&self, buf: &'b mut JsonbText) -> Option<&'b [u8]> {
        // SAFETY: metadata is a jsonb column.
        self.datum(METADATA).map(|d| unsafe { buf.render(d) })
    }

    /// The event as the chain encodes it; `None` only if `occurred_at` is beyond what the encoding
    /// holds, which the table's CHECK rules out.
    pub fn event(
        &self,
        chain_id: &'a [u8],
        seq: i64,
        prev_hash: &'a [u8],
        metadata: Option<&'a [u8]>,
    ) -> Event<'a> {
        let not_null = "event columns are NOT NULL";
        let pg_micros = self.datum(OCCURRED_AT).expect(not_null).value() as i64;
        Event {
            chain_id,
            seq,
            prev_hash,
            event_id: self.uuid(EVENT_ID).expect(not_null),
            // Out of range only if the CHECK on occurred_at was dropped; no hash can match it.
            occurred_at_unix_micros: agentidp_core::chain::unix_micros_from_postgres(pg_micros)
                .unwrap_or(i64::MIN),
            action: self.bytes(ACTION).expect(not_null),
            outcome: self.bytes(OUTCOME).expect(not_null),
            agent_id: self.bytes(AGENT_ID),
            org_id: self.bytes(ORG_ID),
            metadata,
        }
    }
}

/// A reusable buffer for `jsonb` text output.
pub struct JsonbText {
    buf: pg_sys::StringInfo,
}

impl JsonbText {
    /// A buffer in memory context `context`, which must outlive it.
    pub fn new_in(context: pg_sys::MemoryContext) -> JsonbText {
        // SAFETY: a plain allocation in a live context.
        let buf = unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(context);
            let buf = pg_sys::makeStringInfo();
            pg_sys::MemoryContextSwitchTo(previous);
            buf
        };
        JsonbText { buf }
    }

    /// A placeholder that owns nothing, for swapping a buffer out of a struct while it is used.
    pub fn empty() -> JsonbText {
        JsonbText {
            buf: std::ptr::null_mut(),
        }
    }

    /// SAFETY: `d` is a jsonb datum.
    unsafe fn render(&mut self, d: pg_sys::Datum) -> &[u8] {
        assert!(
            !self.buf.is_null(),
            "a placeholder JsonbText is never rendered into"
        );
        unsafe {
            pg_sys::resetStringInfo(self.buf);
            let jsonb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
            pg_sys::JsonbToCString(
                self.buf,
                &mut (*jsonb).root,
                pgrx::varlena::varsize(jsonb.cast()) as i32,
            );
            let len = usize::try_from((*self.buf).len).expect("non-negative");
            std::slice::from_raw_parts((*self.buf).data.cast::<u8>(), len)
        }
    }
}

/// A scan of one chain's events through the primary key, forward from a sequence number or
/// backward from the end.
pub struct ChainScan {
    index: pg_sys::Relation,
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    direction: pg_sys::ScanDirection::Type,
    columns: Columns,
}

pub enum Direction {
    /// Events with `seq` greater than this one, in ascending order.
    ForwardAfter(i64),
    /// Events with `seq` at least this one, newest first. A backward scan checks every entry of
    /// the index page it starts on before it returns the first: a bound keeps that to a few.
    BackwardFrom(i64),
}

/// Opens the primary key (chain_id, seq) of `rel`: `agentidp.audit_events`, or on a Citus worker
/// one of its shards, whose index is named after the shard. Found through the relation's index
/// list, since the relcache records no primary key that is DEFERRABLE, as this one is.
///
/// SAFETY: `rel` is open.
unsafe fn open_primary_key(rel: pg_sys::Relation) -> pg_sys::Relation {
    // SAFETY: rel is open (the caller's promise); each index of its list exists while rel is
    // locked, and every one opened here is closed again unless it is the one returned.
    unsafe {
        let indexes = pg_sys::RelationGetIndexList(rel);
        let count = if indexes.is_null() {
            0
        } else {
            (*indexes).length
        };
        for n in 0..count {
            let oid = pg_sys::list_nth_oid(indexes, n);
            let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            if (*(*index).rd_index).indisprimary {
                pg_sys::list_free(indexes);
                return index;
            }
            pg_sys::index_close(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        }
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "agentidp.audit_events has lost its primary key (chain_id, seq)",
            Some("Restore it: the chain is read through it."),
        )
    }
}

impl ChainScan {
    /// SAFETY: `rel` is `agentidp.audit_events` (or a shard of it), open and locked for the
    /// scan's life; `snapshot` stays valid as long.
    pub unsafe fn open(
        rel: pg_sys::Relation,
        columns: Columns,
        chain_id: &str,
        direction: Direction,
        snapshot: pg_sys::Snapshot,
    ) -> ChainScan {
        // SAFETY: rel is the open events relation and snapshot outlives the scan (the caller's
        // promise); the index is opened, scanned and closed by this type alone.
        unsafe {
            let index = open_primary_key(rel);
            let mut keys = [
                pg_sys::ScanKeyData::default(),
                pg_sys::ScanKeyData::default(),
            ];
            pg_sys::ScanKeyInit(
                &mut keys[0],
                1,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::Oid::from(pg_sys::F_TEXTEQ),
                chain_id.into_datum().expect("text datum"),
            );
            // Compare as the index orders: under its collation, not the C one ScanKeyInit sets.
            keys[0].sk_collation = *(*index).rd_indcollation;
            let (strategy, procedure, seq, scan_direction) = match direction {
                Direction::ForwardAfter(seq) => (
                    pg_sys::BTGreaterStrategyNumber,
                    pg_sys::F_INT8GT,
                    seq,
                    pg_sys::ScanDirection::ForwardScanDirection,
                ),
                Direction::BackwardFrom(seq) => (
                    pg_sys::BTGreaterEqualStrategyNumber,
                    pg_sys::F_INT8GE,
                    seq,
                    pg_sys::ScanDirection::BackwardScanDirection,
                ),
            };
            pg_sys::ScanKeyInit(
                &mut keys[1],
                2,
                strategy as pg_sys::StrategyNumber,
                pg_sys::Oid::from(procedure),
                seq.into_datum().expect("int8 datum"),
            );
            let nkeys = 2;
            let scan = pg_sys::index_beginscan(rel, index, snapshot, nkeys, 0);
            pg_sys::index_rescan(scan, keys.as_mut_ptr(), nkeys, std::ptr::null_mut(), 0);
            ChainScan {
                index,
                scan,
                slot: pg_sys::table_slot_create(rel, std::ptr::null_mut()),
                direction: scan_direction,
                columns,
            }
        }
    }

    /// The next row, valid until the next call.
    pub fn next_row(&mut self) -> Option<Values<'_>> {
        // SAFETY: scan and slot are live until drop.
        unsafe {
            if !pg_sys::index_getnext_slot(self.scan, self.direction, self.slot) {
                return None;
            }
            pg_sys::slot_getsomeattrs_int(self.slot, self.columns.last);
            Some(Values::from_raw(
                &self.columns,
                (*self.slot).tts_values,
                (*self.slot).tts_isnull,
            ))
        }
    }
}

impl Drop for ChainScan {
    fn drop(&mut self) {
        // SAFETY: each was opened once in `open` and is released once here.
        unsafe {
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::index_endscan(self.scan);
            pg_sys::index_close(self.index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        }
    }
}

/// A sequential scan of every event, in the table's physical order.
///
/// Rows are deformed straight from the page the scan holds pinned: a tuple slot would pin and
/// release the page again for every row.
pub struct TableScan {
    scan: pg_sys::TableScanDesc,
    desc: pg_sys::TupleDesc,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    columns: Columns,
}

impl TableScan {
    /// SAFETY: `rel` is `agentidp.audit_events`, open and locked for the scan's life; `snapshot`
    /// stays valid as long.
    pub unsafe fn open(
        rel: pg_sys::Relation,
        columns: Columns,
        snapshot: pg_sys::Snapshot,
    ) -> TableScan {
        unsafe {
            if (*rel).rd_tableam != pg_sys::GetHeapamTableAmRoutine() {
                raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "agentidp.audit_events must use the heap table access method",
                    None,
                );
            }
            let desc = (*rel).rd_att;
            let natts = usize::try_from((*desc).natts).expect("natts is small");
            // A synchronized scan would start mid-table, where it joins another scan: every row
            // before that point would then arrive after its successors.
            let flags = pg_sys::ScanOptions::SO_TYPE_SEQSCAN
                | pg_sys::ScanOptions::SO_ALLOW_STRAT
                | pg_sys::ScanOptions::SO_ALLOW_PAGEMODE;
            TableScan {
                scan: pg_sys::heap_beginscan(
                    rel,
                    snapshot,
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    flags,
                ),
                desc,
                values: vec![pg_sys::Datum::from(0); natts],
                nulls: vec![true; natts],
                columns,
            }
        }
    }

    /// The next row, valid until the next call.
    pub fn next_row(&mut self) -> Option<Values<'_>> {
        // SAFETY: the scan is live until drop, and the arrays hold the descriptor's natts.
        unsafe {
            let tuple =
                pg_sys::heap_getnext(self.scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                return None;
            }
            pg_sys::heap_deform_tuple(
                tuple,
                self.desc,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
            );
        }
        // SAFETY: the row was deformed whole into arrays of the descriptor's natts, and stays
        // until the next call.
        Some(unsafe { Values::from_raw(&self.columns, self.values.as_ptr(), self.nulls.as_ptr()) })
    }
}

impl Drop for TableScan {
    fn drop(&mut self) {
        // SAFETY: opened once in `open` and ended once here.
        unsafe { pg_sys::heap_endscan(self.scan) }
    }
}
