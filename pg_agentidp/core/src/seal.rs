//! What a seal may build on: the sealer extends each chain's tree over the events committed
//! since, and refuses when the log no longer holds the history it sealed.
//!
//! A seal reads stored hashes, not whole events: it checks that each new event follows the last
//! sealed one (sequence and link), and that the last sealed event still has the hash the tree
//! holds. An edit that was rehashed through to the head (so the chain alone verifies) changes
//! that hash, so the sealer sees every such rewrite of sealed history, without reading it. An
//! edit that was not rehashed is verification's to find: the tree then commits to a stored hash
//! that does not recompute, which every holder of the export sees.

use crate::chain::{BreakKind, ChainHead, Hash};
use crate::merkle::{self, verify_consistency};
use crate::tiles::Head;

/// A chain's seal, as the sealer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealStatus {
    /// No event was committed since the last seal.
    Unchanged,
    /// The tree grew over every event committed since.
    Sealed,
    /// The tree grew up to a break among the new events, which verification will name.
    Broken(BreakKind),
    /// The last sealed event is gone or has another hash: sealed history was rewritten. The tree
    /// is left as it was, as evidence.
    Rewritten,
}

impl SealStatus {
    /// The name SQL callers and the runbook use.
    pub const fn as_str(self) -> &'static str {
        match self {
            SealStatus::Unchanged => "unchanged",
            SealStatus::Sealed => "sealed",
            SealStatus::Broken(_) => "broken",
            SealStatus::Rewritten => "rewritten",
        }
    }
}

/// Whether the chain still holds the last event the tree sealed: `stored` is the hash stored now
/// at the tree's last position (none if no row is there).
pub fn sealed_head_holds(sealed: Option<&Hash>, stored: Option<&[u8]>) -> bool {
    match (sealed, stored) {
        (None, _) => true,
        (Some(sealed), Some(stored)) => stored == sealed.as_slice(),
        (Some(_), None) => false,
    }
}

/// Accepts the chain's new events in `seq` order, each following the one before.
#[derive(Debug, Clone, Copy)]
pub struct Successors {
    head: ChainHead,
}

impl Successors {
    /// Starts after the tree's last leaf: `size` events, the last with stored hash `head_hash`
    /// (none for an empty tree).
    pub fn after(size: u64, head_hash: Option<Hash>) -> Successors {
        let seq = i64::try_from(size).unwrap_or(i64::MAX);
        Successors {
            head: ChainHead {
                seq,
                hash: head_hash.unwrap_or(ChainHead::GENESIS.hash),
            },
        }
    }

    /// Takes the next event if it follows; a stored hash of the wrong length is a content edit.
    pub fn accept(&mut self, seq: i64, prev_hash: &[u8], hash: &[u8]) -> Result<Hash, BreakKind> {
        if seq != self.head.next_seq() {
            return Err(BreakKind::SequenceGap);
        }
        if prev_hash != self.head.hash {
            return Err(BreakKind::LinkBroken);
        }
        let hash: Hash = hash.try_into().map_err(|_| BreakKind::ContentEdited)?;
        self.head = ChainHead { seq, hash };
        Ok(hash)
    }
}

/// Whether a signer may sign the sealed tree `sealed`, given the last tree it signed for the
/// chain and the consistency proof from that one to `sealed`. C2SP's rule: never sign two
/// checkpoints that are not consistent, so a tree that does not extend the last one signed is
/// refused whatever the reason (history rewritten, tiles rewritten, the log rolled back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignDecision {
    /// The tree extends the last one signed: sign it.
    Sign,
    /// The tree is the last one signed: nothing to sign.
    NothingNew,
    /// The tree does not extend the last one signed: refuse, and keep both as evidence.
    Inconsistent,
}

/// See [`SignDecision`]. An empty tree is never signed.
pub fn signing_decision(
    last_signed: Option<Head>,
    sealed: Head,
    proof: &[merkle::Hash],
) -> SignDecision {
    let Some(last) = last_signed.filter(|last| last.size > 0) else {
        return if sealed.size > 0 {
            SignDecision::Sign
        } else {
            SignDecision::NothingNew
        };
    };
    if sealed.size == last.size {
        return if sealed.root == last.root {
            SignDecision::NothingNew
        } else {
            SignDecision::Inconsistent
        };
    }
    if sealed.size > last.size
        && verify_consistency(proof, last.size, last.root, sealed.size, sealed.root).is_ok()
    {
        SignDecision::Sign
    } else {
        SignDecision::Inconsistent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::GENESIS_PREV_HASH;

    #[test]
    fn new_events_must_follow_the_last_sealed_one() {
        let mut run = Successors::after(0, None);
        assert_eq!(run.accept(1, &GENESIS_PREV_HASH, &[1; 32]), Ok([1; 32]));
        assert_eq!(run.accept(2, &[1; 32], &[2; 32]), Ok([2; 32]));
        assert_eq!(
            run.accept(4, &[2; 32], &[4; 32]),
            Err(BreakKind::SequenceGap)
        );
        assert_eq!(
            run.accept(3, &[9; 32], &[3; 32]),
            Err(BreakKind::LinkBroken)
        );
        assert_eq!(
            run.accept(3, &[2; 32], &[3; 31]),
            Err(BreakKind::ContentEdited)
        );
        assert_eq!(run.accept(3, &[2; 32], &[3; 32]), Ok([3; 32]));

        let mut resumed = Successors::after(7, Some([7; 32]));
        assert_eq!(resumed.accept(8, &[7; 32], &[8; 32]), Ok([8; 32]));
        let mut wrong = Successors::after(7, Some([7; 32]));
        assert_eq!(
            wrong.accept(8, &[6; 32], &[8; 32]),
            Err(BreakKind::LinkBroken)
        );
    }

    #[test]
    fn a_rewritten_or_missing_sealed_head_is_seen() {
        assert!(sealed_head_holds(None, None), "nothing sealed yet");
        assert!(sealed_head_holds(Some(&[5; 32]), Some(&[5; 32])));
        assert!(!sealed_head_holds(Some(&[5; 32]), Some(&[6; 32])));
        assert!(!sealed_head_holds(Some(&[5; 32]), None));
    }

    #[test]
    fn only_a_tree_that_extends_the_last_signed_one_is_signed() {
        use crate::merkle::Tree;
        let events: Vec<[u8; 32]> = (0..20u8).map(|i| [i; 32]).collect();
        let tree = Tree::of(&events);
        let head = |size: u64| Head {
            size,
            root: tree.root(size).expect("root"),
        };
        let proof = |old: u64, new: u64| tree.consistency_proof(old, new).expect("proof");
        assert_eq!(signing_decision(None, head(5), &[]), SignDecision::Sign);
        assert_eq!(
            signing_decision(None, Head::EMPTY, &[]),
            SignDecision::NothingNew
        );
        assert_eq!(
            signing_decision(Some(head(5)), head(12), &proof(5, 12)),
            SignDecision::Sign
        );
        assert_eq!(
            signing_decision(Some(head(12)), head(12), &[]),
            SignDecision::NothingNew
        );
        // A rewritten history: same size, another root; or a larger tree over other leaves.
        let mut rewritten = events.clone();
        rewritten[3] = [99; 32];
        let forged = Tree::of(&rewritten);
        let forged_head = |size: u64| Head {
            size,
            root: forged.root(size).expect("root"),
        };
        assert_eq!(
            signing_decision(Some(head(12)), forged_head(12), &[]),
            SignDecision::Inconsistent
        );
        assert_eq!(
            signing_decision(
                Some(head(12)),
                forged_head(20),
                &forged.consistency_proof(12, 20).expect("proof")
            ),
            SignDecision::Inconsistent
        );
        // A log rolled back to a smaller tree.
        assert_eq!(
            signing_decision(Some(head(12)), head(8), &[]),
            SignDecision::Inconsistent
        );
        // A proof for other sizes does not pass.
        assert_eq!(
            signing_decision(Some(head(5)), head(12), &proof(6, 12)),
            SignDecision::Inconsistent
        );
    }

    #[test]
    fn statuses_have_stable_names() {
        assert_eq!(SealStatus::Rewritten.as_str(), "rewritten");
        assert_eq!(SealStatus::Broken(BreakKind::LinkBroken).as_str(), "broken");
        assert_eq!(SealStatus::Sealed.as_str(), "sealed");
        assert_eq!(SealStatus::Unchanged.as_str(), "unchanged");
    }
}
