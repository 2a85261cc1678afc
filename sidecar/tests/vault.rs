//! The keys' way from Vault into the database sessions, and the renewal of the sidecar's token,
//! through the real vaultrs client against a `wiremock` double that speaks Vault's KV v2 and token
//! HTTP API.

#![allow(clippy::unwrap_used)]

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentidp_sidecar::backoff::RetryPolicy;
use agentidp_sidecar::controls::ControlStatus;
use agentidp_sidecar::db::{self, Db};
use agentidp_sidecar::jobs::encryption_at_rest;
use agentidp_sidecar::jobs::key_refresh::KeyRefresher;
use agentidp_sidecar::key::{
    EncryptionKey, KeyLoadError, KeyProvider, KeySource, KeyState, SessionKeys,
};
use agentidp_sidecar::metrics::Metrics;
use agentidp_sidecar::settings::VaultConfig;
use agentidp_sidecar::vault::{TokenRenewer, VaultKeySource};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "hvs.test-token";
const SECRET_PATH: &str = "/v1/secret/data/agentidp/encryption-key";
const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const KEY_C: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn vault_config(addr: &str) -> VaultConfig {
    VaultConfig {
        addr: addr.to_owned(),
        token: TOKEN.into(),
        mount: "secret".to_owned(),
        path: "agentidp/encryption-key".to_owned(),
        field: "encryptionKey".to_owned(),
        old_keys_field: "previousEncryptionKey".to_owned(),
    }
}

/// What `vault kv get` reads: the KV v2 envelope, secret under `data.data`.
fn envelope(data: Value) -> Value {
    json!({
        "request_id": "6a4a5ca9-6c44-4b8e-9cf3-4e7a7d7b7b7b",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": {
            "data": data,
            "metadata": {
                "created_time": "2026-03-31T06:00:00.000000Z",
                "custom_metadata": null,
                "deletion_time": "",
                "destroyed": false,
                "version": 3
            }
        },
        "wrap_info": null,
        "warnings": null,
        "auth": null,
        "mount_type": "kv"
    })
}

fn secret(key: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(envelope(json!({ "encryptionKey": key })))
}

fn vault_error(status: u16, errors: &[&str]) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "errors": errors }))
}

fn read_secret() -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path(SECRET_PATH))
        .and(header("X-Vault-Token", TOKEN))
}

async fn fetch_keys(server: &MockServer) -> Result<SessionKeys, KeyLoadError> {
    let source = VaultKeySource::new(vault_config(&server.uri())).unwrap();
    source.fetch().await
}

async fn fetch(server: &MockServer) -> Result<String, KeyLoadError> {
    fetch_keys(server)
        .await
        .map(|k| k.key.expose_hex().to_owned())
}

fn hex(keys: &[EncryptionKey]) -> Vec<&str> {
    keys.iter().map(EncryptionKey::expose_hex).collect()
}

#[tokio::test]
async fn reads_the_key_from_the_kv2_envelope_with_the_token() {
    let server = MockServer::start().await;
    read_secret()
        .respond_with(secret(KEY_A))
        .expect(1)
        .mount(&server)
        .await;
    let keys = fetch_keys(&server).await.unwrap();
    assert_eq!(keys.key.expose_hex(), KEY_A);
    assert!(keys.old_keys.is_empty(), "no rotation in progress");
}

#[tokio::test]
async fn a_rotation_in_progress_brings_its_old_keys() {
    let server = MockServer::start().await;
    read_secret()
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "encryptionKey": KEY_B,
            "previousEncryptionKey": format!("{KEY_A}, {}", KEY_C.to_ascii_uppercase()),
        }))))
        .mount(&server)
        .await;
    let keys = fetch_keys(&server).await.unwrap();
    assert_eq!(keys.key.expose_hex(), KEY_B);
    assert_eq!(hex(&keys.old_keys), [KEY_A, KEY_C]);
}

#[tokio::test]
async fn a_bad_old_key_is_refused_by_field_and_entry_without_echoing_it() {
    let bad = &KEY_C[..60];
    for (old, message) in [
        (
            json!(format!("{KEY_A},{bad}")),
            "Invalid encryption key in Vault secret secret/data/agentidp/encryption-key field previousEncryptionKey entry 2 (got 60 characters): expected a 64-character hex string",
        ),
        (
            json!([KEY_A]),
            "Invalid encryption key in Vault secret secret/data/agentidp/encryption-key field previousEncryptionKey (not a string): expected a 64-character hex string",
        ),
    ] {
        let server = MockServer::start().await;
        read_secret()
            .respond_with(ResponseTemplate::new(200).set_body_json(envelope(
                json!({ "encryptionKey": KEY_B, "previousEncryptionKey": old }),
            )))
            .mount(&server)
            .await;
        let e = fetch_keys(&server).await.unwrap_err();
        assert_eq!(e.to_string(), message);
        assert!(!e.is_transient());
        let text = format!("{e} {e:?}");
        assert!(!text.contains(bad) && !text.contains(KEY_A) && !text.contains(KEY_B));
    }
}

#[tokio::test]
async fn missing_secret_is_a_failing_not_found() {
    let server = MockServer::start().await;
    read_secret()
        .respond_with(vault_error(404, &[]))
        .mount(&server)
        .await;
    let e = fetch(&server).await.unwrap_err();
    assert!(matches!(e, KeyLoadError::SecretNotFound { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "Vault secret secret/data/agentidp/encryption-key was not found (HTTP 404)"
    );
    assert!(!e.is_transient());
}

#[tokio::test]
async fn permission_denied_names_the_policy_problem() {
    let server = MockServer::start().await;
    read_secret()
        .respond_with(vault_error(
            403,
            &["1 error occurred:\n\t* permission denied\n\n"],
        ))
        .mount(&server)
        .await;
    let e = fetch(&server).await.unwrap_err();
    assert!(matches!(e, KeyLoadError::PermissionDenied { .. }), "{e:?}");
    assert!(e.to_string().contains("permission denied"));
    assert!(!e.to_string().contains(TOKEN));
    assert!(!e.is_transient());
}

#[tokio::test]
async fn a_malformed_key_is_refused_without_echoing_it() {
    let server = MockServer::start().await;
    let bad = &KEY_A[..62];
    read_secret().respond_with(secret(bad)).mount(&server).await;
    let e = fetch(&server).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "Invalid encryption key in Vault secret secret/data/agentidp/encryption-key field encryptionKey (got 62 characters): expected a 64-character hex string"
    );
    assert!(!e.to_string().contains(bad));
}

#[tokio::test]
async fn a_secret_without_the_field_is_refused() {
    let server = MockServer::start().await;
    read_secret()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(envelope(json!({ "key": KEY_A, "encryptionKey": 42 }))),
        )
        .mount(&server)
        .await;
    let e = fetch(&server).await.unwrap_err();
    assert!(matches!(e, KeyLoadError::FieldMissing { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains(KEY_A));
}

#[tokio::test]
async fn a_sealed_vault_is_transient() {
    let server = MockServer::start().await;
    read_secret()
        .respond_with(vault_error(503, &["Vault is sealed"]))
        .mount(&server)
        .await;
    let e = fetch(&server).await.unwrap_err();
    assert!(
        matches!(e, KeyLoadError::VaultUnavailable { status: 503, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());
}

struct Rig {
    refresher: KeyRefresher,
    state: watch::Receiver<KeyState>,
    db: Arc<Db>,
    metrics: Arc<Metrics>,
}

/// Connections are lazy, so the pool needs no database; its generation shows key swaps.
fn rig(addr: &str, schedule: &str) -> Rig {
    let db = Arc::new(
        Db::new(
            "postgresql://agentidp@127.0.0.1:1/agentidp"
                .parse()
                .unwrap(),
            db::tls_connector(None).unwrap(),
            2,
        )
        .unwrap(),
    );
    let metrics = Arc::new(Metrics::new().unwrap());
    let (tx, state) = watch::channel(KeyState {
        configured: true,
        ..KeyState::default()
    });
    let source = KeySource::new(VaultKeySource::new(vault_config(addr)).unwrap());
    let refresher = KeyRefresher::new(
        source,
        db.clone(),
        metrics.clone(),
        tx,
        cron::Schedule::from_str(schedule).unwrap(),
        RetryPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        },
    );
    Rig {
        refresher,
        state,
        db,
        metrics,
    }
}

async fn wait_for(state: &mut watch::Receiver<KeyState>, what: impl Fn(&KeyState) -> bool) {
    tokio::time::timeout(Duration::from_secs(10), state.wait_for(|s| what(s)))
        .await
        .expect("timed out waiting for the key state")
        .unwrap();
}

fn loaded_hex(s: &KeyState) -> Option<String> {
    s.key.as_ref().map(|k| k.expose_hex().to_owned())
}

#[tokio::test]
async fn an_outage_is_retried_with_backoff_until_vault_recovers() {
    // Reserve a port, then leave it closed: connection refused, a real outage.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut r = rig(&format!("http://{addr}"), "0 0 0 1 1 *");

    assert!(!r.refresher.refresh_once().await);
    {
        let s = r.state.borrow();
        assert!(s.key.is_none());
        assert!(matches!(
            s.last_error.as_deref(),
            Some(KeyLoadError::VaultUnreachable { .. })
        ));
        assert_eq!(
            encryption_at_rest::evaluate(&s).status,
            ControlStatus::Unknown
        );
    }
    assert_eq!(r.metrics.encryption_key_loaded.get(), 0);

    let cancel = CancellationToken::new();
    let task = tokio::spawn(r.refresher.run(false, cancel.clone()));
    tokio::time::sleep(Duration::from_millis(150)).await;

    // Vault comes back on the same address, sealed at first.
    let server = MockServer::builder()
        .listener(std::net::TcpListener::bind(addr).unwrap())
        .start()
        .await;
    read_secret()
        .respond_with(vault_error(503, &["Vault is sealed"]))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    read_secret()
        .respond_with(secret(KEY_A))
        .mount(&server)
        .await;

    wait_for(&mut r.state, |s| s.key.is_some()).await;
    assert_eq!(loaded_hex(&r.state.borrow()).as_deref(), Some(KEY_A));
    assert!(r.state.borrow().last_error.is_none());
    assert_eq!(
        encryption_at_rest::evaluate(&r.state.borrow()).status,
        ControlStatus::Passing
    );
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        3,
        "two sealed answers, then the key"
    );
    assert_eq!(r.db.generation(), 1);
    assert_eq!(r.metrics.encryption_key_loaded.get(), 1);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_a_restart() {
    let server = MockServer::start().await;
    read_secret()
        .respond_with(secret(KEY_A))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    read_secret()
        .respond_with(secret(KEY_B))
        .mount(&server)
        .await;
    // Every second, so the test sees a scheduled re-read quickly.
    let mut r = rig(&server.uri(), "* * * * * *");

    assert!(r.refresher.refresh_once().await);
    assert_eq!(loaded_hex(&r.state.borrow()).as_deref(), Some(KEY_A));
    assert_eq!(r.db.generation(), 1);

    let cancel = CancellationToken::new();
    let task = tokio::spawn(r.refresher.run(true, cancel.clone()));
    wait_for(&mut r.state, |s| loaded_hex(s).as_deref() == Some(KEY_B)).await;
    assert_eq!(
        r.db.generation(),
        2,
        "the pool was recycled for the new key"
    );

    // Re-reading an unchanged key leaves the sessions alone.
    let reads = server.received_requests().await.unwrap().len();
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.received_requests().await.unwrap().len() < reads + 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(r.db.generation(), 2);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_key_in_use() {
    let server = MockServer::start().await;
    read_secret()
        .respond_with(secret(KEY_A))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    read_secret()
        .respond_with(vault_error(403, &["permission denied"]))
        .mount(&server)
        .await;
    let r = rig(&server.uri(), "0 0 0 1 1 *");
    assert!(r.refresher.refresh_once().await);
    assert!(!r.refresher.refresh_once().await);
    let s = r.state.borrow();
    assert_eq!(loaded_hex(&s).as_deref(), Some(KEY_A));
    assert_eq!(r.db.generation(), 1);
    assert_eq!(
        r.db.session_keys()
            .map(|k| k.key.expose_hex().to_owned())
            .as_deref(),
        Some(KEY_A),
        "the sessions keep the key"
    );
    assert_eq!(
        encryption_at_rest::evaluate(&s).status,
        ControlStatus::Failing
    );
    assert_eq!(
        r.metrics.encryption_key_loaded.get(),
        0,
        "Vault no longer vouches for the key in use"
    );
    let text = String::from_utf8_lossy(&r.metrics.render().unwrap()).into_owned();
    assert!(text.contains("agentidp_job_runs_total{job_name=\"key_refresh\",result=\"error\"} 1"));
    assert!(text.contains("agentidp_job_runs_total{job_name=\"key_refresh\",result=\"success\"} 1"));
    assert!(!text.contains(KEY_A));
}

/// Answers each request with the next template, repeating the last one.
struct Sequence {
    answers: Vec<ResponseTemplate>,
    next: AtomicUsize,
}

impl Sequence {
    fn new(answers: Vec<ResponseTemplate>) -> Sequence {
        Sequence {
            answers,
            next: AtomicUsize::new(0),
        }
    }
}

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        self.answers[i.min(self.answers.len() - 1)].clone()
    }
}

#[tokio::test]
async fn the_loaded_gauge_follows_the_latest_answer_about_the_key() {
    let server = MockServer::start().await;
    let rotating = ResponseTemplate::new(200).set_body_json(envelope(json!({
        "encryptionKey": KEY_A,
        "previousEncryptionKey": KEY_C,
    })));
    read_secret()
        .respond_with(Sequence::new(vec![
            secret(KEY_A),
            vault_error(503, &["Vault is sealed"]),
            vault_error(404, &[]),
            vault_error(503, &["Vault is sealed"]),
            rotating,
        ]))
        .mount(&server)
        .await;
    let r = rig(&server.uri(), "0 0 0 1 1 *");
    let gauge = || r.metrics.encryption_key_loaded.get();
    let status = || encryption_at_rest::evaluate(&r.state.borrow()).status;

    assert!(r.refresher.refresh_once().await);
    assert_eq!((gauge(), status()), (1, ControlStatus::Passing));

    // Sealed: nothing is known about the key, which stays in use and loaded.
    assert!(!r.refresher.refresh_once().await);
    assert_eq!((gauge(), status()), (1, ControlStatus::Unknown));

    // The secret is gone: the sessions keep the key, but nothing vouches for it any more.
    assert!(!r.refresher.refresh_once().await);
    assert_eq!((gauge(), status()), (0, ControlStatus::Failing));
    assert!(r.db.session_keys().is_some());

    // Sealed again: still nothing new about the key, so still 0.
    assert!(!r.refresher.refresh_once().await);
    assert_eq!((gauge(), status()), (0, ControlStatus::Unknown));

    // Restored, with a rotation's old key: a change of the old keys alone recycles the sessions.
    assert!(r.refresher.refresh_once().await);
    assert_eq!((gauge(), status()), (1, ControlStatus::Passing));
    assert_eq!(r.db.generation(), 2);
    let keys = r.db.session_keys().unwrap();
    assert_eq!(keys.key.expose_hex(), KEY_A);
    assert_eq!(hex(&keys.old_keys), [KEY_C]);
    assert_eq!(loaded_hex(&r.state.borrow()).as_deref(), Some(KEY_A));

    assert!(r.refresher.refresh_once().await);
    assert_eq!(
        r.db.generation(),
        2,
        "the same keys leave the sessions alone"
    );
}

// --- The token's renewal -------------------------------------------------------------------

const LOOKUP_SELF: &str = "/v1/auth/token/lookup-self";
const RENEW_SELF: &str = "/v1/auth/token/renew-self";

/// `vault token lookup`'s answer. It holds the token itself, as Vault's does.
fn lookup_answer(ttl: u64, renewable: bool) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "request_id": "0f6d2b8a-3c52-4a38-9c0e-5d8c1f6c2a11",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": {
            "accessor": "8609694a-cdbc-db9b-d345-e782dbb562ed",
            "creation_time": 1_774_936_800,
            "creation_ttl": ttl,
            "display_name": "token-agentidp-sidecar",
            "entity_id": "",
            "expire_time": if ttl == 0 { Value::Null } else { json!("2026-03-31T07:00:00.000000Z") },
            "explicit_max_ttl": 0,
            "id": TOKEN,
            "issue_time": "2026-03-31T06:00:00.000000Z",
            "meta": null,
            "num_uses": 0,
            "orphan": false,
            "path": "auth/token/create",
            "policies": ["agentidp-sidecar", "default"],
            "renewable": renewable,
            "ttl": ttl,
            "type": "service"
        },
        "wrap_info": null,
        "warnings": null,
        "auth": null
    }))
}

fn renew_answer(ttl: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "request_id": "7e1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": null,
        "wrap_info": null,
        "warnings": null,
        "auth": {
            "client_token": TOKEN,
            "accessor": "8609694a-cdbc-db9b-d345-e782dbb562ed",
            "policies": ["agentidp-sidecar", "default"],
            "token_policies": ["agentidp-sidecar", "default"],
            "metadata": null,
            "lease_duration": ttl,
            "renewable": true,
            "entity_id": "",
            "token_type": "service",
            "orphan": false,
            "mfa_requirement": null,
            "num_uses": 0
        }
    }))
}

/// The sidecar's own log lines (vaultrs echoes Vault's error texts itself; `main` silences it).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_env_filter("agentidp_sidecar=trace")
                .with_ansi(false)
                .with_writer(move || logs.clone())
                .finish(),
        )
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn renewer(server: &MockServer, metrics: &Arc<Metrics>) -> TokenRenewer {
    TokenRenewer::new(
        &vault_config(&server.uri()),
        RetryPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        },
        metrics.clone(),
    )
    .unwrap()
}

/// The token's gauges as a scrape shows them: seconds until the token ends, and whether renewal
/// extends it; `None` while they are absent.
fn token_gauges(metrics: &Metrics) -> Option<(f64, f64)> {
    let text = String::from_utf8(metrics.render().unwrap().to_vec()).unwrap();
    let value = |name: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let expiry = value("agentidp_vault_token_expiry_timestamp_seconds")?;
    let extends = value("agentidp_vault_token_renewal_extends")?;
    Some((expiry - now.as_secs_f64(), extends))
}

async fn requests_to(server: &MockServer, to: &str) -> usize {
    let requests = server.received_requests().await.unwrap();
    requests.iter().filter(|r| r.url.path() == to).count()
}

async fn wait_for_log(logs: &Logs, line: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !logs.text().contains(line) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line {line:?} in:\n{}", logs.text()));
}

#[tokio::test]
async fn a_renewable_token_is_renewed_when_half_its_ttl_is_left() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(LOOKUP_SELF))
        .and(header("X-Vault-Token", TOKEN))
        .respond_with(lookup_answer(2, true))
        .expect(1)
        .mount(&server)
        .await;
    // The second renewal is capped by the token's maximum TTL.
    Mock::given(method("POST"))
        .and(path(RENEW_SELF))
        .and(header("X-Vault-Token", TOKEN))
        .respond_with(Sequence::new(vec![renew_answer(2), renew_answer(1)]))
        .mount(&server)
        .await;

    let metrics = Arc::new(Metrics::new().unwrap());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(renewer(&server, &metrics).run(cancel.clone()));
    // Renewal waits for half the 2s TTL; a wait can only run late, never early.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        requests_to(&server, RENEW_SELF).await,
        0,
        "renewed too early"
    );
    let (left, extends) = token_gauges(&metrics).expect("the looked-up token's gauges");
    assert!((0.5..=2.0).contains(&left), "{left}s left of a 2s TTL");
    assert_eq!(extends, 1.0);
    wait_for_log(&logs, "near its maximum TTL").await;
    cancel.cancel();
    task.await.unwrap();
    // The capped renewal gave 1s: the token will end, and the gauges say so.
    let (left, extends) = token_gauges(&metrics).expect("the renewed token's gauges");
    assert!(left <= 1.0, "{left}s left of a 1s TTL");
    assert_eq!(extends, 0.0);

    assert_eq!(requests_to(&server, RENEW_SELF).await, 2);
    let text = logs.text();
    assert!(text.contains("the Vault token is renewable"), "{text}");
    assert!(text.contains("Vault token renewed ttl_s=2"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test]
async fn renewal_failures_are_retried_and_logged_without_the_token() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(LOOKUP_SELF))
        .respond_with(Sequence::new(vec![
            vault_error(503, &["Vault is sealed"]),
            lookup_answer(2, true),
        ]))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(RENEW_SELF))
        .respond_with(Sequence::new(vec![
            vault_error(403, &["permission denied", TOKEN]),
            vault_error(500, &[TOKEN]),
            renew_answer(2),
        ]))
        .mount(&server)
        .await;

    let started = std::time::Instant::now();
    let cancel = CancellationToken::new();
    let metrics = Arc::new(Metrics::new().unwrap());
    let task = tokio::spawn(renewer(&server, &metrics).run(cancel.clone()));
    wait_for_log(&logs, "Vault token renewed").await;
    // The first renewal waits for half the TTL (1s); the failed ones are retried with the backoff
    // (20ms, then 40ms), not after another half TTL each, which would take 3s in all.
    assert!(started.elapsed() < Duration::from_millis(2_500));
    cancel.cancel();
    task.await.unwrap();

    assert_eq!(requests_to(&server, RENEW_SELF).await, 3);
    let text = logs.text();
    assert!(
        text.contains("cannot look up the Vault token")
            && text.contains("Vault answered HTTP 503 for auth/token/lookup-self"),
        "{text}"
    );
    assert!(
        text.contains("cannot renew the Vault token")
            && text.contains("Vault denied access to auth/token/renew-self (HTTP 403"),
        "{text}"
    );
    assert!(
        text.contains("Vault answered HTTP 500 for auth/token/renew-self"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test]
async fn a_token_without_ttl_or_not_renewable_is_left_alone() {
    for (ttl, renewable, message) in [
        (0, false, "the Vault token has no TTL: nothing to renew"),
        (3600, false, "the Vault token is not renewable"),
    ] {
        let logs = Logs::default();
        let _capture = logs.capture();
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(LOOKUP_SELF))
            .respond_with(lookup_answer(ttl, renewable))
            .mount(&server)
            .await;
        let metrics = Arc::new(Metrics::new().unwrap());
        // The renewer stops by itself, without a renewal.
        tokio::time::timeout(
            Duration::from_secs(10),
            renewer(&server, &metrics).run(CancellationToken::new()),
        )
        .await
        .unwrap();
        assert_eq!(requests_to(&server, RENEW_SELF).await, 0);
        assert!(logs.text().contains(message), "{}", logs.text());
        match token_gauges(&metrics) {
            // Nothing ends, so nothing for an alert to count down.
            None => assert_eq!(ttl, 0),
            // A token that will end: when, and that renewal will not help.
            Some((left, extends)) => {
                assert!((3590.0..=3600.0).contains(&left), "{left}s left of 3600s");
                assert_eq!(extends, 0.0);
            }
        }
    }
}
