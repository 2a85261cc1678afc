//! The HTTP API against the OpenAPI spec, through `app(state)` with `oneshot`: no socket, no
//! database (a fake backend stands in).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use agentidp_core::chain::BreakKind;
use agentidp_sidecar::app::app;
use agentidp_sidecar::audit_chain::ChainVerification;
use agentidp_sidecar::controls::{ControlId, ControlRecord, ControlStatus, Snapshot};
use agentidp_sidecar::db::{ApiBackend, BoxFuture, DbError, RateWindow};
use agentidp_sidecar::metrics::Metrics;
use agentidp_sidecar::settings::Config;
use agentidp_sidecar::snapshot::SnapshotCell;
use agentidp_sidecar::state::AppState;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

const SECRET: &str = "test-hs256-secret-that-is-long-enough-0123456789";
const RS256_PRIVATE: &str = include_str!("fixtures/test-rs256-private.pem");
const RS256_PUBLIC: &str = include_str!("fixtures/test-rs256-public.pem");
const VERIFY: &str = "/api/v1/audit/verify";
const CONTROLS: &str = "/api/v1/compliance/controls";

type Calls = Arc<Mutex<Vec<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)>>>;
/// The fake's rate-limit table: (route, client) to (window end, count). Shared by clones, as the
/// database is by replicas.
type Windows = Arc<Mutex<HashMap<(String, String), (DateTime<Utc>, u32)>>>;

#[derive(Clone)]
struct FakeBackend {
    result: Result<ChainVerification, String>,
    reachable: bool,
    panics: bool,
    calls: Calls,
    windows: Windows,
    /// When set, counting a request against its rate limit fails with this error.
    rate_limit_error: Option<String>,
}

impl FakeBackend {
    fn intact() -> FakeBackend {
        FakeBackend {
            result: Ok(ChainVerification {
                verified: true,
                checked_count: 18504,
                broken_at_event_id: None,
                break_kind: None,
                broken_chain_id: None,
            }),
            reachable: true,
            panics: false,
            calls: Calls::default(),
            windows: Windows::default(),
            rate_limit_error: None,
        }
    }
}

impl ApiBackend for FakeBackend {
    fn verify_chain(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> BoxFuture<'_, Result<ChainVerification, DbError>> {
        self.calls.lock().unwrap().push((from, to));
        assert!(!self.panics, "backend exploded");
        let result = self.result.clone().map_err(DbError::new);
        Box::pin(async move { result })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>> {
        let reachable = self.reachable;
        Box::pin(async move {
            if reachable {
                Ok(())
            } else {
                Err(DbError::new("connection refused"))
            }
        })
    }

    /// What the database's upsert does, in memory.
    fn hit_rate_window<'a>(
        &'a self,
        route: &'a str,
        client_id: &'a str,
        limit: u32,
        window: std::time::Duration,
    ) -> BoxFuture<'a, Result<RateWindow, DbError>> {
        let result = match &self.rate_limit_error {
            Some(e) => Err(DbError::new(e)),
            None => {
                let now = Utc::now();
                let mut windows = self.windows.lock().unwrap();
                let w = windows
                    .entry((route.to_owned(), client_id.to_owned()))
                    .or_insert((now, 0));
                if w.0 <= now {
                    *w = (now + window, 1);
                } else {
                    w.1 = (w.1 + 1).min(limit + 1);
                }
                Ok(RateWindow {
                    count: w.1,
                    ends_at: w.0,
                })
            }
        };
        Box::pin(async move { result })
    }

    fn prune_rate_windows(&self) -> BoxFuture<'_, Result<u64, DbError>> {
        let now = Utc::now();
        let mut windows = self.windows.lock().unwrap();
        let before = windows.len();
        windows.retain(|_, w| w.0 > now);
        let gone = (before - windows.len()) as u64;
        Box::pin(async move { Ok(gone) })
    }
}

fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert(
        "DATABASE_URL".into(),
        "postgresql://agentidp@localhost/agentidp?sslmode=require".into(),
    );
    vars.insert("ENCRYPTION_KEY_FILE".into(), "/dev/null".into());
    if !extra.iter().any(|(k, _)| k.starts_with("JWT_RS256")) {
        vars.insert("JWT_HS256_SECRET".into(), SECRET.into());
    }
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_map(&vars).unwrap()
}

struct Harness {
    router: Router,
    metrics: Arc<Metrics>,
    snapshot: Arc<SnapshotCell>,
}

fn harness_with(extra: &[(&str, &str)], backend: FakeBackend) -> Harness {
    let config = config(extra);
    let metrics = Arc::new(Metrics::new().unwrap());
    let snapshot = Arc::new(SnapshotCell::new(Snapshot::unknown(
        Utc.with_ymd_and_hms(2026, 3, 31, 5, 0, 0).unwrap(),
    )));
    let state = AppState::new(
        &config,
        Arc::new(backend),
        snapshot.clone(),
        metrics.clone(),
    );
    Harness {
        router: app(state).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000)))),
        metrics,
        snapshot,
    }
}

fn harness() -> Harness {
    harness_with(&[], FakeBackend::intact())
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn hs256(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn good_claims() -> Value {
    json!({"client_id": "client-a", "scope": "agents:read audit:read", "exp": now() + 600})
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(router: &Router, uri: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    send(router, request.body(Body::empty()).unwrap()).await
}

async fn verify_with_token(router: &Router, token: &str) -> Reply {
    get(router, VERIFY, &[("authorization", &bearer(token))]).await
}

fn unauthorized_body() -> Value {
    json!({"code": "UNAUTHORIZED", "message": "A valid Bearer token is required to access this resource."})
}

#[tokio::test]
async fn verify_returns_the_chain_result_without_echoing_absent_dates() {
    let h = harness();
    let r = verify_with_token(&h.router, &hs256(good_claims())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        json!({"verified": true, "checkedCount": 18504, "brokenAtEventId": null})
    );
    assert_eq!(r.header("x-ratelimit-limit"), "30");
    assert_eq!(r.header("x-ratelimit-remaining"), "29");
    let reset: i64 = r.header("x-ratelimit-reset").parse().unwrap();
    assert!((now()..=now() + 61).contains(&reset), "{reset}");
}

#[tokio::test]
async fn verify_passes_the_range_and_echoes_it() {
    let backend = FakeBackend {
        result: Ok(ChainVerification {
            verified: false,
            checked_count: 1203,
            broken_at_event_id: Some(uuid::Uuid::from_u128(
                0xc4d5e6f7_a8b9_0123_cdef_456789012345,
            )),
            break_kind: Some(BreakKind::ContentEdited),
            broken_chain_id: Some("org:org-1".into()),
        }),
        ..FakeBackend::intact()
    };
    let calls = backend.calls.clone();
    let h = harness_with(&[], backend);
    let r = get(
        &h.router,
        &format!(
            "{VERIFY}?fromDate=2026-03-01T00:00:00.000Z&toDate=2026-04-01T01:59:59.999%2B02:00"
        ),
        &[("authorization", &bearer(&hs256(good_claims())))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({
            "verified": false,
            "checkedCount": 1203,
            "brokenAtEventId": "c4d5e6f7-a8b9-0123-cdef-456789012345",
            "breakKind": "content_edited",
            "brokenChainId": "org:org-1",
            "fromDate": "2026-03-01T00:00:00.000Z",
            "toDate": "2026-03-31T23:59:59.999Z"
        })
    );
    let calls = calls.lock().unwrap();
    assert_eq!(
        calls[0].0,
        Some(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(
        calls[0].1.unwrap().to_rfc3339(),
        "2026-03-31T23:59:59.999+00:00"
    );
}

#[tokio::test]
async fn verify_echoes_only_the_bound_supplied() {
    let h = harness();
    let r = get(
        &h.router,
        &format!("{VERIFY}?toDate=2026-03-31T23:59:59.999Z"),
        &[("authorization", &bearer(&hs256(good_claims())))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["toDate"], "2026-03-31T23:59:59.999Z");
    assert!(body.get("fromDate").is_none(), "{body}");
}

#[tokio::test]
async fn verify_rejects_missing_and_malformed_authorization() {
    let h = harness();
    let r = get(&h.router, VERIFY, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json(), unauthorized_body());
    assert_eq!(r.header("www-authenticate"), "Bearer");
    for value in [
        "Bearer",
        "Bearer ",
        "Bearer not.a.jwt",
        "Bearer abc",
        "Token abc",
        &format!("Basic {}", hs256(good_claims())),
    ] {
        let r = get(&h.router, VERIFY, &[("authorization", value)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(r.json(), unauthorized_body(), "{value}");
    }
}

#[tokio::test]
async fn verify_rejects_bad_signature_expired_and_not_yet_valid_tokens() {
    let h = harness();
    let forged = jsonwebtoken::encode(
        &Header::default(),
        &good_claims(),
        &EncodingKey::from_secret(b"another-secret-another-secret-another-secret"),
    )
    .unwrap();
    let mut claims = good_claims();
    claims["exp"] = json!(now() - 3600);
    let expired = hs256(claims);
    let mut claims = good_claims();
    claims["nbf"] = json!(now() + 3600);
    let not_yet = hs256(claims);
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("exp");
    let no_exp = hs256(claims);
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("client_id");
    let anonymous = hs256(claims);
    // base64url of {"alg":"none","typ":"JWT"} in front of a genuine payload, no signature.
    let unsigned = {
        let genuine = hs256(good_claims());
        let payload = genuine.split('.').nth(1).unwrap().to_owned();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
    };
    for (name, token) in [
        ("forged", forged),
        ("expired", expired),
        ("nbf in the future", not_yet),
        ("no exp", no_exp),
        ("no client", anonymous),
        ("alg none", unsigned),
    ] {
        let r = verify_with_token(&h.router, &token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(r.json(), unauthorized_body(), "{name}");
    }
}

/// A token whose `client_id` is absent falls back to `sub`, the OAuth client-credentials norm.
#[tokio::test]
async fn verify_accepts_sub_as_the_client() {
    let h = harness();
    let token = hs256(json!({"sub": "client-b", "scope": "audit:read", "exp": now() + 60}));
    assert_eq!(
        verify_with_token(&h.router, &token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn verify_requires_the_audit_read_scope() {
    let h = harness();
    let forbidden = json!({"code": "INSUFFICIENT_SCOPE", "message": "The 'audit:read' scope is required to verify the audit chain."});
    for scope in [
        json!("agents:read"),
        json!("audit:readx"),
        json!(""),
        json!(["agents:read"]),
    ] {
        let token = hs256(json!({"client_id": "c", "scope": scope, "exp": now() + 60}));
        let r = verify_with_token(&h.router, &token).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{scope}");
        assert_eq!(r.json(), forbidden);
    }
    let token = hs256(json!({"client_id": "c", "exp": now() + 60}));
    assert_eq!(
        verify_with_token(&h.router, &token).await.status,
        StatusCode::FORBIDDEN
    );
    for claims in [
        json!({"client_id": "c", "scope": ["audit:read"], "exp": now() + 60}),
        json!({"client_id": "c", "scopes": ["x", "audit:read"], "exp": now() + 60}),
    ] {
        let r = verify_with_token(&h.router, &hs256(claims.clone())).await;
        assert_eq!(r.status, StatusCode::OK, "{claims}");
    }
}

#[tokio::test]
async fn verify_validates_the_dates_with_the_spec_bodies() {
    let h = harness();
    let auth = bearer(&hs256(good_claims()));
    let cases = [
        (
            "fromDate=yesterday",
            json!({"code": "VALIDATION_ERROR", "message": "Invalid query parameter value.", "details": {"field": "fromDate", "reason": "Must be a valid ISO 8601 date-time string (e.g. 2026-03-01T00:00:00.000Z)."}}),
        ),
        (
            "fromDate=",
            json!({"code": "VALIDATION_ERROR", "message": "Invalid query parameter value.", "details": {"field": "fromDate", "reason": "Must be a valid ISO 8601 date-time string (e.g. 2026-03-01T00:00:00.000Z)."}}),
        ),
        (
            "toDate=2026-03-31",
            json!({"code": "VALIDATION_ERROR", "message": "Invalid query parameter value.", "details": {"field": "toDate", "reason": "Must be a valid ISO 8601 date-time string (e.g. 2026-03-31T23:59:59.999Z)."}}),
        ),
        (
            "fromDate=2026-03-31T00:00:00Z&toDate=2026-03-01T00:00:00Z",
            json!({"code": "VALIDATION_ERROR", "message": "Invalid date range.", "details": {"reason": "fromDate must be before or equal to toDate."}}),
        ),
    ];
    for (query, body) in cases {
        let r = get(
            &h.router,
            &format!("{VERIFY}?{query}"),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.json(), body, "{query}");
    }
}

#[tokio::test]
async fn verify_is_limited_to_30_a_minute_per_client() {
    let h = harness();
    let a = hs256(good_claims());
    for i in 0..30 {
        let r = verify_with_token(&h.router, &a).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
        assert_eq!(r.header("x-ratelimit-remaining"), (29 - i).to_string());
    }
    let r = verify_with_token(&h.router, &a).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.json(),
        json!({"code": "RATE_LIMIT_EXCEEDED", "message": "Too many requests. Please retry after the rate limit window resets."})
    );
    assert_eq!(r.header("x-ratelimit-limit"), "30");
    assert_eq!(r.header("x-ratelimit-remaining"), "0");
    let reset: i64 = r.header("x-ratelimit-reset").parse().unwrap();
    assert!(reset > now() && reset <= now() + 61, "{reset}");
    // Another client has its own budget.
    let b = hs256(json!({"client_id": "client-b", "scope": "audit:read", "exp": now() + 600}));
    assert_eq!(
        verify_with_token(&h.router, &b).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn replicas_share_the_verify_budget_of_a_client() {
    // Two apps over one store: two replicas over one database.
    let backend = FakeBackend::intact();
    let one = harness_with(&[], backend.clone());
    let two = harness_with(&[], backend.clone());
    let a = hs256(good_claims());
    for i in 0..30 {
        let router = if i % 2 == 0 { &one.router } else { &two.router };
        let r = verify_with_token(router, &a).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
        assert_eq!(r.header("x-ratelimit-remaining"), (29 - i).to_string());
    }
    for router in [&one.router, &two.router] {
        let r = verify_with_token(router, &a).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.json()["code"], "RATE_LIMIT_EXCEEDED");
        assert_eq!(r.header("x-ratelimit-remaining"), "0");
    }
    assert_eq!(backend.calls.lock().unwrap().len(), 30);
}

#[tokio::test]
async fn verify_fails_with_a_json_500_when_its_rate_limit_cannot_be_counted() {
    let backend = FakeBackend {
        rate_limit_error: Some("connection refused".into()),
        ..FakeBackend::intact()
    };
    let calls = backend.calls.clone();
    let h = harness_with(&[], backend);
    let r = verify_with_token(&h.router, &hs256(good_claims())).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.json(),
        json!({"code": "INTERNAL_SERVER_ERROR", "message": "An unexpected error occurred. Please try again later."})
    );
    assert!(r.headers.get("x-ratelimit-limit").is_none());
    assert!(calls.lock().unwrap().is_empty(), "verified without a limit");
}

#[tokio::test]
async fn verify_hides_database_failures_behind_a_json_500() {
    let backend = FakeBackend {
        result: Err("relation agentidp.audit_events does not exist".into()),
        ..FakeBackend::intact()
    };
    let h = harness_with(&[], backend);
    let r = verify_with_token(&h.router, &hs256(good_claims())).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.json(),
        json!({"code": "INTERNAL_SERVER_ERROR", "message": "An unexpected error occurred. Please try again later."})
    );
}

#[tokio::test]
async fn a_panicking_handler_still_answers_json_500() {
    let backend = FakeBackend {
        panics: true,
        ..FakeBackend::intact()
    };
    let h = harness_with(&[], backend);
    let r = verify_with_token(&h.router, &hs256(good_claims())).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json()["code"], "INTERNAL_SERVER_ERROR");
    assert!(!String::from_utf8_lossy(&r.body).contains("exploded"));
}

#[tokio::test]
async fn rs256_tokens_are_verified_with_the_public_key() {
    let h = harness_with(
        &[("JWT_RS256_PUBLIC_KEY", RS256_PUBLIC)],
        FakeBackend::intact(),
    );
    let token = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::RS256),
        &good_claims(),
        &EncodingKey::from_rsa_pem(RS256_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        verify_with_token(&h.router, &token).await.status,
        StatusCode::OK
    );
    // An HS256 token must not pass, whatever secret it was made with (algorithm confusion).
    let confused = jsonwebtoken::encode(
        &Header::default(),
        &good_claims(),
        &EncodingKey::from_secret(RS256_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        verify_with_token(&h.router, &confused).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let h = harness_with(
        &[
            ("JWT_ISSUER", "https://idp.example"),
            ("JWT_AUDIENCE", "compliance"),
        ],
        FakeBackend::intact(),
    );
    let mut claims = good_claims();
    claims["iss"] = json!("https://idp.example");
    claims["aud"] = json!("compliance");
    assert_eq!(
        verify_with_token(&h.router, &hs256(claims.clone()))
            .await
            .status,
        StatusCode::OK
    );
    claims["aud"] = json!("billing");
    assert_eq!(
        verify_with_token(&h.router, &hs256(claims)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn controls_are_public_cacheable_and_in_spec_order() {
    let h = harness();
    let t = Utc.with_ymd_and_hms(2026, 3, 31, 6, 0, 0).unwrap();
    h.snapshot.set(Snapshot::from_records(
        ControlId::ALL
            .into_iter()
            .map(|id| ControlRecord {
                id,
                status: if id == ControlId::SecretsRotation {
                    ControlStatus::Failing
                } else {
                    ControlStatus::Passing
                },
                last_checked: t,
                dead_letter_depth: None,
                expiring_soon: None,
            })
            .collect(),
        t,
    ));
    let r = get(&h.router, CONTROLS, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), "public, max-age=60");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-ratelimit-limit"), "120");
    assert_eq!(r.header("x-ratelimit-remaining"), "119");
    r.header("x-ratelimit-reset").parse::<u64>().unwrap();
    let c = |id: &str, name: &str, status: &str| json!({"id": id, "name": name, "status": status, "lastChecked": "2026-03-31T06:00:00.000Z"});
    assert_eq!(
        r.json(),
        json!({"controls": [
            c("CC6.1", "Encryption at Rest", "passing"),
            c("CC6.7", "TLS Enforcement", "passing"),
            c("CC7.2", "Audit Log Integrity", "passing"),
            c("CC9.2", "Secrets Rotation", "failing"),
            c("CC7.1", "Webhook Dead-Letter Monitoring", "passing"),
        ]})
    );
}

#[tokio::test]
async fn controls_are_limited_to_120_a_minute_per_ip() {
    let h = harness();
    for _ in 0..120 {
        assert_eq!(get(&h.router, CONTROLS, &[]).await.status, StatusCode::OK);
    }
    let r = get(&h.router, CONTROLS, &[]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(r.header("x-ratelimit-limit"), "120");
    assert_eq!(r.header("x-ratelimit-remaining"), "0");
    r.header("x-ratelimit-reset").parse::<u64>().unwrap();
    // X-Forwarded-For is a client claim unless a trusted proxy is configured.
    let r = get(&h.router, CONTROLS, &[("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited() {
    let h = harness_with(&[("TRUSTED_PROXY_HOPS", "1")], FakeBackend::intact());
    for _ in 0..120 {
        get(&h.router, CONTROLS, &[("x-forwarded-for", "198.51.100.7")]).await;
    }
    let limited = get(&h.router, CONTROLS, &[("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let other = get(&h.router, CONTROLS, &[("x-forwarded-for", "198.51.100.8")]).await;
    assert_eq!(other.status, StatusCode::OK);
}

fn production() -> [(&'static str, &'static str); 1] {
    [("AGENTIDP_PRODUCTION", "true")]
}

#[tokio::test]
async fn production_redirects_plain_http_to_https() {
    let h = harness_with(&production(), FakeBackend::intact());
    let r = get(
        &h.router,
        &format!("{CONTROLS}?a=1&b=2"),
        &[("host", "api.sentryagent.ai")],
    )
    .await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.header("location"),
        "https://api.sentryagent.ai/api/v1/compliance/controls?a=1&b=2"
    );
    let r = get(
        &h.router,
        VERIFY,
        &[
            ("host", "api.sentryagent.ai:8443"),
            ("x-forwarded-proto", "http"),
        ],
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::MOVED_PERMANENTLY,
        "before authentication"
    );
    assert_eq!(
        r.header("location"),
        "https://api.sentryagent.ai:8443/api/v1/audit/verify"
    );
    let r = get(&h.router, "/nowhere", &[("host", "api.sentryagent.ai")]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);

    let r = get(
        &h.router,
        CONTROLS,
        &[
            ("host", "api.sentryagent.ai"),
            ("x-forwarded-proto", "HTTPS"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&h.router, CONTROLS, &[("x-forwarded-proto", "https, http")]).await;
    assert_eq!(r.status, StatusCode::OK);

    let r = get(&h.router, CONTROLS, &[("host", "bad host")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], "BAD_REQUEST");

    for probe in ["/health", "/ready", "/metrics"] {
        assert_eq!(
            get(&h.router, probe, &[]).await.status,
            StatusCode::OK,
            "{probe}"
        );
    }
}

#[tokio::test]
async fn production_redirects_to_the_configured_public_host() {
    let h = harness_with(
        &[
            ("AGENTIDP_PRODUCTION", "true"),
            ("PUBLIC_HOST", "api.sentryagent.ai"),
        ],
        FakeBackend::intact(),
    );
    let r = get(&h.router, CONTROLS, &[("host", "evil.example")]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.header("location"),
        "https://api.sentryagent.ai/api/v1/compliance/controls"
    );
}

#[tokio::test]
async fn development_does_not_redirect() {
    let h = harness();
    assert_eq!(get(&h.router, CONTROLS, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let h = harness();
    let r = get(&h.router, "/api/v1/nothing", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        json!({"code": "NOT_FOUND", "message": "The requested resource was not found."})
    );
    let r = send(
        &h.router,
        Request::post(CONTROLS).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json()["code"], "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness();
    let r = get(&h.router, "/health", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ok"}));
    let r = get(&h.router, "/ready", &[]).await;
    assert_eq!(r.status, StatusCode::OK);

    let down = harness_with(
        &[],
        FakeBackend {
            reachable: false,
            ..FakeBackend::intact()
        },
    );
    assert_eq!(
        get(&down.router, "/health", &[]).await.status,
        StatusCode::OK
    );
    let r = get(&down.router, "/ready", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"code": "SERVICE_UNAVAILABLE", "message": "The service is not ready: the database is not reachable."})
    );
}

/// One sample of the text exposition format: `name{label="value",...} value`.
fn parse_sample(line: &str) -> (String, HashMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let value: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("bad value in {line:?}"));
    let (name, labels) = match series.split_once('{') {
        None => (series, HashMap::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
            let labels = inner
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            (name, labels)
        }
    };
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "{line:?}"
    );
    (name.to_owned(), labels, value)
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_documented_names() {
    let h = harness();
    let t = Utc.with_ymd_and_hms(2026, 3, 31, 6, 0, 0).unwrap();
    let snapshot = Snapshot::from_records(
        vec![
            ControlRecord {
                id: ControlId::AuditLogIntegrity,
                status: ControlStatus::Passing,
                last_checked: t,
                dead_letter_depth: None,
                expiring_soon: None,
            },
            ControlRecord {
                id: ControlId::WebhookDeadLetters,
                status: ControlStatus::Failing,
                last_checked: t,
                dead_letter_depth: Some(250),
                expiring_soon: None,
            },
            ControlRecord {
                id: ControlId::SecretsRotation,
                status: ControlStatus::Passing,
                last_checked: t,
                dead_letter_depth: None,
                expiring_soon: Some(3),
            },
        ],
        t,
    );
    h.metrics.observe_snapshot(&snapshot);
    verify_with_token(&h.router, &hs256(good_claims())).await;
    get(&h.router, "/no/such/path/123", &[]).await;

    let r = get(&h.router, "/metrics", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header("content-type")
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.body).unwrap();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            assert!(
                comment.starts_with(" HELP ") || comment.starts_with(" TYPE "),
                "{line:?}"
            );
        } else {
            samples.push(parse_sample(line));
        }
    }
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    };
    assert_eq!(value("agentidp_audit_chain_integrity", &[]), Some(1.0));
    assert_eq!(value("agentidp_webhook_dead_letters", &[]), Some(250.0));
    assert_eq!(
        value("agentidp_credentials_expiring_soon_total", &[]),
        Some(0.0),
        "only the leader's runs count credentials entering the window"
    );
    assert_eq!(
        value("agentidp_credentials_expiring_soon", &[]),
        Some(3.0),
        "every replica shows CC9.2's expiringSoon"
    );
    assert_eq!(value("agentidp_encryption_key_loaded", &[]), Some(0.0));
    assert_eq!(value("agentidp_is_leader", &[]), Some(0.0));
    for (control, status) in [
        ("CC7.2", "passing"),
        ("CC7.1", "failing"),
        ("CC6.1", "unknown"),
    ] {
        for s in ["passing", "failing", "unknown"] {
            let expected = if s == status { 1.0 } else { 0.0 };
            assert_eq!(
                value(
                    "agentidp_control_status",
                    &[("control", control), ("status", s)]
                ),
                Some(expected),
                "{control} {s}"
            );
        }
    }
    assert_eq!(
        value(
            "agentidp_http_requests_total",
            &[
                ("route", "/api/v1/audit/verify"),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "agentidp_http_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert!(value(
        "agentidp_http_request_duration_seconds_count",
        &[("route", "/api/v1/audit/verify"), ("method", "GET")]
    )
    .is_some());
    assert!(
        !text.contains("/no/such/path"),
        "raw URLs must not become labels"
    );
}

#[tokio::test]
async fn chain_integrity_is_absent_until_known() {
    let h = harness();
    let text = String::from_utf8(get(&h.router, "/metrics", &[]).await.body).unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("agentidp_audit_chain_integrity")),
        "{text}"
    );
}
