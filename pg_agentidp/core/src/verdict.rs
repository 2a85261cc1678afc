//! How the walks of several chains fold into the one verdict a caller sees, and what a walk
//! means for the chain's checkpoint.
//!
//! The extension's SQL functions, and on Citus a coordinator merging its workers' answers, fold
//! the same way: the counts add up, and the first break found is the one reported.

use crate::chain::{BreakKind, ChainHead};
use crate::chain_set::ChainVerdict;

/// A break: the event it was found at (none for a cut tail), and its kind.
pub type Break = (Option<[u8; 16]>, BreakKind);

/// Where one chain's walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainOutcome {
    /// Events checked.
    pub checked: u64,
    /// The last event that held. A chain verified out of order that breaks vouches for none of
    /// its events, and keeps its start here.
    pub head: ChainHead,
    pub broken: Option<Break>,
}

impl ChainOutcome {
    /// The outcome of a chain verified out of order (`chain_set`), which started after `start`.
    pub fn of(start: ChainHead, verdict: ChainVerdict) -> ChainOutcome {
        match verdict {
            ChainVerdict::Intact { checked, head } => ChainOutcome {
                checked,
                head,
                broken: None,
            },
            ChainVerdict::Broken {
                checked,
                event_id,
                kind,
            } => ChainOutcome {
                checked,
                head: start,
                broken: Some((Some(event_id), kind)),
            },
        }
    }
}

/// The verdict over several chains: every event checked, and the first break with its chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub checked: u64,
    pub broken: Option<(Option<[u8; 16]>, BreakKind, String)>,
}

impl Verdict {
    /// Adds a chain's outcome. Walks stop at the first break, so a later one is not looked for;
    /// if one is added anyway, the first stays the one reported.
    pub fn add(&mut self, chain_id: &str, outcome: &ChainOutcome) {
        self.checked = self.checked.saturating_add(outcome.checked);
        if self.broken.is_none() {
            self.broken = outcome
                .broken
                .map(|(event, kind)| (event, kind, chain_id.to_owned()));
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }
}

/// What a walk from a chain's checkpoint does to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointAction {
    /// The chain broke: a checkpoint vouches for everything before it, so a broken chain keeps
    /// none, and the next incremental run walks it whole and stays failing until the break is
    /// dealt with, instead of passing by starting after it.
    Drop,
    /// The chain held up to this head: the next run starts after it.
    MoveTo(ChainHead),
    /// Nothing was proved (an empty chain): the checkpoint stays as it is.
    Keep,
}

pub fn checkpoint_action(outcome: &ChainOutcome) -> CheckpointAction {
    match outcome.broken {
        Some(_) => CheckpointAction::Drop,
        None if outcome.head.seq > 0 => CheckpointAction::MoveTo(outcome.head),
        None => CheckpointAction::Keep,
    }
}

/// An outcome with a digest's verdict applied: the walk's count, and the digest's break if the
/// walk itself held.
pub fn with_digest(walked: ChainOutcome, digest: Result<(), ChainOutcome>) -> ChainOutcome {
    match (walked.broken, digest) {
        (Some(_), _) | (None, Ok(())) => walked,
        (None, Err(broken)) => ChainOutcome {
            checked: walked.checked,
            ..broken
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: i64) -> ChainHead {
        ChainHead {
            seq,
            hash: [seq as u8; 32],
        }
    }

    fn intact(checked: u64, seq: i64) -> ChainOutcome {
        ChainOutcome {
            checked,
            head: head(seq),
            broken: None,
        }
    }

    fn broken(checked: u64, kind: BreakKind) -> ChainOutcome {
        ChainOutcome {
            checked,
            head: head(0),
            broken: Some((Some([7; 16]), kind)),
        }
    }

    #[test]
    fn counts_add_up_and_the_first_break_is_reported() {
        let mut v = Verdict::default();
        v.add("global", &intact(10, 10));
        assert!(!v.is_broken());
        v.add("org:a", &broken(3, BreakKind::LinkBroken));
        v.add("org:b", &broken(5, BreakKind::ContentEdited));
        assert_eq!(v.checked, 18);
        assert_eq!(
            v.broken,
            Some((Some([7; 16]), BreakKind::LinkBroken, "org:a".to_owned()))
        );
    }

    #[test]
    fn a_break_drops_the_checkpoint_and_a_held_chain_moves_it() {
        assert_eq!(
            checkpoint_action(&broken(1, BreakKind::SequenceGap)),
            CheckpointAction::Drop
        );
        assert_eq!(
            checkpoint_action(&intact(4, 9)),
            CheckpointAction::MoveTo(head(9))
        );
        assert_eq!(checkpoint_action(&intact(0, 0)), CheckpointAction::Keep);
    }

    #[test]
    fn a_digest_break_counts_what_the_walk_checked() {
        let cut = ChainOutcome {
            checked: 0,
            head: head(20),
            broken: Some((None, BreakKind::Truncated)),
        };
        let folded = with_digest(intact(14, 14), Err(cut));
        assert_eq!(folded.checked, 14);
        assert_eq!(folded.broken, Some((None, BreakKind::Truncated)));
        assert_eq!(with_digest(intact(14, 14), Ok(())), intact(14, 14));
        let walk_broke = broken(2, BreakKind::ContentEdited);
        assert_eq!(with_digest(walk_broke, Err(cut)), walk_broke);
    }

    #[test]
    fn an_out_of_order_break_vouches_for_nothing() {
        let start = head(3);
        let outcome = ChainOutcome::of(
            start,
            ChainVerdict::Broken {
                checked: 2,
                event_id: [1; 16],
                kind: BreakKind::LinkBroken,
            },
        );
        assert_eq!(outcome.head, start);
        assert_eq!(outcome.broken, Some((Some([1; 16]), BreakKind::LinkBroken)));
        let held = ChainOutcome::of(
            start,
            ChainVerdict::Intact {
                checked: 5,
                head: head(8),
            },
        );
        assert_eq!(held, intact(5, 8));
    }
}
