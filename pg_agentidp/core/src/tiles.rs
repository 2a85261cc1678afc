//! A chain's Merkle tree kept as C2SP tlog-tiles of height 8, grown by a sealer and read back for
//! proofs.
//!
//! Tile `(L, N)` lists up to 256 consecutive hashes at level `8L` of the tree (level 0: the leaf
//! hashes). A full tile never changes; the rightmost tile of a level grows with the tree and is
//! stored at its current width, and any narrower tile an older tree size needs is a prefix of it.
//! So a store keeps one row per tile, and every proof for every tree size is cut from those rows.
//! The tree math, the tile layout and the authentication of tiles against a signed root are the
//! `tlog_tiles` crate's; this module adds the prefix rule and growth over a store.

use std::cell::RefCell;
use std::collections::HashMap;

use tlog_tiles::tile::{Tile, TileHashReader, TileReader};
use tlog_tiles::tlog::{self, Hash, HashReader, HASH_SIZE};

use crate::merkle::{leaf_hash, TreeError};

/// Tile height: 256 hashes a tile, as C2SP tlog-tiles prescribes.
pub const HEIGHT: u8 = 8;

/// Hashes in a full tile.
pub const FULL_WIDTH: u32 = 1 << HEIGHT;

/// A tree head: how many leaves, and their root.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
}

impl Head {
    /// The empty tree, whose root RFC 9162 defines as SHA-256 of nothing.
    pub const EMPTY: Head = Head {
        size: 0,
        root: tlog::EMPTY_HASH,
    };
}

/// A tile as a store keeps it: level, index within the level, and `width × 32` bytes of hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTile {
    pub level: u8,
    pub index: u64,
    pub hashes: Vec<u8>,
}

impl StoredTile {
    /// How many hashes the tile holds.
    pub fn width(&self) -> u32 {
        u32::try_from(self.hashes.len() / HASH_SIZE).unwrap_or(u32::MAX)
    }

    /// The tile's C2SP coordinate path, `tile/8/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        Tile::new(
            HEIGHT,
            self.level,
            self.index,
            self.width().clamp(1, FULL_WIDTH),
            false,
        )
        .path()
    }
}

/// A tile's coordinates at one width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRef {
    pub level: u8,
    pub index: u64,
    pub width: u32,
}

impl TileRef {
    /// The tile's C2SP coordinate path, `tile/8/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        Tile::new(
            HEIGHT,
            self.level,
            self.index,
            self.width.clamp(1, FULL_WIDTH),
            false,
        )
        .path()
    }

    /// Reads a C2SP coordinate path of a hash tile of height 8; anything else is `None`.
    pub fn from_path(path: &str) -> Option<TileRef> {
        // `Tile::from_path` panics on a level of 64 or more and on a width of 0, which a path
        // from the network may hold: those are refused first.
        let mut parts = path.split('/');
        let (Some("tile"), Some("8"), Some(level)) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let zero_width = path
            .rsplit_once(".p/")
            .is_some_and(|(_, w)| w.parse::<u32>().map_or(true, |w| w == 0));
        if level.parse::<u8>().ok()? >= 8 || zero_width {
            return None;
        }
        let tile = Tile::from_path(path).ok()?;
        (tile.height() == HEIGHT && !tile.is_data() && tile.width() >= 1).then(|| TileRef {
            level: tile.level(),
            index: tile.level_index(),
            width: tile.width(),
        })
    }
}

/// The tiles a log publishes when its tree grows from `old_size` to `new_size` leaves: each full
/// tile once, and the rightmost of each level at its new width (C2SP tlog-tiles).
pub fn published_between(old_size: u64, new_size: u64) -> Vec<TileRef> {
    Tile::new_tiles(HEIGHT, old_size, new_size.max(old_size))
        .into_iter()
        .map(|t| TileRef {
            level: t.level(),
            index: t.level_index(),
            width: t.width(),
        })
        .collect()
}

/// Where a chain's tiles are kept: the extension's table, or a directory of published tiles.
pub trait TileStore {
    /// The stored hashes of each tile `(level, index)`, as wide as stored; empty when absent.
    fn read(&self, tiles: &[(u8, u64)]) -> Result<Vec<Vec<u8>>, String>;
}

/// Serves `tlog_tiles` the tiles it asks for, cut from the wider ones stored.
struct Prefixes<'a, S>(&'a S);

impl<S: TileStore> TileReader for Prefixes<'_, S> {
    fn height(&self) -> u8 {
        HEIGHT
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog::Error> {
        let coords: Vec<(u8, u64)> = tiles.iter().map(|t| (t.level(), t.level_index())).collect();
        let stored = self.0.read(&coords).map_err(|_| tlog::Error::InvalidTile)?;
        if stored.len() != tiles.len() {
            return Err(tlog::Error::InvalidTile);
        }
        tiles
            .iter()
            .zip(stored)
            .map(|(tile, mut hashes)| {
                let want = tile.width() as usize * HASH_SIZE;
                if hashes.len() < want {
                    return Err(tlog::Error::IndexesNotInTree);
                }
                hashes.truncate(want);
                Ok(hashes)
            })
            .collect()
    }

    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

/// Reads stored hashes straight from tiles, trusting them: for the roots of older sizes, which
/// whoever receives them checks against a signed checkpoint.
struct Unauthenticated<'a, S>(Prefixes<'a, S>);

impl<S: TileStore> HashReader for Unauthenticated<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        let tiles: Vec<Tile> = indexes
            .iter()
            .map(|&i| Tile::from_index(HEIGHT, i))
            .collect();
        let data = self.0.read_tiles(&tiles)?;
        tiles
            .iter()
            .zip(&data)
            .zip(indexes)
            .map(|((tile, data), &i)| tile.hash_at_index(data, i))
            .collect()
    }
}

fn store_error(e: tlog::Error) -> TreeError {
    if matches!(e, tlog::Error::InconsistentTile) {
        TreeError::InconsistentTiles
    } else {
        TreeError::MissingTiles
    }
}

/// The root of the first `size` leaves, from the tiles alone.
pub fn root_at<S: TileStore>(store: &S, size: u64) -> Result<Hash, TreeError> {
    tlog::tree_hash(size, &Unauthenticated(Prefixes(store))).map_err(store_error)
}

/// The inclusion proof (RFC 9162 §2.1.3) of leaf `index` in the tree `head`, from tiles that are
/// authenticated against `head.root`: tiles that do not match it are an error, not a proof that
/// fails later.
///
/// Every proof is also checked against the root before it is returned. `TileHashReader` leaves
/// some tiles unauthenticated (it starts authenticating the tiles it read for the requested
/// hashes at the count of the tree's subtrees, not of their distinct tiles, so in a tree whose
/// right edge shares a tile the next one is skipped); the check makes that harmless.
pub fn inclusion_proof<S: TileStore>(
    store: &S,
    head: Head,
    index: u64,
) -> Result<Vec<Hash>, TreeError> {
    if index >= head.size {
        return Err(TreeError::NoSuchLeaf {
            index,
            size: head.size,
        });
    }
    let prefixes = Prefixes(store);
    let reader = TileHashReader::new(head.size, head.root, &prefixes);
    let proof = tlog::prove_record(head.size, index, &reader).map_err(store_error)?;
    let leaf = Unauthenticated(Prefixes(store))
        .read_hashes(&[tlog::stored_hash_index(0, index)])
        .map_err(store_error)?;
    tlog::check_record(&proof, head.size, head.root, index, leaf[0])
        .map_err(|_| TreeError::InconsistentTiles)?;
    Ok(proof)
}

/// The consistency proof (RFC 9162 §2.1.4) that `head` extends the tree of `old_size` leaves,
/// from tiles authenticated against `head.root`, and checked against it and the old root the
/// same tiles give (see [`inclusion_proof`]). Whether that old root is the one signed is for the
/// holder of the signed checkpoint to check.
pub fn consistency_proof<S: TileStore>(
    store: &S,
    old_size: u64,
    head: Head,
) -> Result<Vec<Hash>, TreeError> {
    if old_size == 0 || old_size > head.size {
        return Err(TreeError::NotAnExtension {
            old: old_size,
            new: head.size,
        });
    }
    let prefixes = Prefixes(store);
    let reader = TileHashReader::new(head.size, head.root, &prefixes);
    let proof = tlog::prove_tree(head.size, old_size, &reader).map_err(store_error)?;
    let old_root = root_at(store, old_size)?;
    tlog::check_tree(&proof, head.size, head.root, old_size, old_root)
        .map_err(|_| TreeError::InconsistentTiles)?;
    Ok(proof)
}

/// What growing a tree produced: its new head, and every tile to store (full tiles once, the
/// rightmost of each level at its new width, replacing the narrower one stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    pub head: Head,
    pub tiles: Vec<StoredTile>,
}

/// Hashes of the old tree read from its authenticated tiles, and the ones this growth added.
struct Growing<'a, R> {
    old: &'a R,
    first_new: u64,
    added: Vec<Hash>,
    read: RefCell<HashMap<u64, Hash>>,
}

impl<R: HashReader> HashReader for Growing<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        let missing: Vec<u64> = {
            let read = self.read.borrow();
            indexes
                .iter()
                .copied()
                .filter(|&i| i < self.first_new && !read.contains_key(&i))
                .collect()
        };
        if !missing.is_empty() {
            let hashes = self.old.read_hashes(&missing)?;
            self.read
                .borrow_mut()
                .extend(missing.into_iter().zip(hashes));
        }
        let read = self.read.borrow();
        indexes
            .iter()
            .map(|&i| {
                if i < self.first_new {
                    read.get(&i).copied().ok_or(tlog::Error::IndexesNotInTree)
                } else {
                    usize::try_from(i - self.first_new)
                        .ok()
                        .and_then(|k| self.added.get(k).copied())
                        .ok_or(tlog::Error::IndexesNotInTree)
                }
            })
            .collect()
    }
}

/// Grows the tree `old`, whose tiles `store` holds, by the events whose stored hashes are
/// `event_hashes` (the chain's next events in `seq` order). The old tiles are authenticated
/// against `old.root`, and the grown tree is proved consistent with it: tiles rewritten since
/// are refused rather than built upon.
pub fn extend<'h, S: TileStore>(
    store: &S,
    old: Head,
    event_hashes: impl IntoIterator<Item = &'h [u8; 32]>,
) -> Result<Extension, TreeError> {
    let prefixes = Prefixes(store);
    let authenticated = TileHashReader::new(old.size, old.root, &prefixes);
    let mut tree = Growing {
        old: &authenticated,
        first_new: tlog::stored_hash_count(old.size),
        added: Vec::new(),
        read: RefCell::new(HashMap::new()),
    };
    let mut size = old.size;
    for event_hash in event_hashes {
        let new = tlog::stored_hashes_for_record_hash(size, leaf_hash(event_hash), &tree)
            .map_err(store_error)?;
        tree.added.extend(new);
        size += 1;
    }
    if size == old.size {
        return Ok(Extension {
            head: old,
            tiles: Vec::new(),
        });
    }
    let root = tlog::tree_hash(size, &tree).map_err(store_error)?;
    if old.size > 0 {
        let proof = tlog::prove_tree(size, old.size, &tree).map_err(store_error)?;
        tlog::check_tree(&proof, size, root, old.size, old.root)
            .map_err(|_| TreeError::InconsistentTiles)?;
    }
    let tiles = Tile::new_tiles(HEIGHT, old.size, size)
        .into_iter()
        .map(|tile| {
            Ok(StoredTile {
                level: tile.level(),
                index: tile.level_index(),
                hashes: tile.read_data(&tree).map_err(store_error)?,
            })
        })
        .collect::<Result<_, TreeError>>()?;
    Ok(Extension {
        head: Head { size, root },
        tiles,
    })
}

/// A store in memory, for tests and for a verifier that has read published tiles.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    tiles: HashMap<(u8, u64), Vec<u8>>,
}

impl MemoryStore {
    /// Stores tiles as a sealer would: each replaces the narrower one at its coordinates.
    pub fn put(&mut self, tiles: impl IntoIterator<Item = StoredTile>) {
        for tile in tiles {
            self.tiles.insert((tile.level, tile.index), tile.hashes);
        }
    }

    /// Every tile held, in no particular order.
    pub fn tiles(&self) -> impl Iterator<Item = StoredTile> + '_ {
        self.tiles
            .iter()
            .map(|(&(level, index), hashes)| StoredTile {
                level,
                index,
                hashes: hashes.clone(),
            })
    }
}

impl TileStore for MemoryStore {
    fn read(&self, tiles: &[(u8, u64)]) -> Result<Vec<Vec<u8>>, String> {
        Ok(tiles
            .iter()
            .map(|c| self.tiles.get(c).cloned().unwrap_or_default())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::merkle::{verify_consistency, verify_inclusion, Tree};

    fn event_hash(i: u64) -> [u8; 32] {
        Sha256::digest(i.to_be_bytes()).into()
    }

    fn events(n: u64) -> Vec<[u8; 32]> {
        (1..=n).map(event_hash).collect()
    }

    /// Seals `all` in batches of the given sizes, as a sealer running now and then would.
    fn sealed_in(all: &[[u8; 32]], batches: &[usize]) -> (MemoryStore, Head) {
        let mut store = MemoryStore::default();
        let mut head = Head::EMPTY;
        let mut at = 0;
        for &n in batches {
            let grown = extend(&store, head, &all[at..at + n]).expect("extends");
            store.put(grown.tiles);
            head = grown.head;
            at += n;
        }
        (store, head)
    }

    #[test]
    fn growth_in_any_batches_gives_the_in_memory_trees_root_at_every_size() {
        let all = events(1100);
        let tree = Tree::of(&all);
        for batches in [
            vec![1100],
            vec![1, 255, 1, 256, 587],
            vec![300, 300, 300, 200],
            vec![513, 587],
        ] {
            let (store, head) = sealed_in(&all, &batches);
            assert_eq!(head.size, 1100);
            assert_eq!(Ok(head.root), tree.root(1100), "batches {batches:?}");
            for size in [1, 2, 255, 256, 257, 511, 512, 513, 1000, 1100] {
                assert_eq!(root_at(&store, size), tree.root(size), "size {size}");
            }
        }
    }

    #[test]
    fn a_full_level_zero_tile_holds_its_256_leaf_hashes() {
        let all = events(300);
        let (store, _) = sealed_in(&all, &[100, 200]);
        let level0 = store.read(&[(0, 0), (0, 1)]).expect("read");
        assert_eq!(level0[0].len(), 256 * 32);
        assert_eq!(
            level0[1].len(),
            44 * 32,
            "the rightmost tile at its current width"
        );
        assert_eq!(&level0[0][..32], &leaf_hash(&all[0]).0[..]);
        assert_eq!(&level0[1][43 * 32..], &leaf_hash(&all[299]).0[..]);
    }

    #[test]
    fn proofs_from_tiles_verify_for_every_signed_size() {
        let all = events(700);
        let tree = Tree::of(&all);
        let (store, head) = sealed_in(&all, &[10, 250, 440]);
        for size in [1, 10, 256, 257, 600, 700] {
            let at = Head {
                size,
                root: tree.root(size).expect("root"),
            };
            for index in [0, size / 2, size - 1] {
                let proof = inclusion_proof(&store, at, index).expect("proof");
                let leaf = &all[usize::try_from(index).unwrap_or(0)];
                assert_eq!(verify_inclusion(&proof, size, at.root, index, leaf), Ok(()));
            }
            let proof = consistency_proof(&store, size, head).expect("proof");
            assert_eq!(
                verify_consistency(&proof, size, at.root, head.size, head.root),
                Ok(())
            );
        }
    }

    #[test]
    fn proofs_between_older_sizes_come_from_the_same_tiles() {
        let all = events(300);
        let tree = Tree::of(&all);
        let (store, _) = sealed_in(&all, &[300]);
        for (old, new) in [
            (1, 256),
            (7, 256),
            (100, 256),
            (256, 256),
            (1, 299),
            (255, 257),
        ] {
            let head = Head {
                size: new,
                root: root_at(&store, new).expect("root"),
            };
            assert_eq!(Ok(head.root), tree.root(new));
            let proof = consistency_proof(&store, old, head).expect("proof");
            let old_root = tree.root(old).expect("root");
            assert_eq!(
                verify_consistency(&proof, old, old_root, new, head.root),
                Ok(()),
                "{old} -> {new}"
            );
            let proof = inclusion_proof(&store, head, old - 1).expect("proof");
            assert_eq!(
                verify_inclusion(
                    &proof,
                    new,
                    head.root,
                    old - 1,
                    &all[usize::try_from(old - 1).unwrap_or(0)]
                ),
                Ok(())
            );
        }
    }

    #[test]
    fn rewritten_tiles_are_refused_against_the_signed_root() {
        let all = events(601);
        let (honest, head) = sealed_in(&all[..600], &[600]);
        let forge = |level: u8, index: u64| {
            let mut store = honest.clone();
            let mut hashes = store.read(&[(level, index)]).expect("read").remove(0);
            hashes[5] ^= 1;
            store.put([StoredTile {
                level,
                index,
                hashes,
            }]);
            store
        };
        // A full tile inside the tree: proofs through it are refused; growth never reads it.
        let inner = forge(0, 1);
        assert_eq!(
            inclusion_proof(&inner, head, 300),
            Err(TreeError::InconsistentTiles)
        );
        assert_eq!(
            consistency_proof(&inner, 300, head),
            Err(TreeError::InconsistentTiles)
        );
        assert_eq!(
            root_at(&inner, 600),
            Ok(head.root),
            "the root is read from other tiles"
        );
        // The right edge, which growth builds on.
        let edge = forge(0, 2);
        assert_eq!(
            extend(&edge, head, &all[600..]),
            Err(TreeError::InconsistentTiles)
        );
        assert_eq!(
            inclusion_proof(&edge, head, 599),
            Err(TreeError::InconsistentTiles)
        );
        assert_ne!(root_at(&edge, 600), Ok(head.root));
        assert!(extend(&honest, head, &all[600..]).is_ok());
    }

    #[test]
    fn missing_tiles_and_impossible_requests_are_errors() {
        let all = events(40);
        let (_, head) = sealed_in(&all, &[40]);
        let empty = MemoryStore::default();
        assert_eq!(
            inclusion_proof(&empty, head, 3),
            Err(TreeError::MissingTiles)
        );
        assert!(matches!(
            inclusion_proof(&empty, head, 40),
            Err(TreeError::NoSuchLeaf { .. })
        ));
        assert!(matches!(
            consistency_proof(&empty, 41, head),
            Err(TreeError::NotAnExtension { .. })
        ));
        assert!(matches!(
            consistency_proof(&empty, 0, head),
            Err(TreeError::NotAnExtension { .. })
        ));
    }

    #[test]
    fn growth_publishes_the_full_tiles_once_and_the_edge_at_its_width() {
        let paths = |old, new| {
            published_between(old, new)
                .iter()
                .map(TileRef::path)
                .collect::<Vec<_>>()
        };
        assert_eq!(paths(0, 3), ["tile/8/0/000.p/3"]);
        assert_eq!(
            paths(3, 300),
            ["tile/8/0/000", "tile/8/0/001.p/44", "tile/8/1/000.p/1"]
        );
        assert_eq!(paths(300, 300), Vec::<String>::new());
        assert_eq!(paths(300, 200), Vec::<String>::new(), "never backwards");
        for path in ["tile/8/0/000.p/3", "tile/8/1/x001/234", "tile/8/0/001.p/44"] {
            assert_eq!(
                TileRef::from_path(path).map(|t| t.path()).as_deref(),
                Some(path)
            );
        }
        for path in [
            "tile/4/0/000",
            "tile/8/data/000",
            "tile/8/0/0",
            "tile/8/0/000.p/0",
            "tile/8/0/000.p/00",
            "tile/8/64/000",
            "tile/8/255/000",
            "tile/8/0/000.p/256",
            "x",
        ] {
            assert_eq!(TileRef::from_path(path), None, "{path}");
        }
    }

    #[test]
    fn tile_paths_follow_c2sp() {
        let tile = StoredTile {
            level: 1,
            index: 1234,
            hashes: vec![0; 5 * 32],
        };
        assert_eq!(tile.path(), "tile/8/1/x001/234.p/5");
        let full = StoredTile {
            level: 0,
            index: 7,
            hashes: vec![0; 256 * 32],
        };
        assert_eq!(full.path(), "tile/8/0/007");
    }

    #[test]
    fn an_empty_extension_keeps_the_head() {
        let store = MemoryStore::default();
        let grown = extend(&store, Head::EMPTY, &[]).expect("extends");
        assert_eq!(grown.head, Head::EMPTY);
        assert!(grown.tiles.is_empty());
    }
}
