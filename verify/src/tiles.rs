//! A log's published tiles, read from a directory, to find where the tree a checkpoint signed
//! and the export's tree part.
//!
//! Tiles have height 8 and lie at the paths of `tlog_tiles::tile::Tile::path`:
//! `tile/8/<L>/<N>[.p/<W>]`, `<N>` in three-digit groups (`x001/x234/067`).

use std::fs;
use std::path::PathBuf;

use agentidp_core::merkle::{Hash, Tree};
use tlog_tiles::tile::{Tile, TileHashReader, TileReader};
use tlog_tiles::tlog::{stored_hash_index, Error, HashReader, HASH_SIZE};

/// The tile height the sidecar publishes.
pub const TILE_HEIGHT: u8 = 8;

const TILE_WIDTH: u32 = 1 << TILE_HEIGHT;

/// The tiles under a directory.
#[derive(Debug, Clone)]
pub struct TileDir {
    root: PathBuf,
}

impl TileDir {
    pub fn new(root: impl Into<PathBuf>) -> TileDir {
        TileDir { root: root.into() }
    }

    /// The file holding `tile`'s hashes: the tile of its width, or else the narrowest wider one. A
    /// partial tile is a prefix of every wider one, and a log that grew past a checkpoint may
    /// have published only the wider ones.
    fn covering_file(&self, tile: &Tile) -> PathBuf {
        let with_width = |width| {
            Tile::new(
                tile.height(),
                tile.level(),
                tile.level_index(),
                width,
                false,
            )
        };
        if tile.width() < TILE_WIDTH {
            let partial = self.root.join(tile.path());
            let narrowest = partial
                .parent()
                .and_then(|dir| fs::read_dir(dir).ok())
                .into_iter()
                .flatten()
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&width| (tile.width()..TILE_WIDTH).contains(&width))
                .min();
            if let Some(width) = narrowest {
                return self.root.join(with_width(width).path());
            }
        }
        self.root.join(with_width(TILE_WIDTH).path())
    }

    fn read_tile(&self, tile: &Tile) -> Result<Vec<u8>, Error> {
        let path = self.covering_file(tile);
        let mut data =
            fs::read(&path).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
        let needed = tile.width() as usize * HASH_SIZE;
        if data.len() < needed {
            return Err(Error::InvalidInput(format!(
                "{}: {} bytes, {needed} needed",
                path.display(),
                data.len()
            )));
        }
        data.truncate(needed);
        Ok(data)
    }
}

impl TileReader for TileDir {
    fn height(&self) -> u8 {
        TILE_HEIGHT
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, Error> {
        tiles.iter().map(|tile| self.read_tile(tile)).collect()
    }

    /// A verifier keeps nothing: it reads the tiles once.
    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

/// The first leaf at which the tree of `size` leaves with root `root`, as the tiles in `dir` hold
/// it, differs from `ours`; `None` if the first `size` leaves are the same. The tiles are
/// authenticated against `root`, so their hashes are the ones the checkpoint signed.
pub fn first_differing_leaf(
    dir: &TileDir,
    size: u64,
    root: Hash,
    ours: &Tree,
) -> Result<Option<u64>, Error> {
    if size == 0 || size > ours.size() {
        return Err(Error::InvalidInput(format!(
            "no leaves to compare in a tree of {size} against {}",
            ours.size()
        )));
    }
    let theirs = TileHashReader::new(size, root, dir);
    let leaves_per_tile = u64::from(TILE_WIDTH);
    let full_tiles = size / leaves_per_tile;
    // A full tile's subtree hash covers its 256 leaves: comparing those first leaves one tile's
    // leaves to read, however long the log.
    let tile_hashes: Vec<u64> = (0..full_tiles)
        .map(|n| stored_hash_index(TILE_HEIGHT, n))
        .collect();
    let tile = first_difference(&theirs, ours, &tile_hashes)?.unwrap_or(full_tiles);
    let start = tile * leaves_per_tile;
    let leaves: Vec<u64> = (start..size.min(start + leaves_per_tile))
        .map(|i| stored_hash_index(0, i))
        .collect();
    Ok(first_difference(&theirs, ours, &leaves)?.map(|offset| start + offset))
}

fn first_difference(
    theirs: &impl HashReader,
    ours: &impl HashReader,
    indexes: &[u64],
) -> Result<Option<u64>, Error> {
    if indexes.is_empty() {
        return Ok(None);
    }
    let (theirs, ours) = (theirs.read_hashes(indexes)?, ours.read_hashes(indexes)?);
    Ok(theirs
        .iter()
        .zip(&ours)
        .position(|(a, b)| a != b)
        .map(|i| i as u64))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn hashes(n: u32, rewritten_from: Option<u32>) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| {
                let mut h = [0u8; 32];
                h[..4].copy_from_slice(&i.to_be_bytes());
                h[4] = u8::from(rewritten_from.is_some_and(|r| i >= r));
                h
            })
            .collect()
    }

    /// Publishes `tree`'s tiles as a log does when it grows through `sizes`.
    fn publish(dir: &Path, tree: &Tree, sizes: &[u64]) {
        let mut old = 0;
        for &size in sizes {
            for tile in Tile::new_tiles(TILE_HEIGHT, old, size) {
                let data = tile.read_data(tree).expect("tile data");
                let path = dir.join(tile.path());
                fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                fs::write(path, data).expect("write");
            }
            old = size;
        }
    }

    fn case(n: u32, rewritten_from: u32, size: u64, published: &[u64]) -> Option<u64> {
        let honest = Tree::of(&hashes(n, None));
        let forged = Tree::of(&hashes(n, Some(rewritten_from)));
        let dir = tempfile::tempdir().expect("tempdir");
        publish(dir.path(), &honest, published);
        let root = honest.root(size).expect("root");
        first_differing_leaf(&TileDir::new(dir.path()), size, root, &forged).expect("reads")
    }

    #[test]
    fn the_first_rewritten_leaf_is_found_in_full_and_partial_tiles() {
        assert_eq!(case(700, 3, 700, &[700]), Some(3));
        assert_eq!(case(700, 300, 700, &[700]), Some(300));
        assert_eq!(case(700, 690, 700, &[700]), Some(690));
        assert_eq!(case(700, 0, 5, &[5]), Some(0));
        // The log published only wider tiles than the checkpoint's: their prefixes serve.
        assert_eq!(case(700, 600, 650, &[700]), Some(600));
        assert_eq!(case(700, 600, 650, &[100, 640, 700]), Some(600));
        assert_eq!(case(700, 699, 650, &[700]), None);
    }

    #[test]
    fn tiles_that_do_not_match_the_signed_root_are_refused() {
        let honest = Tree::of(&hashes(300, None));
        let forged = Tree::of(&hashes(300, Some(10)));
        let dir = tempfile::tempdir().expect("tempdir");
        // The log's tiles were rewritten too: they no longer authenticate against the checkpoint.
        publish(dir.path(), &forged, &[300]);
        let root = honest.root(300).expect("root");
        assert!(first_differing_leaf(&TileDir::new(dir.path()), 300, root, &forged).is_err());
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(first_differing_leaf(&TileDir::new(empty.path()), 300, root, &forged).is_err());
    }

    #[test]
    fn tile_paths_are_the_crates() {
        assert_eq!(
            Tile::new(TILE_HEIGHT, 0, 1_234_067, 5, false).path(),
            "tile/8/0/x001/x234/067.p/5"
        );
        assert_eq!(
            Tile::new(TILE_HEIGHT, 1, 2, 256, false).path(),
            "tile/8/1/002"
        );
    }
}
