//! One chain's rows wherever retention left them: `audit_events` and `audit_events_archive`
//! together, in `seq` order. The sealer, the proofs and the export read events this way, so
//! archiving an event changes none of their answers.

use pgrx::spi::{SpiClient, SpiResult};

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

/// Where a chain's stored hashes are read from, one batch at a time.
pub struct Link {
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub event_id: [u8; 16],
}

/// Up to `limit` of the chain's events after `after_seq`, in `seq` order: what a seal reads.
pub fn links_after(
    client: &SpiClient<'_>,
    chain_id: &str,
    after_seq: i64,
    limit: i64,
) -> SpiResult<Vec<Link>> {
    let rows = client.select(
        "SELECT seq, prev_hash, hash, event_id FROM (
            SELECT seq, prev_hash, hash, event_id FROM agentidp.audit_events
             WHERE chain_id = $1 AND seq > $2
            UNION ALL
            SELECT seq, prev_hash, hash, event_id FROM agentidp.audit_events_archive
             WHERE chain_id = $1 AND seq > $2) e
          ORDER BY seq LIMIT $3",
        None,
        &[chain_id.into(), after_seq.into(), limit.into()],
    )?;
    rows.map(|row| {
        Ok(Link {
            seq: row.get(1)?.unwrap_or_default(),
            prev_hash: row.get(2)?.unwrap_or_default(),
            hash: row.get(3)?.unwrap_or_default(),
            event_id: row
                .get::<pgrx::Uuid>(4)?
                .map(|u| *u.as_bytes())
                .unwrap_or_default(),
        })
    })
    .collect()
}
