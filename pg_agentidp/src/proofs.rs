//! Merkle proofs in SQL (RFC 9162 §2.1.3 and §2.1.4), cut from a chain's tiles by
//! `agentidp_core::tiles`. Both run on a standby: they only read.

// pgrx reads each result column's name from the `name!` in the signature.
#![allow(clippy::type_complexity)]

use agentidp_core::merkle::{leaf_hash, Hash, TreeError};
use agentidp_core::tiles::{self, Head, TileStore, FULL_WIDTH};
use agentidp_core::witness;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::Uuid;

use crate::error::raise;
use crate::tile_table::TileTable;

/// A signed checkpoint as filed: tree size, root, and the note with its cosignatures.
struct Signed {
    size: u64,
    root: Hash,
    note: String,
}

fn signed_checkpoint(client: &SpiClient<'_>, chain: &str, size: Option<i64>) -> Option<Signed> {
    let mut rows = client
        .select(
            "SELECT tree_size, root, note, cosignatures FROM agentidp.checkpoints
              WHERE chain_id = $1 AND ($2::int8 IS NULL OR tree_size = $2)
              ORDER BY tree_size DESC LIMIT 1",
            Some(1),
            &[chain.into(), size.into()],
        )
        .unwrap_or_else(|e| error!("reading agentidp.checkpoints failed: {e}"));
    let row = rows.next()?;
    let size: i64 = row.get(1).ok()??;
    let root = <[u8; 32]>::try_from(row.get::<Vec<u8>>(2).ok()??).ok()?;
    let note: String = row.get(3).ok()??;
    let cosignatures: Vec<String> = row.get(4).ok()?.unwrap_or_default();
    // Served as stored when the lines do not assemble: the log's signature still verifies.
    let note = witness::with_cosignatures(&note, &cosignatures).unwrap_or(note);
    Some(Signed {
        size: u64::try_from(size).ok()?,
        root: Hash(root),
        note,
    })
}

fn raise_tree_error(chain: &str, size: u64, e: &TreeError) -> ! {
    match e {
        TreeError::InconsistentTiles => raise(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("the tiles of audit chain \"{chain}\" do not give the root of its tree of {size} events: they were changed after it was sealed"),
            Some("Treat it as tampering; docs/audit-log-runbook.md, \"Signed checkpoints\"."),
        ),
        _ => raise(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("no proof from the tree of audit chain \"{chain}\" at {size} events: {e}"),
            None,
        ),
    }
}

/// The proof that event `event_id` is in its chain's signed tree of `tree_size` events (the latest
/// signed when NULL), with that checkpoint's note: everything an auditor needs to check it with
/// the log's verifier key and no database.
#[pg_extern(stable, parallel_safe)]
fn agentidp_inclusion_proof(
    event_id: Uuid,
    tree_size: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(chain_id, String),
        name!(seq, i64),
        name!(leaf_index, i64),
        name!(tree_size, i64),
        name!(root, Vec<u8>),
        name!(proof, Vec<Vec<u8>>),
        name!(checkpoint, String),
    ),
> {
    let row = Spi::connect(|client| {
        let mut found = client
            .select(
                "SELECT chain_id, seq, hash FROM agentidp.audit_events WHERE event_id = $1
                 UNION ALL
                 SELECT chain_id, seq, hash FROM agentidp.audit_events_archive WHERE event_id = $1
                 LIMIT 1",
                Some(1),
                &[event_id.into()],
            )
            .unwrap_or_else(|e| error!("reading the audit log failed: {e}"));
        let Some(event) = found.next() else {
            raise(
                PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
                format!("no audit event {event_id}"),
                None,
            );
        };
        let chain: String = event.get(1).ok().flatten().unwrap_or_default();
        let seq: i64 = event.get(2).ok().flatten().unwrap_or_default();
        let hash: Vec<u8> = event.get(3).ok().flatten().unwrap_or_default();
        let Some(signed) = signed_checkpoint(client, &chain, tree_size) else {
            match tree_size {
                Some(size) => raise(
                    PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
                    format!("audit chain \"{chain}\" has no signed checkpoint of {size} events"),
                    None,
                ),
                None => raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("audit chain \"{chain}\" has no signed checkpoint yet"),
                    Some("The sidecar signs sealed trees (CHECKPOINT_SIGNER); agentidp_seal() seals them."),
                ),
            }
        };
        let index = u64::try_from(seq - 1).unwrap_or(u64::MAX);
        if index >= signed.size {
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("event {event_id} (seq {seq}) is not yet in a signed checkpoint of audit chain \"{chain}\": the latest has {} events", signed.size),
                Some("The sidecar seals and signs every CHECKPOINT_INTERVAL; ask again after the next one."),
            );
        }
        let store = TileTable {
            client,
            chain_id: &chain,
        };
        let head = Head {
            size: signed.size,
            root: signed.root,
        };
        let proof = tiles::inclusion_proof(&store, head, index)
            .unwrap_or_else(|e| raise_tree_error(&chain, signed.size, &e));
        let width = u64::from(FULL_WIDTH);
        let sealed_leaf = store
            .read(&[(0, index / width)])
            .ok()
            .and_then(|t| t.into_iter().next())
            .and_then(|t| {
                let at = usize::try_from(index % width).ok()? * 32;
                t.get(at..at + 32).map(<[u8]>::to_vec)
            });
        let stored_leaf = <[u8; 32]>::try_from(hash.as_slice()).map(|h| leaf_hash(&h).0.to_vec());
        if sealed_leaf.is_none() || stored_leaf.ok() != sealed_leaf {
            raise(
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!("event {event_id} was changed after it was sealed: its stored hash is not leaf {index} of the signed tree of audit chain \"{chain}\""),
                Some("Treat it as tampering; the signed checkpoint and the published tiles hold the original."),
            );
        }
        (
            chain,
            seq,
            seq - 1,
            i64::try_from(signed.size).unwrap_or(i64::MAX),
            signed.root.0.to_vec(),
            proof.iter().map(|h| h.0.to_vec()).collect(),
            signed.note,
        )
    });
    TableIterator::once(row)
}

/// The proof that the chain's tree of `new_size` events extends the one of `old_size` events:
/// the log only grew between the two checkpoints. Empty when the sizes are equal.
#[pg_extern(stable, parallel_safe, strict)]
fn agentidp_consistency_proof(chain_id: &str, old_size: i64, new_size: i64) -> Vec<Vec<u8>> {
    if old_size < 1 || new_size < old_size {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("a consistency proof needs 1 <= old_size <= new_size, not {old_size} and {new_size}"),
            None,
        );
    }
    Spi::connect(|client| {
        let sealed: Option<(i64, Vec<u8>)> = client
            .select(
                "SELECT tree_size, root FROM agentidp.merkle_trees WHERE chain_id = $1",
                Some(1),
                &[chain_id.into()],
            )
            .ok()
            .and_then(|mut rows| rows.next())
            .and_then(|row| Some((row.get(1).ok()??, row.get(2).ok()??)));
        let Some((sealed_size, sealed_root)) = sealed else {
            raise(
                PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
                format!("audit chain \"{chain_id}\" has no sealed tree"),
                Some("agentidp_seal() seals every chain."),
            );
        };
        if new_size > sealed_size {
            raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("audit chain \"{chain_id}\"'s sealed tree has {sealed_size} events, not {new_size}"),
                None,
            );
        }
        let (old, new) = (old_size.unsigned_abs(), new_size.unsigned_abs());
        let store = TileTable { client, chain_id };
        let root = if new_size == sealed_size {
            <[u8; 32]>::try_from(sealed_root).map(Hash).ok()
        } else {
            signed_checkpoint(client, chain_id, Some(new_size))
                .map(|s| s.root)
                .or_else(|| tiles::root_at(&store, new).ok())
        };
        let Some(root) = root else {
            raise_tree_error(chain_id, new, &TreeError::MissingTiles);
        };
        if old == new {
            return Vec::new();
        }
        tiles::consistency_proof(&store, old, Head { size: new, root })
            .unwrap_or_else(|e| raise_tree_error(chain_id, new, &e))
            .iter()
            .map(|h| h.0.to_vec())
            .collect()
    })
}
