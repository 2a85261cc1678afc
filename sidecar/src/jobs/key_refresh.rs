//! Loads the encryption keys at start-up and re-reads them on a schedule, on every replica, so a
//! key rotated in Vault (and the old keys of the rotation) reaches every database session without
//! a restart. Failures are retried with exponential backoff; the keys already in use stay in use
//! meanwhile.

use std::sync::Arc;

use cron::Schedule;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::RetryPolicy;
use crate::db::Db;
use crate::jobs::{instrumented, next_firing, JobError};
use crate::key::{KeySource, KeyState, SessionKeys};
use crate::metrics::{Job, Metrics};

pub const ENABLED_MESSAGE: &str =
    "EncryptionService enabled — sensitive columns encrypted at rest (SOC 2 CC6.1)";

pub struct KeyRefresher {
    source: KeySource,
    db: Arc<Db>,
    metrics: Arc<Metrics>,
    state: watch::Sender<KeyState>,
    schedule: Schedule,
    retry: RetryPolicy,
}

impl KeyRefresher {
    pub fn new(
        source: KeySource,
        db: Arc<Db>,
        metrics: Arc<Metrics>,
        state: watch::Sender<KeyState>,
        schedule: Schedule,
        retry: RetryPolicy,
    ) -> KeyRefresher {
        KeyRefresher {
            source,
            db,
            metrics,
            state,
            schedule,
            retry,
        }
    }

    /// One attempt: on success the database sessions get the keys if they changed; on failure the
    /// error is published and the keys in use are kept. Returns whether it succeeded.
    pub async fn refresh_once(&self) -> bool {
        instrumented(&self.metrics, Job::KeyRefresh, async {
            match self.source.fetch().await {
                Ok(keys) => {
                    let previous = self.db.session_keys();
                    if previous.as_ref() != Some(&keys) {
                        self.db.use_keys(&keys)?;
                        self.log_change(previous.as_ref(), &keys);
                    }
                    self.metrics.encryption_key_loaded.set(1);
                    let key = keys.key;
                    // Only a change of the current key wakes the CC6.1 job; a routine re-read of
                    // the same key is not news, and old keys do not change its verdict.
                    self.state.send_if_modified(|s| {
                        let changed =
                            s.key.as_ref() != Some(&key) || s.last_error.is_some() || !s.attempted;
                        s.key = Some(key);
                        s.origin = Some(self.source.kind());
                        s.last_error = None;
                        s.attempted = true;
                        changed
                    });
                    Ok(())
                }
                Err(e) => {
                    // A Vault that cannot be reached, or is sealed, says nothing about the key:
                    // the gauge keeps the last answer that did. Any other failure is Vault (or
                    // the key file) refusing the key, so the key in use is no longer vouched for,
                    // even though the sessions keep it so that encryption goes on.
                    if !e.is_transient() {
                        self.metrics.encryption_key_loaded.set(0);
                    }
                    let e = Arc::new(e);
                    tracing::warn!(
                        error = %e,
                        key_in_use = self.state.borrow().key.is_some(),
                        "cannot load the encryption key"
                    );
                    self.state.send_if_modified(|s| {
                        let changed =
                            s.last_error.as_ref().map(|old| old.to_string()) != Some(e.to_string());
                        s.last_error = Some(e.clone());
                        s.attempted = true;
                        changed
                    });
                    Err(JobError::Key(e))
                }
            }
        })
        .await
    }

    fn log_change(&self, previous: Option<&SessionKeys>, keys: &SessionKeys) {
        let source = self.source.kind().as_str();
        let key_id = keys.key.id();
        let old_key_ids = keys.old_key_ids();
        match previous {
            None => tracing::info!(source, %key_id, old_key_ids, "{ENABLED_MESSAGE}"),
            Some(previous) if previous.key != keys.key => tracing::info!(
                source,
                old_key_id = %previous.key.id(),
                %key_id,
                old_key_ids,
                "encryption key rotated; database sessions recycled with the new key"
            ),
            Some(_) => tracing::info!(
                source,
                %key_id,
                old_key_ids,
                "encryption old keys changed; database sessions recycled with them"
            ),
        }
    }

    /// Runs until cancelled. `last_ok` is the outcome of the start-up attempt, which decides
    /// whether the loop begins by waiting for the schedule or by retrying.
    pub async fn run(self, mut last_ok: bool, cancel: CancellationToken) {
        let mut attempt: u32 = 0;
        loop {
            let delay = if last_ok {
                attempt = 0;
                let now = chrono::Utc::now();
                match next_firing(&[&self.schedule], now) {
                    Some((_, at)) => (at - now).to_std().unwrap_or_default(),
                    None => {
                        tracing::warn!("KEY_REFRESH_SCHEDULE has no future firing; the key is no longer re-read");
                        return;
                    }
                }
            } else {
                let d = self.retry.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::info!(
                    retry_in_ms = d.as_millis(),
                    attempt,
                    "retrying the encryption key load"
                );
                d
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return,
            }
            last_ok = self.refresh_once().await;
        }
    }
}
