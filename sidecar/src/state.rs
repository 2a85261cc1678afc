//! The state every handler and middleware layer shares. Its own module, below both the routes
//! and the middleware, so that they need not import `app` (which imports them to build the
//! router).

use std::net::IpAddr;
use std::sync::Arc;

use crate::db::ApiBackend;
use crate::jobs::sealing::SignerCell;
use crate::jwt::JwtVerifier;
use crate::limiter::{FixedWindowLimiter, SharedWindowLimiter, AUDIT_VERIFY_ROUTE};
use crate::metrics::Metrics;
use crate::settings::Config;
use crate::snapshot::SnapshotCell;
use crate::transparency_api::{TransparencyApi, Unavailable};

/// Cheap to clone (one reference count), as every middleware layer clones it per request.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub backend: Arc<dyn ApiBackend>,
    pub snapshot: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub jwt: JwtVerifier,
    pub audit_limiter: SharedWindowLimiter,
    pub controls_limiter: FixedWindowLimiter<Option<IpAddr>>,
    pub tls_redirect: TlsRedirect,
    pub trusted_proxy_hops: usize,
    pub transparency: Transparency,
}

/// What the transparency routes serve from.
pub struct Transparency {
    pub api: Arc<dyn TransparencyApi>,
    /// Empty until the signer has read its key: the verifier key is then unknown.
    pub signer: Arc<SignerCell>,
    /// Whether the C2SP tlog-tiles endpoints are served (`TLOG_TILES_ENABLED`).
    pub tlog_tiles: bool,
}

impl Transparency {
    /// No transparency log: its routes answer 404.
    pub fn unavailable() -> Transparency {
        Transparency {
            api: Arc::new(Unavailable),
            signer: Arc::default(),
            tlog_tiles: false,
        }
    }
}

impl AppState {
    pub fn new(
        config: &Config,
        backend: Arc<dyn ApiBackend>,
        snapshot: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
    ) -> AppState {
        AppState::with_transparency(
            config,
            backend,
            snapshot,
            metrics,
            Transparency::unavailable(),
        )
    }

    pub fn with_transparency(
        config: &Config,
        backend: Arc<dyn ApiBackend>,
        snapshot: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
        transparency: Transparency,
    ) -> AppState {
        AppState(Arc::new(AppStateInner {
            backend,
            snapshot,
            metrics,
            jwt: JwtVerifier::new(&config.jwt),
            audit_limiter: SharedWindowLimiter::per_minute(
                AUDIT_VERIFY_ROUTE,
                config.audit_rate_limit_per_minute,
            ),
            controls_limiter: FixedWindowLimiter::per_minute(config.controls_rate_limit_per_minute),
            tls_redirect: TlsRedirect {
                enabled: config.production,
                public_host: config.public_host.clone(),
            },
            trusted_proxy_hops: config.trusted_proxy_hops,
            transparency,
        }))
    }
}

/// The HTTPS redirect's policy (`middleware/tls_redirect.rs`).
#[derive(Clone, Debug)]
pub struct TlsRedirect {
    pub enabled: bool,
    /// When set, redirects go to this host instead of the request's Host header, so a forged
    /// Host cannot turn a cached 301 into a redirect to somewhere else.
    pub public_host: Option<String>,
}
