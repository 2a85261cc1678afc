//! The transparency log's metrics, set by the leader's sealing job. Names and labels are a
//! contract with alerts.yml and docs/incident-response.md.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::transparency_sql::Progress;

pub struct TransparencyMetrics {
    checkpoint_age: GaugeVec,
    checkpoint_tree_size: IntGaugeVec,
    events_unsigned: IntGaugeVec,
    events_unsealed: IntGauge,
    checkpoint_refused: IntGaugeVec,
    witness_failures: IntCounterVec,
    witness_last_cosignature: GaugeVec,
    publish_failures: IntCounterVec,
}

impl TransparencyMetrics {
    pub fn register(registry: &Registry) -> Result<TransparencyMetrics, prometheus::Error> {
        let m = TransparencyMetrics {
            checkpoint_age: GaugeVec::new(
                Opts::new(
                    "agentidp_checkpoint_age_seconds",
                    "Seconds since the chain's latest signed checkpoint, as of the leader's latest sealing run; absent while none was ever signed",
                ),
                &["chain_id"],
            )?,
            checkpoint_tree_size: IntGaugeVec::new(
                Opts::new(
                    "agentidp_checkpoint_tree_size",
                    "Events covered by the chain's latest signed checkpoint",
                ),
                &["chain_id"],
            )?,
            events_unsigned: IntGaugeVec::new(
                Opts::new(
                    "agentidp_events_unsigned",
                    "Events of the chain that no signed checkpoint covers yet",
                ),
                &["chain_id"],
            )?,
            events_unsealed: IntGauge::new(
                "agentidp_events_unsealed",
                "Events of every chain not yet sealed into its Merkle tree",
            )?,
            checkpoint_refused: IntGaugeVec::new(
                Opts::new(
                    "agentidp_checkpoint_refused",
                    "1 while the chain's latest seal or signature was refused because the log no longer holds the history already sealed or signed, else 0",
                ),
                &["chain_id"],
            )?,
            witness_failures: IntCounterVec::new(
                Opts::new(
                    "agentidp_witness_failures_total",
                    "Checkpoint submissions to the witness that brought no valid cosignature (unreachable, refused, bad cosignature)",
                ),
                &["witness"],
            )?,
            witness_last_cosignature: GaugeVec::new(
                Opts::new(
                    "agentidp_witness_last_cosignature_timestamp_seconds",
                    "Unix time of the witness's latest valid cosignature, in this process",
                ),
                &["witness"],
            )?,
            publish_failures: IntCounterVec::new(
                Opts::new(
                    "agentidp_checkpoint_publish_failures_total",
                    "Signed checkpoints that could not be published to a sink",
                ),
                &["sink"],
            )?,
        };
        registry.register(Box::new(m.checkpoint_age.clone()))?;
        registry.register(Box::new(m.checkpoint_tree_size.clone()))?;
        registry.register(Box::new(m.events_unsigned.clone()))?;
        registry.register(Box::new(m.events_unsealed.clone()))?;
        registry.register(Box::new(m.checkpoint_refused.clone()))?;
        registry.register(Box::new(m.witness_failures.clone()))?;
        registry.register(Box::new(m.witness_last_cosignature.clone()))?;
        registry.register(Box::new(m.publish_failures.clone()))?;
        Ok(m)
    }

    /// The gauges from every chain's progress, when each was last signed, and which chains the
    /// sealer refuses.
    pub fn observe(&self, progress: &[Progress], refused: &BTreeSet<String>, now: DateTime<Utc>) {
        let mut unsealed = 0;
        for p in progress {
            let chain = [p.chain_id.as_str()];
            unsealed += (p.head_seq - p.sealed).max(0);
            self.events_unsigned
                .with_label_values(&chain)
                .set((p.head_seq - p.signed).max(0));
            self.checkpoint_tree_size
                .with_label_values(&chain)
                .set(p.signed);
            // Absent rather than infinite for a chain never signed: the text format's +Inf is
            // not what every client writes or reads, and the alert tells "never" apart anyway.
            if let Some(at) = p.signed_at {
                let age = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
                self.checkpoint_age.with_label_values(&chain).set(age);
            }
            self.checkpoint_refused
                .with_label_values(&chain)
                .set(i64::from(refused.contains(&p.chain_id)));
        }
        for chain in refused {
            self.checkpoint_refused.with_label_values(&[chain]).set(1);
        }
        self.events_unsealed.set(unsealed);
    }

    pub fn witness_failed(&self, witness: &str) {
        self.witness_failures.with_label_values(&[witness]).inc();
    }

    pub fn witness_cosigned(&self, witness: &str, at: DateTime<Utc>) {
        // Touch the counter so that a witness that never failed shows 0, not nothing.
        self.witness_failures.with_label_values(&[witness]);
        self.witness_last_cosignature
            .with_label_values(&[witness])
            .set(at.timestamp_millis() as f64 / 1000.0);
    }

    pub fn publish_failed(&self, sink: &str) {
        self.publish_failures.with_label_values(&[sink]).inc();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn progress_becomes_the_gauges_the_alerts_read() {
        let registry = Registry::new();
        let m = TransparencyMetrics::register(&registry).unwrap();
        let now = Utc::now();
        let progress = [
            Progress {
                chain_id: "global".into(),
                head_seq: 120,
                sealed: 100,
                signed: 90,
                signed_at: Some(now - chrono::Duration::seconds(42)),
            },
            Progress {
                chain_id: "org:a".into(),
                head_seq: 5,
                sealed: 5,
                signed: 0,
                signed_at: None,
            },
        ];
        let refused = BTreeSet::from(["org:a".to_owned()]);
        m.observe(&progress, &refused, now);
        let t = text(&registry);
        assert!(t.contains("agentidp_events_unsealed 20\n"), "{t}");
        assert!(
            t.contains("agentidp_events_unsigned{chain_id=\"global\"} 30\n"),
            "{t}"
        );
        assert!(
            t.contains("agentidp_checkpoint_age_seconds{chain_id=\"global\"} 42\n"),
            "{t}"
        );
        assert!(
            !t.contains("agentidp_checkpoint_age_seconds{chain_id=\"org:a\"}"),
            "{t}"
        );
        assert!(
            t.contains("agentidp_checkpoint_refused{chain_id=\"org:a\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("agentidp_checkpoint_refused{chain_id=\"global\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("agentidp_checkpoint_tree_size{chain_id=\"global\"} 90\n"),
            "{t}"
        );
        m.witness_cosigned("w.example", now);
        m.witness_failed("w2.example");
        let t = text(&registry);
        assert!(
            t.contains("agentidp_witness_failures_total{witness=\"w.example\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("agentidp_witness_failures_total{witness=\"w2.example\"} 1\n"),
            "{t}"
        );
    }
}
