//! The checkpoints of incremental verification: read, and moved or dropped as
//! `agentidp_core::verdict::checkpoint_action` decides.

use agentidp_core::chain::ChainHead;
use agentidp_core::verdict::{checkpoint_action, ChainOutcome, CheckpointAction};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::positions::{head_at, NO_SNAPSHOT};
use crate::spi::KeptPlan;

static CHECKPOINT: KeptPlan = KeptPlan::new(
    c"SELECT seq, hash FROM agentidp.chain_checkpoints WHERE chain_id = $1",
    &[pg_sys::TEXTOID],
);

pub(crate) fn checkpoint(chain_id: &str) -> Option<ChainHead> {
    head_at(&CHECKPOINT.query(&[chain_id.into_datum()], NO_SNAPSHOT, 1))
}

fn save_checkpoint(chain_id: &str, head: &ChainHead) {
    Spi::run_with_args(
        "INSERT INTO agentidp.chain_checkpoints (chain_id, seq, hash) VALUES ($1, $2, $3)
         ON CONFLICT (chain_id) DO UPDATE
            SET seq = excluded.seq, hash = excluded.hash, verified_at = excluded.verified_at",
        &[
            chain_id.into(),
            head.seq.into(),
            head.hash.as_slice().into(),
        ],
    )
    .unwrap_or_else(|e| error!("recording the checkpoint of chain {chain_id:?} failed: {e}"));
}

fn drop_checkpoint(chain_id: &str) {
    Spi::run_with_args(
        "DELETE FROM agentidp.chain_checkpoints WHERE chain_id = $1",
        &[chain_id.into()],
    )
    .unwrap_or_else(|e| error!("dropping the checkpoint of chain {chain_id:?} failed: {e}"));
}

/// Moves or drops the chain's checkpoint after a walk from it.
pub(crate) fn settle(chain_id: &str, outcome: &ChainOutcome) {
    match checkpoint_action(outcome) {
        CheckpointAction::Drop => drop_checkpoint(chain_id),
        CheckpointAction::MoveTo(head) => save_checkpoint(chain_id, &head),
        CheckpointAction::Keep => {}
    }
}
