//! Retention: the one sanctioned way events leave `audit_events`.
//!
//! A chain's oldest events move to `audit_events_archive`, and the last one moved becomes the
//! chain's anchor: verification of what remains starts from it as it would from genesis.

use pgrx::prelude::*;
use pgrx::Uuid;

use crate::append_only::RemovalPermit;
use crate::citus;
use crate::error::raise;
use crate::positions::{chain_ids, trusted_start};
use crate::walk::{walk, Start};

/// Archives, on every chain or one, the longest run of oldest events that all occurred before
/// `older_than`. Refuses to archive a chain that does not verify: its evidence stays in place.
#[pg_extern(volatile, parallel_unsafe)]
fn agentidp_archive_events(
    older_than: TimestampWithTimeZone,
    chain: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(chain_id, String),
        name!(archived_count, i64),
        name!(boundary_seq, i64),
        name!(boundary_hash, Vec<u8>),
    ),
> {
    let archived = Spi::connect_mut(|client| {
        if citus::log_is_distributed() {
            // The DELETE runs on the workers, where this backend's permit does not reach.
            raise(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "agentidp_archive_events() cannot archive a distributed audit log yet",
                Some("Nothing was moved. Each chain's events would have to leave its shard on the worker that holds it; see docs/scaling.md."),
            );
        }
        let mut archived = Vec::new();
        for id in chain_ids(chain) {
            let cut: Option<i64> = client
                .select(
                    "SELECT coalesce(
                        (SELECT min(seq) - 1 FROM agentidp.audit_events
                          WHERE chain_id = $1 AND occurred_at >= $2),
                        (SELECT max(seq) FROM agentidp.audit_events WHERE chain_id = $1))",
                    Some(1),
                    &[id.as_str().into(), older_than.into()],
                )?
                .first()
                .get(1)?;
            let start = trusted_start(&id);
            let Some(cut) = cut.filter(|&cut| cut > start.seq) else {
                continue;
            };
            let outcome = walk(&id, start, Start::Beginning, Some(cut));
            if let Some((event, kind)) = outcome.broken {
                let event = event.map_or_else(|| "-".to_owned(), |e| Uuid::from_bytes(e).to_string());
                raise(
                    PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                    format!("refusing to archive audit chain \"{id}\": it breaks at event {event} ({kind})"),
                    Some("Investigate the break first (docs/audit-log-runbook.md); archiving would move the evidence."),
                );
            }
            let moved = {
                let _permit = RemovalPermit::open();
                client.update(
                    "WITH moved AS (
                        DELETE FROM agentidp.audit_events WHERE chain_id = $1 AND seq <= $2
                        RETURNING *)
                     INSERT INTO agentidp.audit_events_archive
                        (event_id, occurred_at, action, outcome, agent_id, org_id, metadata,
                         chain_id, seq, prev_hash, hash)
                     SELECT event_id, occurred_at, action, outcome, agent_id, org_id, metadata,
                            chain_id, seq, prev_hash, hash FROM moved",
                    None,
                    &[id.as_str().into(), cut.into()],
                )?
                .len() as i64
            };
            client.update(
                "INSERT INTO agentidp.chain_anchors (chain_id, seq, hash, occurred_at)
                 SELECT chain_id, seq, hash, occurred_at FROM agentidp.audit_events_archive
                  WHERE chain_id = $1 AND seq = $2
                 ON CONFLICT (chain_id) DO UPDATE
                    SET seq = excluded.seq, hash = excluded.hash,
                        occurred_at = excluded.occurred_at, archived_at = excluded.archived_at",
                None,
                &[id.as_str().into(), cut.into()],
            )?;
            archived.push((id, moved, cut, outcome.head.hash.to_vec()));
        }
        Ok::<_, pgrx::spi::Error>(archived)
    })
    .unwrap_or_else(|e| error!("archiving audit events failed: {e}"));
    TableIterator::new(archived)
}
