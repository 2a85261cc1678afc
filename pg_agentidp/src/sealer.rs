//! `agentidp_seal()`: grows every chain's Merkle tree over the events committed since its last
//! seal, off the insert path. What a seal may build on is `agentidp_core::seal`'s rule; the tree
//! and its tiles are `agentidp_core::tiles`'.

// pgrx reads each result column's name from the `name!` in the signature.
#![allow(clippy::type_complexity)]

use agentidp_core::chain::Hash;
use agentidp_core::merkle::{leaf_hash, RootAccumulator, TreeError};
use agentidp_core::seal::{sealed_head_holds, SealStatus, Successors};
use agentidp_core::tiles::{self, Head, TileStore, FULL_WIDTH};
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};

use crate::chain_rows::{hash_at, links_after, stored_hashes_after};
use crate::error::raise;
use crate::positions::chain_ids;
use crate::tile_table::{self, TileTable};

/// The seal's advisory lock (`classid` in `pg_locks`): "AIDS". One seal at a time, so two never
/// grow the same tree from the same head.
const SEAL_LOCK: i32 = 0x4149_4453;

/// Events read and hashed into the tree at a time: 64 KiB of leaves keeps memory flat on a
/// first seal of a long chain.
const BATCH: i64 = 65_536;

/// One chain's result, as a row.
type SealRow = (String, &'static str, i64, Vec<u8>, i64, Option<String>);

/// Seals every chain. A chain whose sealed history was rewritten is left as it was sealed, and
/// the evidence goes to `agentidp.checkpoint_refusals`.
#[pg_extern(volatile, parallel_unsafe)]
fn agentidp_seal() -> TableIterator<
    'static,
    (
        name!(chain_id, String),
        name!(status, &'static str),
        name!(tree_size, i64),
        name!(root, Vec<u8>),
        name!(sealed_count, i64),
        name!(detail, Option<String>),
    ),
> {
    let rows = Spi::connect_mut(|client| {
        client.update(
            "SELECT pg_advisory_xact_lock($1, 0)",
            None,
            &[SEAL_LOCK.into()],
        )?;
        let mut chains = chain_ids(None);
        let trees = client.select("SELECT chain_id FROM agentidp.merkle_trees", None, &[])?;
        for row in trees {
            if let Some(id) = row.get::<String>(1)? {
                chains.push(id);
            }
        }
        chains.sort();
        chains.dedup();
        chains
            .iter()
            .map(|chain| seal_chain(client, chain))
            .collect::<SpiResult<Vec<SealRow>>>()
    })
    .unwrap_or_else(|e| error!("sealing the audit chains failed: {e}"));
    TableIterator::new(rows)
}

fn sealed_tree(client: &SpiClient<'_>, chain: &str) -> SpiResult<(Head, Option<Hash>)> {
    let mut rows = client.select(
        "SELECT tree_size, root, head_hash FROM agentidp.merkle_trees WHERE chain_id = $1",
        Some(1),
        &[chain.into()],
    )?;
    let Some(row) = rows.next() else {
        return Ok((Head::EMPTY, None));
    };
    let size: i64 = row.get(1)?.unwrap_or_default();
    let root: Vec<u8> = row.get(2)?.unwrap_or_default();
    let head_hash: Vec<u8> = row.get(3)?.unwrap_or_default();
    let (Ok(root), Ok(head_hash)) = (<Hash>::try_from(root), <Hash>::try_from(head_hash)) else {
        error!("agentidp.merkle_trees holds a malformed row for chain \"{chain}\"");
    };
    Ok((
        Head {
            size: u64::try_from(size).unwrap_or_default(),
            root: agentidp_core::merkle::Hash(root),
        },
        Some(head_hash),
    ))
}

fn seq_of(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn seal_chain(client: &mut SpiClient<'_>, chain: &str) -> SpiResult<SealRow> {
    let (sealed, head_hash) = sealed_tree(client, chain)?;
    if sealed.size > 0 {
        let stored = hash_at(client, chain, seq_of(sealed.size))?;
        if !sealed_head_holds(head_hash.as_ref(), stored.as_deref()) {
            return refuse(client, chain, sealed, Refusal::Rewritten);
        }
    }
    let mut head = sealed;
    let mut run = Successors::after(sealed.size, head_hash);
    let mut last_hash = head_hash;
    let mut broken = None;
    loop {
        let mut hashes = Vec::with_capacity(usize::try_from(BATCH).unwrap_or(0));
        let read =
            stored_hashes_after(chain, seq_of(head.size), BATCH, |seq, prev, hash| match run
                .accept(seq, prev, hash)
            {
                Ok(hash) => {
                    hashes.push(hash);
                    true
                }
                Err(kind) => {
                    broken = Some((kind, seq));
                    false
                }
            });
        if !hashes.is_empty() {
            let grown = {
                let store = TileTable {
                    client,
                    chain_id: chain,
                };
                tiles::extend(&store, head, &hashes)
            };
            let grown = match grown {
                Ok(grown) => grown,
                Err(TreeError::InconsistentTiles) => {
                    return refuse(client, chain, sealed, Refusal::TilesChanged)
                }
                Err(e) => raise(
                    PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                    format!("cannot grow the Merkle tree of audit chain \"{chain}\": {e}"),
                    Some("agentidp.merkle_tiles lacks a tile the tree needs; see docs/audit-log-runbook.md."),
                ),
            };
            tile_table::write(client, chain, &grown.tiles)?;
            head = grown.head;
            last_hash = hashes.last().copied();
        }
        if broken.is_some() || i64::try_from(read).unwrap_or(0) < BATCH {
            break;
        }
    }
    let added = seq_of(head.size) - seq_of(sealed.size);
    if added > 0 {
        client.update(
            "INSERT INTO agentidp.merkle_trees (chain_id, tree_size, root, head_hash)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (chain_id) DO UPDATE
                SET tree_size = excluded.tree_size, root = excluded.root,
                    head_hash = excluded.head_hash, sealed_at = excluded.sealed_at",
            None,
            &[
                chain.into(),
                seq_of(head.size).into(),
                head.root.0.to_vec().into(),
                last_hash.unwrap_or_default().to_vec().into(),
            ],
        )?;
    }
    let status = match (broken, added) {
        (Some((kind, _)), _) => SealStatus::Broken(kind),
        (None, 0) => SealStatus::Unchanged,
        (None, _) => SealStatus::Sealed,
    };
    Ok((
        chain.to_owned(),
        status.as_str(),
        seq_of(head.size),
        head.root.0.to_vec(),
        added,
        broken.map(|(kind, seq)| format!("{kind} at seq {seq}")),
    ))
}

/// Why a seal was refused.
#[derive(Clone, Copy)]
enum Refusal {
    /// The last sealed event is gone or has another hash.
    Rewritten,
    /// The stored tiles no longer give the sealed root.
    TilesChanged,
}

/// Keeps the tree as sealed, and records what the log gives now (the root over the events
/// stored at the sealed positions, and the first whose leaf differs from the tiles) next to it.
fn refuse(
    client: &mut SpiClient<'_>,
    chain: &str,
    sealed: Head,
    why: Refusal,
) -> SpiResult<SealRow> {
    let mut observed = RootAccumulator::default();
    let mut first: Option<(i64, [u8; 16])> = None;
    let mut tile: (Option<u64>, Vec<u8>) = (None, Vec::new());
    'read: while observed.size() < sealed.size {
        let links = links_after(client, chain, seq_of(observed.size()), BATCH)?;
        if links.is_empty() {
            break;
        }
        for link in links {
            let index = observed.size();
            if index >= sealed.size || link.seq != seq_of(index) + 1 {
                break 'read;
            }
            if first.is_none() {
                let n = index / u64::from(FULL_WIDTH);
                if tile.0 != Some(n) {
                    let store = TileTable {
                        client,
                        chain_id: chain,
                    };
                    let read = store.read(&[(0, n)]).unwrap_or_default();
                    tile = (Some(n), read.into_iter().next().unwrap_or_default());
                }
                let at = usize::try_from(index % u64::from(FULL_WIDTH)).unwrap_or(0) * 32;
                let leaf = <[u8; 32]>::try_from(link.hash.as_slice())
                    .map(|h| leaf_hash(&h).0.to_vec())
                    .unwrap_or_default();
                if tile.1.get(at..at + 32) != Some(leaf.as_slice()) {
                    first = Some((link.seq, link.event_id));
                }
            }
            observed.push(&link.hash);
        }
    }
    let observed_root = observed.root();
    client.update(
        "INSERT INTO agentidp.checkpoint_refusals
            (chain_id, reason, trusted_size, trusted_root, observed_size, observed_root,
             first_rewritten_seq, first_rewritten_event_id)
         VALUES ($1, $8, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING",
        None,
        &[
            chain.into(),
            seq_of(sealed.size).into(),
            sealed.root.0.to_vec().into(),
            seq_of(observed.size()).into(),
            observed_root.0.to_vec().into(),
            first.map(|(seq, _)| seq).into(),
            first.map(|(_, id)| pgrx::Uuid::from_bytes(id)).into(),
            match why {
                Refusal::Rewritten => "rewritten",
                Refusal::TilesChanged => "inconsistent",
            }
            .into(),
        ],
    )?;
    let detail = match first {
        Some((seq, id)) => format!(
            "first rewritten event {} at seq {seq}",
            pgrx::Uuid::from_bytes(id)
        ),
        None => format!(
            "{} of {} sealed events remain",
            observed.size(),
            sealed.size
        ),
    };
    let detail = match why {
        Refusal::Rewritten => detail,
        Refusal::TilesChanged => format!("its tiles no longer give the sealed root; {detail}"),
    };
    warning!("audit chain \"{chain}\" no longer holds the history it sealed: {detail}; it stays sealed at {} events", sealed.size);
    Ok((
        chain.to_owned(),
        SealStatus::Rewritten.as_str(),
        seq_of(sealed.size),
        sealed.root.0.to_vec(),
        0,
        Some(detail),
    ))
}
