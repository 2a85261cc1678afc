//! The extension's transparency-log functions and tables, as SQL calls: sealing, proofs, filing
//! checkpoints and cosignatures, and the evidence of refusals.

use std::collections::HashMap;

use agentidp_core::merkle::Hash;
use agentidp_core::seal::SealStatus;
use agentidp_core::tiles::Head;
use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::db::DbError;

/// One chain's result of `agentidp_seal()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sealed {
    pub chain_id: String,
    /// `sealed`, `unchanged`, `broken` or `rewritten` ([`SealStatus::as_str`]).
    pub status: String,
    pub head: Head,
    pub sealed_count: i64,
    pub detail: Option<String>,
}

impl Sealed {
    /// The tree's history was rewritten: the database refused to seal it.
    pub fn rewritten(&self) -> bool {
        self.status == SealStatus::Rewritten.as_str()
    }
}

fn hash(bytes: &[u8]) -> Result<Hash, DbError> {
    <[u8; 32]>::try_from(bytes)
        .map(Hash)
        .map_err(|_| DbError::new("a tree hash from the database is not 32 bytes"))
}

fn size(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// Grows every chain's tree over the events committed since the last seal.
pub async fn seal(client: &impl GenericClient) -> Result<Vec<Sealed>, DbError> {
    let rows = client
        .query(
            "SELECT chain_id, status, tree_size, root, sealed_count, detail
               FROM agentidp.agentidp_seal()",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Sealed {
                chain_id: row.try_get(0)?,
                status: row.try_get(1)?,
                head: Head {
                    size: size(row.try_get(2)?),
                    root: hash(row.try_get(3)?)?,
                },
                sealed_count: row.try_get(4)?,
                detail: row.try_get(5)?,
            })
        })
        .collect()
}

/// The consistency proof from the chain's tree of `old` events to its tree of `new`.
pub async fn consistency_proof(
    client: &impl GenericClient,
    chain_id: &str,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, DbError> {
    let (old, new) = (
        i64::try_from(old).unwrap_or(i64::MAX),
        i64::try_from(new).unwrap_or(i64::MAX),
    );
    let row = client
        .query_one(
            "SELECT agentidp.agentidp_consistency_proof($1, $2, $3)",
            &[&chain_id, &old, &new],
        )
        .await?;
    let proof: Vec<Vec<u8>> = row.try_get(0)?;
    proof.iter().map(|h| hash(h)).collect()
}

/// Files a signed checkpoint; the database checks it is its sealed tree's.
pub async fn record_checkpoint(client: &impl GenericClient, note: &str) -> Result<(), DbError> {
    client
        .execute("SELECT agentidp.agentidp_record_checkpoint($1)", &[&note])
        .await?;
    Ok(())
}

/// Adds cosignature lines to a filed checkpoint (the table's guard allows nothing else).
pub async fn add_cosignatures(
    client: &impl GenericClient,
    chain_id: &str,
    tree_size: u64,
    lines: &[String],
) -> Result<(), DbError> {
    let tree_size = i64::try_from(tree_size).unwrap_or(i64::MAX);
    client
        .execute(
            "UPDATE agentidp.checkpoints
                SET cosignatures = cosignatures || ARRAY(
                    SELECT l FROM unnest($3::text[]) l WHERE l <> ALL (cosignatures))
              WHERE chain_id = $1 AND tree_size = $2",
            &[&chain_id, &tree_size, &lines],
        )
        .await?;
    Ok(())
}

/// Keeps the evidence of a refused signature: the tree last signed, and the one the log gives.
pub async fn record_inconsistency(
    client: &impl GenericClient,
    chain_id: &str,
    trusted: Head,
    observed: Head,
) -> Result<(), DbError> {
    let (trusted_size, observed_size) = (
        i64::try_from(trusted.size).unwrap_or(i64::MAX),
        i64::try_from(observed.size).unwrap_or(i64::MAX),
    );
    client
        .execute(
            "INSERT INTO agentidp.checkpoint_refusals
                (chain_id, reason, trusted_size, trusted_root, observed_size, observed_root)
             VALUES ($1, 'inconsistent', $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &chain_id,
                &trusted_size,
                &trusted.root.0.as_slice(),
                &observed_size,
                &observed.root.0.as_slice(),
            ],
        )
        .await?;
    Ok(())
}

/// A filed checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Filed {
    pub chain_id: String,
    pub head: Head,
    pub note: String,
    pub cosignatures: Vec<String>,
    pub signed_at: DateTime<Utc>,
}

const FILED: &str = "chain_id, tree_size, root, note, cosignatures, signed_at";

fn filed(row: &Row) -> Result<Filed, DbError> {
    Ok(Filed {
        chain_id: row.try_get(0)?,
        head: Head {
            size: size(row.try_get(1)?),
            root: hash(row.try_get(2)?)?,
        },
        note: row.try_get(3)?,
        cosignatures: row.try_get(4)?,
        signed_at: row.try_get(5)?,
    })
}

/// The chain's filed checkpoints, latest first, at most `limit` (all when `None`): the signer
/// trusts the first whose signature it can verify.
pub async fn checkpoints_of(
    client: &impl GenericClient,
    chain_id: &str,
    limit: Option<i64>,
) -> Result<Vec<Filed>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT {FILED} FROM agentidp.checkpoints WHERE chain_id = $1
                  ORDER BY tree_size DESC LIMIT $2"
            ),
            &[&chain_id, &limit],
        )
        .await?;
    rows.iter().map(filed).collect()
}

/// The latest filed checkpoint of every sealed chain: one probe of the primary key per chain,
/// however many checkpoints the table holds (one per chain every CHECKPOINT_INTERVAL_SECONDS).
pub async fn latest_checkpoints(client: &impl GenericClient) -> Result<Vec<Filed>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT c.* FROM agentidp.merkle_trees t CROSS JOIN LATERAL (
                    SELECT {FILED} FROM agentidp.checkpoints WHERE chain_id = t.chain_id
                     ORDER BY tree_size DESC LIMIT 1) c
                  ORDER BY c.chain_id"
            ),
            &[],
        )
        .await?;
    rows.iter().map(filed).collect()
}

/// The latest filed checkpoint of one chain.
pub async fn latest_checkpoint(
    client: &impl GenericClient,
    chain_id: &str,
) -> Result<Option<Filed>, DbError> {
    Ok(checkpoints_of(client, chain_id, Some(1)).await?.pop())
}

/// A chain's progress: its head, what is sealed, and what is signed.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub chain_id: String,
    pub head_seq: i64,
    pub sealed: i64,
    pub signed: i64,
    /// When the latest checkpoint was signed; none before the first.
    pub signed_at: Option<DateTime<Utc>>,
}

/// Every chain's progress, for the metrics. Reads one head per chain, and per sealed chain its
/// tree and its latest checkpoint by primary key.
///
/// Two queries, joined here: on a log distributed by Citus, the heads come from a function while
/// trees and checkpoints are co-located shards, and Citus plans no join of the two; the trees
/// with their checkpoints, joined on the distribution column, it pushes down to each shard.
pub async fn progress(client: &impl GenericClient) -> Result<Vec<Progress>, DbError> {
    let heads = client
        .query(
            "SELECT chain_id, seq FROM agentidp.agentidp_chain_heads()",
            &[],
        )
        .await?;
    let sealed = client
        .query(
            "SELECT t.chain_id, t.tree_size, coalesce(c.tree_size, 0), c.signed_at
               FROM agentidp.merkle_trees t
               LEFT JOIN LATERAL (
                    SELECT tree_size, signed_at FROM agentidp.checkpoints c
                     WHERE c.chain_id = t.chain_id ORDER BY tree_size DESC LIMIT 1) c ON true",
            &[],
        )
        .await?;
    let mut trees = HashMap::with_capacity(sealed.len());
    for row in &sealed {
        let chain_id: String = row.try_get(0)?;
        let sealed_size: i64 = row.try_get(1)?;
        let signed: i64 = row.try_get(2)?;
        let signed_at: Option<DateTime<Utc>> = row.try_get(3)?;
        trees.insert(chain_id, (sealed_size, signed, signed_at));
    }
    heads
        .iter()
        .map(|row| {
            let chain_id: String = row.try_get(0)?;
            let (sealed, signed, signed_at) = trees.remove(&chain_id).unwrap_or((0, 0, None));
            Ok(Progress {
                head_seq: row.try_get(1)?,
                chain_id,
                sealed,
                signed,
                signed_at,
            })
        })
        .collect()
}

/// A refusal no checkpoint has been signed after: the chain's history is still in question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRefusal {
    pub chain_id: String,
    pub reason: String,
    pub trusted_size: i64,
    pub observed_size: i64,
    pub first_rewritten_seq: Option<i64>,
    pub first_rewritten_event_id: Option<Uuid>,
}

pub async fn open_refusals(client: &impl GenericClient) -> Result<Vec<OpenRefusal>, DbError> {
    let rows = client
        .query(
            "SELECT r.chain_id, r.reason, r.trusted_size, r.observed_size, r.first_rewritten_seq,
                    r.first_rewritten_event_id
               FROM agentidp.checkpoint_refusals r
              WHERE r.detected_at > coalesce(
                    (SELECT signed_at FROM agentidp.checkpoints c WHERE c.chain_id = r.chain_id
                      ORDER BY tree_size DESC LIMIT 1),
                    '-infinity')
              ORDER BY r.detected_at",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(OpenRefusal {
                chain_id: row.try_get(0)?,
                reason: row.try_get(1)?,
                trusted_size: row.try_get(2)?,
                observed_size: row.try_get(3)?,
                first_rewritten_seq: row.try_get(4)?,
                first_rewritten_event_id: row.try_get(5)?,
            })
        })
        .collect()
}

/// How many connected standbys have not replayed the WAL up to now: a checkpoint signed before
/// they have could name events a failover loses.
pub async fn standbys_behind(client: &impl GenericClient) -> Result<i64, DbError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_stat_replication
              WHERE replay_lsn IS NULL OR replay_lsn < pg_catalog.pg_current_wal_lsn()",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// The tile `(level, index)` of the chain at `width` hashes, if the stored one is that wide.
pub async fn tile(
    client: &impl GenericClient,
    chain_id: &str,
    level: u8,
    index: u64,
    width: u32,
) -> Result<Option<Vec<u8>>, DbError> {
    let (level, index, bytes) = (
        i16::from(level),
        i64::try_from(index).unwrap_or(i64::MAX),
        i32::try_from(width).unwrap_or(i32::MAX).saturating_mul(32),
    );
    let row = client
        .query_opt(
            "SELECT substring(hashes FROM 1 FOR $4) FROM agentidp.merkle_tiles
              WHERE chain_id = $1 AND level = $2 AND idx = $3 AND length(hashes) >= $4",
            &[&chain_id, &level, &index, &bytes],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}
