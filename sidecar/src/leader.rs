//! Exactly one replica runs the compliance jobs: the one holding a PostgreSQL session advisory
//! lock on a dedicated connection.
//!
//! The lock lives as long as that connection, so a leader that dies (or loses the network) hands
//! over by itself: PostgreSQL releases the lock when the session ends, and the followers, which
//! retry every `LEADER_RETRY_SECONDS`, take it. This needs a direct session to PostgreSQL, not a
//! transaction-pooling PgBouncer, which would share the session between clients.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::metrics::Metrics;

/// The advisory lock key: the ASCII bytes of "agentidp" read as a big-endian i64. Every replica,
/// and any operator tooling that wants to see who leads (`pg_locks` where `locktype = 'advisory'`,
/// `classid = 1634166126`, `objid = 1953064048`), uses this one constant.
pub const JOBS_LOCK_KEY: i64 = 0x6167_656e_7469_6470;

/// Campaigns for leadership until `cancel`; while leading, runs `lead` with a token that is
/// cancelled when leadership ends.
pub async fn run<F, Fut>(
    db: Arc<Db>,
    metrics: Arc<Metrics>,
    retry: Duration,
    cancel: CancellationToken,
    lead: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    while !cancel.is_cancelled() {
        match db.connect_dedicated().await {
            Ok((client, connection)) => {
                campaign(&client, connection, &metrics, retry, &cancel, &lead).await;
                // Dropping the client ends the session and with it any lock it held.
            }
            Err(e) => tracing::warn!(error = %e, "leader election cannot reach the database"),
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = cancel.cancelled() => {}
        }
    }
}

/// Returns when the session is lost or on shutdown.
async fn campaign<F, Fut>(
    client: &tokio_postgres::Client,
    mut connection: JoinHandle<()>,
    metrics: &Metrics,
    retry: Duration,
    cancel: &CancellationToken,
    lead: &F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let acquired = match client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&JOBS_LOCK_KEY])
            .await
        {
            Ok(row) => row.try_get::<_, bool>(0).unwrap_or(false),
            Err(e) => {
                tracing::warn!(error = %crate::db::DbError::from(e), "leader election query failed");
                return;
            }
        };
        if acquired {
            hold(client, &mut connection, metrics, retry, cancel, lead).await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            _ = &mut connection => return,
            () = cancel.cancelled() => return,
        }
    }
}

async fn hold<F, Fut>(
    client: &tokio_postgres::Client,
    connection: &mut JoinHandle<()>,
    metrics: &Metrics,
    retry: Duration,
    cancel: &CancellationToken,
    lead: &F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    tracing::info!(
        lock_key = JOBS_LOCK_KEY,
        "acquired job leadership; running the compliance jobs"
    );
    metrics.is_leader.set(1);
    let jobs_cancel = cancel.child_token();
    let jobs = tokio::spawn(lead(jobs_cancel.clone()));
    loop {
        // The connection task only notices a dead peer when TCP does; a periodic round trip
        // bounds how long a cut-off leader goes on believing it leads.
        tokio::select! {
            () = tokio::time::sleep(retry) => {
                let alive = tokio::time::timeout(retry, client.simple_query("SELECT 1")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    tracing::warn!("lost the leader-lock session; stopping the compliance jobs");
                    break;
                }
            }
            _ = &mut *connection => {
                tracing::warn!("leader-lock connection closed; stopping the compliance jobs");
                break;
            }
            () = cancel.cancelled() => break,
        }
    }
    jobs_cancel.cancel();
    if let Err(e) = jobs.await {
        tracing::warn!(error = %e, "compliance jobs ended abnormally");
    }
    metrics.is_leader.set(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_key_spells_agentidp() {
        assert_eq!(JOBS_LOCK_KEY.to_be_bytes(), *b"agentidp");
        assert_eq!(JOBS_LOCK_KEY >> 32, 1_634_166_126);
        assert_eq!(JOBS_LOCK_KEY & 0xffff_ffff, 1_953_064_048);
    }
}
