//! CC6.1 Encryption at Rest: a valid key is loaded into the database sessions. (Checking that the
//! sensitive columns hold no plaintext comes with the extension's inventory of them.)

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controls::{ControlId, ControlStatus, Outcome};
use crate::jobs::{record, run_scheduled, JobContext, JobError};
use crate::key::KeyState;
use crate::metrics::Job;

const CONTROL: ControlId = ControlId::EncryptionAtRest;

/// A key that cannot be re-read because Vault is down is still in use, but nothing confirms it is
/// the current one: `unknown`, not `passing`. A missing, forbidden or malformed secret is a
/// configuration fault: `failing`.
pub fn evaluate(state: &KeyState) -> Outcome {
    let source = state.origin.map(|o| o.as_str());
    let error = state.last_error.as_ref().map(|e| e.to_string());
    let status = if !state.configured {
        ControlStatus::Failing
    } else if let Some(e) = &state.last_error {
        if e.is_transient() {
            ControlStatus::Unknown
        } else {
            ControlStatus::Failing
        }
    } else if state.key.is_some() {
        ControlStatus::Passing
    } else {
        ControlStatus::Unknown
    };
    Outcome::new(
        status,
        json!({
            "keySourceConfigured": state.configured,
            "keyLoaded": state.key.is_some(),
            "keySource": source,
            "keyId": state.key.as_ref().map(|k| k.id().to_string()),
            "error": error,
        }),
    )
}

pub async fn run_once(ctx: &JobContext) -> Result<(), JobError> {
    let outcome = evaluate(&ctx.key_state.borrow());
    record(ctx, CONTROL, &outcome).await
}

/// Also re-evaluated as soon as the key's state changes, so a Vault outage or recovery shows
/// within seconds, not at the next hourly run.
pub async fn run(ctx: Arc<JobContext>, cancel: CancellationToken) {
    // The start-up run reads the current state, so only later changes should wake the job.
    let mut wake = ctx.key_state.clone();
    wake.mark_unchanged();
    run_scheduled(
        &ctx,
        Job::EncryptionAtRest,
        &[&ctx.config.schedules.encryption_at_rest],
        Some(wake),
        &cancel,
        |_| run_once(&ctx),
    )
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::{EncryptionKey, KeyLoadError, KeyOrigin};

    fn key() -> EncryptionKey {
        EncryptionKey::from_hex(&"ab".repeat(32), "test").unwrap()
    }

    #[test]
    fn statuses() {
        let unconfigured = KeyState {
            attempted: true,
            ..KeyState::default()
        };
        assert_eq!(evaluate(&unconfigured).status, ControlStatus::Failing);

        let pending = KeyState {
            configured: true,
            ..KeyState::default()
        };
        assert_eq!(evaluate(&pending).status, ControlStatus::Unknown);

        let loaded = KeyState {
            key: Some(key()),
            origin: Some(KeyOrigin::Vault),
            configured: true,
            attempted: true,
            last_error: None,
        };
        let o = evaluate(&loaded);
        assert_eq!(o.status, ControlStatus::Passing);
        assert_eq!(o.detail["keySource"], "vault");

        let outage = KeyState {
            last_error: Some(Arc::new(KeyLoadError::VaultUnreachable {
                addr: "http://v".into(),
                reason: "connection refused".into(),
            })),
            ..loaded.clone()
        };
        assert_eq!(evaluate(&outage).status, ControlStatus::Unknown);

        let forbidden = KeyState {
            last_error: Some(Arc::new(KeyLoadError::PermissionDenied {
                path: "secret/data/x".into(),
            })),
            ..loaded.clone()
        };
        assert_eq!(evaluate(&forbidden).status, ControlStatus::Failing);
        let detail = evaluate(&forbidden).detail.to_string();
        assert!(!detail.contains(&"ab".repeat(32)));
    }
}
