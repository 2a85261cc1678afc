//! The in-memory copy of `agentidp.control_status` that `GET /compliance/controls` serves, so the
//! public hot path never waits on the database.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::controls::{self, Snapshot};
use crate::db::{Db, DbError};
use crate::metrics::Metrics;

pub struct SnapshotCell(RwLock<Arc<Snapshot>>);

impl SnapshotCell {
    pub fn new(initial: Snapshot) -> SnapshotCell {
        SnapshotCell(RwLock::new(Arc::new(initial)))
    }

    pub fn get(&self) -> Arc<Snapshot> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, snapshot: Snapshot) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }
}

/// Reads the table once into `cell` and the control gauges.
pub async fn refresh(db: &Db, cell: &SnapshotCell, metrics: &Metrics) -> Result<(), DbError> {
    let client = db.client().await?;
    let records = controls::read_all(&**client).await?;
    let snapshot = Snapshot::from_records(records, Utc::now());
    metrics.observe_snapshot(&snapshot);
    cell.set(snapshot);
    Ok(())
}

/// Runs on every replica. While the table cannot be read the last snapshot keeps being served:
/// its `lastChecked` times show how old it is.
pub async fn refresh_loop(
    db: Arc<Db>,
    cell: Arc<SnapshotCell>,
    metrics: Arc<Metrics>,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut failing = false;
    loop {
        match refresh(&db, &cell, &metrics).await {
            Ok(()) if failing => {
                tracing::info!("control status readable again");
                failing = false;
            }
            Ok(()) => {}
            // Logged on the transition only: a database outage would otherwise log every tick.
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot read agentidp.control_status; serving the last known control status");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = cancel.cancelled() => return,
        }
    }
}
