//! Evidence built with agentidp-core, as the extension and the sidecar would publish it, and a
//! runner for the built binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agentidp_core::chain::{ChainHead, Event};
use agentidp_core::checkpoint;
use agentidp_core::export::{self, EventId};
use agentidp_core::merkle::Tree;
use agentidp_core::witness;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tlog_tiles::tile::Tile;

pub const LOG: &str = "agentidp.example";
pub const CHAIN: &str = "org:acme";
pub const WITNESS: &str = "witness.example";
pub const OTHER_WITNESS: &str = "witness2.example";

/// The published test key: its seed is SHA-256("agentidp test key").
pub fn log_key() -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(b"agentidp test key").into())
}

pub fn other_key() -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(b"not the log's key").into())
}

pub fn witness_key(name: &str) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(name.as_bytes()).into())
}

pub fn vkey() -> String {
    checkpoint::verifier_key(LOG, &log_key().verifying_key()).expect("vkey")
}

pub fn witness_vkey(name: &str) -> String {
    witness::witness_verifier_key(name, &witness_key(name).verifying_key()).expect("vkey")
}

/// One row of the events table, as stored.
#[derive(Debug, Clone)]
pub struct Row {
    pub chain_id: String,
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub event_id: [u8; 16],
    pub occurred_at: i64,
    pub action: String,
    pub outcome: String,
    pub agent_id: Option<String>,
    pub org_id: Option<String>,
    pub metadata: Option<String>,
    pub hash: Vec<u8>,
}

impl Row {
    pub fn event(&self) -> Event<'_> {
        Event {
            chain_id: self.chain_id.as_bytes(),
            seq: self.seq,
            prev_hash: &self.prev_hash,
            event_id: &self.event_id,
            occurred_at_unix_micros: self.occurred_at,
            action: self.action.as_bytes(),
            outcome: self.outcome.as_bytes(),
            agent_id: self.agent_id.as_deref().map(str::as_bytes),
            org_id: self.org_id.as_deref().map(str::as_bytes),
            metadata: self.metadata.as_deref().map(str::as_bytes),
        }
    }

    pub fn id(&self) -> String {
        EventId(self.event_id).to_string()
    }

    pub fn hash32(&self) -> [u8; 32] {
        self.hash.as_slice().try_into().expect("32 bytes")
    }
}

/// `n` chained events of `chain`, as the trigger would have stored them.
pub fn chain_of(chain: &str, n: i64) -> Vec<Row> {
    let mut rows: Vec<Row> = (1..=n)
        .map(|seq| {
            let mut event_id = [0u8; 16];
            event_id[..8].copy_from_slice(&seq.to_be_bytes());
            event_id[8..].copy_from_slice(&Sha256::digest(chain.as_bytes())[..8]);
            Row {
                chain_id: chain.to_owned(),
                seq,
                prev_hash: Vec::new(),
                event_id,
                occurred_at: 1_733_000_000_000_000 + seq * 1_000,
                action: "agent.token.issued".to_owned(),
                outcome: "success".to_owned(),
                agent_id: Some(format!("agent-{}", seq % 7)),
                org_id: (seq % 3 != 0).then(|| "acme".to_owned()),
                metadata: (seq % 4 == 0).then(|| format!(r#"{{"n": {seq}, "q": "a\"b"}}"#)),
                hash: Vec::new(),
            }
        })
        .collect();
    rehash_from(&mut rows, 0);
    rows
}

pub fn chain(n: i64) -> Vec<Row> {
    chain_of(CHAIN, n)
}

/// Relinks and rehashes `rows[from..]`, as someone rewriting history so the chain still verifies.
pub fn rehash_from(rows: &mut [Row], from: usize) {
    let mut head = match from {
        0 => ChainHead::GENESIS,
        _ => ChainHead {
            seq: rows[from - 1].seq,
            hash: rows[from - 1].hash32(),
        },
    };
    for row in &mut rows[from..] {
        row.prev_hash = head.hash.to_vec();
        let hash = row.event().hash();
        row.hash = hash.to_vec();
        head = ChainHead { seq: row.seq, hash };
    }
}

pub fn export_text(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        export::write_line(&row.event(), &row.hash, &mut out).expect("exports");
    }
    out
}

pub fn tree(rows: &[Row]) -> Tree {
    let hashes: Vec<[u8; 32]> = rows.iter().map(Row::hash32).collect();
    Tree::of(&hashes)
}

/// The checkpoint of `tree`'s first `size` leaves for `chain`, signed with `key`.
pub fn note_signed_by(tree: &Tree, size: u64, chain: &str, key: &SigningKey) -> String {
    let root = tree.root(size).expect("root");
    let body = checkpoint::body(&checkpoint::origin(LOG, chain), size, root).expect("body");
    checkpoint::sign_locally(&body, LOG, key).expect("note")
}

pub fn note(tree: &Tree, size: u64) -> String {
    note_signed_by(tree, size, CHAIN, &log_key())
}

pub fn cosigned(note: &str, witnesses: &[&str]) -> String {
    let lines: Vec<String> = witnesses
        .iter()
        .map(|name| witness::cosign(note, name, &witness_key(name), 1_733_000_000).expect("cosign"))
        .collect();
    witness::with_cosignatures(note, &lines).expect("cosigned note")
}

/// Publishes `tree`'s tiles as a log does when it grows through `sizes`.
pub fn publish_tiles(dir: &Path, tree: &Tree, sizes: &[u64]) {
    let mut old = 0;
    for &size in sizes {
        for tile in Tile::new_tiles(8, old, size) {
            let data = tile.read_data(tree).expect("tile data");
            let path = dir.join(tile.path());
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, data).expect("write tile");
        }
        old = size;
    }
}

/// A directory for one test's files.
pub struct Files(TempDir);

impl Files {
    pub fn new() -> Files {
        Files(tempfile::tempdir().expect("tempdir"))
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.path().join(name);
        fs::write(&path, contents).expect("write");
        path
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        let path = self.0.path().join(name);
        fs::create_dir_all(&path).expect("mkdir");
        path
    }
}

/// What a run of the binary printed, and how it exited.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one `FAIL: ` line, which must be the whole of stderr.
    pub fn fail_line(&self) -> &str {
        assert_eq!(
            self.code,
            Some(1),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        let line = self.stderr.strip_suffix('\n').expect("a full line");
        assert!(!line.contains('\n'), "one line: {}", self.stderr);
        assert!(line.starts_with("FAIL: "), "{line}");
        line
    }

    pub fn assert_ok(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(self.stderr.is_empty(), "{}", self.stderr);
        assert!(self.stdout.ends_with("OK\n"), "{}", self.stdout);
    }
}

pub fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output: Output = Command::new(env!("CARGO_BIN_EXE_agentidp-verify"))
        .args(args)
        .output()
        .expect("runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}
