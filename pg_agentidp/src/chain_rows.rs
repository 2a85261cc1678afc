//! One chain's rows wherever retention left them: `audit_events` and `audit_events_archive`
//! together, in `seq` order. The sealer, the proofs and the export read events this way, so
//! archiving an event changes none of their answers.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};

use crate::positions::NO_SNAPSHOT;
use crate::spi::KeptPlan;

/// The seal's reads, prepared once per backend and read in place: a seal reads every event once,
/// and pgrx's row conversions (a copy per value) cost more than its hashing. One table at a time,
/// in its primary key's order: a kept plan is generic, and over a UNION of both tables its
/// `ORDER BY seq LIMIT` sorted every row of the chain in every batch.
static STORED_HASHES_AFTER: [KeptPlan; 2] = [
    // Archived events are a chain's oldest, so the archive is read first.
    KeptPlan::new(
        c"SELECT seq, prev_hash, hash FROM agentidp.audit_events_archive
           WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::INT8OID],
    ),
    KeptPlan::new(
        c"SELECT seq, prev_hash, hash FROM agentidp.audit_events
           WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        &[pg_sys::TEXTOID, pg_sys::INT8OID, pg_sys::INT8OID],
    ),
];

/// Calls `each(seq, prev_hash, hash)` for up to `limit` of the chain's events after `after_seq`,
/// archived or not, in `seq` order, until it returns false; returns how many rows were read.
/// Call inside an SPI connection.
pub fn stored_hashes_after(
    chain_id: &str,
    after_seq: i64,
    limit: i64,
    mut each: impl FnMut(i64, &[u8], &[u8]) -> bool,
) -> usize {
    let mut read = 0;
    let mut after = after_seq;
    for plan in &STORED_HASHES_AFTER {
        let left = limit - i64::try_from(read).unwrap_or(i64::MAX);
        if left <= 0 {
            break;
        }
        let rows = plan.query(
            &[chain_id.into_datum(), after.into_datum(), left.into_datum()],
            NO_SNAPSHOT,
            0,
        );
        for row in rows.iter() {
            read += 1;
            let (Some(seq), Some(prev), Some(hash)) = (row.int8(1), row.bytes(2), row.bytes(3))
            else {
                error!("agentidp.audit_events holds a row without its chain columns");
            };
            after = seq;
            if !each(seq, prev, hash) {
                return read;
            }
        }
    }
    read
}

/// The stored hash of the chain's event at `seq`, if a row is there.
pub fn hash_at(client: &SpiClient<'_>, chain_id: &str, seq: i64) -> SpiResult<Option<Vec<u8>>> {
    let mut rows = client.select(
        "SELECT hash FROM agentidp.audit_events WHERE chain_id = $1 AND seq = $2
         UNION ALL
         SELECT hash FROM agentidp.audit_events_archive WHERE chain_id = $1 AND seq = $2
         LIMIT 1",
        Some(1),
        &[chain_id.into(), seq.into()],
    )?;
    match rows.next() {
        Some(row) => row.get::<Vec<u8>>(1),
        None => Ok(None),
    }
}

/// An event's chain columns and id, for the evidence of a refused seal.
pub struct Link {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub event_id: [u8; 16],
}

/// Up to `limit` of the chain's events after `after_seq`, in `seq` order, with their ids.
pub fn links_after(
    client: &SpiClient<'_>,
    chain_id: &str,
    after_seq: i64,
    limit: i64,
) -> SpiResult<Vec<Link>> {
    let rows = client.select(
        "SELECT seq, hash, event_id FROM (
            SELECT seq, hash, event_id FROM agentidp.audit_events
             WHERE chain_id = $1 AND seq > $2
            UNION ALL
            SELECT seq, hash, event_id FROM agentidp.audit_events_archive
             WHERE chain_id = $1 AND seq > $2) e
          ORDER BY seq LIMIT $3",
        None,
        &[chain_id.into(), after_seq.into(), limit.into()],
    )?;
    rows.map(|row| {
        Ok(Link {
            seq: row.get(1)?.unwrap_or_default(),
            hash: row.get(2)?.unwrap_or_default(),
            event_id: row
                .get::<pgrx::Uuid>(3)?
                .map(|u| *u.as_bytes())
                .unwrap_or_default(),
        })
    })
    .collect()
}
