//! Database sessions: a pool whose every connection carries the encryption keys, and the dedicated
//! connection the leader election holds.
//!
//! The keys go into each connection's startup options (`-c agentidp.encryption_key=...`, and
//! during a rotation `-c agentidp.encryption_old_keys=...`), never into a SQL statement, so
//! `log_statement` cannot record them. The options live in a
//! `tokio_postgres::Config`, whose `Debug` prints them: nothing here derives or calls `Debug` on
//! one.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::task::JoinHandle;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::audit_chain::{self, ChainVerification};
use crate::key::{redact_keys, EncryptionKey, SessionKeys};

const KEY_SETTING: &str = "agentidp.encryption_key";
const OLD_KEYS_SETTING: &str = "agentidp.encryption_old_keys";
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database failure, with anything key-shaped removed from its text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DbError(String);

impl DbError {
    pub fn new(text: impl AsRef<str>) -> DbError {
        DbError(redact_keys(text.as_ref()))
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> DbError {
        // tokio-postgres' Display includes the server's message, which may quote a setting.
        DbError::new(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> DbError {
        DbError::new(e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("DATABASE_CA_FILE: cannot read {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot set up TLS for the database: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the connection pool: {0}")]
    Pool(#[from] deadpool_postgres::BuildError),
}

/// TLS for database connections, used whenever `sslmode` asks for it: the public web roots plus
/// an optional private CA (`DATABASE_CA_FILE`), as managed databases often use one.
pub fn tls_connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, DbSetupError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let ca_err = |reason: String| DbSetupError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_err(e.to_string()))?;
        for cert in certs {
            roots.add(cert.map_err(|e| ca_err(e.to_string()))?)?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

pub struct Db {
    base: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    pool_size: usize,
    sessions: RwLock<Sessions>,
    generation: AtomicU64,
}

/// The pool and the keys its sessions carry, replaced together.
struct Sessions {
    pool: Pool,
    keys: Option<SessionKeys>,
}

impl Db {
    /// Connections are opened lazily, so this succeeds without a reachable database.
    pub fn new(
        mut base: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        pool_size: usize,
    ) -> Result<Db, DbSetupError> {
        if base.get_application_name().is_none() {
            base.application_name("agentidp-sidecar");
        }
        if base.get_connect_timeout().is_none() {
            base.connect_timeout(CONNECT_TIMEOUT);
        }
        let pool = build_pool(&base, &tls, pool_size, None)?;
        Ok(Db {
            base,
            tls,
            pool_size,
            sessions: RwLock::new(Sessions { pool, keys: None }),
            generation: AtomicU64::new(0),
        })
    }

    /// Replaces the pool with one whose connections carry `keys`. Idle connections of the old
    /// pool close now and busy ones when they are returned, so within one query's time every
    /// session uses the new keys.
    pub fn use_keys(&self, keys: &SessionKeys) -> Result<(), DbSetupError> {
        let fresh = Sessions {
            pool: build_pool(&self.base, &self.tls, self.pool_size, Some(keys))?,
            keys: Some(keys.clone()),
        };
        let old = std::mem::replace(
            &mut *self
                .sessions
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        old.pool.close();
        self.generation.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The keys the pool's sessions carry.
    pub fn session_keys(&self) -> Option<SessionKeys> {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .clone()
    }

    /// How many times the pool has been replaced; lets tests and logs see a key rotation land.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        let pool = self
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .pool
            .clone();
        Ok(pool.get().await?)
    }

    /// A session outside the pool and without the key, for the leader lock: its lifetime is the
    /// lock's lifetime, so it must not be recycled with the pool.
    pub async fn connect_dedicated(
        &self,
    ) -> Result<(tokio_postgres::Client, JoinHandle<()>), DbError> {
        let (client, connection) = self.base.connect(self.tls.clone()).await?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %DbError::from(e), "leader-lock database connection closed");
            }
        });
        Ok((client, task))
    }
}

fn build_pool(
    base: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    size: usize,
    keys: Option<&SessionKeys>,
) -> Result<Pool, DbSetupError> {
    let mut config = base.clone();
    if let Some(keys) = keys {
        let mut settings = format!("-c {KEY_SETTING}={}", keys.key.expose_hex());
        if !keys.old_keys.is_empty() {
            let old: Vec<&str> = keys
                .old_keys
                .iter()
                .map(EncryptionKey::expose_hex)
                .collect();
            settings = format!("{settings} -c {OLD_KEYS_SETTING}={}", old.join(","));
        }
        // Appended, so options already in DATABASE_URL (search_path, ...) still apply.
        let options = match base.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {settings}"),
            _ => settings,
        };
        config.options(options);
    }
    let manager = Manager::from_config(
        config,
        tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()?)
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the HTTP handlers need from the database; a trait so the routes can be tested without
/// one.
pub trait ApiBackend: Send + Sync + 'static {
    fn verify_chain(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> BoxFuture<'_, Result<ChainVerification, DbError>>;

    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>>;

    /// Counts one request of `client_id` on `route` against its fixed window of `window`, which
    /// starts anew when the last one has ended, and returns the window as it stands after it.
    /// One budget for every caller of the same store: the replicas share it.
    fn hit_rate_window<'a>(
        &'a self,
        route: &'a str,
        client_id: &'a str,
        limit: u32,
        window: Duration,
    ) -> BoxFuture<'a, Result<RateWindow, DbError>>;

    /// Forgets the windows that have ended; returns how many.
    fn prune_rate_windows(&self) -> BoxFuture<'_, Result<u64, DbError>>;
}

/// A client's rate-limit window after one more request was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateWindow {
    /// Requests counted in the window, this one included, but never more than the limit plus
    /// one: the request is allowed when this is at most the limit.
    pub count: u32,
    pub ends_at: DateTime<Utc>,
}

/// One statement, atomic under concurrent requests of every replica: ON CONFLICT DO UPDATE
/// locks the client's row and updates its latest version, so concurrent requests are counted
/// one after the other. A window that has ended is restarted by the request that finds it so.
/// The count stops at limit + 1, so refused requests keep it from overflowing, and never goes
/// down within a window (were replicas given different limits, the lower would not undo the
/// higher's count).
const HIT_RATE_WINDOW: &str = "
INSERT INTO agentidp.api_rate_windows AS w (route, client_id, window_end, count)
VALUES ($1, $2, now() + make_interval(secs => $4), 1)
ON CONFLICT (route, client_id) DO UPDATE
   SET window_end = CASE WHEN w.window_end <= now() THEN excluded.window_end ELSE w.window_end END,
       count = CASE WHEN w.window_end <= now() THEN 1
                    ELSE greatest(w.count, least(w.count + 1, $3 + 1)) END
RETURNING count, window_end";

/// A row whose window a concurrent request has just restarted is re-checked on its new version
/// and kept.
const PRUNE_RATE_WINDOWS: &str = "DELETE FROM agentidp.api_rate_windows WHERE window_end <= now()";

impl ApiBackend for Db {
    fn verify_chain(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> BoxFuture<'_, Result<ChainVerification, DbError>> {
        Box::pin(async move {
            let client = self.client().await?;
            Ok(audit_chain::verify_range(&**client, from, to).await?)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), DbError>> {
        Box::pin(async move {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
    }

    fn hit_rate_window<'a>(
        &'a self,
        route: &'a str,
        client_id: &'a str,
        limit: u32,
        window: Duration,
    ) -> BoxFuture<'a, Result<RateWindow, DbError>> {
        Box::pin(async move {
            // Below i32::MAX, so that limit + 1 fits the column.
            let limit = i32::try_from(limit).unwrap_or(i32::MAX).min(i32::MAX - 1);
            let client = self.client().await?;
            let statement = client.prepare_cached(HIT_RATE_WINDOW).await?;
            let row = client
                .query_one(
                    &statement,
                    &[&route, &client_id, &limit, &window.as_secs_f64()],
                )
                .await?;
            let count: i32 = row.try_get(0)?;
            Ok(RateWindow {
                count: u32::try_from(count).unwrap_or(0),
                ends_at: row.try_get(1)?,
            })
        })
    }

    fn prune_rate_windows(&self) -> BoxFuture<'_, Result<u64, DbError>> {
        Box::pin(async move {
            let client = self.client().await?;
            Ok(client.execute(PRUNE_RATE_WINDOWS, &[]).await?)
        })
    }
}
