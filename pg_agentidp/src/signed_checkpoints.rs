//! Filing a signed checkpoint. The database holds no signing key and verifies no signature
//! (the sidecar signs, auditors verify): it files a note under the chain its origin names, and
//! only if the note's root is its own sealed tree's root at that size.

// pgrx reads each result column's name from the `name!` in the signature.
#![allow(clippy::type_complexity)]

use agentidp_core::checkpoint::{chain_of_origin, read_unverified};
use agentidp_core::merkle::Hash;
use agentidp_core::tiles;
use pgrx::prelude::*;

use crate::error::raise;
use crate::tile_table::TileTable;

/// Files `note`, a C2SP checkpoint of one chain's sealed tree, in `agentidp.checkpoints`.
/// Filing the same checkpoint again changes nothing.
#[pg_extern(volatile, parallel_unsafe, strict)]
fn agentidp_record_checkpoint(
    note: &str,
) -> TableIterator<
    'static,
    (
        name!(chain_id, String),
        name!(tree_size, i64),
        name!(root, Vec<u8>),
    ),
> {
    let claimed = read_unverified(note).unwrap_or_else(|e| {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("not a signed checkpoint note: {e}"),
            Some("A C2SP tlog-checkpoint in a signed note: origin, size and root lines, a blank line, signature lines."),
        )
    });
    let Some(chain) = chain_of_origin(&claimed.origin).map(str::to_owned) else {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("checkpoint origin {:?} names no chain", claimed.origin),
            Some("Origins are <log name>/<chain id>, the log name without \"/\"."),
        );
    };
    let size = i64::try_from(claimed.size).unwrap_or(i64::MAX);
    Spi::connect_mut(|client| {
        let sealed: Option<(i64, Vec<u8>)> = client
            .select(
                "SELECT tree_size, root FROM agentidp.merkle_trees WHERE chain_id = $1",
                Some(1),
                &[chain.as_str().into()],
            )?
            .next()
            .and_then(|row| Some((row.get(1).ok()??, row.get(2).ok()??)));
        let Some((sealed_size, sealed_root)) = sealed.filter(|&(s, _)| s >= size) else {
            raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("audit chain \"{chain}\" has no sealed tree of {size} events"),
                Some("Checkpoints sign trees agentidp_seal() sealed."),
            );
        };
        let root = if sealed_size == size {
            <[u8; 32]>::try_from(sealed_root).ok().map(Hash)
        } else {
            let store = TileTable {
                client,
                chain_id: &chain,
            };
            tiles::root_at(&store, claimed.size).ok()
        };
        if root != Some(claimed.root) {
            raise(
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("the checkpoint's root is not the root of audit chain \"{chain}\"'s sealed tree of {size} events"),
                Some("The note was signed over another tree; it is not filed."),
            );
        }
        client.update(
            "INSERT INTO agentidp.checkpoints (chain_id, tree_size, root, note)
             VALUES ($1, $2, $3, $4) ON CONFLICT (chain_id, tree_size) DO NOTHING",
            None,
            &[
                chain.as_str().into(),
                size.into(),
                claimed.root.0.to_vec().into(),
                note.into(),
            ],
        )?;
        Ok::<_, pgrx::spi::Error>(())
    })
    .unwrap_or_else(|e| error!("filing the checkpoint failed: {e}"));
    TableIterator::once((chain, size, claimed.root.0.to_vec()))
}
