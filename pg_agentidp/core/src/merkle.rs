//! Each chain as a Merkle tree (RFC 9162 §2.1), with the tree math of the C2SP `tlog_tiles`
//! crate rather than our own.
//!
//! Leaf `i` is the stored `hash` of the chain's event `seq = i + 1`; its leaf hash is
//! `SHA-256(0x00 || hash)` and an interior node is `SHA-256(0x01 || left || right)`. The tree's
//! stored hashes are kept in the tlog-tiles order (Crosby and Wallach's dense numbering), which is
//! what full tiles are cut from; this type holds them in memory for a sealer or a verifier.

pub use tlog_tiles::tlog::Hash;
use tlog_tiles::tlog::{self, HashReader};

/// Why a tree operation or a proof check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("tree of {size} leaves has no leaf {index}")]
    NoSuchLeaf { index: u64, size: u64 },
    #[error("a tree of {new} leaves cannot be proved to extend one of {old}")]
    NotAnExtension { old: u64, new: u64 },
    #[error("stored hash {0} is missing")]
    MissingHash(u64),
    #[error("the proof does not hold")]
    ProofFailed,
    #[error(
        "the stored tiles do not match the tree's root: they were changed after it was signed"
    )]
    InconsistentTiles,
    #[error("a tile the tree needs is not stored")]
    MissingTiles,
}

/// The leaf hash of an event whose stored hash is `event_hash`.
pub fn leaf_hash(event_hash: &[u8; 32]) -> Hash {
    tlog::record_hash(event_hash)
}

/// A chain's tree: every stored hash, grown one leaf at a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    stored: Vec<Hash>,
    size: u64,
}

impl HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.stored.get(i).copied())
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Tree {
    /// The tree over `event_hashes`, the chain's events in `seq` order from 1.
    pub fn of<'a>(event_hashes: impl IntoIterator<Item = &'a [u8; 32]>) -> Tree {
        let mut tree = Tree::default();
        for h in event_hashes {
            tree.append(h);
        }
        tree
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Every stored hash, in tlog-tiles order: what a full tile is cut from.
    pub fn stored_hashes(&self) -> &[Hash] {
        &self.stored
    }

    /// Appends the next event's hash as a leaf.
    pub fn append(&mut self, event_hash: &[u8; 32]) {
        let new = tlog::stored_hashes_for_record_hash(self.size, leaf_hash(event_hash), self)
            .expect("a tree reads back every hash it stored");
        self.stored.extend(new);
        self.size += 1;
    }

    /// The root of the tree's first `size` leaves (the whole tree: `size()`).
    pub fn root(&self, size: u64) -> Result<Hash, TreeError> {
        if size > self.size {
            return Err(TreeError::NoSuchLeaf {
                index: size,
                size: self.size,
            });
        }
        tlog::tree_hash(size, self).map_err(|_| TreeError::MissingHash(size))
    }

    /// The inclusion proof (RFC 9162 §2.1.3) of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        if index >= size || size > self.size {
            return Err(TreeError::NoSuchLeaf { index, size });
        }
        tlog::prove_record(size, index, self).map_err(|_| TreeError::MissingHash(index))
    }

    /// The consistency proof (RFC 9162 §2.1.4) that the tree of `new` leaves extends the one of
    /// `old` leaves.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
        if old > new || new > self.size || old == 0 {
            return Err(TreeError::NotAnExtension { old, new });
        }
        tlog::prove_tree(new, old, self).map_err(|_| TreeError::NotAnExtension { old, new })
    }
}

/// The root of a tree streamed leaf by leaf, in memory logarithmic in its size: for a tree that
/// is not stored, such as the one a rewritten history gives. (`tlog_tiles` computes roots only
/// over stored hashes.) It keeps the roots of the perfect subtrees along the right edge, as
/// RFC 9162 §2.1.1 splits a tree.
#[derive(Debug, Clone, Default)]
pub struct RootAccumulator {
    /// Perfect subtrees, largest first, with their heights.
    edge: Vec<(u32, Hash)>,
    size: u64,
}

impl RootAccumulator {
    /// Adds the next event's stored hash as a leaf (hashed as stored, whatever its length: a
    /// tampered row is part of the tree it gives).
    pub fn push(&mut self, event_hash: &[u8]) {
        let mut node = (0u32, tlog::record_hash(event_hash));
        while let Some(&(height, left)) = self.edge.last() {
            if height != node.0 {
                break;
            }
            self.edge.pop();
            node = (height + 1, tlog::node_hash(left, node.1));
        }
        self.edge.push(node);
        self.size += 1;
    }

    /// Leaves added.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves added so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.edge.iter().rev();
        let Some(&(_, mut root)) = nodes.next() else {
            return tlog::EMPTY_HASH;
        };
        for &(_, left) in nodes {
            root = tlog::node_hash(left, root);
        }
        root
    }
}

/// Checks that the event whose stored hash is `event_hash` is leaf `index` of the tree of `size`
/// leaves with root `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    event_hash: &[u8; 32],
) -> Result<(), TreeError> {
    tlog::check_record(&proof.to_vec(), size, root, index, leaf_hash(event_hash))
        .map_err(|_| TreeError::ProofFailed)
}

/// Checks that the tree of `new` leaves with root `new_root` extends the one of `old` leaves
/// with root `old_root`: the log only grew.
pub fn verify_consistency(
    proof: &[Hash],
    old: u64,
    old_root: Hash,
    new: u64,
    new_root: Hash,
) -> Result<(), TreeError> {
    tlog::check_tree(&proof.to_vec(), new, new_root, old, old_root)
        .map_err(|_| TreeError::ProofFailed)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn event_hash(i: u8) -> [u8; 32] {
        Sha256::digest([b'e', i]).into()
    }

    fn events(n: u8) -> Vec<[u8; 32]> {
        (1..=n).map(event_hash).collect()
    }

    /// RFC 9162 §2.1.1, written out independently of the crate: MTH over a list of leaves.
    fn reference_root(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => Sha256::new()
                .chain_update([0u8])
                .chain_update(leaves[0])
                .finalize()
                .into(),
            n => {
                let k = n.next_power_of_two() / 2;
                Sha256::new()
                    .chain_update([1u8])
                    .chain_update(reference_root(&leaves[..k]))
                    .chain_update(reference_root(&leaves[k..]))
                    .finalize()
                    .into()
            }
        }
    }

    #[test]
    fn roots_follow_rfc_9162_for_every_size() {
        let all = events(40);
        let tree = Tree::of(&all);
        for size in 0..=40u64 {
            let expected = reference_root(&all[..usize::try_from(size).unwrap_or(0)]);
            assert_eq!(tree.root(size).map(|h| h.0), Ok(expected), "size {size}");
        }
    }

    #[test]
    fn a_three_event_tree_has_the_published_root() {
        // The runbook's worked example: events hashed SHA-256("e" || i), i = 1, 2, 3.
        let tree = Tree::of(&events(3));
        assert_eq!(
            hex::encode(tree.root(3).map(|h| h.0).unwrap_or_default()),
            hex::encode(reference_root(&events(3)))
        );
        assert_eq!(tree.stored_hashes().len(), 4, "3 leaves and 1 full node");
    }

    #[test]
    fn every_leaf_is_proved_in_every_tree_that_holds_it() {
        let all = events(17);
        let tree = Tree::of(&all);
        for size in 1..=17u64 {
            let root = tree.root(size).expect("root");
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).expect("proof");
                let leaf = &all[usize::try_from(index).unwrap_or(0)];
                assert_eq!(verify_inclusion(&proof, size, root, index, leaf), Ok(()));
                // The same proof does not hold for another event, or at another index.
                let other = event_hash(99);
                assert_eq!(
                    verify_inclusion(&proof, size, root, index, &other),
                    Err(TreeError::ProofFailed)
                );
                if size > 1 {
                    let elsewhere = (index + 1) % size;
                    assert_eq!(
                        verify_inclusion(&proof, size, root, elsewhere, leaf),
                        Err(TreeError::ProofFailed)
                    );
                }
            }
        }
    }

    #[test]
    fn a_grown_tree_is_consistent_with_every_earlier_one_and_a_rewritten_one_is_not() {
        let all = events(20);
        let tree = Tree::of(&all);
        for old in 1..=20u64 {
            for new in old..=20u64 {
                let proof = tree.consistency_proof(old, new).expect("proof");
                let (old_root, new_root) = (
                    tree.root(old).expect("in the tree"),
                    tree.root(new).expect("in the tree"),
                );
                assert_eq!(
                    verify_consistency(&proof, old, old_root, new, new_root),
                    Ok(())
                );
            }
        }
        // History rewritten at event 5: the rewritten tree of 20 does not extend the old one of 10.
        let mut rewritten = all.clone();
        rewritten[4] = event_hash(200);
        let forged = Tree::of(&rewritten);
        let proof = forged.consistency_proof(10, 20).expect("proof");
        assert_eq!(
            verify_consistency(
                &proof,
                10,
                tree.root(10).expect("in the tree"),
                20,
                forged.root(20).expect("in the tree")
            ),
            Err(TreeError::ProofFailed)
        );
    }

    #[test]
    fn the_streamed_root_is_the_stored_trees_at_every_size() {
        let all = events(70);
        let tree = Tree::of(&all);
        let mut acc = RootAccumulator::default();
        assert_eq!(Ok(acc.root()), tree.root(0));
        for (i, h) in all.iter().enumerate() {
            acc.push(h);
            let size = u64::try_from(i + 1).unwrap_or(0);
            assert_eq!(acc.size(), size);
            assert_eq!(Ok(acc.root()), tree.root(size), "size {size}");
        }
    }

    #[test]
    fn out_of_range_requests_are_errors() {
        let tree = Tree::of(&events(3));
        assert!(tree.inclusion_proof(3, 3).is_err());
        assert!(tree.inclusion_proof(0, 4).is_err());
        assert!(tree.consistency_proof(0, 3).is_err());
        assert!(tree.consistency_proof(3, 2).is_err());
        assert!(tree.root(4).is_err());
    }
}
