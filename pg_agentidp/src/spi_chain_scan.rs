//! One chain's events in order, read through SQL: how a walk reads a log distributed by Citus,
//! whose rows are in shards on other nodes (`citus`). Citus routes the query to the chain's shard
//! by its `chain_id`; the cursor keeps the one snapshot of a single query for the whole walk.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::event_scan::{Columns, Values, COLUMNS};
use crate::spi::{Cursor, KeptPlan, Rows};

/// The chain's columns in `event_scan::COLUMNS` order, so a row's positions are known.
static CHAIN_ROWS: KeptPlan = KeptPlan::new(
    c"SELECT event_id, occurred_at, action, outcome, agent_id, org_id, metadata,
             chain_id, seq, prev_hash, hash
        FROM agentidp.audit_events WHERE chain_id = $1 AND seq > $2 ORDER BY seq",
    &[pg_sys::TEXTOID, pg_sys::INT8OID],
);

const IN_SELECT_ORDER: Columns = Columns {
    attnums: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    last: COLUMNS.len() as i32,
};

/// Rows fetched from the cursor at a time: few enough to keep memory small, enough that a fetch
/// costs little per row.
const BATCH_ROWS: i64 = 4096;

pub(crate) struct SpiChainScan {
    cursor: Cursor,
    batch: Rows,
    next: usize,
    values: [pg_sys::Datum; COLUMNS.len()],
    nulls: [bool; COLUMNS.len()],
}

impl SpiChainScan {
    /// The events of `chain_id` numbered after `after`. Call inside `Spi::connect`.
    pub(crate) fn open(chain_id: &str, after: i64) -> SpiChainScan {
        let mut cursor = CHAIN_ROWS.cursor(&[chain_id.into_datum(), after.into_datum()]);
        let batch = cursor.fetch(BATCH_ROWS);
        SpiChainScan {
            cursor,
            batch,
            next: 0,
            values: [pg_sys::Datum::from(0); COLUMNS.len()],
            nulls: [true; COLUMNS.len()],
        }
    }

    /// The next row, valid until the next call.
    pub(crate) fn next_row(&mut self) -> Option<Values<'_>> {
        if self.next == self.batch.len() {
            if self.batch.is_empty() {
                return None;
            }
            self.batch = self.cursor.fetch(BATCH_ROWS);
            self.next = 0;
            if self.batch.is_empty() {
                return None;
            }
        }
        self.batch
            .row(self.next)
            .deform_into(&mut self.values, &mut self.nulls);
        self.next += 1;
        // SAFETY: the row was deformed whole, in IN_SELECT_ORDER, and its datums live in the
        // batch, which is kept until the next call.
        Some(unsafe {
            Values::from_raw(&IN_SELECT_ORDER, self.values.as_ptr(), self.nulls.as_ptr())
        })
    }
}
