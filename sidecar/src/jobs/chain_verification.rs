//! CC7.2 Audit Log Integrity: verifies the audit chain incrementally on its schedule and with a
//! full walk on a second, rarer one (a checkpoint only proves what came after it). Both kinds run
//! in one loop, never at the same time; the full walks' metrics carry `job_name="chain_full_walk"`.
//!
//! A chain that verifies alone may still have been rewritten by someone who recomputed every
//! later hash: the control also fails while a seal or a signature stands refused (a refusal no
//! checkpoint was signed after, `agentidp.checkpoint_refusals`).

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::audit_chain::{self, ChainVerification};
use crate::controls::{ControlId, ControlStatus, Outcome};
use crate::jobs::{run_check, run_scheduled_as, Check, JobContext, JobError, Trigger};
use crate::metrics::Job;
use crate::transparency_sql::{self, OpenRefusal};

const CONTROL: ControlId = ControlId::AuditLogIntegrity;
const FULL_WALK_SCHEDULE: usize = 1;

pub struct ChainCheck {
    /// Every chain from its start, rather than from its checkpoint.
    pub full_walk: bool,
}

/// What CC7.2 is judged on.
pub struct ChainMeasurement {
    pub verification: ChainVerification,
    pub refusals: Vec<OpenRefusal>,
}

impl Check for ChainCheck {
    const CONTROL: ControlId = CONTROL;
    type Measurement = ChainMeasurement;

    async fn measure(&self, ctx: &JobContext) -> Result<ChainMeasurement, JobError> {
        let client = ctx.db.client().await?;
        let result = audit_chain::verify_incremental(&**client, self.full_walk).await?;
        let refusals = transparency_sql::open_refusals(&**client).await?;
        if !result.verified {
            tracing::error!(
                checked = result.checked_count,
                broken_at_event_id = ?result.broken_at_event_id,
                break_kind = ?result.break_kind,
                chain = ?result.broken_chain_id,
                "audit chain integrity check FAILED"
            );
        }
        Ok(ChainMeasurement {
            verification: result,
            refusals,
        })
    }

    fn evaluate(&self, measurement: &ChainMeasurement) -> Outcome {
        evaluate(measurement, self.full_walk)
    }
}

pub fn evaluate(measurement: &ChainMeasurement, full_walk: bool) -> Outcome {
    let result = &measurement.verification;
    let status = if result.verified && measurement.refusals.is_empty() {
        ControlStatus::Passing
    } else {
        ControlStatus::Failing
    };
    let mut detail = json!({
        "fullWalk": full_walk,
        "checkedCount": result.checked_count,
        "brokenAtEventId": result.broken_at_event_id.map(|id| id.to_string()),
        "breakKind": result.break_kind.map(|k| k.as_str()),
        "brokenChainId": result.broken_chain_id,
    });
    if !measurement.refusals.is_empty() {
        detail["refusedCheckpoints"] = measurement
            .refusals
            .iter()
            .map(|r| {
                json!({
                    "chainId": r.chain_id,
                    "reason": r.reason,
                    "trustedSize": r.trusted_size,
                    "observedSize": r.observed_size,
                    "firstRewrittenSeq": r.first_rewritten_seq,
                    "firstRewrittenEventId": r.first_rewritten_event_id.map(|id| id.to_string()),
                })
            })
            .collect();
    }
    Outcome::new(status, detail)
}

pub async fn run_once(ctx: &JobContext, full_walk: bool) -> Result<(), JobError> {
    run_check(ctx, ChainCheck { full_walk }).await
}

fn is_full_walk(trigger: Trigger) -> bool {
    trigger == Trigger::Schedule(FULL_WALK_SCHEDULE)
}

fn job(trigger: Trigger) -> Job {
    if is_full_walk(trigger) {
        Job::ChainFullWalk
    } else {
        Job::ChainVerification
    }
}

pub async fn run(ctx: Arc<JobContext>, cancel: CancellationToken) {
    let schedules = &ctx.config.schedules;
    run_scheduled_as(
        &ctx,
        job,
        &[&schedules.chain_verification, &schedules.chain_full_walk],
        None,
        &cancel,
        |trigger| run_once(&ctx, is_full_walk(trigger)),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentidp_core::chain::BreakKind;

    #[test]
    fn only_the_full_walk_schedule_walks_everything_and_is_labelled_apart() {
        assert_eq!(
            job(Trigger::Schedule(FULL_WALK_SCHEDULE)),
            Job::ChainFullWalk
        );
        assert!(is_full_walk(Trigger::Schedule(FULL_WALK_SCHEDULE)));
        for incremental in [Trigger::Startup, Trigger::Schedule(0)] {
            assert_eq!(job(incremental), Job::ChainVerification);
            assert!(!is_full_walk(incremental));
        }
    }

    #[test]
    fn a_break_fails_the_control_and_names_the_event() {
        let id = uuid::Uuid::from_u128(0xc4d5e6f7_a8b9_0123_cdef_456789012345);
        let broken = ChainVerification {
            verified: false,
            checked_count: 1203,
            broken_at_event_id: Some(id),
            break_kind: Some(BreakKind::ContentEdited),
            broken_chain_id: Some("org:org-1".into()),
        };
        let measured = |verification| ChainMeasurement {
            verification,
            refusals: Vec::new(),
        };
        let o = evaluate(&measured(broken), true);
        assert_eq!(o.status, ControlStatus::Failing);
        assert_eq!(
            o.detail["brokenAtEventId"],
            "c4d5e6f7-a8b9-0123-cdef-456789012345"
        );
        assert_eq!(o.detail["fullWalk"], true);
        assert_eq!(o.detail["breakKind"], "content_edited");
        assert_eq!(o.detail["brokenChainId"], "org:org-1");
        let intact = ChainVerification {
            verified: true,
            checked_count: 5,
            broken_at_event_id: None,
            break_kind: None,
            broken_chain_id: None,
        };
        assert_eq!(
            evaluate(&measured(intact.clone()), false).status,
            ControlStatus::Passing
        );
        // Rehashed through to the head, the chain verifies; the refused seal still fails it.
        let rewritten = ChainMeasurement {
            verification: intact,
            refusals: vec![OpenRefusal {
                chain_id: "global".into(),
                reason: "rewritten".into(),
                trusted_size: 513,
                observed_size: 513,
                first_rewritten_seq: Some(150),
                first_rewritten_event_id: Some(id),
            }],
        };
        let o = evaluate(&rewritten, false);
        assert_eq!(o.status, ControlStatus::Failing);
        assert_eq!(o.detail["refusedCheckpoints"][0]["firstRewrittenSeq"], 150);
        assert_eq!(o.detail["refusedCheckpoints"][0]["chainId"], "global");
    }
}
