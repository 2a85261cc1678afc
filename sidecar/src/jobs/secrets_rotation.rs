//! CC9.2 Secrets Rotation: active credentials must not outlive their expiry; those expiring within
//! the warning window are counted so an alert can fire before the control fails.

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controls::{ControlId, ControlStatus, Outcome};
use crate::jobs::{record, record_unknown, run_scheduled, JobContext, JobError};
use crate::metrics::Job;

const CONTROL: ControlId = ControlId::SecretsRotation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredentialCounts {
    pub expiring_soon: i64,
    pub expired: i64,
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

async fn count(ctx: &JobContext, warning_days: i32) -> Result<CredentialCounts, JobError> {
    let client = ctx.db.client().await?;
    let row = client
        .query_one(
            "SELECT \
               count(*) FILTER (WHERE expires_at > now() \
                                  AND expires_at <= now() + make_interval(days => $1)), \
               count(*) FILTER (WHERE expires_at <= now()) \
             FROM agentidp.credentials WHERE status = 'active'",
            &[&warning_days],
        )
        .await?;
    Ok(CredentialCounts {
        expiring_soon: row.try_get(0)?,
        expired: row.try_get(1)?,
    })
}

pub async fn run_once(ctx: &JobContext) -> Result<(), JobError> {
    let days = ctx.config.credential_expiry_warning_days;
    let counts = match count(ctx, i32::try_from(days).unwrap_or(i32::MAX)).await {
        Ok(c) => c,
        Err(e) => return Err(record_unknown(ctx, CONTROL, e).await),
    };
    ctx.metrics
        .credentials_expiring_soon
        .inc_by(u64::try_from(counts.expiring_soon).unwrap_or(0));
    record(ctx, CONTROL, &evaluate(counts, days)).await
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
        };
        assert_eq!(evaluate(soon, 7).status, ControlStatus::Passing);
        assert_eq!(evaluate(soon, 7).detail["expiringSoon"], 3);
        let expired = CredentialCounts {
            expiring_soon: 0,
            expired: 1,
        };
        assert_eq!(evaluate(expired, 7).status, ControlStatus::Failing);
    }
}
