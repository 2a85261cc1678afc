//! `proof` and `consistency`: one event's inclusion in a signed checkpoint, and one signed
//! checkpoint's extension of another, from the proof files the SQL functions and the REST API
//! return (agentidp_core::export).

use std::fs;
use std::path::{Path, PathBuf};

use agentidp_core::chain::BreakKind;
use agentidp_core::export::{ConsistencyProof, EventId, ExportedEvent, InclusionProof};
use agentidp_core::merkle;
use serde::de::DeserializeOwned;

use crate::failure::{Failure, Kind, Stop, Unusable};
use crate::notes::{self, LogKeys, Witnesses};

/// What `proof` is given.
#[derive(Debug, Clone)]
pub struct Inclusion {
    pub event: PathBuf,
    pub proof: PathBuf,
    pub checkpoint: PathBuf,
    pub keys: Vec<String>,
}

/// What `consistency` is given.
#[derive(Debug, Clone)]
pub struct Consistency {
    pub old: PathBuf,
    pub new: PathBuf,
    pub proof: PathBuf,
    pub keys: Vec<String>,
}

fn read(path: &Path) -> Result<String, Unusable> {
    fs::read_to_string(path).map_err(|e| Unusable::read(path, e))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, Unusable> {
    serde_json::from_str(&read(path)?).map_err(|e| Unusable::malformed(path, e))
}

/// Checks that the event of the one-line file `inclusion.event` is in the checkpoint's tree.
pub fn verify_inclusion(inclusion: &Inclusion, report: &mut Vec<String>) -> Result<(), Stop> {
    let keys = LogKeys::new(&inclusion.keys)?;
    let text = read(&inclusion.event)?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    if line.contains('\n') {
        return Err(Unusable::malformed(&inclusion.event, "holds more than one event line").into());
    }
    let exported = ExportedEvent::parse(line.as_bytes(), 1)
        .map_err(|e| Unusable::malformed(&inclusion.event, e))?;
    let event = exported.event();
    let (id, seq) = (EventId(*event.event_id), event.seq);
    let hash = event.hash();
    if hash != exported.hash() {
        return Err(Failure::event(
            id,
            seq,
            Kind::Chain(BreakKind::ContentEdited),
            "the stored hash is not the hash of the event's fields",
        )
        .into());
    }
    let proof: InclusionProof = read_json(&inclusion.proof)?;
    let cp = notes::read_checkpoint(&inclusion.checkpoint, &keys, &Witnesses::none())?;
    let chain_id = String::from_utf8_lossy(event.chain_id);
    if !cp.is_of_chain(&chain_id) {
        return Err(Failure::checkpoint(
            cp.size,
            Kind::WrongOrigin,
            format!("origin {} is not of chain {chain_id}", cp.origin),
        )
        .into());
    }
    if proof.seq() != Some(seq) {
        return Err(Failure::event(
            id,
            seq,
            Kind::WrongLeaf,
            format!(
                "the proof is for leaf {}, and seq {seq} is leaf {}",
                proof.leaf_index,
                seq - 1
            ),
        )
        .into());
    }
    if proof.tree_size != cp.size {
        return Err(Failure::checkpoint(
            cp.size,
            Kind::WrongSize,
            format!("the proof is for a tree of {}", proof.tree_size),
        )
        .into());
    }
    merkle::verify_inclusion(&proof.proof, cp.size, cp.root, proof.leaf_index, &hash).map_err(
        |e| {
            Failure::event(
                id,
                seq,
                Kind::NotIncluded,
                format!("not in checkpoint {}: {e}", cp.size),
            )
        },
    )?;
    report.push(format!("event {id} seq {seq}: hash verified"));
    report.push(format!("{}: includes it: ok", cp.summary()));
    Ok(())
}

/// Checks that the new checkpoint's tree extends the old one's.
pub fn verify_consistency(consistency: &Consistency, report: &mut Vec<String>) -> Result<(), Stop> {
    let keys = LogKeys::new(&consistency.keys)?;
    let proof: ConsistencyProof = read_json(&consistency.proof)?;
    let old = notes::read_checkpoint(&consistency.old, &keys, &Witnesses::none())?;
    let new = notes::read_checkpoint(&consistency.new, &keys, &Witnesses::none())?;
    if old.origin != new.origin {
        return Err(Failure::checkpoint(
            new.size,
            Kind::WrongOrigin,
            format!(
                "origin {} differs from checkpoint {}'s, {}",
                new.origin, old.size, old.origin
            ),
        )
        .into());
    }
    if (proof.old_size, proof.new_size) != (old.size, new.size) {
        return Err(Failure::checkpoint(
            new.size,
            Kind::WrongSize,
            format!(
                "the proof is from a tree of {} to one of {}, the checkpoints are of {} and {}",
                proof.old_size, proof.new_size, old.size, new.size
            ),
        )
        .into());
    }
    if old.size == 0 {
        return Err(Unusable::Usage(
            "the old checkpoint is of the empty tree, which every tree extends: nothing to prove"
                .to_owned(),
        )
        .into());
    }
    merkle::verify_consistency(&proof.proof, old.size, old.root, new.size, new.root).map_err(
        |e| {
            Failure::checkpoint(
                new.size,
                Kind::Inconsistent,
                format!("does not extend checkpoint {}: {e}", old.size),
            )
        },
    )?;
    report.push(format!("{}: ok", old.summary()));
    report.push(format!("{}: extends it: ok", new.summary()));
    Ok(())
}
