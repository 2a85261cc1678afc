//! CC6.7 TLS Enforcement: production mode (so the HTTPS redirect is active) and a database that
//! serves TLS 1.2 or later, checked on this very session.

use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controls::{ControlId, ControlStatus, Outcome};
use crate::jobs::{run_check, run_scheduled, Check, JobContext, JobError};
use crate::metrics::Job;

const CONTROL: ControlId = ControlId::TlsEnforcement;

pub struct TlsEnforcement {
    /// Production mode, which turns the HTTPS redirect on.
    pub production: bool,
}

impl Check for TlsEnforcement {
    const CONTROL: ControlId = CONTROL;
    type Measurement = DatabaseTls;

    async fn measure(&self, ctx: &JobContext) -> Result<DatabaseTls, JobError> {
        inspect(ctx).await
    }

    fn evaluate(&self, db: &DatabaseTls) -> Outcome {
        evaluate(self.production, db)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseTls {
    /// `SHOW ssl`.
    pub ssl: String,
    /// `SHOW ssl_min_protocol_version`.
    pub min_protocol: String,
    /// Whether the checking session itself is encrypted (`pg_stat_ssl`): `ssl = on` alone only
    /// says TLS is offered, not that clients use it.
    pub session_encrypted: bool,
}

pub fn evaluate(production: bool, db: &DatabaseTls) -> Outcome {
    let min_ok = matches!(db.min_protocol.as_str(), "TLSv1.2" | "TLSv1.3");
    let passing = production && db.ssl == "on" && min_ok && db.session_encrypted;
    Outcome::new(
        if passing {
            ControlStatus::Passing
        } else {
            ControlStatus::Failing
        },
        json!({
            "productionMode": production,
            "httpsRedirect": production,
            "databaseSsl": db.ssl,
            "databaseMinProtocol": db.min_protocol,
            "sessionEncrypted": db.session_encrypted,
        }),
    )
}

async fn inspect(ctx: &JobContext) -> Result<DatabaseTls, JobError> {
    let client = ctx.db.client().await?;
    let row = client
        .query_one(
            "SELECT current_setting('ssl'), current_setting('ssl_min_protocol_version'), \
                    coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
            &[],
        )
        .await?;
    Ok(DatabaseTls {
        ssl: row.try_get(0)?,
        min_protocol: row.try_get(1)?,
        session_encrypted: row.try_get(2)?,
    })
}

pub async fn run_once(ctx: &JobContext) -> Result<(), JobError> {
    let production = ctx.config.production;
    run_check(ctx, TlsEnforcement { production }).await
}

pub async fn run(ctx: Arc<JobContext>, cancel: CancellationToken) {
    run_scheduled(
        &ctx,
        Job::TlsEnforcement,
        &[&ctx.config.schedules.tls_enforcement],
        None,
        &cancel,
        |_| run_once(&ctx),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(ssl: &str, min: &str, session: bool) -> DatabaseTls {
        DatabaseTls {
            ssl: ssl.into(),
            min_protocol: min.into(),
            session_encrypted: session,
        }
    }

    #[test]
    fn every_condition_is_required() {
        assert_eq!(
            evaluate(true, &db("on", "TLSv1.2", true)).status,
            ControlStatus::Passing
        );
        assert_eq!(
            evaluate(true, &db("on", "TLSv1.3", true)).status,
            ControlStatus::Passing
        );
        assert_eq!(
            evaluate(false, &db("on", "TLSv1.3", true)).status,
            ControlStatus::Failing
        );
        assert_eq!(
            evaluate(true, &db("off", "TLSv1.2", true)).status,
            ControlStatus::Failing
        );
        assert_eq!(
            evaluate(true, &db("on", "TLSv1.1", true)).status,
            ControlStatus::Failing
        );
        assert_eq!(
            evaluate(true, &db("on", "TLSv1.2", false)).status,
            ControlStatus::Failing
        );
    }
}
