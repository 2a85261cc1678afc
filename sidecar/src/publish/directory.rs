//! The directory sink: per chain, every signed checkpoint as a file of its own and the tiles of
//! its tree in the C2SP tlog-tiles layout, none ever overwritten.
//!
//! ```text
//! <dir>/<chain>/checkpoints/<tree size>     the signed note
//! <dir>/<chain>/tile/8/<L>/<N>[.p/<W>]      the tiles, full ones once, partial ones per width
//! ```
//!
//! `<chain>` is `agentidp_core::checkpoint::path_segment`. A file is written under a temporary
//! name and then hard-linked to its own, which fails if that exists: a crash leaves no torn
//! file under a published name, and no publication replaces another. Finding a file already
//! there with the same bytes is success (a retry); with other bytes it is a conflict, which
//! means two different checkpoints of one size were signed, and is reported, never resolved.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use agentidp_core::checkpoint::path_segment;
use agentidp_core::tiles::TileRef;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot publish to {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} already holds other bytes: two different checkpoints were signed for one tree size"
    )]
    Conflict { path: PathBuf },
}

#[derive(Clone, Debug)]
pub struct DirectorySink {
    root: PathBuf,
}

impl DirectorySink {
    pub fn new(root: PathBuf) -> DirectorySink {
        DirectorySink { root }
    }

    fn chain_dir(&self, chain_id: &str) -> PathBuf {
        self.root.join(path_segment(chain_id))
    }

    /// Publishes the tiles, then the checkpoint, so a reader who finds a checkpoint finds what
    /// its proofs need.
    pub fn publish(
        &self,
        chain_id: &str,
        tree_size: u64,
        note: &str,
        tiles: &[(TileRef, Vec<u8>)],
    ) -> Result<(), DirectoryError> {
        let dir = self.chain_dir(chain_id);
        for (tile, hashes) in tiles {
            write_once(&dir.join(tile.path()), hashes)?;
        }
        write_once(
            &dir.join("checkpoints").join(tree_size.to_string()),
            note.as_bytes(),
        )
    }

    /// The largest tree size published for the chain (0 when none): tiles are published from
    /// there on.
    pub fn latest_size(&self, chain_id: &str) -> Result<u64, DirectoryError> {
        let dir = self.chain_dir(chain_id).join("checkpoints");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(DirectoryError::Io { path: dir, source }),
        };
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0))
    }

    /// The published checkpoint of `tree_size`, if any.
    pub fn checkpoint(&self, chain_id: &str, tree_size: u64) -> Option<String> {
        let path = self
            .chain_dir(chain_id)
            .join("checkpoints")
            .join(tree_size.to_string());
        std::fs::read_to_string(path).ok()
    }
}

fn write_once(path: &Path, bytes: &[u8]) -> Result<(), DirectoryError> {
    let io = |source| DirectoryError::Io {
        path: path.to_owned(),
        source,
    };
    if let Ok(existing) = std::fs::read(path) {
        return if existing == bytes {
            Ok(())
        } else {
            Err(DirectoryError::Conflict {
                path: path.to_owned(),
            })
        };
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut temp = tempfile_in(dir).map_err(io)?;
    temp.1.write_all(bytes).map_err(io)?;
    temp.1.sync_all().map_err(io)?;
    let linked = std::fs::hard_link(&temp.0, path);
    let _ = std::fs::remove_file(&temp.0);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if std::fs::read(path).map_err(io)? == bytes {
                Ok(())
            } else {
                Err(DirectoryError::Conflict {
                    path: path.to_owned(),
                })
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// A new file in `dir` under a name no publication uses (dot-prefixed, with the process id and
/// a counter).
fn tempfile_in(dir: &Path) -> io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let name = format!(
            ".publishing.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sink() -> (DirectorySink, PathBuf) {
        let root = std::env::temp_dir().join(format!(
            "agentidp-directory-sink-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        (DirectorySink::new(root.clone()), root)
    }

    #[test]
    fn checkpoints_and_tiles_land_under_the_chains_segment_once() {
        let (sink, root) = sink();
        let tile = TileRef {
            level: 0,
            index: 0,
            width: 3,
        };
        sink.publish("org:a/b", 3, "note 3\n", &[(tile, vec![7; 96])])
            .unwrap();
        assert_eq!(
            std::fs::read(root.join("org%3Aa%2Fb/tile/8/0/000.p/3")).unwrap(),
            vec![7; 96]
        );
        assert_eq!(sink.checkpoint("org:a/b", 3).as_deref(), Some("note 3\n"));
        assert_eq!(sink.latest_size("org:a/b").unwrap(), 3);
        assert_eq!(sink.latest_size("global").unwrap(), 0);
        // A retry of the same publication is fine; another note for the same size is not.
        sink.publish("org:a/b", 3, "note 3\n", &[]).unwrap();
        assert!(matches!(
            sink.publish("org:a/b", 3, "forged 3\n", &[]),
            Err(DirectoryError::Conflict { .. })
        ));
        assert_eq!(sink.checkpoint("org:a/b", 3).as_deref(), Some("note 3\n"));
        sink.publish("org:a/b", 10, "note 10\n", &[]).unwrap();
        assert_eq!(sink.latest_size("org:a/b").unwrap(), 10);
        let leftovers: Vec<_> = std::fs::read_dir(root.join("org%3Aa%2Fb/checkpoints"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "no temporary file is left behind");
        std::fs::remove_dir_all(root).unwrap();
    }
}
