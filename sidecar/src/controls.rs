//! The five SOC 2 controls and the `agentidp.control_status` table that holds their status.
//!
//! Status lives in the table, not in process memory, so that every replica serves the same
//! answer and a new leader carries on where the old one stopped.

use axum::body::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

/// In the order the OpenAPI spec lists them; the response keeps this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlId {
    EncryptionAtRest,
    TlsEnforcement,
    AuditLogIntegrity,
    SecretsRotation,
    WebhookDeadLetters,
}

impl ControlId {
    pub const ALL: [ControlId; 5] = [
        ControlId::EncryptionAtRest,
        ControlId::TlsEnforcement,
        ControlId::AuditLogIntegrity,
        ControlId::SecretsRotation,
        ControlId::WebhookDeadLetters,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ControlId::EncryptionAtRest => "CC6.1",
            ControlId::TlsEnforcement => "CC6.7",
            ControlId::AuditLogIntegrity => "CC7.2",
            ControlId::SecretsRotation => "CC9.2",
            ControlId::WebhookDeadLetters => "CC7.1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ControlId::EncryptionAtRest => "Encryption at Rest",
            ControlId::TlsEnforcement => "TLS Enforcement",
            ControlId::AuditLogIntegrity => "Audit Log Integrity",
            ControlId::SecretsRotation => "Secrets Rotation",
            ControlId::WebhookDeadLetters => "Webhook Dead-Letter Monitoring",
        }
    }

    fn parse(id: &str) -> Option<ControlId> {
        ControlId::ALL.into_iter().find(|c| c.as_str() == id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlStatus {
    Passing,
    Failing,
    Unknown,
}

impl ControlStatus {
    pub const ALL: [ControlStatus; 3] = [
        ControlStatus::Passing,
        ControlStatus::Failing,
        ControlStatus::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ControlStatus::Passing => "passing",
            ControlStatus::Failing => "failing",
            ControlStatus::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> ControlStatus {
        ControlStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(ControlStatus::Unknown)
    }
}

/// What a job concluded about its control; `detail` is stored for operators, never served.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: ControlStatus,
    pub detail: serde_json::Value,
    /// The database time the check measured at, when the check itself uses `last_checked` as the
    /// end of what it has seen (CC9.2's expiry window): then `last_checked` must be exactly that
    /// time, not the later time of the write. `None`: the write's own `now()`.
    pub checked_at: Option<DateTime<Utc>>,
}

impl Outcome {
    pub fn new(status: ControlStatus, detail: serde_json::Value) -> Outcome {
        Outcome {
            status,
            detail,
            checked_at: None,
        }
    }

    pub fn checked_at(self, at: DateTime<Utc>) -> Outcome {
        Outcome {
            checked_at: Some(at),
            ..self
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("agentidp.control_status has no row for {0}; the extension seeds the five controls")]
    MissingRow(&'static str),
}

/// Stamps `last_checked` with the database clock so that replicas with skewed clocks agree: the
/// write's `now()`, or the outcome's `checked_at` (also the database's), which never moves it back.
pub async fn record(
    client: &impl GenericClient,
    id: ControlId,
    outcome: &Outcome,
) -> Result<(), RecordError> {
    let updated = client
        .execute(
            "UPDATE agentidp.control_status \
             SET status = $2, detail = $3, \
                 last_checked = CASE WHEN $4::timestamptz IS NULL THEN now() \
                                     ELSE greatest(last_checked, $4) END \
             WHERE control_id = $1",
            &[
                &id.as_str(),
                &outcome.status.as_str(),
                &outcome.detail,
                &outcome.checked_at,
            ],
        )
        .await?;
    if updated == 0 {
        return Err(RecordError::MissingRow(id.as_str()));
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
pub struct ControlRecord {
    pub id: ControlId,
    pub status: ControlStatus,
    pub last_checked: DateTime<Utc>,
    /// CC7.1's `detail.depth`, so every replica can expose the dead-letter gauge.
    pub dead_letter_depth: Option<i64>,
    /// CC9.2's `detail.expiringSoon`, so every replica can expose the expiring-credentials gauge.
    pub expiring_soon: Option<i64>,
}

/// The five controls as served, with the response body rendered once per refresh so the hot path
/// only clones a reference-counted buffer.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub controls: Vec<ControlRecord>,
    body: Bytes,
}

#[derive(Serialize)]
struct ControlJson {
    id: &'static str,
    name: &'static str,
    status: ControlStatus,
    #[serde(rename = "lastChecked")]
    last_checked: String,
}

#[derive(Serialize)]
struct ControlsJson {
    controls: Vec<ControlJson>,
}

impl Snapshot {
    /// Before the table has been read: nothing is known, and `since` (the process start) is the
    /// only honest timestamp there is.
    pub fn unknown(since: DateTime<Utc>) -> Snapshot {
        Snapshot::from_records(Vec::new(), since)
    }

    /// Orders the rows as the spec does; a control without a row reads as `unknown` at `fallback`.
    pub fn from_records(records: Vec<ControlRecord>, fallback: DateTime<Utc>) -> Snapshot {
        let controls: Vec<ControlRecord> = ControlId::ALL
            .into_iter()
            .map(|id| {
                records
                    .iter()
                    .find(|r| r.id == id)
                    .cloned()
                    .unwrap_or(ControlRecord {
                        id,
                        status: ControlStatus::Unknown,
                        last_checked: fallback,
                        dead_letter_depth: None,
                        expiring_soon: None,
                    })
            })
            .collect();
        let json = ControlsJson {
            controls: controls
                .iter()
                .map(|c| ControlJson {
                    id: c.id.as_str(),
                    name: c.id.name(),
                    status: c.status,
                    last_checked: c.last_checked.to_rfc3339_opts(SecondsFormat::Millis, true),
                })
                .collect(),
        };
        // Serializing plain strings cannot fail; an empty body would still be caught by tests.
        let body = serde_json::to_vec(&json)
            .map(Bytes::from)
            .unwrap_or_default();
        Snapshot { controls, body }
    }

    pub fn body(&self) -> Bytes {
        self.body.clone()
    }
}

pub async fn read_all(
    client: &impl GenericClient,
) -> Result<Vec<ControlRecord>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT control_id, status, last_checked, detail FROM agentidp.control_status",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let id = ControlId::parse(row.get::<_, &str>(0))?;
            let detail: Option<serde_json::Value> = row.get(3);
            let field = |name: &str| {
                detail
                    .as_ref()
                    .and_then(|d| d.get(name))
                    .and_then(serde_json::Value::as_i64)
            };
            Some(ControlRecord {
                id,
                status: ControlStatus::parse(row.get(1)),
                last_checked: row.get(2),
                dead_letter_depth: (id == ControlId::WebhookDeadLetters)
                    .then(|| field("depth"))
                    .flatten(),
                expiring_soon: (id == ControlId::SecretsRotation)
                    .then(|| field("expiringSoon"))
                    .flatten(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn body_lists_the_five_controls_in_spec_order_with_millisecond_utc_times() {
        let t = Utc.with_ymd_and_hms(2026, 3, 31, 6, 0, 0).unwrap();
        let s = Snapshot::from_records(
            vec![ControlRecord {
                id: ControlId::SecretsRotation,
                status: ControlStatus::Failing,
                last_checked: t,
                dead_letter_depth: None,
                expiring_soon: None,
            }],
            Utc.with_ymd_and_hms(2026, 3, 31, 5, 0, 0).unwrap(),
        );
        let v: serde_json::Value = serde_json::from_slice(&s.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"controls": [
                {"id": "CC6.1", "name": "Encryption at Rest", "status": "unknown", "lastChecked": "2026-03-31T05:00:00.000Z"},
                {"id": "CC6.7", "name": "TLS Enforcement", "status": "unknown", "lastChecked": "2026-03-31T05:00:00.000Z"},
                {"id": "CC7.2", "name": "Audit Log Integrity", "status": "unknown", "lastChecked": "2026-03-31T05:00:00.000Z"},
                {"id": "CC9.2", "name": "Secrets Rotation", "status": "failing", "lastChecked": "2026-03-31T06:00:00.000Z"},
                {"id": "CC7.1", "name": "Webhook Dead-Letter Monitoring", "status": "unknown", "lastChecked": "2026-03-31T05:00:00.000Z"},
            ]})
        );
    }

    #[test]
    fn parse_round_trips() {
        for id in ControlId::ALL {
            assert_eq!(ControlId::parse(id.as_str()), Some(id));
        }
        for s in ControlStatus::ALL {
            assert_eq!(ControlStatus::parse(s.as_str()), s);
        }
        assert_eq!(ControlStatus::parse("bogus"), ControlStatus::Unknown);
    }
}
