//! Start-up and shutdown: wires the key, the database, the background tasks and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::app;
use crate::controls::Snapshot;
use crate::db::{self, Db, DbSetupError};
use crate::jobs::key_refresh::KeyRefresher;
use crate::jobs::sealing::{self, SignerCell};
use crate::jobs::{self, JobContext};
use crate::key::{KeyFile, KeyLoadError, KeySource, KeyState};
use crate::leader;
use crate::metrics::Metrics;
use crate::settings::{Config, KeySourceConfig};
use crate::snapshot::{self, SnapshotCell};
use crate::state::{AppState, Transparency};
use crate::vault::{TokenRenewer, VaultKeySource};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Db(#[from] DbSetupError),
    #[error("cannot set up the Vault client: {0}")]
    Vault(#[from] KeyLoadError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot set up the transparency log's publishing: {0}")]
    Transparency(String),
}

fn key_source(config: &Config) -> Result<Option<KeySource>, StartupError> {
    Ok(match &config.key_source {
        KeySourceConfig::Vault(vault) => {
            tracing::info!(addr = %vault.addr, path = %vault.display_path(), field = %vault.field, old_keys_field = %vault.old_keys_field, "encryption key source: Vault KV v2");
            Some(KeySource::new(VaultKeySource::new(vault.clone())?))
        }
        KeySourceConfig::File(path) => {
            if config.production {
                tracing::warn!(path = %path.display(), "no Vault configured (VAULT_ADDR unset): using ENCRYPTION_KEY_FILE in production mode; the key file is meant for development");
            } else {
                tracing::info!(path = %path.display(), "no Vault configured (VAULT_ADDR unset): using the development key file ENCRYPTION_KEY_FILE");
            }
            Some(KeySource::new(KeyFile(path.clone())))
        }
        KeySourceConfig::None => {
            tracing::warn!("EncryptionService disabled — no Vault and no ENCRYPTION_KEY_FILE configured; CC6.1 will report failing");
            None
        }
    })
}

pub async fn run(config: Config) -> Result<(), StartupError> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new()?);
    let tls = db::tls_connector(config.database_ca_file.as_deref())?;
    let db = Arc::new(Db::new(config.database.clone(), tls, config.db_pool_size)?);
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let source = key_source(&config)?;
    let (key_tx, key_rx) = watch::channel(KeyState {
        configured: source.is_some(),
        attempted: source.is_none(),
        ..KeyState::default()
    });
    if let Some(source) = source {
        let refresher = KeyRefresher::new(
            source,
            db.clone(),
            metrics.clone(),
            key_tx,
            config.schedules.key_refresh.clone(),
            config.vault_retry,
        );
        // Awaited (bounded by the Vault client's timeout) so that, normally, the pool's first
        // sessions already carry the key; on failure the loop retries in the background and the
        // API serves meanwhile.
        let loaded = refresher.refresh_once().await;
        tasks.spawn(refresher.run(loaded, cancel.clone()));
    }
    if let KeySourceConfig::Vault(vault) = &config.key_source {
        tasks.spawn(
            TokenRenewer::new(vault, config.vault_retry, metrics.clone())?.run(cancel.clone()),
        );
    }

    let snapshot = Arc::new(SnapshotCell::new(Snapshot::unknown(Utc::now())));
    tasks.spawn(snapshot::refresh_loop(
        db.clone(),
        snapshot.clone(),
        metrics.clone(),
        config.controls_refresh,
        cancel.clone(),
    ));

    let signer = Arc::new(SignerCell::new());
    tasks.spawn(sealing::load_signer(
        config.clone(),
        signer.clone(),
        config.transparency.interval,
        cancel.clone(),
    ));
    let sealer = Arc::new(
        sealing::from_config(&config, signer.clone()).map_err(StartupError::Transparency)?,
    );

    let ctx = Arc::new(JobContext {
        db: db.clone(),
        metrics: metrics.clone(),
        key_state: key_rx,
        config: config.clone(),
    });
    tasks.spawn(leader::run(
        db.clone(),
        metrics.clone(),
        config.leader_retry,
        cancel.clone(),
        move |jobs_cancel| jobs::run_leader_jobs(ctx.clone(), sealer.clone(), jobs_cancel),
    ));

    let transparency = Transparency {
        api: db.clone(),
        signer,
        tlog_tiles: config.transparency.tlog_tiles,
    };
    let state = AppState::with_transparency(&config, db.clone(), snapshot, metrics, transparency);
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| StartupError::Bind {
            addr: config.bind,
            source,
        })?;
    tracing::info!(addr = %config.bind, production = config.production, "agentidp-sidecar listening");

    let server = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(cancel.clone().cancelled_owned());
    let mut server = tokio::spawn(async move { server.await });

    tokio::select! {
        () = shutdown_signal() => {}
        // The server only ends by itself on an accept-loop failure.
        finished = &mut server => {
            cancel.cancel();
            return match finished {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StartupError::Serve(e)),
                Err(e) => Err(StartupError::Serve(std::io::Error::other(e))),
            };
        }
    }
    tracing::info!(
        timeout_s = config.shutdown_timeout.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    cancel.cancel();
    match tokio::time::timeout(config.shutdown_timeout, server).await {
        Ok(_) => tracing::info!("HTTP server stopped"),
        Err(_) => tracing::warn!(
            "in-flight requests did not finish within SHUTDOWN_TIMEOUT_SECONDS; exiting anyway"
        ),
    }
    // Lets the leader drop its lock session promptly, so another replica takes over at once.
    let stopped = tokio::time::timeout(config.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if stopped.is_err() {
        tracing::warn!("background tasks did not stop within SHUTDOWN_TIMEOUT_SECONDS");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
