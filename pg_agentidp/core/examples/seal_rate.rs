//! The sealer's tree growth alone, for tests/bench/transparency.sh: a `tiles::MemoryStore` grown
//! by `tiles::extend` in batches as `agentidp_seal()` grows it (65 536 events at a time), in
//! leaves per second, next to raw SHA-256 over the same leaf preimages as its baseline.
//!
//! ```text
//! cargo run -q --release -p agentidp-core --example seal_rate [leaves, default 1000000] [batch, default 65536]
//! ```
//!
//! The baseline hashes, for each leaf, what the smallest Merkle tree hashes per leaf: its leaf
//! preimage (0x00 || event hash, 33 bytes: one SHA-256 compression) and one interior node's
//! (0x01 || left || right, 65 bytes: two compressions), with no tree, tile or proof around them.
//! Each figure is the best of 3 runs; the root the tiles give is checked against the whole tree's
//! (`merkle::Tree`). Prints `extend <leaves/s>`, `sha256 <leaves/s>`, then the
//! root, so that the tree is seen to have been built.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use agentidp_core::merkle::Tree;
use agentidp_core::tiles::{self, Head, MemoryStore};
use sha2::{Digest, Sha256};

const RUNS: usize = 3;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let leaves: usize = match args.next().map(|a| a.parse()) {
        None => 1_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return usage(),
    };
    let batch: usize = match args.next().map(|a| a.parse()) {
        None => 65_536,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return usage(),
    };
    // Stored event hashes, as the chain gives them: made before any clock starts.
    let events: Vec<[u8; 32]> = (0..leaves as u64)
        .map(|i| Sha256::digest(i.to_be_bytes()).into())
        .collect();

    let mut best_extend = f64::INFINITY;
    let mut head = Head::EMPTY;
    for _ in 0..RUNS {
        let start = Instant::now();
        match grow(&events, batch) {
            Ok(h) => head = h,
            Err(e) => {
                eprintln!("seal_rate: extend failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        best_extend = best_extend.min(start.elapsed().as_secs_f64());
    }
    // The tiles gave the root the whole tree in memory gives (RFC 9162), or the rate means nothing.
    let expected = Tree::of(&events).root(leaves as u64);
    if head.size != leaves as u64 || expected.as_ref().ok() != Some(&head.root) {
        eprintln!(
            "seal_rate: the tiles give {} leaves and root {}, not {leaves} and {expected:?}",
            head.size, head.root
        );
        return ExitCode::FAILURE;
    }

    let mut best_sha = f64::INFINITY;
    for _ in 0..RUNS {
        let start = Instant::now();
        black_box(raw_sha256(black_box(&events)));
        best_sha = best_sha.min(start.elapsed().as_secs_f64());
    }

    println!("extend {:.0}", leaves as f64 / best_extend);
    println!("sha256 {:.0}", leaves as f64 / best_sha);
    println!("root {}", head.root);
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: seal_rate [leaves > 0] [batch > 0]");
    ExitCode::FAILURE
}

/// A tree grown from nothing over `events`, `batch` at a time, each batch's tiles stored before
/// the next reads them, as the sealer does.
fn grow(events: &[[u8; 32]], batch: usize) -> Result<Head, agentidp_core::merkle::TreeError> {
    let mut store = MemoryStore::default();
    let mut head = Head::EMPTY;
    for chunk in events.chunks(batch) {
        let grown = tiles::extend(&store, head, chunk)?;
        store.put(grown.tiles);
        head = grown.head;
    }
    Ok(head)
}

/// Per leaf: SHA-256(0x00 || event hash), then SHA-256(0x01 || this leaf || the last one).
fn raw_sha256(events: &[[u8; 32]]) -> [u8; 32] {
    let mut last = [0u8; 32];
    let mut leaf_pre = [0u8; 33];
    let mut node_pre = [0u8; 65];
    node_pre[0] = 1;
    for event in events {
        leaf_pre[1..].copy_from_slice(event);
        let leaf: [u8; 32] = Sha256::digest(leaf_pre).into();
        node_pre[1..33].copy_from_slice(&leaf);
        node_pre[33..].copy_from_slice(&last);
        last = Sha256::digest(node_pre).into();
    }
    last
}
