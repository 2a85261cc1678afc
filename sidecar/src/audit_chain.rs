//! The extension's audit chain verification functions, as SQL calls.

use agentidp_core::chain::BreakKind;
use chrono::{DateTime, Utc};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainVerification {
    pub verified: bool,
    pub checked_count: i64,
    pub broken_at_event_id: Option<Uuid>,
    pub break_kind: Option<BreakKind>,
    pub broken_chain_id: Option<String>,
}

const COLUMNS: &str = "verified, checked_count, broken_at_event_id, break_kind, broken_chain_id";

impl ChainVerification {
    fn from_row(row: &Row) -> Result<ChainVerification, tokio_postgres::Error> {
        Ok(ChainVerification {
            verified: row.try_get(0)?,
            checked_count: row.try_get(1)?,
            broken_at_event_id: row.try_get(2)?,
            break_kind: row.try_get::<_, Option<SqlBreakKind>>(3)?.map(|k| k.0),
            broken_chain_id: row.try_get(4)?,
        })
    }
}

/// A `break_kind` column, read with the core's parser: a name the extension does not emit is a
/// conversion error, not a string passed on to a control or a client.
struct SqlBreakKind(BreakKind);

impl<'a> FromSql<'a> for SqlBreakKind {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<SqlBreakKind, Box<dyn std::error::Error + Sync + Send>> {
        Ok(SqlBreakKind(<&str as FromSql>::from_sql(ty, raw)?.parse()?))
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

/// Read-only: verifies the events in `[from, to]` (either bound may be open).
pub async fn verify_range(
    client: &impl GenericClient,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<ChainVerification, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!("SELECT {COLUMNS} FROM agentidp.agentidp_verify_chain($1, $2)"),
            &[&from, &to],
        )
        .await?;
    ChainVerification::from_row(&row)
}

/// Verifies from the extension's last checkpoint (everything when `full_walk`) and, on success,
/// lets the extension record a new checkpoint.
pub async fn verify_incremental(
    client: &impl GenericClient,
    full_walk: bool,
) -> Result<ChainVerification, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!("SELECT {COLUMNS} FROM agentidp.agentidp_verify_incremental($1)"),
            &[&full_walk],
        )
        .await?;
    ChainVerification::from_row(&row)
}
