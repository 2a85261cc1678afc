//! Retention: the one sanctioned way events leave `audit_events`.
//!
//! A chain's oldest events move to `audit_events_archive`, and the last one moved becomes the
//! chain's anchor: verification of what remains starts from it as it would from genesis.
//!
//! On a log distributed by Citus the DELETE must run on the worker that holds the chain, where
//! the permit of the coordinator's backend does not reach: the coordinator has each worker archive
//! the chains of its shards (`agentidp_archive_shard`), in the worker's own backend and permit.

use agentidp_core::chain::ChainHead;
use agentidp_core::distribution::{self, ArchivedChain};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
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
        let chains = chain_ids(chain);
        if citus::log_is_distributed() {
            // Every chain is checked before any worker moves anything, as one node refuses the
            // whole call before it has moved a row; each worker checks its chains again.
            for id in &chains {
                if let Some((start, cut)) = cut(client, id, older_than)? {
                    check_before_archiving(id, start, cut);
                }
            }
            return archive_on_shards(client, older_than, chain);
        }
        archive(client, chains, older_than)
    })
    .unwrap_or_else(|e| error!("archiving audit events failed: {e}"));
    TableIterator::new(archived.into_iter().map(|a| {
        (
            a.chain_id,
            a.archived_count,
            a.boundary_seq,
            a.boundary_hash,
        )
    }))
}

/// On a Citus worker: archives the chains of `shard` (a shard of `agentidp.audit_events` held
/// here), every one or `chain`, and reports them (`distribution::encode_archived`). The
/// coordinator's `agentidp_archive_events()` calls it through `run_command_on_shards`.
#[pg_extern(volatile, parallel_unsafe)]
fn agentidp_archive_shard(
    shard: &str,
    older_than: TimestampWithTimeZone,
    chain: Option<&str>,
) -> String {
    let archived = Spi::connect_mut(|client| {
        let chains = shard_chains(client, shard)?
            .into_iter()
            .filter(|id| chain.is_none_or(|c| c == id))
            .collect();
        archive(client, chains, older_than)
    })
    .unwrap_or_else(|e| error!("archiving audit events failed: {e}"));
    distribution::encode_archived(&archived)
}

/// Where a chain's archiving would start and cut: its trusted start (anchor or genesis), and its
/// last event before `older_than`, if that is past the start.
fn cut(
    client: &SpiClient<'_>,
    id: &str,
    older_than: TimestampWithTimeZone,
) -> Result<Option<(ChainHead, i64)>, pgrx::spi::Error> {
    let cut: Option<i64> = client
        .select(
            "SELECT coalesce(
                (SELECT min(seq) - 1 FROM agentidp.audit_events
                  WHERE chain_id = $1 AND occurred_at >= $2),
                (SELECT max(seq) FROM agentidp.audit_events WHERE chain_id = $1))",
            Some(1),
            &[id.into(), older_than.into()],
        )?
        .first()
        .get(1)?;
    let start = trusted_start(id);
    Ok(cut.filter(|&cut| cut > start.seq).map(|cut| (start, cut)))
}

/// Walks the chain up to the cut and refuses to archive it if it breaks there. Returns the walk's
/// head: the boundary's hash.
fn check_before_archiving(id: &str, start: ChainHead, cut: i64) -> [u8; 32] {
    let outcome = walk(id, start, Start::Beginning, Some(cut));
    if let Some((event, kind)) = outcome.broken {
        let event = event.map_or_else(|| "-".to_owned(), |e| Uuid::from_bytes(e).to_string());
        raise(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("refusing to archive audit chain \"{id}\": it breaks at event {event} ({kind})"),
            Some("Investigate the break first (docs/audit-log-runbook.md); archiving would move the evidence."),
        );
    }
    outcome.head.hash
}

fn archive(
    client: &mut SpiClient<'_>,
    chains: Vec<String>,
    older_than: TimestampWithTimeZone,
) -> Result<Vec<ArchivedChain>, pgrx::spi::Error> {
    let mut archived = Vec::new();
    for id in chains {
        let Some((start, cut)) = cut(client, &id, older_than)? else {
            continue;
        };
        let boundary_hash = check_before_archiving(&id, start, cut);
        let moved = {
            let _permit = RemovalPermit::open();
            client
                .update(
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
        archived.push(ArchivedChain {
            chain_id: id,
            archived_count: moved,
            boundary_seq: cut,
            boundary_hash: boundary_hash.to_vec(),
        });
    }
    Ok(archived)
}

/// Has each worker archive the chains of the shards it holds, and gathers their reports in chain
/// order, as one node returns them. Each worker commits its shards' archiving on its own.
fn archive_on_shards(
    client: &SpiClient<'_>,
    older_than: TimestampWithTimeZone,
    chain: Option<&str>,
) -> Result<Vec<ArchivedChain>, pgrx::spi::Error> {
    // run_command_on_shards formats the command with each shard's name: %L quotes it there;
    // the other arguments are quoted here, by format() on parameters.
    let reports = client.select(
        "SELECT success, result FROM run_command_on_shards('agentidp.audit_events',
            format('SELECT agentidp.agentidp_archive_shard(%%L, %L::timestamptz, %L)', $1, $2))",
        None,
        &[older_than.into(), chain.into()],
    )?;
    let mut archived = Vec::new();
    for report in reports {
        let succeeded: bool = report.get(1)?.unwrap_or(false);
        let result: String = report.get(2)?.unwrap_or_default();
        if !succeeded {
            raise(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!("a worker could not archive its shard: {result}"),
                Some("The other shards' chains may have been archived: each worker commits its own. Call agentidp_archive_events() again once the cause is fixed."),
            );
        }
        archived.extend(distribution::decode_archived(&result).unwrap_or_else(|e| {
            raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("a worker's archiving report is not one: {e}"),
                None,
            )
        }));
    }
    archived.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
    Ok(archived)
}

/// The chains with events in `shard`, which must be a shard of `agentidp.audit_events` here.
fn shard_chains(client: &SpiClient<'_>, shard: &str) -> Result<Vec<String>, pgrx::spi::Error> {
    let name = client
        .select(
            "SELECT c.relname::text, format('%I.%I', n.nspname, c.relname)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = to_regclass($1) AND n.nspname = 'agentidp'",
            Some(1),
            &[shard.into()],
        )?
        .first()
        .get_two::<String, String>()?;
    let (Some(relname), Some(quoted)) = name else {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("{shard:?} is no table of schema agentidp on this node"),
            None,
        );
    };
    if !distribution::is_shard_of(relname.as_bytes(), b"audit_events") {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{shard:?} is not a shard of agentidp.audit_events"),
            None,
        );
    }
    // The name comes from the catalog, quoted by format('%I'): no client text reaches the SQL.
    let rows = client.select(
        &format!("SELECT chain_id FROM {quoted} GROUP BY chain_id ORDER BY chain_id"),
        None,
        &[],
    )?;
    rows.into_iter()
        .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
        .collect()
}
