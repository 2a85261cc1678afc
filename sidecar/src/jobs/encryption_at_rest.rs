//! CC6.1 Encryption at Rest: a valid key is loaded into the database sessions, and the extension's
//! census of the four sensitive columns finds no plaintext and nothing the sessions' keys (the
//! current one and, during a rotation, the old ones) cannot decrypt.

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controls::{ControlId, ControlStatus, Outcome};
use crate::jobs::{run_check, run_scheduled, Check, JobContext, JobError};
use crate::key::KeyState;
use crate::metrics::Job;

const CONTROL: ControlId = ControlId::EncryptionAtRest;

pub struct EncryptionAtRest;

pub struct Measurement {
    /// The key's state when the check ran.
    pub key: KeyState,
    /// Taken only when the key alone would pass: without a vouched-for key the census adds
    /// nothing to the verdict.
    pub census: Option<Census>,
}

impl Check for EncryptionAtRest {
    const CONTROL: ControlId = CONTROL;
    type Measurement = Measurement;

    async fn measure(&self, ctx: &JobContext) -> Result<Measurement, JobError> {
        let key = ctx.key_state.borrow().clone();
        let census = if evaluate(&key).status == ControlStatus::Passing {
            Some(census(ctx).await?)
        } else {
            None
        };
        Ok(Measurement { key, census })
    }

    fn evaluate(&self, m: &Measurement) -> Outcome {
        let outcome = evaluate(&m.key);
        match m.census {
            Some(census) => with_census(outcome, census),
            None => outcome,
        }
    }
}

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

/// What `agentidp.agentidp_encryption_status()` counts over the four sensitive columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub plaintext: i64,
    pub undecryptable: i64,
}

/// A loaded key is not enough: a plaintext value at rest (written before encryption was on, or
/// with the trigger disabled) or one no configured key decrypts fails the control.
pub fn with_census(key_outcome: Outcome, census: Census) -> Outcome {
    if key_outcome.status != ControlStatus::Passing {
        return key_outcome;
    }
    let status = if census.plaintext == 0 && census.undecryptable == 0 {
        ControlStatus::Passing
    } else {
        ControlStatus::Failing
    };
    let mut detail = key_outcome.detail;
    detail["plaintextValues"] = json!(census.plaintext);
    detail["undecryptableValues"] = json!(census.undecryptable);
    Outcome::new(status, detail)
}

async fn census(ctx: &JobContext) -> Result<Census, JobError> {
    let client = ctx.db.client().await?;
    let row = client
        .query_one(
            "SELECT coalesce(sum(plaintext), 0)::bigint, coalesce(sum(undecryptable), 0)::bigint \
               FROM agentidp.agentidp_encryption_status()",
            &[],
        )
        .await?;
    Ok(Census {
        plaintext: row.try_get(0)?,
        undecryptable: row.try_get(1)?,
    })
}

pub async fn run_once(ctx: &JobContext) -> Result<(), JobError> {
    run_check(ctx, EncryptionAtRest).await
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
    fn plaintext_or_undecryptable_values_fail_a_loaded_key() {
        let passing = Outcome::new(ControlStatus::Passing, json!({ "keyLoaded": true }));
        let clean = Census {
            plaintext: 0,
            undecryptable: 0,
        };
        assert_eq!(
            with_census(passing.clone(), clean).status,
            ControlStatus::Passing
        );
        let plaintext = with_census(
            passing.clone(),
            Census {
                plaintext: 3,
                ..clean
            },
        );
        assert_eq!(plaintext.status, ControlStatus::Failing);
        assert_eq!(plaintext.detail["plaintextValues"], 3);
        assert_eq!(plaintext.detail["keyLoaded"], true);
        let undecryptable = Census {
            undecryptable: 1,
            ..clean
        };
        assert_eq!(
            with_census(passing, undecryptable).status,
            ControlStatus::Failing
        );
        let unknown = Outcome::new(ControlStatus::Unknown, json!({}));
        assert_eq!(with_census(unknown, clean).status, ControlStatus::Unknown);
    }

    #[test]
    fn the_check_adds_the_census_only_when_it_was_taken() {
        let loaded = KeyState {
            key: Some(key()),
            origin: Some(KeyOrigin::File),
            configured: true,
            attempted: true,
            last_error: None,
        };
        let with = EncryptionAtRest.evaluate(&Measurement {
            key: loaded.clone(),
            census: Some(Census {
                plaintext: 2,
                undecryptable: 0,
            }),
        });
        assert_eq!(with.status, ControlStatus::Failing);
        assert_eq!(with.detail["plaintextValues"], 2);
        assert_eq!(with.detail["undecryptableValues"], 0);
        let without = EncryptionAtRest.evaluate(&Measurement {
            key: KeyState::default(),
            census: None,
        });
        assert_eq!(without, evaluate(&KeyState::default()));
        assert!(without.detail.get("plaintextValues").is_none());
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
