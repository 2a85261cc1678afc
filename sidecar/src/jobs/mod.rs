//! The scheduled compliance jobs.
//!
//! Each job runs once when it starts and then on its cron schedule. The five control jobs run on
//! the leader only (see `leader.rs`); `key_refresh` runs on every replica, because every replica's
//! database sessions need the key.
//!
//! Every control job is a [`Check`]: it measures (its SQL), evaluates the measurement into an
//! [`Outcome`] (a pure function, unit-tested), and [`run_check`] records it, or `unknown` when the
//! measurement could not be taken. The job files hold only their measurement, their evaluation
//! and their schedule.

pub mod chain_verification;
pub mod encryption_at_rest;
pub mod key_refresh;
pub mod sealing;
pub mod secrets_rotation;
pub mod tls_enforcement;
pub mod webhook_dead_letters;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use cron::Schedule;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::controls::{self, ControlId, ControlStatus, Outcome, RecordError};
use crate::db::{Db, DbError, DbSetupError};
use crate::key::{KeyLoadError, KeyState};
use crate::metrics::{Job, Metrics};
use crate::settings::Config;
use crate::signer::SignError;
use agentidp_core::checkpoint::CheckpointError;

pub struct JobContext {
    pub db: Arc<Db>,
    pub metrics: Arc<Metrics>,
    pub key_state: watch::Receiver<KeyState>,
    pub config: Arc<Config>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Setup(#[from] DbSetupError),
    #[error(transparent)]
    Key(Arc<KeyLoadError>),
    #[error("cannot sign the checkpoint: {0}")]
    Sign(#[from] SignError),
    #[error("cannot make the checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("cannot publish the checkpoint: {0}")]
    Publish(String),
}

impl JobError {
    /// A publication that failed: a sink or a witness.
    pub fn publish(cause: impl std::fmt::Display) -> JobError {
        JobError::Publish(cause.to_string())
    }
}

impl From<tokio_postgres::Error> for JobError {
    fn from(e: tokio_postgres::Error) -> JobError {
        JobError::Db(e.into())
    }
}

/// Why a job is running now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    /// Index into the job's schedules.
    Schedule(usize),
    KeyChanged,
}

/// The earliest next firing among `schedules` strictly after `after`.
pub fn next_firing(
    schedules: &[&Schedule],
    after: DateTime<Utc>,
) -> Option<(usize, DateTime<Utc>)> {
    schedules
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.after(&after).next().map(|t| (i, t)))
        .min_by_key(|&(_, t)| t)
}

/// Runs `job` now, then at each firing of `schedules` (and whenever `wake` changes) until
/// cancelled.
pub async fn run_scheduled<F, Fut>(
    ctx: &JobContext,
    job: Job,
    schedules: &[&Schedule],
    wake: Option<watch::Receiver<KeyState>>,
    cancel: &CancellationToken,
    run: F,
) where
    F: FnMut(Trigger) -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    run_scheduled_as(ctx, |_| job, schedules, wake, cancel, run).await;
}

/// `run_scheduled` for runs of different kinds that must not overlap (one loop runs them one at
/// a time) but are told apart in the metrics: each run is recorded as `job_for(trigger)`.
pub async fn run_scheduled_as<J, F, Fut>(
    ctx: &JobContext,
    job_for: J,
    schedules: &[&Schedule],
    mut wake: Option<watch::Receiver<KeyState>>,
    cancel: &CancellationToken,
    mut run: F,
) where
    J: Fn(Trigger) -> Job,
    F: FnMut(Trigger) -> Fut,
    Fut: Future<Output = Result<(), JobError>>,
{
    let mut trigger = Trigger::Startup;
    // Ticks are computed after the later of the last firing and now, so a run that overlaps the
    // next tick does not cause a burst of catch-up runs.
    let mut last = Utc::now();
    loop {
        instrumented(&ctx.metrics, job_for(trigger), run(trigger)).await;
        last = last.max(Utc::now());
        let Some((index, at)) = next_firing(schedules, last) else {
            tracing::warn!(
                job = job_for(trigger).as_str(),
                "schedule has no future firing; job stops"
            );
            return;
        };
        let delay = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(delay) => {
                trigger = Trigger::Schedule(index);
                last = at;
            }
            () = key_changed(&mut wake) => trigger = Trigger::KeyChanged,
            () = cancel.cancelled() => return,
        }
    }
}

async fn key_changed(wake: &mut Option<watch::Receiver<KeyState>>) {
    if let Some(rx) = wake {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    // No receiver, or the sender is gone: never wake.
    std::future::pending().await
}

/// Records the run's metrics and logs its failure; a failed run never stops the schedule.
pub async fn instrumented(
    metrics: &Metrics,
    job: Job,
    run: impl Future<Output = Result<(), JobError>>,
) -> bool {
    let started = Instant::now();
    let result = run.await;
    let seconds = started.elapsed().as_secs_f64();
    let now = Utc::now().timestamp_millis() as f64 / 1000.0;
    match &result {
        Ok(()) => tracing::debug!(job = job.as_str(), seconds, "job succeeded"),
        Err(e) => tracing::warn!(job = job.as_str(), seconds, error = %e, "job failed"),
    }
    metrics.record_job(job, result.is_ok(), seconds, now);
    result.is_ok()
}

/// One control's check: what to measure and how to judge it.
pub trait Check {
    /// The control whose status the check records.
    const CONTROL: ControlId;
    type Measurement: Send;

    /// Reads what the verdict depends on (the database, the key's state). An error is an evidence
    /// gap: the control is recorded as `unknown` with the error in `detail`.
    fn measure(
        &self,
        ctx: &JobContext,
    ) -> impl Future<Output = Result<Self::Measurement, JobError>> + Send;

    /// The verdict and the `detail` operators read; no I/O.
    fn evaluate(&self, measurement: &Self::Measurement) -> Outcome;
}

/// Measures, evaluates and records `check`'s control; a measurement that fails records `unknown`.
/// The run's error (measurement or recording) is handed back for the job's metrics and log.
pub async fn run_check<C: Check>(ctx: &JobContext, check: C) -> Result<(), JobError> {
    let measurement = match check.measure(ctx).await {
        Ok(m) => m,
        Err(e) => return Err(record_unknown(ctx, C::CONTROL, e).await),
    };
    record(ctx, C::CONTROL, &check.evaluate(&measurement)).await
}

/// Records a control whose check could not complete as `unknown`, as far as the database still
/// allows, and hands back the original failure.
async fn record_unknown(ctx: &JobContext, id: ControlId, error: JobError) -> JobError {
    let outcome = Outcome::new(
        ControlStatus::Unknown,
        serde_json::json!({ "error": error.to_string() }),
    );
    if let Ok(client) = ctx.db.client().await {
        if let Err(e) = controls::record(&**client, id, &outcome).await {
            tracing::debug!(control = id.as_str(), error = %e, "cannot record unknown status either");
        }
    }
    error
}

async fn record(ctx: &JobContext, id: ControlId, outcome: &Outcome) -> Result<(), JobError> {
    let client = ctx.db.client().await?;
    controls::record(&**client, id, outcome).await?;
    if outcome.status != ControlStatus::Passing {
        tracing::warn!(control = id.as_str(), status = outcome.status.as_str(), detail = %outcome.detail, "control not passing");
    }
    Ok(())
}

/// The leader's jobs, until `cancel` (shutdown or lost leadership).
pub async fn run_leader_jobs(
    ctx: Arc<JobContext>,
    sealer: Arc<sealing::Sealer>,
    cancel: CancellationToken,
) {
    let mut jobs = JoinSet::new();
    jobs.spawn(sealing::run(ctx.clone(), sealer, cancel.clone()));
    jobs.spawn(chain_verification::run(ctx.clone(), cancel.clone()));
    jobs.spawn(secrets_rotation::run(ctx.clone(), cancel.clone()));
    jobs.spawn(encryption_at_rest::run(ctx.clone(), cancel.clone()));
    jobs.spawn(tls_enforcement::run(ctx.clone(), cancel.clone()));
    jobs.spawn(webhook_dead_letters::run(ctx, cancel.clone()));
    cancel.cancelled().await;
    // A run caught mid-query is simply repeated by whichever replica leads next.
    jobs.abort_all();
    while jobs.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use std::str::FromStr;

    #[test]
    fn next_firing_picks_the_earliest_schedule() {
        let hourly = Schedule::from_str("0 0 * * * *").unwrap();
        let daily = Schedule::from_str("0 30 3 * * *").unwrap();
        let t = |h, m, s| Utc.with_ymd_and_hms(2026, 3, 31, h, m, s).unwrap();
        assert_eq!(
            next_firing(&[&hourly, &daily], t(2, 10, 0)),
            Some((0, t(3, 0, 0)))
        );
        assert_eq!(
            next_firing(&[&hourly, &daily], t(3, 0, 0)),
            Some((1, t(3, 30, 0)))
        );
        assert_eq!(next_firing(&[&hourly], t(3, 0, 0)), Some((0, t(4, 0, 0))));
    }
}
