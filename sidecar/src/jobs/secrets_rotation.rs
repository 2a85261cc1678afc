//! CC9.2 Secrets Rotation: active credentials must not outlive their expiry; those expiring within
//! the warning window are counted (`detail.expiringSoon`, which every replica exposes as the gauge
//! `agentidp_credentials_expiring_soon`) so an alert can fire before the control fails, and the
//! leader counts each credential once as it enters the window
//! (`agentidp_credentials_expiring_soon_total`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controls::{ControlId, ControlStatus, Outcome, RecordError};
use crate::jobs::{run_check, run_scheduled, Check, JobContext, JobError};
use crate::metrics::Job;

const CONTROL: ControlId = ControlId::SecretsRotation;

pub struct SecretsRotation {
    /// `CREDENTIAL_EXPIRY_WARNING_DAYS`.
    pub warning_days: u32,
}

pub struct Measurement {
    pub counts: CredentialCounts,
    /// The database's `now()` the counts are as of; CC9.2's `last_checked` becomes exactly this.
    pub measured_at: DateTime<Utc>,
}

impl Check for SecretsRotation {
    const CONTROL: ControlId = CONTROL;
    type Measurement = Measurement;

    /// Also counts the credentials that entered the window into
    /// `agentidp_credentials_expiring_soon_total`: the count is committed with the measurement,
    /// so it is this run's whether or not recording the outcome then succeeds.
    async fn measure(&self, ctx: &JobContext) -> Result<Measurement, JobError> {
        let days = i32::try_from(self.warning_days).unwrap_or(i32::MAX);
        let (counts, measured_at) = count(ctx, days).await?;
        ctx.metrics
            .credentials_entered_expiry_window
            .inc_by(u64::try_from(counts.entered_window).unwrap_or(0));
        Ok(Measurement {
            counts,
            measured_at,
        })
    }

    fn evaluate(&self, m: &Measurement) -> Outcome {
        evaluate(m.counts, self.warning_days).checked_at(m.measured_at)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredentialCounts {
    /// In the warning window now.
    pub expiring_soon: i64,
    pub expired: i64,
    /// Of `expiring_soon`, those that entered the window since the previous run.
    pub entered_window: i64,
}

pub fn evaluate(counts: CredentialCounts, warning_days: u32) -> Outcome {
    let status = if counts.expired > 0 {
        ControlStatus::Failing
    } else {
        ControlStatus::Passing
    };
    Outcome::new(
        status,
        json!({
            "expiredActive": counts.expired,
            "expiringSoon": counts.expiring_soon,
            "warningDays": warning_days,
        }),
    )
}

/// Counts the credentials, and among those in the window the ones that entered it since the
/// previous run. "Since the previous run" is kept in the database, not in this process: the
/// previous run's time is CC9.2's `last_checked`, read under a row lock and advanced to this
/// run's `now()` in the same transaction (the outcome then records that very time). So a restarted
/// sidecar or a new leader carries on from the last run whoever made it, and two replicas that
/// both believe they lead take turns on the row: each counts only the stretch of time the other
/// did not. A credential entered the window in `(previous, now]` when
/// * `expires_at - window` fell in it (time caught up with it), or
/// * it was created in it, already within the window (a short-lived credential).
///
/// Never evaluated (the extension's seeded row, `detail` NULL): all of the window is new.
async fn count(
    ctx: &JobContext,
    warning_days: i32,
) -> Result<(CredentialCounts, DateTime<Utc>), JobError> {
    let mut client = ctx.db.client().await?;
    let tx = client.transaction().await?;
    let previous = tx
        .query_opt(
            "SELECT CASE WHEN detail IS NULL THEN NULL ELSE last_checked END \
               FROM agentidp.control_status WHERE control_id = $1 FOR UPDATE",
            &[&CONTROL.as_str()],
        )
        .await?
        .ok_or(RecordError::MissingRow(CONTROL.as_str()))?;
    let previous: Option<DateTime<Utc>> = previous.try_get(0)?;
    let row = tx
        .query_one(
            "SELECT \
               count(*) FILTER (WHERE expires_at > now() \
                                  AND expires_at <= now() + make_interval(days => $1)), \
               count(*) FILTER (WHERE expires_at <= now()), \
               count(*) FILTER (WHERE expires_at > now() \
                                  AND expires_at <= now() + make_interval(days => $1) \
                                  AND ($2::timestamptz IS NULL \
                                       OR expires_at - make_interval(days => $1) > $2 \
                                       OR (created_at > $2 AND created_at <= now()))), \
               now() \
             FROM agentidp.credentials WHERE status = 'active'",
            &[&warning_days, &previous],
        )
        .await?;
    tx.execute(
        "UPDATE agentidp.control_status SET last_checked = greatest(last_checked, now()) \
          WHERE control_id = $1",
        &[&CONTROL.as_str()],
    )
    .await?;
    tx.commit().await?;
    Ok((
        CredentialCounts {
            expiring_soon: row.try_get(0)?,
            expired: row.try_get(1)?,
            entered_window: row.try_get(2)?,
        },
        row.try_get(3)?,
    ))
}

pub async fn run_once(ctx: &JobContext) -> Result<(), JobError> {
    let warning_days = ctx.config.credential_expiry_warning_days;
    run_check(ctx, SecretsRotation { warning_days }).await
}

pub async fn run(ctx: Arc<JobContext>, cancel: CancellationToken) {
    run_scheduled(
        &ctx,
        Job::SecretsRotation,
        &[&ctx.config.schedules.secrets_rotation],
        None,
        &cancel,
        |_| run_once(&ctx),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiring_soon_warns_but_expired_fails() {
        let soon = CredentialCounts {
            expiring_soon: 3,
            expired: 0,
            entered_window: 1,
        };
        assert_eq!(evaluate(soon, 7).status, ControlStatus::Passing);
        assert_eq!(evaluate(soon, 7).detail["expiringSoon"], 3);
        let expired = CredentialCounts {
            expiring_soon: 0,
            expired: 1,
            entered_window: 0,
        };
        assert_eq!(evaluate(expired, 7).status, ControlStatus::Failing);
    }

    #[test]
    fn the_outcome_is_recorded_at_the_time_the_counts_are_as_of() {
        let at = DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        let counts = CredentialCounts {
            expiring_soon: 1,
            expired: 0,
            entered_window: 1,
        };
        let o = SecretsRotation { warning_days: 7 }.evaluate(&Measurement {
            counts,
            measured_at: at,
        });
        assert_eq!(o.checked_at, Some(at));
        assert_eq!(o.detail, evaluate(counts, 7).detail);
    }

    #[test]
    fn the_detail_holds_the_window_now_not_what_entered_it() {
        let counts = CredentialCounts {
            expiring_soon: 4,
            expired: 0,
            entered_window: 1,
        };
        assert_eq!(
            evaluate(counts, 7).detail,
            json!({"expiredActive": 0, "expiringSoon": 4, "warningDays": 7})
        );
    }
}
