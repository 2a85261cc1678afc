//! Stored rows turned into events for the verifier, in memory freed as the walk goes.

use agentidp_core::chain;
use pgrx::{pg_sys, PgMemoryContexts};

use crate::event_scan::{JsonbText, Values, HASH, PREV_HASH, SEQ};

/// Turns stored rows into events, with the memory that takes: detoasted values and rendered
/// jsonb land in a scratch context, freed every few thousand rows.
pub(crate) struct RowReader {
    metadata: JsonbText,
    scratch: PgMemoryContexts,
    rows: u64,
}

impl RowReader {
    pub(crate) fn new() -> RowReader {
        RowReader {
            // SAFETY: the current context is the function call's, which outlives the reader.
            metadata: JsonbText::new_in(unsafe { pg_sys::CurrentMemoryContext }),
            scratch: PgMemoryContexts::new("agentidp_verify_chain"),
            rows: 0,
        }
    }

    /// Calls `check` with the row's event and stored hash.
    pub(crate) fn read<T>(
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

/// Rows between two resets of the scratch memory context.
const SCRATCH_ROWS: u64 = 4096;
