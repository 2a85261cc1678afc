//! CC7.1 Webhook Dead-Letter Monitoring: unresolved dead letters must stay within the threshold.

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controls::{ControlId, ControlStatus, Outcome};
use crate::jobs::{run_check, run_scheduled, Check, JobContext, JobError};
use crate::metrics::Job;

const CONTROL: ControlId = ControlId::WebhookDeadLetters;

pub struct WebhookDeadLetters {
    /// `WEBHOOK_DEAD_LETTER_THRESHOLD`.
    pub threshold: i64,
}

impl Check for WebhookDeadLetters {
    const CONTROL: ControlId = CONTROL;
    /// Unresolved dead letters.
    type Measurement = i64;

    async fn measure(&self, ctx: &JobContext) -> Result<i64, JobError> {
        depth(ctx).await
    }

    fn evaluate(&self, depth: &i64) -> Outcome {
        evaluate(*depth, self.threshold)
    }
}

/// `detail.depth` is what every replica's `agentidp_webhook_dead_letters` gauge shows.
pub fn evaluate(depth: i64, threshold: i64) -> Outcome {
    let status = if depth <= threshold {
        ControlStatus::Passing
    } else {
        ControlStatus::Failing
    };
    Outcome::new(status, json!({ "depth": depth, "threshold": threshold }))
}

async fn depth(ctx: &JobContext) -> Result<i64, JobError> {
    let client = ctx.db.client().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM agentidp.webhook_dead_letters WHERE resolved_at IS NULL",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

pub async fn run_once(ctx: &JobContext) -> Result<(), JobError> {
    let threshold = ctx.config.dead_letter_threshold;
    run_check(ctx, WebhookDeadLetters { threshold }).await
}

pub async fn run(ctx: Arc<JobContext>, cancel: CancellationToken) {
    run_scheduled(
        &ctx,
        Job::WebhookDeadLetters,
        &[&ctx.config.schedules.webhook_dead_letters],
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
    fn threshold_is_inclusive() {
        assert_eq!(evaluate(0, 0).status, ControlStatus::Passing);
        assert_eq!(evaluate(10, 10).status, ControlStatus::Passing);
        assert_eq!(evaluate(11, 10).status, ControlStatus::Failing);
        assert_eq!(evaluate(11, 10).detail["depth"], 11);
    }
}
