//! `agentidp_export()`: a chain's events as evidence-bundle lines (JSON Lines, every hashed field
//! exactly as hashed), written by `agentidp_core::export`, so that no PostgreSQL is needed to
//! check them.

use agentidp_core::chain::Event;
use agentidp_core::export::write_line;
use pgrx::prelude::*;

use crate::error::raise;

/// The events of `chain_id` with `from_seq <= seq <= to_seq` (to the head when NULL), archived or
/// not, one line each in `seq` order. The rows are collected before the first is returned: export
/// a long chain in ranges.
#[pg_extern(stable, parallel_safe)]
fn agentidp_export(
    chain_id: Option<&str>,
    from_seq: default!(Option<i64>, "1"),
    to_seq: default!(Option<i64>, "NULL"),
) -> SetOfIterator<'static, String> {
    let Some(chain) = chain_id else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "chain_id must not be NULL",
            None,
        );
    };
    let from = from_seq.unwrap_or(1);
    let to = to_seq.unwrap_or(i64::MAX);
    if from < 1 || to < from {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("an export needs 1 <= from_seq <= to_seq, not {from} and {to}"),
            None,
        );
    }
    let lines = Spi::connect(|client| {
        let rows = client.select(
            "SELECT chain_id, seq, prev_hash, event_id,
                    (extract(epoch FROM occurred_at) * 1000000)::int8,
                    action, outcome, agent_id, org_id, metadata::text, hash
               FROM (SELECT * FROM agentidp.audit_events
                      WHERE chain_id = $1 AND seq BETWEEN $2 AND $3
                     UNION ALL
                     SELECT event_id, occurred_at, action, outcome, agent_id, org_id, metadata,
                            chain_id, seq, prev_hash, hash FROM agentidp.audit_events_archive
                      WHERE chain_id = $1 AND seq BETWEEN $2 AND $3) e
              ORDER BY seq",
            None,
            &[chain.into(), from.into(), to.into()],
        )?;
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            let chain_id: String = row.get(1)?.unwrap_or_default();
            let prev_hash: Vec<u8> = row.get(3)?.unwrap_or_default();
            let event_id = row
                .get::<pgrx::Uuid>(4)?
                .map(|u| *u.as_bytes())
                .unwrap_or_default();
            let action: String = row.get(6)?.unwrap_or_default();
            let outcome: String = row.get(7)?.unwrap_or_default();
            let agent_id: Option<String> = row.get(8)?;
            let org_id: Option<String> = row.get(9)?;
            let metadata: Option<String> = row.get(10)?;
            let hash: Vec<u8> = row.get(11)?.unwrap_or_default();
            let event = Event {
                chain_id: chain_id.as_bytes(),
                seq: row.get(2)?.unwrap_or_default(),
                prev_hash: &prev_hash,
                event_id: &event_id,
                occurred_at_unix_micros: row.get(5)?.unwrap_or_default(),
                action: action.as_bytes(),
                outcome: outcome.as_bytes(),
                agent_id: agent_id.as_deref().map(str::as_bytes),
                org_id: org_id.as_deref().map(str::as_bytes),
                metadata: metadata.as_deref().map(str::as_bytes),
            };
            let mut line = String::with_capacity(320);
            write_line(&event, &hash, &mut line).unwrap_or_else(|e| {
                error!("exporting event {}: {e}", pgrx::Uuid::from_bytes(event_id))
            });
            if line.ends_with('\n') {
                line.pop();
            }
            lines.push(line);
        }
        Ok::<_, pgrx::spi::Error>(lines)
    })
    .unwrap_or_else(|e| error!("exporting audit chain \"{chain}\" failed: {e}"));
    SetOfIterator::new(lines)
}
