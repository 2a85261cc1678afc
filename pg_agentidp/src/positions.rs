//! Where chains stand, read on the caller's snapshot: which chains exist, where a walk may start
//! (a retention anchor or genesis), the event before a position, a chain's head, and whether a
//! head recorded earlier (a digest, a checkpoint) is still there.

use agentidp_core::chain::{self, ChainHead, HASH_LEN};
use agentidp_core::verdict::ChainOutcome;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::citus;
use crate::spi::{KeptPlan, Row, Rows};

/// The transaction's own snapshot: what a STABLE function must read.
pub(crate) const NO_SNAPSHOT: pg_sys::Snapshot = std::ptr::null_mut();

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

/// [`CHAIN_IDS`] on a log distributed by Citus, which plans no recursive query over shards: each
/// shard groups its rows, in parallel.
static DISTRIBUTED_CHAIN_IDS: KeptPlan = KeptPlan::new(
    c"SELECT chain_id FROM agentidp.audit_events GROUP BY chain_id
      UNION SELECT chain_id FROM agentidp.chain_anchors
      ORDER BY 1",
    &[],
);

pub(crate) static RANGE_BOUNDS: KeptPlan = KeptPlan::new(
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

pub(crate) static HEAD: KeptPlan = KeptPlan::new(
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
        None if citus::log_is_distributed() => DISTRIBUTED_CHAIN_IDS
            .query(&[], NO_SNAPSHOT, 0)
            .iter()
            .map(|row| text(&row, 1))
            .collect(),
        None => CHAIN_IDS
            .query(&[], NO_SNAPSHOT, 0)
            .iter()
            .map(|row| text(&row, 1))
            .collect(),
    }
}

pub(crate) fn text(row: &Row<'_>, col: i32) -> String {
    String::from_utf8_lossy(row.bytes(col).expect("text column is NOT NULL")).into_owned()
}

pub(crate) fn head_at(rows: &Rows) -> Option<ChainHead> {
    let row = rows.first()?;
    let seq = row.int8(1)?;
    let hash = <[u8; HASH_LEN]>::try_from(row.bytes(2)?).ok()?;
    Some(ChainHead { seq, hash })
}

/// Where a walk from the start of a chain begins: after its retention anchor, or at genesis.
pub(crate) fn trusted_start(chain_id: &str) -> ChainHead {
    head_at(&ANCHOR.query(&[chain_id.into_datum()], NO_SNAPSHOT, 1)).unwrap_or(ChainHead::GENESIS)
}

pub(crate) fn predecessor(chain_id: &str, seq: i64) -> Option<ChainHead> {
    head_at(&PREDECESSOR.query(&[chain_id.into_datum(), seq.into_datum()], NO_SNAPSHOT, 1))
}

/// Checks that the chain still holds a head recorded earlier at its position.
pub(crate) fn check_against(chain_id: &str, recorded: &ChainHead) -> Result<(), ChainOutcome> {
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
