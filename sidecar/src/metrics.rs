//! The Prometheus metrics. Their names and labels are a contract: alert rules and the operations
//! docs refer to them, so change them only together.
//!
//! Each process has its own registry (not the crate's global one) so that tests can build as many
//! independent apps as they like.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::controls::{ControlId, ControlStatus, Snapshot};
use crate::transparency_metrics::TransparencyMetrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// The incremental chain verification (from each chain's checkpoint).
    ChainVerification,
    /// The same job's rarer walk of every chain from its start: its own label, so that an alert
    /// can tell whether the only check behind the checkpoints still completes.
    ChainFullWalk,
    SecretsRotation,
    EncryptionAtRest,
    TlsEnforcement,
    WebhookDeadLetters,
    KeyRefresh,
    /// The transparency log's sealing and signing, every CHECKPOINT_INTERVAL_SECONDS.
    Sealing,
}

impl Job {
    pub fn as_str(self) -> &'static str {
        match self {
            Job::ChainVerification => "chain_verification",
            Job::ChainFullWalk => "chain_full_walk",
            Job::SecretsRotation => "secrets_rotation",
            Job::EncryptionAtRest => "encryption_at_rest",
            Job::TlsEnforcement => "tls_enforcement",
            Job::WebhookDeadLetters => "webhook_dead_letters",
            Job::KeyRefresh => "key_refresh",
            Job::Sealing => "sealing",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// Label-less vectors expose nothing until first set, so a replica that has not yet read a
    /// result shows no sample instead of a `0` that an alert would take for a broken chain.
    audit_chain_integrity: IntGaugeVec,
    webhook_dead_letters: IntGaugeVec,
    credentials_expiring_soon: IntGaugeVec,
    /// Counted on the leader only, by the run that saw each credential enter the window.
    pub credentials_entered_expiry_window: IntCounter,
    control_status: IntGaugeVec,
    job_last_success: GaugeVec,
    job_duration: HistogramVec,
    job_runs: IntCounterVec,
    pub encryption_key_loaded: IntGauge,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    pub is_leader: IntGauge,
    vault_token_expiry: GaugeVec,
    vault_token_renewal_extends: IntGaugeVec,
    pub transparency: TransparencyMetrics,
    /// The last scrape's text and when it was encoded, served again for [`RENDER_TTL`]. Holding the
    /// lock while encoding makes concurrent scrapes share one encoding.
    rendered: Mutex<Option<(Instant, Bytes)>>,
    render_ttl: Duration,
}

/// How long one encoding of the registry is served. Encoding every histogram and labelled series
/// costs far more than serving bytes; Prometheus scrapes every 15 s or so, and a scrape a quarter
/// of a second old tells it the same.
const RENDER_TTL: Duration = Duration::from_millis(250);

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            audit_chain_integrity: IntGaugeVec::new(
                Opts::new(
                    "agentidp_audit_chain_integrity",
                    "1 when the latest audit chain verification found the chain intact, 0 when it found a break",
                ),
                &[],
            )?,
            webhook_dead_letters: IntGaugeVec::new(
                Opts::new(
                    "agentidp_webhook_dead_letters",
                    "Unresolved webhook deliveries in the dead-letter table",
                ),
                &[],
            )?,
            credentials_expiring_soon: IntGaugeVec::new(
                Opts::new(
                    "agentidp_credentials_expiring_soon",
                    "Active credentials expiring within CREDENTIAL_EXPIRY_WARNING_DAYS, as the latest secrets rotation run found",
                ),
                &[],
            )?,
            credentials_entered_expiry_window: IntCounter::new(
                "agentidp_credentials_expiring_soon_total",
                "Active credentials that entered the CREDENTIAL_EXPIRY_WARNING_DAYS window, each counted once, by the secrets rotation run after it entered",
            )?,
            control_status: IntGaugeVec::new(
                Opts::new(
                    "agentidp_control_status",
                    "SOC 2 control status, one-hot: 1 for the current status, 0 for the others",
                ),
                &["control", "status"],
            )?,
            // `job_name`, not `job`: Prometheus sets `job` on every series it scrapes (the scrape
            // job's name) and would rename ours to `exported_job`, out of the alerts' sight.
            job_last_success: GaugeVec::new(
                Opts::new(
                    "agentidp_job_last_success_timestamp_seconds",
                    "Unix time of the job's latest successful run in this process",
                ),
                &["job_name"],
            )?,
            job_duration: HistogramVec::new(
                HistogramOpts::new("agentidp_job_duration_seconds", "Job run duration")
                    .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0]),
                &["job_name"],
            )?,
            job_runs: IntCounterVec::new(
                Opts::new("agentidp_job_runs_total", "Job runs by result"),
                &["job_name", "result"],
            )?,
            encryption_key_loaded: IntGauge::new(
                "agentidp_encryption_key_loaded",
                "1 when the database sessions carry a key the key source still vouches for; 0 before the first load and once the source refuses the key (deleted, forbidden, invalid). An unreachable or sealed Vault leaves it as it was",
            )?,
            http_requests: IntCounterVec::new(
                Opts::new("agentidp_http_requests_total", "HTTP requests served"),
                &["route", "method", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "agentidp_http_request_duration_seconds",
                    "HTTP request duration",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]),
                &["route", "method"],
            )?,
            is_leader: IntGauge::new(
                "agentidp_is_leader",
                "1 while this replica holds the job leadership lock",
            )?,
            vault_token_expiry: GaugeVec::new(
                Opts::new(
                    "agentidp_vault_token_expiry_timestamp_seconds",
                    "Unix time at which the sidecar's Vault token ends, as Vault last reported it; absent without Vault and for a token without a TTL",
                ),
                &[],
            )?,
            vault_token_renewal_extends: IntGaugeVec::new(
                Opts::new(
                    "agentidp_vault_token_renewal_extends",
                    "1 while renewing the sidecar's Vault token extends its life; 0 when the token is not renewable or is near its maximum TTL, so that it will end; absent without Vault and for a token without a TTL",
                ),
                &[],
            )?,
            transparency: TransparencyMetrics::register(&registry)?,
            registry,
            rendered: Mutex::new(None),
            render_ttl: RENDER_TTL,
        };
        m.registry
            .register(Box::new(m.audit_chain_integrity.clone()))?;
        m.registry
            .register(Box::new(m.webhook_dead_letters.clone()))?;
        m.registry
            .register(Box::new(m.credentials_expiring_soon.clone()))?;
        m.registry
            .register(Box::new(m.credentials_entered_expiry_window.clone()))?;
        m.registry.register(Box::new(m.control_status.clone()))?;
        m.registry.register(Box::new(m.job_last_success.clone()))?;
        m.registry.register(Box::new(m.job_duration.clone()))?;
        m.registry.register(Box::new(m.job_runs.clone()))?;
        m.registry
            .register(Box::new(m.encryption_key_loaded.clone()))?;
        m.registry.register(Box::new(m.http_requests.clone()))?;
        m.registry.register(Box::new(m.http_duration.clone()))?;
        m.registry.register(Box::new(m.is_leader.clone()))?;
        m.registry
            .register(Box::new(m.vault_token_expiry.clone()))?;
        m.registry
            .register(Box::new(m.vault_token_renewal_extends.clone()))?;
        Ok(m)
    }

    /// The registry in the text exposition format, at most [`RENDER_TTL`] old.
    pub fn render(&self) -> Result<Bytes, prometheus::Error> {
        let mut rendered = self.rendered.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, text)) = &*rendered {
            if at.elapsed() < self.render_ttl {
                return Ok(text.clone());
            }
        }
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        let text = Bytes::from(buf);
        *rendered = Some((Instant::now(), text.clone()));
        Ok(text)
    }

    pub fn record_http(&self, route: &str, method: &str, status: &str, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, status])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    pub fn record_job(&self, job: Job, ok: bool, seconds: f64, now_unix: f64) {
        let name = job.as_str();
        self.job_duration
            .with_label_values(&[name])
            .observe(seconds);
        let result = if ok { "success" } else { "error" };
        self.job_runs.with_label_values(&[name, result]).inc();
        if ok {
            self.job_last_success
                .with_label_values(&[name])
                .set(now_unix);
        }
    }

    /// What Vault last said of the sidecar's token: when it ends, and whether renewing it still
    /// pushes that back. Alerts read the two together: a token that will end, and soon.
    pub fn record_vault_token(&self, expires_at_unix: f64, renewal_extends: bool) {
        self.vault_token_expiry
            .with_label_values::<&str>(&[])
            .set(expires_at_unix);
        self.vault_token_renewal_extends
            .with_label_values::<&str>(&[])
            .set(i64::from(renewal_extends));
    }

    /// Every replica derives its control gauges from the shared table, so they agree whichever
    /// replica a scrape reaches.
    pub fn observe_snapshot(&self, snapshot: &Snapshot) {
        for control in &snapshot.controls {
            for status in ControlStatus::ALL {
                self.control_status
                    .with_label_values(&[control.id.as_str(), status.as_str()])
                    .set(i64::from(control.status == status));
            }
            match (control.id, control.status) {
                (ControlId::AuditLogIntegrity, ControlStatus::Passing) => self
                    .audit_chain_integrity
                    .with_label_values::<&str>(&[])
                    .set(1),
                (ControlId::AuditLogIntegrity, ControlStatus::Failing) => self
                    .audit_chain_integrity
                    .with_label_values::<&str>(&[])
                    .set(0),
                (ControlId::WebhookDeadLetters, _) => {
                    if let Some(depth) = control.dead_letter_depth {
                        self.webhook_dead_letters
                            .with_label_values::<&str>(&[])
                            .set(depth);
                    }
                }
                (ControlId::SecretsRotation, _) => {
                    if let Some(n) = control.expiring_soon {
                        self.credentials_expiring_soon
                            .with_label_values::<&str>(&[])
                            .set(n);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::ControlRecord;

    fn cc92(expiring_soon: Option<i64>) -> Snapshot {
        Snapshot::from_records(
            vec![ControlRecord {
                id: ControlId::SecretsRotation,
                status: ControlStatus::Passing,
                last_checked: chrono::Utc::now(),
                dead_letter_depth: None,
                expiring_soon,
            }],
            chrono::Utc::now(),
        )
    }

    #[test]
    fn the_expiring_gauge_follows_the_table_and_the_counter_only_the_leaders_runs() {
        let mut metrics = Metrics::new().expect("registers");
        metrics.render_ttl = Duration::ZERO;
        let text =
            |m: &Metrics| String::from_utf8_lossy(&m.render().expect("encodes")).into_owned();
        assert!(
            !text(&metrics).contains("\nagentidp_credentials_expiring_soon "),
            "absent until known"
        );
        metrics.observe_snapshot(&cc92(Some(4)));
        assert!(text(&metrics).contains("\nagentidp_credentials_expiring_soon 4\n"));
        // An `unknown` result has no count: the last known one stays.
        metrics.observe_snapshot(&cc92(None));
        assert!(text(&metrics).contains("\nagentidp_credentials_expiring_soon 4\n"));
        metrics.observe_snapshot(&cc92(Some(0)));
        let t = text(&metrics);
        assert!(
            t.contains("\nagentidp_credentials_expiring_soon 0\n"),
            "{t}"
        );
        assert!(
            t.contains("\nagentidp_credentials_expiring_soon_total 0\n"),
            "{t}"
        );
        metrics.credentials_entered_expiry_window.inc_by(2);
        assert!(text(&metrics).contains("\nagentidp_credentials_expiring_soon_total 2\n"));
    }

    #[test]
    fn a_scrape_is_encoded_at_most_once_per_ttl() {
        let mut metrics = Metrics::new().expect("registers");
        let first = metrics.render().expect("encodes");
        metrics.is_leader.set(1);
        assert_eq!(
            metrics.render().expect("encodes"),
            first,
            "within the TTL, the same bytes"
        );
        metrics.render_ttl = Duration::ZERO;
        let text = metrics.render().expect("encodes");
        assert!(
            String::from_utf8_lossy(&text).contains("\nagentidp_is_leader 1\n"),
            "after it, the change shows"
        );
    }
}
