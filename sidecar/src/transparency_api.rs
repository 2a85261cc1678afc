//! What the transparency routes read from the database, behind a trait so that the routes can be
//! tested without one.

use std::future::Future;
use std::pin::Pin;

use agentidp_core::merkle::Hash;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::db::{Db, DbError};
use crate::transparency_sql::{self as sql, Filed};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An event's inclusion proof as the API serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct Inclusion {
    /// The event's evidence-bundle line (`agentidp_export`): every field its hash covers.
    pub event_line: String,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint the proof leads to, with its cosignatures.
    pub checkpoint: String,
}

/// Why there is no proof to serve.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// No such event, chain or tree size.
    #[error("not found")]
    NotFound,
    /// The event is not yet covered by a signed checkpoint.
    #[error("not yet signed")]
    NotYetSigned,
    #[error(transparent)]
    Db(#[from] DbError),
}

fn classify(e: tokio_postgres::Error) -> ProofError {
    match e.code() {
        Some(c) if *c == SqlState::NO_DATA_FOUND || *c == SqlState::INVALID_PARAMETER_VALUE => {
            ProofError::NotFound
        }
        Some(c) if *c == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE => ProofError::NotYetSigned,
        _ => ProofError::Db(e.into()),
    }
}

/// A proof's `bytea[]` as hashes.
fn hashes(column: &[Vec<u8>]) -> Result<Vec<Hash>, ProofError> {
    column
        .iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice())
                .map(Hash)
                .map_err(|_| ProofError::Db(DbError::new("a proof hash is not 32 bytes")))
        })
        .collect()
}

pub trait TransparencyApi: Send + Sync + 'static {
    fn latest_checkpoints(&self) -> BoxFuture<'_, Result<Vec<Filed>, DbError>>;

    fn latest_checkpoint<'a>(
        &'a self,
        chain_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Filed>, DbError>>;

    fn inclusion<'a>(&'a self, event_id: Uuid) -> BoxFuture<'a, Result<Inclusion, ProofError>>;

    fn consistency<'a>(
        &'a self,
        chain_id: &'a str,
        old_size: u64,
        new_size: u64,
    ) -> BoxFuture<'a, Result<Vec<Hash>, ProofError>>;

    /// At most `limit` lines of the chain's export from `from_seq` on.
    fn export<'a>(
        &'a self,
        chain_id: &'a str,
        from_seq: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<String>, DbError>>;

    fn tile<'a>(
        &'a self,
        chain_id: &'a str,
        level: u8,
        index: u64,
        width: u32,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, DbError>>;
}

impl TransparencyApi for Db {
    fn latest_checkpoints(&self) -> BoxFuture<'_, Result<Vec<Filed>, DbError>> {
        Box::pin(async move {
            let client = self.client().await?;
            sql::latest_checkpoints(&**client).await
        })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        chain_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Filed>, DbError>> {
        Box::pin(async move {
            let client = self.client().await?;
            sql::latest_checkpoint(&**client, chain_id).await
        })
    }

    fn inclusion<'a>(&'a self, event_id: Uuid) -> BoxFuture<'a, Result<Inclusion, ProofError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT p.leaf_index, p.tree_size, p.proof, p.checkpoint,
                            (SELECT l FROM agentidp.agentidp_export(p.chain_id, p.seq, p.seq) l)
                       FROM agentidp.agentidp_inclusion_proof($1) p",
                    &[&event_id],
                )
                .await
                .map_err(classify)?;
            let proof: Vec<Vec<u8>> = row.try_get(2).map_err(classify)?;
            Ok(Inclusion {
                leaf_index: u64::try_from(row.try_get::<_, i64>(0).map_err(classify)?)
                    .unwrap_or_default(),
                tree_size: u64::try_from(row.try_get::<_, i64>(1).map_err(classify)?)
                    .unwrap_or_default(),
                proof: hashes(&proof)?,
                checkpoint: row.try_get(3).map_err(classify)?,
                event_line: row.try_get(4).map_err(classify)?,
            })
        })
    }

    fn consistency<'a>(
        &'a self,
        chain_id: &'a str,
        old_size: u64,
        new_size: u64,
    ) -> BoxFuture<'a, Result<Vec<Hash>, ProofError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let (old, new) = (
                i64::try_from(old_size).unwrap_or(i64::MAX),
                i64::try_from(new_size).unwrap_or(i64::MAX),
            );
            let row = client
                .query_one(
                    "SELECT agentidp.agentidp_consistency_proof($1, $2, $3)",
                    &[&chain_id, &old, &new],
                )
                .await
                .map_err(classify)?;
            let proof: Vec<Vec<u8>> = row.try_get(0).map_err(classify)?;
            hashes(&proof)
        })
    }

    fn export<'a>(
        &'a self,
        chain_id: &'a str,
        from_seq: i64,
        limit: i64,
    ) -> BoxFuture<'a, Result<Vec<String>, DbError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let to = from_seq.saturating_add(limit - 1);
            let rows = client
                .query(
                    "SELECT l FROM agentidp.agentidp_export($1, $2, $3) l",
                    &[&chain_id, &from_seq, &to],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?)
        })
    }

    fn tile<'a>(
        &'a self,
        chain_id: &'a str,
        level: u8,
        index: u64,
        width: u32,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, DbError>> {
        Box::pin(async move {
            let client = self.client().await?;
            sql::tile(&**client, chain_id, level, index, width).await
        })
    }
}

/// The backend of a process without a transparency log: nothing is found.
pub struct Unavailable;

impl TransparencyApi for Unavailable {
    fn latest_checkpoints(&self) -> BoxFuture<'_, Result<Vec<Filed>, DbError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn latest_checkpoint<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<Filed>, DbError>> {
        Box::pin(async { Ok(None) })
    }

    fn inclusion<'a>(&'a self, _: Uuid) -> BoxFuture<'a, Result<Inclusion, ProofError>> {
        Box::pin(async { Err(ProofError::NotFound) })
    }

    fn consistency<'a>(
        &'a self,
        _: &'a str,
        _: u64,
        _: u64,
    ) -> BoxFuture<'a, Result<Vec<Hash>, ProofError>> {
        Box::pin(async { Err(ProofError::NotFound) })
    }

    fn export<'a>(
        &'a self,
        _: &'a str,
        _: i64,
        _: i64,
    ) -> BoxFuture<'a, Result<Vec<String>, DbError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn tile<'a>(
        &'a self,
        _: &'a str,
        _: u8,
        _: u64,
        _: u32,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, DbError>> {
        Box::pin(async { Ok(None) })
    }
}
