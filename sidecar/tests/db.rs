//! Against a real PostgreSQL with pg_agentidp installed, named by `AGENTIDP_TEST_DATABASE_URL`
//! (a superuser, on a database these tests may write to: they update `agentidp.control_status`,
//! add and remove rows in `credentials` and `webhook_dead_letters`, append to `audit_events`,
//! and take the leader lock).
//!
//! Without the variable the tests print a skip notice and pass, except under CI (`CI` set), where
//! a missing database is a failure rather than a silent skip.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentidp_sidecar::app::app;
use agentidp_sidecar::controls::{self, ControlId, ControlStatus, Outcome, Snapshot};
use agentidp_sidecar::db::{self, ApiBackend, Db};
use agentidp_sidecar::jobs::{self, JobContext};
use agentidp_sidecar::key::{EncryptionKey, KeyOrigin, KeyState, SessionKeys};
use agentidp_sidecar::leader::{self, JOBS_LOCK_KEY};
use agentidp_sidecar::metrics::Metrics;
use agentidp_sidecar::settings::Config;
use agentidp_sidecar::snapshot::{self, SnapshotCell};
use agentidp_sidecar::state::AppState;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const SECRET: &str = "test-hs256-secret-that-is-long-enough-0123456789";

/// The tests share one database and its five control rows; they take turns.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn database_url() -> Option<String> {
    match std::env::var("AGENTIDP_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "AGENTIDP_TEST_DATABASE_URL is not set: CI must run the sidecar's database tests \
             against a PostgreSQL with pg_agentidp installed"
        ),
        _ => {
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: set AGENTIDP_TEST_DATABASE_URL (a superuser URL of a database with \
                 pg_agentidp installed) to run the sidecar's database tests"
            );
            None
        }
    }
}

macro_rules! require_database {
    () => {
        match database_url() {
            Some(url) => url,
            None => return,
        }
    };
}

fn connect(url: &str) -> Arc<Db> {
    Arc::new(Db::new(url.parse().unwrap(), db::tls_connector(None).unwrap(), 4).unwrap())
}

fn key(hex: &str) -> EncryptionKey {
    EncryptionKey::from_hex(hex, "test").unwrap()
}

fn config(url: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = [
        ("DATABASE_URL", url),
        ("JWT_HS256_SECRET", SECRET),
        ("ENCRYPTION_KEY_FILE", "/dev/null"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    vars.remove("AGENTIDP_TEST_DATABASE_URL");
    Config::from_map(&vars).unwrap()
}

fn context(url: &str, db: Arc<Db>, extra: &[(&str, &str)], key_state: KeyState) -> JobContext {
    let (_tx, key_state) = watch::channel(key_state);
    JobContext {
        db,
        metrics: Arc::new(Metrics::new().unwrap()),
        key_state,
        config: Arc::new(config(url, extra)),
    }
}

/// The id of the key a pooled session encrypts with. Asked of the extension, not read from the
/// setting: with the library preloaded, the setting shows the key's id, not the key.
async fn session_key_id(db: &Db) -> Option<String> {
    let client = db.client().await.unwrap();
    client
        .query_opt(
            "SELECT key_id FROM agentidp.agentidp_encryption_key_ids() WHERE key_role = 'current'",
            &[],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

fn key_id(hex: &str) -> Option<String> {
    Some(key(hex).id().to_string())
}

/// `key` alone in every pooled session, no rotation in progress.
fn use_key(db: &Db, hex: &str) {
    db.use_keys(&SessionKeys {
        key: key(hex),
        old_keys: Vec::new(),
    })
    .unwrap();
}

async fn control(db: &Db, id: ControlId) -> (String, Value) {
    let client = db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT status, coalesce(detail, 'null'::jsonb) FROM agentidp.control_status WHERE control_id = $1",
            &[&id.as_str()],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn pooled_sessions_carry_the_key_and_a_rotation_recycles_them() {
    let url = require_database!();
    let db = connect(&url);
    assert_eq!(
        session_key_id(&db).await,
        None,
        "no key before one is loaded"
    );

    use_key(&db, KEY_A);
    assert_eq!(session_key_id(&db).await, key_id(KEY_A));

    // A session checked out across the rotation finishes with the old key and is not reused.
    let busy = db.client().await.unwrap();
    use_key(&db, KEY_B);
    drop(busy);
    for _ in 0..4 {
        assert_eq!(session_key_id(&db).await, key_id(KEY_B));
    }

    let client = db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('application_name'), \
                    (SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid())",
            &[&KEY_B],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "agentidp-sidecar");
    assert_eq!(
        row.get::<_, i64>(1),
        0,
        "the key must never be statement text"
    );
}

#[tokio::test]
async fn the_snapshot_and_gauges_follow_the_control_table() {
    let url = require_database!();
    let _turn = SERIAL.lock().await;
    let db = connect(&url);
    let outcome = Outcome::new(
        ControlStatus::Failing,
        json!({"depth": 250, "threshold": 100}),
    );
    controls::record(
        &**db.client().await.unwrap(),
        ControlId::WebhookDeadLetters,
        &outcome,
    )
    .await
    .unwrap();

    let cell = SnapshotCell::new(Snapshot::unknown(Utc::now()));
    let metrics = Metrics::new().unwrap();
    snapshot::refresh(&db, &cell, &metrics).await.unwrap();
    let snap = cell.get();
    let cc71 = snap
        .controls
        .iter()
        .find(|c| c.id == ControlId::WebhookDeadLetters)
        .unwrap();
    assert_eq!(cc71.status, ControlStatus::Failing);
    assert_eq!(cc71.dead_letter_depth, Some(250));
    assert!(Utc::now() - cc71.last_checked < chrono::Duration::minutes(1));
    let text = String::from_utf8_lossy(&metrics.render().unwrap()).into_owned();
    assert!(text.contains("agentidp_webhook_dead_letters 250"), "{text}");
    assert!(text.contains(r#"agentidp_control_status{control="CC7.1",status="failing"} 1"#));
    assert_eq!(snap.controls.len(), 5);
}

#[tokio::test]
async fn secrets_rotation_fails_on_an_expired_active_credential() {
    let url = require_database!();
    let _turn = SERIAL.lock().await;
    let db = connect(&url);
    // secret_hash is encrypted by the extension's trigger, which refuses plaintext without a key.
    use_key(&db, KEY_A);
    let org = format!("sidecar-test-{}", uuid::Uuid::new_v4());
    let client = db.client().await.unwrap();
    let insert = "INSERT INTO agentidp.credentials (org_id, secret_hash, status, expires_at) \
                  VALUES ($1, 'x', $2, now() + make_interval(days => $3))";
    client
        .execute(insert, &[&org, &"active", &3i32])
        .await
        .unwrap();
    client
        .execute(insert, &[&org, &"revoked", &-3i32])
        .await
        .unwrap();
    let ctx = context(&url, db.clone(), &[], KeyState::default());

    jobs::secrets_rotation::run_once(&ctx).await.unwrap();
    let before_expiry = control(&db, ControlId::SecretsRotation).await;
    assert!(before_expiry.1["expiringSoon"].as_i64().unwrap() >= 1);

    client
        .execute(insert, &[&org, &"active", &-1i32])
        .await
        .unwrap();
    jobs::secrets_rotation::run_once(&ctx).await.unwrap();
    let (status, detail) = control(&db, ControlId::SecretsRotation).await;
    client
        .execute(
            "DELETE FROM agentidp.credentials WHERE org_id = $1",
            &[&org],
        )
        .await
        .unwrap();

    assert_eq!(status, "failing", "{detail}");
    assert!(detail["expiredActive"].as_i64().unwrap() >= 1);
    // Only this test's rows could have made it fail before the expired one was added, and the
    // revoked, long-expired credential must not count.
    if before_expiry.1["expiredActive"] == 0 {
        assert_eq!(before_expiry.0, "passing");
    }
}

/// `agentidp_credentials_expiring_soon_total` counts each credential once, when it enters the
/// window: not again on the next run, nor in a restarted process, nor twice when two replicas
/// run at once; and the window's stretch between runs is kept in the database.
#[tokio::test]
async fn a_credential_entering_the_expiry_window_is_counted_once() {
    let url = require_database!();
    let _turn = SERIAL.lock().await;
    let db = connect(&url);
    use_key(&db, KEY_A);
    let org = format!("sidecar-test-{}", uuid::Uuid::new_v4());
    let client = db.client().await.unwrap();
    let ctx = context(&url, db.clone(), &[], KeyState::default());
    let entered = |ctx: &JobContext| ctx.metrics.credentials_entered_expiry_window.get();
    // Whatever an earlier test or a first evaluation left to count, counted now.
    jobs::secrets_rotation::run_once(&ctx).await.unwrap();

    let before = entered(&ctx);
    jobs::secrets_rotation::run_once(&ctx).await.unwrap();
    let rerun = entered(&ctx) - before;

    // Created inside the window (expires in 3 days), and one far from it.
    let insert = "INSERT INTO agentidp.credentials (org_id, secret_hash, expires_at, created_at) \
                  VALUES ($1, 'x', now() + make_interval(days => $2), now() - make_interval(days => $3))";
    client.execute(insert, &[&org, &3i32, &0i32]).await.unwrap();
    client
        .execute(insert, &[&org, &30i32, &0i32])
        .await
        .unwrap();
    let before = entered(&ctx);
    jobs::secrets_rotation::run_once(&ctx).await.unwrap();
    let created_inside = entered(&ctx) - before;
    let (_, detail) = control(&db, ControlId::SecretsRotation).await;

    // A restarted process (fresh metrics) carries on from the database's last run.
    let restarted = context(&url, db.clone(), &[], KeyState::default());
    jobs::secrets_rotation::run_once(&restarted).await.unwrap();
    let after_restart = entered(&restarted);

    // Time catching up: a credential created long ago, due in 6 days, entered the window a day
    // ago; put the previous run two days back, as after a long outage. (The earlier rows go, or
    // the one created inside the window would count again: it too is newer than that run.)
    client
        .execute(
            "DELETE FROM agentidp.credentials WHERE org_id = $1",
            &[&org],
        )
        .await
        .unwrap();
    client
        .execute(insert, &[&org, &6i32, &20i32])
        .await
        .unwrap();
    client
        .execute(
            "UPDATE agentidp.control_status SET last_checked = now() - interval '2 days' \
              WHERE control_id = 'CC9.2'",
            &[],
        )
        .await
        .unwrap();
    let before = entered(&restarted);
    jobs::secrets_rotation::run_once(&restarted).await.unwrap();
    let crossed = entered(&restarted) - before;

    // Two replicas that both think they lead: one of them counts the new credential.
    client.execute(insert, &[&org, &2i32, &0i32]).await.unwrap();
    let (a, b) = (entered(&ctx), entered(&restarted));
    let (ra, rb) = tokio::join!(
        jobs::secrets_rotation::run_once(&ctx),
        jobs::secrets_rotation::run_once(&restarted)
    );
    let concurrent = entered(&ctx) - a + entered(&restarted) - b;
    client
        .execute(
            "DELETE FROM agentidp.credentials WHERE org_id = $1",
            &[&org],
        )
        .await
        .unwrap();

    ra.unwrap();
    rb.unwrap();
    assert_eq!(rerun, 0, "nothing entered between two runs");
    assert_eq!(
        created_inside, 1,
        "the credential created inside the window"
    );
    assert!(detail["expiringSoon"].as_i64().unwrap() >= 1, "{detail}");
    assert_eq!(after_restart, 0, "a restart does not count again");
    assert_eq!(crossed, 1, "the credential the window reached is counted");
    assert_eq!(concurrent, 1, "two leaders count it once between them");
}

#[tokio::test]
async fn dead_letters_beyond_the_threshold_fail_the_control() {
    let url = require_database!();
    let _turn = SERIAL.lock().await;
    let db = connect(&url);
    let client = db.client().await.unwrap();
    let baseline: i64 = client
        .query_one(
            "SELECT count(*) FROM agentidp.webhook_dead_letters WHERE resolved_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let threshold = (baseline + 1).to_string();
    let ctx = context(
        &url,
        db.clone(),
        &[("WEBHOOK_DEAD_LETTER_THRESHOLD", &threshold)],
        KeyState::default(),
    );
    let marker = uuid::Uuid::new_v4();
    for _ in 0..2 {
        client
            .execute(
                "INSERT INTO agentidp.webhook_dead_letters (event_id, last_error) VALUES ($1, 'test')",
                &[&marker],
            )
            .await
            .unwrap();
    }
    jobs::webhook_dead_letters::run_once(&ctx).await.unwrap();
    let (failing, detail) = control(&db, ControlId::WebhookDeadLetters).await;
    client
        .execute(
            "UPDATE agentidp.webhook_dead_letters SET resolved_at = now() WHERE event_id = $1",
            &[&marker],
        )
        .await
        .unwrap();
    jobs::webhook_dead_letters::run_once(&ctx).await.unwrap();
    let (passing, _) = control(&db, ControlId::WebhookDeadLetters).await;
    client
        .execute(
            "DELETE FROM agentidp.webhook_dead_letters WHERE event_id = $1",
            &[&marker],
        )
        .await
        .unwrap();

    assert_eq!(failing, "failing", "{detail}");
    assert_eq!(detail["depth"], baseline + 2);
    assert_eq!(passing, "passing");
}

/// A check for the driver's test: fails to measure when told to, else measures 7.
struct Scripted {
    fail: bool,
}

impl jobs::Check for Scripted {
    const CONTROL: ControlId = ControlId::TlsEnforcement;
    type Measurement = i64;

    async fn measure(&self, _ctx: &JobContext) -> Result<i64, jobs::JobError> {
        if self.fail {
            Err(controls::RecordError::MissingRow("scripted").into())
        } else {
            Ok(7)
        }
    }

    fn evaluate(&self, m: &i64) -> Outcome {
        Outcome::new(ControlStatus::Failing, json!({ "measured": m }))
    }
}

/// `run_check` records the evaluation of a measurement, and `unknown` with the error when the
/// measurement fails, handing the error back either way.
#[tokio::test]
async fn the_check_driver_records_the_verdict_or_unknown() {
    let url = require_database!();
    let _turn = SERIAL.lock().await;
    let db = connect(&url);
    let ctx = context(&url, db.clone(), &[], KeyState::default());

    let failed = jobs::run_check(&ctx, Scripted { fail: true }).await;
    let unknown = control(&db, ControlId::TlsEnforcement).await;
    jobs::run_check(&ctx, Scripted { fail: false })
        .await
        .unwrap();
    let recorded = control(&db, ControlId::TlsEnforcement).await;
    // Leave CC6.7 as its own job would.
    let _ = jobs::tls_enforcement::run_once(&ctx).await;

    let error = failed.unwrap_err().to_string();
    assert!(error.contains("scripted"), "{error}");
    assert_eq!(unknown, ("unknown".to_owned(), json!({ "error": error })));
    assert_eq!(recorded, ("failing".to_owned(), json!({ "measured": 7 })));
}

#[tokio::test]
async fn tls_and_encryption_controls_are_recorded() {
    let url = require_database!();
    let _turn = SERIAL.lock().await;
    let db = connect(&url);
    let ctx = context(&url, db.clone(), &[], KeyState::default());
    jobs::tls_enforcement::run_once(&ctx).await.unwrap();
    let (status, detail) = control(&db, ControlId::TlsEnforcement).await;
    assert_eq!(
        status, "failing",
        "development mode never passes CC6.7: {detail}"
    );
    assert!(detail["databaseSsl"].is_string(), "{detail}");
    assert!(detail["databaseMinProtocol"].is_string(), "{detail}");

    let loaded = KeyState {
        key: Some(key(KEY_A)),
        origin: Some(KeyOrigin::Vault),
        last_error: None,
        attempted: true,
        configured: true,
    };
    use_key(&db, KEY_A);
    let ctx = context(&url, db.clone(), &[], loaded);
    jobs::encryption_at_rest::run_once(&ctx).await.unwrap();
    let (status, detail) = control(&db, ControlId::EncryptionAtRest).await;
    assert_eq!(status, "passing", "{detail}");
    assert_eq!(detail["plaintextValues"], 0, "{detail}");
    assert!(!detail.to_string().contains(KEY_A));

    // A plaintext value slipped in with the encryption trigger off fails CC6.1.
    let client = db.client().await.unwrap();
    let org = format!("sidecar-test-{}", uuid::Uuid::new_v4());
    client
        .batch_execute(&format!(
            "BEGIN;
             ALTER TABLE agentidp.credentials DISABLE TRIGGER zz_agentidp_encrypt;
             INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('{org}', 'plaintext');
             ALTER TABLE agentidp.credentials ENABLE ALWAYS TRIGGER zz_agentidp_encrypt;
             COMMIT;"
        ))
        .await
        .unwrap();
    jobs::encryption_at_rest::run_once(&ctx).await.unwrap();
    let (status, detail) = control(&db, ControlId::EncryptionAtRest).await;
    client
        .execute(
            "DELETE FROM agentidp.credentials WHERE org_id = $1",
            &[&org],
        )
        .await
        .unwrap();
    assert_eq!(status, "failing", "{detail}");
    assert_eq!(detail["plaintextValues"], 1, "{detail}");
}

#[tokio::test]
async fn chain_verification_runs_over_the_api_and_as_a_job() {
    let url = require_database!();
    let _turn = SERIAL.lock().await;
    let db = connect(&url);
    // A window no other test writes into: a random second in 1999.
    let second = i64::from(uuid::Uuid::new_v4().as_u128() as u32 % 31_000_000);
    let from =
        Utc.with_ymd_and_hms(1999, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(second);
    let client = db.client().await.unwrap();
    for i in 0..3 {
        client
            .execute(
                "INSERT INTO agentidp.audit_events (occurred_at, action, outcome, org_id, metadata) \
                 VALUES ($1, 'sidecar.test', 'success', 'sidecar-test', $2)",
                &[&from, &json!({"i": i})],
            )
            .await
            .unwrap();
    }

    let result = db.verify_chain(Some(from), Some(from)).await.unwrap();
    assert!(result.verified, "{result:?}");
    assert_eq!(result.checked_count, 3, "{result:?}");
    db.ping().await.unwrap();

    let config = config(&url, &[]);
    let state = AppState::new(
        &config,
        db.clone(),
        Arc::new(SnapshotCell::new(Snapshot::unknown(Utc::now()))),
        Arc::new(Metrics::new().unwrap()),
    );
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"client_id": "db-test", "scope": "audit:read", "exp": Utc::now().timestamp() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let stamp = from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let response = app(state)
        .oneshot(
            Request::get(format!(
                "/api/v1/audit/verify?fromDate={stamp}&toDate={stamp}"
            ))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        body,
        json!({"verified": true, "checkedCount": 3, "brokenAtEventId": null, "fromDate": stamp, "toDate": stamp})
    );

    let ctx = context(&url, db.clone(), &[], KeyState::default());
    jobs::chain_verification::run_once(&ctx, false)
        .await
        .unwrap();
    jobs::chain_verification::run_once(&ctx, true)
        .await
        .unwrap();
    let (status, detail) = control(&db, ControlId::AuditLogIntegrity).await;
    assert_eq!(status, "passing", "{detail}");
    assert_eq!(detail["fullWalk"], true);
}

#[tokio::test]
async fn replicas_share_one_verify_budget_per_client() {
    let url = require_database!();
    let _turn = SERIAL.lock().await;
    // Two replicas: two apps, each with its own pool and state, over one database.
    let replica = || {
        app(AppState::new(
            &config(&url, &[]),
            connect(&url),
            Arc::new(SnapshotCell::new(Snapshot::unknown(Utc::now()))),
            Arc::new(Metrics::new().unwrap()),
        ))
    };
    let replicas = [replica(), replica()];
    // A client no earlier run has used, and a range holding no event, so each request is cheap.
    let client_id = format!("db-test-{}", uuid::Uuid::new_v4());
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"client_id": client_id, "scope": "audit:read", "exp": Utc::now().timestamp() + 60}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let uri = "/api/v1/audit/verify?fromDate=1998-01-01T00:00:00Z&toDate=1998-01-01T00:00:00Z";
    let send = |router: axum::Router| {
        let token = token.clone();
        async move {
            let r = router
                .oneshot(
                    Request::get(uri)
                        .header("authorization", format!("Bearer {token}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let remaining: u32 = r.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (r.status(), remaining)
        }
    };

    // 40 requests at once, alternating between the replicas: 30 pass in all, whichever they hit.
    let answers: Vec<_> = (0..40)
        .map(|i| tokio::spawn(send(replicas[i % 2].clone())))
        .collect();
    let mut passed: Vec<u32> = Vec::new();
    let mut refused = 0;
    for answer in answers {
        match answer.await.unwrap() {
            (StatusCode::OK, remaining) => passed.push(remaining),
            (StatusCode::TOO_MANY_REQUESTS, 0) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    passed.sort_unstable();
    // Each pass saw its own place in the window: 29 down to 0, each once.
    assert_eq!(passed, (0..30).collect::<Vec<u32>>());
    assert_eq!(refused, 10);
    // The 31st in sequence is refused by either replica.
    for router in &replicas {
        assert_eq!(
            send(router.clone()).await,
            (StatusCode::TOO_MANY_REQUESTS, 0)
        );
    }
    // Another client has its own budget.
    let db = connect(&url);
    let window = db
        .hit_rate_window(
            agentidp_sidecar::limiter::AUDIT_VERIFY_ROUTE,
            &format!("{client_id}-other"),
            30,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(window.count, 1);
    let left = (window.ends_at - Utc::now()).num_milliseconds();
    assert!((59_000..=60_000).contains(&left), "{left}");
}

#[tokio::test]
async fn a_window_that_ended_restarts_and_is_pruned() {
    let url = require_database!();
    let db = connect(&url);
    let client_id = format!("db-test-{}", uuid::Uuid::new_v4());
    let hit = || db.hit_rate_window("test-route", &client_id, 2, Duration::from_millis(300));
    let first = hit().await.unwrap();
    assert_eq!(first.count, 1);
    assert_eq!(hit().await.unwrap(), db::RateWindow { count: 2, ..first });
    // Refused requests are counted up to the limit + 1 and no further.
    assert_eq!(hit().await.unwrap().count, 3);
    assert_eq!(hit().await.unwrap(), db::RateWindow { count: 3, ..first });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = hit().await.unwrap();
    assert_eq!(second.count, 1);
    assert!(second.ends_at > first.ends_at);

    let rows = |db: Arc<Db>, client_id: String| async move {
        let client = db.client().await.unwrap();
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM agentidp.api_rate_windows WHERE client_id = $1",
                &[&client_id],
            )
            .await
            .unwrap()
            .get(0);
        n
    };
    db.prune_rate_windows().await.unwrap();
    assert_eq!(
        rows(db.clone(), client_id.clone()).await,
        1,
        "a live window was pruned"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(db.prune_rate_windows().await.unwrap() >= 1);
    assert_eq!(
        rows(db.clone(), client_id.clone()).await,
        0,
        "an ended window was kept"
    );
}

struct Replica {
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    stepped_down: Arc<AtomicUsize>,
}

fn replica(url: &str) -> Replica {
    let metrics = Arc::new(Metrics::new().unwrap());
    let cancel = CancellationToken::new();
    let stepped_down = Arc::new(AtomicUsize::new(0));
    let counter = stepped_down.clone();
    let task = tokio::spawn(leader::run(
        connect(url),
        metrics.clone(),
        Duration::from_millis(200),
        cancel.clone(),
        move |jobs: CancellationToken| {
            let counter = counter.clone();
            async move {
                jobs.cancelled().await;
                counter.fetch_add(1, Ordering::SeqCst);
            }
        },
    ));
    Replica {
        metrics,
        cancel,
        task,
        stepped_down,
    }
}

async fn leaders(replicas: &[&Replica]) -> Vec<usize> {
    replicas
        .iter()
        .enumerate()
        .filter(|(_, r)| r.metrics.is_leader.get() == 1)
        .map(|(i, _)| i)
        .collect()
}

async fn eventually_one_leader(replicas: &[&Replica]) -> usize {
    for _ in 0..100 {
        let l = leaders(replicas).await;
        if l.len() == 1 {
            // Stable: still exactly one a few retry periods later.
            tokio::time::sleep(Duration::from_millis(600)).await;
            let again = leaders(replicas).await;
            assert_eq!(again, l, "leadership must not flap or be shared");
            return l[0];
        }
        assert!(l.len() <= 1, "two leaders at once: {l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader emerged");
}

async fn lock_holder(db: &Db) -> Option<i32> {
    let client = db.client().await.unwrap();
    client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1",
            &[&JOBS_LOCK_KEY],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test]
async fn exactly_one_replica_leads_and_a_dead_leader_hands_over() {
    let url = require_database!();
    let _turn = SERIAL.lock().await;
    let admin = connect(&url);
    assert_eq!(
        lock_holder(&admin).await,
        None,
        "another process holds the jobs lock; stop any sidecar on the test database"
    );
    let a = replica(&url);
    let b = replica(&url);
    let first = eventually_one_leader(&[&a, &b]).await;

    // The leader's session dies (as when its pod is killed): the lock goes with it.
    let holder = lock_holder(&admin).await.unwrap();
    admin
        .client()
        .await
        .unwrap()
        .execute("SELECT pg_terminate_backend($1)", &[&holder])
        .await
        .unwrap();
    let leader_replica = [&a, &b][first];
    for _ in 0..50 {
        if leader_replica.stepped_down.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        leader_replica.stepped_down.load(Ordering::SeqCst),
        1,
        "the old leader stopped its jobs"
    );
    eventually_one_leader(&[&a, &b]).await;
    assert_ne!(lock_holder(&admin).await, Some(holder));

    // A graceful shutdown of the leader hands over too.
    let current = eventually_one_leader(&[&a, &b]).await;
    let (leaving, staying) = if current == 0 { (&a, &b) } else { (&b, &a) };
    leaving.cancel.cancel();
    for _ in 0..50 {
        if staying.metrics.is_leader.get() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(staying.metrics.is_leader.get(), 1);
    assert_eq!(leaving.metrics.is_leader.get(), 0);

    a.cancel.cancel();
    b.cancel.cancel();
    a.task.await.unwrap();
    b.task.await.unwrap();
    assert_eq!(
        lock_holder(&admin).await,
        None,
        "shutdown releases the lock"
    );
}
