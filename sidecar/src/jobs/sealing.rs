//! The transparency log's job, on the leader every `CHECKPOINT_INTERVAL_SECONDS`: seal every
//! chain's tree (`agentidp_seal()`), prove each grown tree consistent with the last checkpoint
//! signed for it, sign it, file it, and publish it to the directory and the witnesses.
//!
//! It never signs two inconsistent checkpoints (C2SP's rule): the last signed tree of a chain is
//! the latest filed checkpoint whose signature verifies with this log's key, or a later one found
//! in the directory (the database may have been rolled back), or the one this process signed. A
//! tree that does not extend it is refused with its evidence filed, CC7.2 is re-evaluated at
//! once (and fails), and nothing is signed for that chain until a tree extends it again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use agentidp_core::checkpoint;
use agentidp_core::seal::{signing_decision, SignDecision};
use agentidp_core::tiles::{published_between, Head};
use chrono::Utc;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::jobs::{chain_verification, instrumented, JobContext, JobError};
use crate::metrics::{Job, Metrics};
use crate::publish::directory::DirectorySink;
use crate::publish::witness::{Answer, WitnessClient};
use crate::settings::Config;
use crate::signer::CheckpointSigner;
use crate::transparency_sql::{self as sql, Sealed};

/// The signer, once its key (or transit's public key) has been read; shared with the API, which
/// serves its verifier key.
pub type SignerCell = OnceCell<Arc<CheckpointSigner>>;

/// What the leader remembers between runs.
#[derive(Default)]
struct Memory {
    /// Per chain, the last tree signed.
    last_signed: HashMap<String, Head>,
    /// Chains whose latest seal or signature was refused.
    refused: BTreeSet<String>,
    /// Per chain, the tree size the directory holds tiles for.
    published: HashMap<String, u64>,
    /// Per (witness, chain), the size the witness last cosigned.
    witnessed: HashMap<(String, String), u64>,
}

pub struct Sealer {
    signer: Arc<SignerCell>,
    directory: Option<DirectorySink>,
    witnesses: Vec<Arc<WitnessClient>>,
    memory: Arc<Mutex<Memory>>,
}

impl Sealer {
    pub fn new(
        signer: Arc<SignerCell>,
        directory: Option<DirectorySink>,
        witnesses: Vec<Arc<WitnessClient>>,
    ) -> Sealer {
        Sealer {
            signer,
            directory,
            witnesses,
            memory: Arc::default(),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One run: seal, then sign and publish what grew.
    pub async fn run_once(&self, ctx: &JobContext) -> Result<(), JobError> {
        let client = ctx.db.client().await?;
        let sealed = sql::seal(&**client).await?;
        let mut newly_refused = false;
        for s in sealed.iter().filter(|s| s.rewritten()) {
            tracing::error!(chain = %s.chain_id, detail = ?s.detail, "audit chain no longer holds the history it sealed; not signing it");
            newly_refused |= self.memory().refused.insert(s.chain_id.clone());
        }
        if let Some(signer) = self.signer.get() {
            let behind = if ctx.config.transparency.wait_for_standbys {
                sql::standbys_behind(&**client).await?
            } else {
                0
            };
            if behind > 0 {
                tracing::info!(
                    standbys = behind,
                    "not signing yet: a standby has not replayed the sealed trees"
                );
            } else {
                for s in sealed.iter().filter(|s| !s.rewritten() && s.head.size > 0) {
                    newly_refused |= self.sign_chain(ctx, &client, signer, s).await?;
                }
            }
        }
        drop(client);
        self.observe(ctx).await?;
        if newly_refused {
            // CC7.2 fails now rather than at the next verification run.
            chain_verification::run_once(ctx, false).await?;
        }
        Ok(())
    }

    /// Signs the chain's sealed tree if it extends the last one signed; returns whether the
    /// chain was newly refused.
    async fn sign_chain(
        &self,
        ctx: &JobContext,
        client: &tokio_postgres::Client,
        signer: &CheckpointSigner,
        sealed: &Sealed,
    ) -> Result<bool, JobError> {
        let chain = sealed.chain_id.as_str();
        let last = self.last_signed(client, signer, chain).await?;
        let proof = match last {
            Some(last) if last.size > 0 && sealed.head.size > last.size => {
                sql::consistency_proof(client, chain, last.size, sealed.head.size).await?
            }
            _ => Vec::new(),
        };
        match signing_decision(last, sealed.head, &proof) {
            SignDecision::NothingNew => Ok(false),
            SignDecision::Inconsistent => {
                let trusted = last.unwrap_or(Head::EMPTY);
                tracing::error!(
                    chain,
                    signed_size = trusted.size,
                    signed_root = %trusted.root,
                    sealed_size = sealed.head.size,
                    sealed_root = %sealed.head.root,
                    "REFUSING to sign: the sealed tree does not extend the last signed checkpoint"
                );
                sql::record_inconsistency(client, chain, trusted, sealed.head).await?;
                Ok(self.memory().refused.insert(chain.to_owned()))
            }
            SignDecision::Sign => {
                let body =
                    checkpoint::body(&signer.origin(chain), sealed.head.size, sealed.head.root)?;
                let note = signer.sign(&body).await?;
                sql::record_checkpoint(client, &note).await?;
                {
                    let mut memory = self.memory();
                    memory.last_signed.insert(chain.to_owned(), sealed.head);
                    memory.refused.remove(chain);
                }
                tracing::info!(chain, size = sealed.head.size, "checkpoint signed");
                self.publish(ctx, client, chain, sealed.head.size, &note)
                    .await;
                let previous = last.map_or(0, |l| l.size);
                for witness in &self.witnesses {
                    tokio::spawn(submit(
                        ctx.db.clone(),
                        ctx.metrics.clone(),
                        self.memory.clone(),
                        witness.clone(),
                        chain.to_owned(),
                        sealed.head.size,
                        previous,
                        note.clone(),
                    ));
                }
                Ok(false)
            }
        }
    }

    /// The last tree signed for the chain: remembered, or the latest filed checkpoint that
    /// verifies with this log's key, or the directory's if that is later.
    async fn last_signed(
        &self,
        client: &tokio_postgres::Client,
        signer: &CheckpointSigner,
        chain: &str,
    ) -> Result<Option<Head>, JobError> {
        if let Some(head) = self.memory().last_signed.get(chain) {
            return Ok(Some(*head));
        }
        let key = signer.verifier_key();
        let verified = |note: &str| {
            checkpoint::verify(note, &[&key])
                .ok()
                .filter(|v| checkpoint::chain_of_origin(&v.origin) == Some(chain))
                .map(|v| Head {
                    size: v.size,
                    root: v.root,
                })
        };
        // The latest is the one to trust unless someone filed a note this key did not sign:
        // only then are the older ones read.
        let mut head = sql::checkpoints_of(client, chain, Some(1))
            .await?
            .iter()
            .find_map(|filed| verified(&filed.note));
        if head.is_none() {
            head = sql::checkpoints_of(client, chain, None)
                .await?
                .iter()
                .find_map(|filed| verified(&filed.note));
        }
        if let Some(directory) = &self.directory {
            let size = directory.latest_size(chain).map_err(JobError::publish)?;
            if size > head.map_or(0, |h| h.size) {
                if let Some(found) = directory.checkpoint(chain, size).and_then(|n| verified(&n)) {
                    tracing::warn!(
                        chain,
                        size,
                        "the directory holds a later checkpoint than the database"
                    );
                    head = Some(found);
                }
            }
        }
        if let Some(head) = head {
            self.memory().last_signed.insert(chain.to_owned(), head);
        }
        Ok(head)
    }

    /// Publishes the checkpoint and the tiles grown since the last publication to the directory.
    /// A failure is counted and logged; the checkpoint is signed and filed either way.
    async fn publish(
        &self,
        ctx: &JobContext,
        client: &tokio_postgres::Client,
        chain: &str,
        size: u64,
        note: &str,
    ) {
        let Some(directory) = &self.directory else {
            return;
        };
        let result = async {
            let from = self.memory().published.get(chain).copied();
            let from = match from {
                Some(from) => from,
                None => directory.latest_size(chain).map_err(JobError::publish)?,
            };
            let mut tiles = Vec::new();
            for tile in published_between(from, size) {
                let hashes = sql::tile(client, chain, tile.level, tile.index, tile.width)
                    .await?
                    .ok_or_else(|| {
                        JobError::publish(format!("tile {} is not stored", tile.path()))
                    })?;
                tiles.push((tile, hashes));
            }
            let (directory, chain_owned, note) =
                (directory.clone(), chain.to_owned(), note.to_owned());
            tokio::task::spawn_blocking(move || {
                directory.publish(&chain_owned, size, &note, &tiles)
            })
            .await
            .map_err(JobError::publish)?
            .map_err(JobError::publish)?;
            self.memory().published.insert(chain.to_owned(), size);
            Ok::<_, JobError>(())
        }
        .await;
        if let Err(e) = result {
            ctx.metrics.transparency.publish_failed("directory");
            tracing::error!(chain, size, error = %e, "cannot publish the checkpoint to the directory");
        }
    }

    /// Sets the transparency gauges from the database's progress and this run's refusals.
    async fn observe(&self, ctx: &JobContext) -> Result<(), JobError> {
        let client = ctx.db.client().await?;
        let progress = sql::progress(&**client).await?;
        let refused = self.memory().refused.clone();
        ctx.metrics
            .transparency
            .observe(&progress, &refused, Utc::now());
        Ok(())
    }
}

/// Submits one checkpoint to one witness; on a 409 once more, from the size the witness holds.
/// Its failure delays nothing but its cosignature.
#[allow(clippy::too_many_arguments)]
async fn submit(
    db: Arc<Db>,
    metrics: Arc<Metrics>,
    memory: Arc<Mutex<Memory>>,
    witness: Arc<WitnessClient>,
    chain: String,
    size: u64,
    previous: u64,
    note: String,
) {
    let key = (witness.name().to_owned(), chain.clone());
    let mut old = memory
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .witnessed
        .get(&key)
        .copied()
        .unwrap_or(previous);
    let result = async {
        for _ in 0..2 {
            let proof = if old > 0 && old < size {
                let client = db.client().await?;
                sql::consistency_proof(&**client, &chain, old, size).await?
            } else {
                Vec::new()
            };
            match witness
                .add_checkpoint(old, &proof, &note)
                .await
                .map_err(JobError::publish)?
            {
                Answer::Cosigned(lines) => {
                    let client = db.client().await?;
                    sql::add_cosignatures(&**client, &chain, size, &lines).await?;
                    return Ok(());
                }
                Answer::Conflict(theirs) if theirs <= size && theirs != old => old = theirs,
                Answer::Conflict(theirs) => {
                    return Err(JobError::publish(format!(
                        "witness {} holds a checkpoint of {theirs} events for a log of {size}",
                        witness.name()
                    )))
                }
            }
        }
        Err(JobError::publish(format!(
            "witness {} kept answering 409",
            witness.name()
        )))
    }
    .await;
    match result {
        Ok(()) => {
            memory
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .witnessed
                .insert(key, size);
            metrics
                .transparency
                .witness_cosigned(witness.name(), Utc::now());
            tracing::info!(witness = witness.name(), chain, size, "checkpoint cosigned");
        }
        Err(e) => {
            metrics.transparency.witness_failed(witness.name());
            tracing::warn!(witness = witness.name(), chain, size, error = %e, "witness did not cosign");
        }
    }
}

/// The sealer the settings configure: its sinks and witnesses.
pub fn from_config(config: &Config, signer: Arc<SignerCell>) -> Result<Sealer, String> {
    let transparency = &config.transparency;
    let witnesses = transparency
        .witnesses
        .iter()
        .map(|w| WitnessClient::new(w.clone(), transparency.witness_timeout).map(Arc::new))
        .collect::<Result<_, _>>()?;
    Ok(Sealer::new(
        signer,
        transparency.directory.clone().map(DirectorySink::new),
        witnesses,
    ))
}

/// Reads the signer's key into `cell` (every replica: each serves the verifier key), retrying a
/// Vault outage every `retry` until it succeeds; a misconfiguration is logged and leaves the
/// cell empty, so checkpoints are sealed but not signed.
pub async fn load_signer(
    config: Arc<Config>,
    cell: Arc<SignerCell>,
    retry: std::time::Duration,
    cancel: CancellationToken,
) {
    loop {
        match CheckpointSigner::from_config(&config.checkpoints).await {
            Ok(None) => return,
            Ok(Some(signer)) => {
                tracing::info!(signer = ?signer, verifier_key = %signer.verifier_key(), "checkpoint signer ready");
                let _ = cell.set(Arc::new(signer));
                return;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot load the checkpoint signer yet; retrying");
            }
            Err(e) => {
                tracing::error!(error = %e, "checkpoint signer misconfigured: checkpoints are sealed but not signed");
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Seals every interval until cancelled (lost leadership or shutdown).
pub async fn run(ctx: Arc<JobContext>, sealer: Arc<Sealer>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.transparency.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        instrumented(&ctx.metrics, Job::Sealing, sealer.run_once(&ctx)).await;
    }
}
