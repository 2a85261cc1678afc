//! The Prometheus metrics. Their names and labels are a contract: alert rules and the operations
//! docs refer to them, so change them only together.
//!
//! Each process has its own registry (not the crate's global one) so that tests can build as many
//! independent apps as they like.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::controls::{ControlId, ControlStatus, Snapshot};

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
        }
    }
}

pub struct Metrics {
    registry: Registry,
    /// Label-less vectors expose nothing until first set, so a replica that has not yet read a
    /// result shows no sample instead of a `0` that an alert would take for a broken chain.
    audit_chain_integrity: IntGaugeVec,
    webhook_dead_letters: IntGaugeVec,
    pub credentials_expiring_soon: IntCounter,
    control_status: IntGaugeVec,
    job_last_success: GaugeVec,
    job_duration: HistogramVec,
    job_runs: IntCounterVec,
    pub encryption_key_loaded: IntGauge,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    pub is_leader: IntGauge,
}

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
            credentials_expiring_soon: IntCounter::new(
                "agentidp_credentials_expiring_soon_total",
                "Active credentials found expiring within the warning window, summed over secrets rotation runs",
            )?,
            control_status: IntGaugeVec::new(
                Opts::new(
                    "agentidp_control_status",
                    "SOC 2 control status, one-hot: 1 for the current status, 0 for the others",
                ),
                &["control", "status"],
            )?,
            job_last_success: GaugeVec::new(
                Opts::new(
                    "agentidp_job_last_success_timestamp_seconds",
                    "Unix time of the job's latest successful run in this process",
                ),
                &["job"],
            )?,
            job_duration: HistogramVec::new(
                HistogramOpts::new("agentidp_job_duration_seconds", "Job run duration")
                    .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0]),
                &["job"],
            )?,
            job_runs: IntCounterVec::new(
                Opts::new("agentidp_job_runs_total", "Job runs by result"),
                &["job", "result"],
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
            registry,
        };
        m.registry
            .register(Box::new(m.audit_chain_integrity.clone()))?;
        m.registry
            .register(Box::new(m.webhook_dead_letters.clone()))?;
        m.registry
            .register(Box::new(m.credentials_expiring_soon.clone()))?;
        m.registry.register(Box::new(m.control_status.clone()))?;
        m.registry.register(Box::new(m.job_last_success.clone()))?;
        m.registry.register(Box::new(m.job_duration.clone()))?;
        m.registry.register(Box::new(m.job_runs.clone()))?;
        m.registry
            .register(Box::new(m.encryption_key_loaded.clone()))?;
        m.registry.register(Box::new(m.http_requests.clone()))?;
        m.registry.register(Box::new(m.http_duration.clone()))?;
        m.registry.register(Box::new(m.is_leader.clone()))?;
        Ok(m)
    }

    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
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
                _ => {}
            }
        }
    }
}
