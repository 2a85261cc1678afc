//! The evidence bundle's files: event lines (JSON Lines) and Merkle proofs. An event line holds
//! every field an event's hash covers, exactly as hashed, so that no PostgreSQL is needed to check
//! it; a proof file holds what `merkle::verify_inclusion` or `merkle::verify_consistency` needs.
//!
//! An event line is one JSON object, written with these keys in this order:
//!
//! ```text
//! {"chain_id":"global","seq":1,"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","event_id":"0b7e5c1a-2d3f-4e5a-8b9c-adbecfd0e1f2","occurred_at_unix_micros":1774915200123456,"action":"agent.token.issued","outcome":"success","agent_id":"agent-42","org_id":"org-7","metadata":null,"hash":"56fe566ce4fafdd690d38fd7949de86d8fc78a17883179559163e61dce23af69"}
//! ```
//!
//! (the runbook's worked vector). Text fields are the columns' text; `agent_id`, `org_id` and
//! `metadata` are `null` for SQL NULL, which differs from `""` as it does in the hash.
//! `metadata` is the `jsonb` value's text output carried as a JSON string, never the JSON value
//! itself: re-serializing it could reorder keys or respell numbers and change the hash.
//! `prev_hash` and `hash` are lowercase hex of whatever bytes the row stores, 32 unless it was
//! tampered with, so a malformed row is still exported and reported rather than dropped.
//! `event_id` is the UUID, lowercase and hyphenated.
//!
//! Readers refuse a missing, unknown or repeated key, and any other spelling of a hash or an event
//! id, so each event has exactly one line; they do not depend on the key order.

use std::borrow::Cow;
use std::fmt;
use std::io;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::chain::{Event, HASH_LEN};
use crate::merkle::Hash;

/// Why an event could not be written as a line, or a line not read as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// JSON carries text only: a column holding other bytes cannot be exported faithfully.
    #[error("the {0} field is not UTF-8")]
    NotUtf8(&'static str),
    #[error("line {line}, column {column}: {message}")]
    Malformed {
        line: u64,
        column: usize,
        message: String,
    },
}

/// Appends `event`, whose stored hash is `hash`, to `out` as one line, `\n` included.
///
/// Allocates nothing once `out` has room, unless a stored hash is not 32 bytes long.
pub fn write_line(event: &Event<'_>, hash: &[u8], out: &mut String) -> Result<(), ExportError> {
    let line = ExportedEvent::from_event(event, hash)?;
    serde_json::to_writer(StringWriter(out), &line).expect(
        "an event line serializes: its fields are text, integers and null, all of them written \
         as whole UTF-8 sequences",
    );
    out.push('\n');
    Ok(())
}

/// Lets serde_json append to a `String`. It only ever writes whole UTF-8 sequences (it splits
/// strings at the ASCII bytes it escapes), so each write can be checked on its own, which costs a
/// pass over the bytes rather than `unsafe`.
struct StringWriter<'a>(&'a mut String);

impl io::Write for StringWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text =
            std::str::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.0.push_str(text);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One event line, read or to be written. Text borrows from the line unless JSON escapes made a
/// copy necessary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvent<'a> {
    #[serde(borrow)]
    chain_id: Cow<'a, str>,
    seq: i64,
    prev_hash: StoredHash,
    event_id: EventId,
    occurred_at_unix_micros: i64,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "nullable_text")]
    agent_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "nullable_text")]
    org_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "nullable_text")]
    metadata: Option<Cow<'a, str>>,
    hash: StoredHash,
}

impl<'a> ExportedEvent<'a> {
    /// Reads the line numbered `line_number` (from 1, for the error). A trailing `\n` or `\r\n`
    /// is allowed.
    pub fn parse(line: &'a [u8], line_number: u64) -> Result<Self, ExportError> {
        serde_json::from_slice(line).map_err(|e| malformed(line_number, &e))
    }

    /// The line of `event`, whose stored hash is `hash`.
    pub fn from_event(event: &Event<'a>, hash: &[u8]) -> Result<Self, ExportError> {
        Ok(ExportedEvent {
            chain_id: text("chain_id", event.chain_id)?,
            seq: event.seq,
            prev_hash: StoredHash::from_bytes(event.prev_hash),
            event_id: EventId(*event.event_id),
            occurred_at_unix_micros: event.occurred_at_unix_micros,
            action: text("action", event.action)?,
            outcome: text("outcome", event.outcome)?,
            agent_id: event.agent_id.map(|t| text("agent_id", t)).transpose()?,
            org_id: event.org_id.map(|t| text("org_id", t)).transpose()?,
            metadata: event.metadata.map(|t| text("metadata", t)).transpose()?,
            hash: StoredHash::from_bytes(hash),
        })
    }

    /// The fields the hash covers, to recompute it.
    pub fn event(&self) -> Event<'_> {
        Event {
            chain_id: self.chain_id.as_bytes(),
            seq: self.seq,
            prev_hash: self.prev_hash.as_bytes(),
            event_id: &self.event_id.0,
            occurred_at_unix_micros: self.occurred_at_unix_micros,
            action: self.action.as_bytes(),
            outcome: self.outcome.as_bytes(),
            agent_id: self.agent_id.as_deref().map(str::as_bytes),
            org_id: self.org_id.as_deref().map(str::as_bytes),
            metadata: self.metadata.as_deref().map(str::as_bytes),
        }
    }

    /// The stored hash.
    pub fn hash(&self) -> &[u8] {
        self.hash.as_bytes()
    }
}

fn text<'a>(field: &'static str, bytes: &'a [u8]) -> Result<Cow<'a, str>, ExportError> {
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .map_err(|_| ExportError::NotUtf8(field))
}

/// Makes the key required (serde would read a missing `Option` as `None`, and so as SQL NULL)
/// and lets the text borrow from the line (serde's `Option<Cow<str>>` always copies).
fn nullable_text<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'a>>::deserialize(deserializer)?.map(|t| t.0))
}

/// serde_json ends its messages with the position, which within one line is always line 1.
fn malformed(line: u64, error: &serde_json::Error) -> ExportError {
    let message = error.to_string();
    let message = match message.rsplit_once(" at line ") {
        Some((what, _position)) => what.to_owned(),
        None => message,
    };
    ExportError::Malformed {
        line,
        column: error.column(),
        message,
    }
}

/// An event id: the UUID's 16 bytes, written lowercase and hyphenated as PostgreSQL prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(pub [u8; 16]);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        serializer.serialize_str(Uuid::from_bytes(self.0).hyphenated().encode_lower(&mut buf))
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(EventIdVisitor)
    }
}

struct EventIdVisitor;

impl Visitor<'_> for EventIdVisitor {
    type Value = EventId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event id as a lowercase hyphenated UUID")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EventId, E> {
        let refuse = || E::invalid_value(Unexpected::Str(v), &self);
        let id = Uuid::try_parse(v).map_err(|_| refuse())?;
        // Uuid also reads upper case, braces and the simple form: one spelling per event only.
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        if id.hyphenated().encode_lower(&mut buf) != v {
            return Err(refuse());
        }
        Ok(EventId(id.into_bytes()))
    }
}

/// A stored hash as a line carries it: lowercase hex of whatever bytes the row holds. Kept inline
/// when it is 32 bytes, so that reading a line allocates nothing for it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoredHash {
    Sha256([u8; HASH_LEN]),
    Malformed(Vec<u8>),
}

impl StoredHash {
    fn from_bytes(bytes: &[u8]) -> StoredHash {
        match <[u8; HASH_LEN]>::try_from(bytes) {
            Ok(hash) => StoredHash::Sha256(hash),
            Err(_) => StoredHash::Malformed(bytes.to_vec()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            StoredHash::Sha256(hash) => hash,
            StoredHash::Malformed(bytes) => bytes,
        }
    }
}

impl Serialize for StoredHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StoredHash::Sha256(hash) => {
                let mut buf = [0u8; 2 * HASH_LEN];
                let text = base16ct::lower::encode_str(hash, &mut buf)
                    .map_err(serde::ser::Error::custom)?;
                serializer.serialize_str(text)
            }
            StoredHash::Malformed(bytes) => {
                serializer.serialize_str(&base16ct::lower::encode_string(bytes))
            }
        }
    }
}

impl<'de> Deserialize<'de> for StoredHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StoredHashVisitor)
    }
}

struct StoredHashVisitor;

impl Visitor<'_> for StoredHashVisitor {
    type Value = StoredHash;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a stored hash in lowercase hex")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StoredHash, E> {
        let refuse = || E::invalid_value(Unexpected::Str(v), &self);
        // Lower case only, so that each hash has one spelling.
        if v.len() == 2 * HASH_LEN {
            let mut hash = [0u8; HASH_LEN];
            base16ct::lower::decode(v, &mut hash).map_err(|_| refuse())?;
            return Ok(StoredHash::Sha256(hash));
        }
        base16ct::lower::decode_vec(v)
            .map(StoredHash::Malformed)
            .map_err(|_| refuse())
    }
}

/// An inclusion proof file: the RFC 9162 audit path of leaf `leaf_index` in the tree of
/// `tree_size` leaves, each hash in standard base64 (with padding) as C2SP writes hashes:
///
/// ```text
/// {"leaf_index":2,"tree_size":5,"proof":["<base64>","<base64>","<base64>"]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    #[serde(serialize_with = "base64_hashes")]
    pub proof: Vec<Hash>,
}

impl InclusionProof {
    /// The `seq` of the event the proof is for: leaf `i` is the chain's event `i + 1`.
    pub fn seq(&self) -> Option<i64> {
        i64::try_from(self.leaf_index).ok()?.checked_add(1)
    }
}

/// A consistency proof file: the RFC 9162 proof that the tree of `new_size` leaves extends the
/// one of `old_size` leaves, hashes as in [`InclusionProof`]:
///
/// ```text
/// {"old_size":3,"new_size":7,"proof":["<base64>","<base64>"]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    #[serde(serialize_with = "base64_hashes")]
    pub proof: Vec<Hash>,
}

/// `Hash` reads itself from base64 but has no `Serialize`; its `Display` is the base64.
fn base64_hashes<S: Serializer>(hashes: &[Hash], serializer: S) -> Result<S::Ok, S::Error> {
    struct Base64<'a>(&'a Hash);
    impl Serialize for Base64<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self.0)
        }
    }
    serializer.collect_seq(hashes.iter().map(Base64))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::chain::{Event, GENESIS_PREV_HASH};
    use crate::merkle::{self, Tree};

    const EVENT_ID: [u8; 16] = [
        0x0b, 0x7e, 0x5c, 0x1a, 0x2d, 0x3f, 0x4e, 0x5a, 0x8b, 0x9c, 0xad, 0xbe, 0xcf, 0xd0, 0xe1,
        0xf2,
    ];

    /// The runbook's worked vector (chain.rs checks its hash).
    fn runbook_event() -> Event<'static> {
        Event {
            chain_id: b"global",
            seq: 1,
            prev_hash: &GENESIS_PREV_HASH,
            event_id: &EVENT_ID,
            occurred_at_unix_micros: 1_774_915_200_123_456,
            action: b"agent.token.issued",
            outcome: b"success",
            agent_id: Some(b"agent-42"),
            org_id: Some(b"org-7"),
            metadata: None,
        }
    }

    /// The line the module documentation publishes.
    const RUNBOOK_LINE: &str = concat!(
        r#"{"chain_id":"global","seq":1,"#,
        r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","#,
        r#""event_id":"0b7e5c1a-2d3f-4e5a-8b9c-adbecfd0e1f2","#,
        r#""occurred_at_unix_micros":1774915200123456,"#,
        r#""action":"agent.token.issued","outcome":"success","#,
        r#""agent_id":"agent-42","org_id":"org-7","metadata":null,"#,
        r#""hash":"56fe566ce4fafdd690d38fd7949de86d8fc78a17883179559163e61dce23af69"}"#,
        "\n"
    );

    fn line_of(event: &Event<'_>, hash: &[u8]) -> String {
        let mut out = String::new();
        write_line(event, hash, &mut out).expect("writes");
        out
    }

    fn parse(line: &str) -> Result<ExportedEvent<'_>, ExportError> {
        ExportedEvent::parse(line.as_bytes(), 1)
    }

    #[test]
    fn the_published_line_is_the_runbook_vector() {
        let event = runbook_event();
        assert_eq!(line_of(&event, &event.hash()), RUNBOOK_LINE);
        let module_doc = include_str!("export.rs");
        assert!(
            module_doc.contains(RUNBOOK_LINE.trim_end()),
            "the module documentation shows the same line"
        );
        let read = parse(RUNBOOK_LINE).expect("parses");
        assert_eq!(read.event(), event);
        assert_eq!(
            read.event().hash(),
            <[u8; 32]>::try_from(read.hash()).unwrap_or_default()
        );
    }

    #[test]
    fn a_line_reads_back_as_the_event_it_was_written_from() {
        let metadata =
            br#"{"ip": "10.0.0.1", "note": "tab\there \"quoted\" \\ \u00e9 \ud83d\ude00"}"#;
        let event = Event {
            chain_id: "org:acmé".as_bytes(),
            metadata: Some(metadata),
            agent_id: None,
            org_id: Some(b""),
            ..runbook_event()
        };
        let hash = event.hash();
        let line = line_of(&event, &hash);
        let read = parse(&line).expect("parses");
        assert_eq!(read.event(), event);
        assert_eq!(read.hash(), hash);
        assert_eq!(read.event().hash(), hash);
    }

    #[test]
    fn escapes_in_metadata_survive_byte_for_byte() {
        // What PostgreSQL's jsonb output can hold: escapes, non-ASCII, and control characters.
        let metadata = "{\"a\": \"line\\nbreak \\\"q\\\" \\\\ \\u0000\", \"é\": \"\u{1f600}\", \"raw\": \"\t\u{7}\"}";
        let event = Event {
            metadata: Some(metadata.as_bytes()),
            ..runbook_event()
        };
        let line = line_of(&event, &event.hash());
        assert!(!line[..line.len() - 1].contains('\n'), "one line: {line}");
        let read = parse(&line).expect("parses");
        assert_eq!(read.event().metadata, Some(metadata.as_bytes()));
    }

    #[test]
    fn text_without_escapes_is_borrowed_from_the_line() {
        let read = parse(RUNBOOK_LINE).expect("parses");
        assert!(matches!(read.action, Cow::Borrowed(_)));
        assert!(matches!(read.agent_id, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn null_and_the_empty_string_stay_distinct() {
        let base = runbook_event();
        let null = Event {
            agent_id: None,
            metadata: None,
            ..base
        };
        let empty = Event {
            agent_id: Some(b""),
            metadata: Some(b""),
            ..base
        };
        let null_line = line_of(&null, &null.hash());
        let empty_line = line_of(&empty, &empty.hash());
        assert!(null_line.contains(r#""agent_id":null"#));
        assert!(null_line.contains(r#""metadata":null"#));
        assert!(empty_line.contains(r#""agent_id":"""#));
        assert!(empty_line.contains(r#""metadata":"""#));
        assert_eq!(parse(&null_line).expect("parses").event(), null);
        assert_eq!(parse(&empty_line).expect("parses").event(), empty);
    }

    #[test]
    fn hashes_of_a_tampered_row_keep_their_length() {
        let short = [0xab; 31];
        let event = Event {
            prev_hash: &[],
            ..runbook_event()
        };
        let line = line_of(&event, &short);
        assert!(line.contains(r#""prev_hash":"""#));
        assert!(line.contains(&format!(r#""hash":"{}""#, "ab".repeat(31))));
        let read = parse(&line).expect("parses");
        assert_eq!(read.hash(), short);
        assert_eq!(read.event().prev_hash, b"");
    }

    #[test]
    fn text_that_is_not_utf8_is_refused() {
        let event = Event {
            action: b"agent.\xff",
            ..runbook_event()
        };
        let mut out = String::from("kept");
        assert_eq!(
            write_line(&event, &[0; 32], &mut out),
            Err(ExportError::NotUtf8("action"))
        );
        assert_eq!(out, "kept");
    }

    #[test]
    fn lines_append_without_reallocating_once_there_is_room() {
        let event = runbook_event();
        let hash = event.hash();
        let mut out = String::with_capacity(4 * RUNBOOK_LINE.len());
        let ptr = out.as_ptr();
        for _ in 0..4 {
            write_line(&event, &hash, &mut out).expect("writes");
        }
        assert_eq!(out, RUNBOOK_LINE.repeat(4));
        assert_eq!(out.as_ptr(), ptr);
    }

    fn refusal(line: &str) -> String {
        match ExportedEvent::parse(line.as_bytes(), 7) {
            Ok(read) => panic!("accepted {read:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_missing_unknown_or_repeated_key_is_refused_with_its_line() {
        let missing = RUNBOOK_LINE.replace(r#","metadata":null"#, "");
        assert!(
            refusal(&missing).starts_with("line 7, column "),
            "{}",
            refusal(&missing)
        );
        assert!(refusal(&missing).ends_with(": missing field `metadata`"));
        let unknown = RUNBOOK_LINE.replace(r#""metadata":null"#, r#""metadata":null,"x":1"#);
        assert!(refusal(&unknown).contains("unknown field `x`"));
        let repeated = RUNBOOK_LINE.replace(r#""metadata":null"#, r#""metadata":null,"seq":2"#);
        assert!(refusal(&repeated).contains("duplicate field `seq`"));
        assert!(refusal("").contains("EOF"));
        assert!(refusal(&format!("{}{}", RUNBOOK_LINE.trim_end(), "{}")).contains("trailing"));
    }

    #[test]
    fn a_field_of_the_wrong_form_is_refused() {
        let cases = [
            (r#""seq":1"#, r#""seq":"1""#, "expected i64"),
            (r#""seq":1"#, r#""seq":1.0"#, "expected i64"),
            (
                r#""agent_id":"agent-42""#,
                r#""agent_id":42"#,
                "expected a string",
            ),
            (
                r#""action":"agent.token.issued""#,
                r#""action":null"#,
                "invalid type: null, expected a string",
            ),
            (
                r#""hash":"56fe"#,
                r#""hash":"56FE"#,
                "expected a stored hash in lowercase hex",
            ),
            (
                r#""hash":"56fe"#,
                r#""hash":"x6fe"#,
                "expected a stored hash in lowercase hex",
            ),
            (
                r#""hash":"56fe"#,
                r#""hash":"6fe"#,
                "expected a stored hash in lowercase hex",
            ),
            (
                "0b7e5c1a-2d3f-4e5a-8b9c-adbecfd0e1f2",
                "0B7E5C1A-2D3F-4E5A-8B9C-ADBECFD0E1F2",
                "expected an event id as a lowercase hyphenated UUID",
            ),
            (
                "0b7e5c1a-2d3f-4e5a-8b9c-adbecfd0e1f2",
                "0b7e5c1a2d3f4e5a8b9cadbecfd0e1f2",
                "expected an event id as a lowercase hyphenated UUID",
            ),
        ];
        for (from, to, expected) in cases {
            let line = RUNBOOK_LINE.replacen(from, to, 1);
            assert_ne!(line, RUNBOOK_LINE, "{from}");
            assert!(
                refusal(&line).contains(expected),
                "{to}: {}",
                refusal(&line)
            );
        }
    }

    #[test]
    fn an_inclusion_proof_file_has_the_documented_shape() {
        let hashes: Vec<[u8; 32]> = (1..=5u8).map(|i| [i; 32]).collect();
        let tree = Tree::of(&hashes);
        let proof = InclusionProof {
            leaf_index: 2,
            tree_size: 5,
            proof: tree.inclusion_proof(2, 5).expect("proof"),
        };
        let json = serde_json::to_string(&proof).expect("serializes");
        let expected_hashes: Vec<String> = proof
            .proof
            .iter()
            .map(|h| format!("\"{}\"", base64_standard(&h.0)))
            .collect();
        assert_eq!(
            json,
            format!(
                r#"{{"leaf_index":2,"tree_size":5,"proof":[{}]}}"#,
                expected_hashes.join(",")
            )
        );
        let read: InclusionProof = serde_json::from_str(&json).expect("parses");
        assert_eq!(read, proof);
        assert_eq!(read.seq(), Some(3));
        let root = tree.root(5).expect("root");
        assert_eq!(
            merkle::verify_inclusion(&read.proof, 5, root, 2, &hashes[2]),
            Ok(())
        );
        let unknown = json.replace("\"tree_size\"", "\"size\"");
        assert!(serde_json::from_str::<InclusionProof>(&unknown).is_err());
    }

    #[test]
    fn a_consistency_proof_file_reads_back() {
        let hashes: Vec<[u8; 32]> = (1..=7u8).map(|i| [i; 32]).collect();
        let tree = Tree::of(&hashes);
        let proof = ConsistencyProof {
            old_size: 3,
            new_size: 7,
            proof: tree.consistency_proof(3, 7).expect("proof"),
        };
        let json = serde_json::to_string(&proof).expect("serializes");
        assert!(json.starts_with(r#"{"old_size":3,"new_size":7,"proof":[""#));
        let read: ConsistencyProof = serde_json::from_str(&json).expect("parses");
        assert_eq!(read, proof);
        let short = json.replacen(&base64_standard(&proof.proof[0].0), "AAAA", 1);
        assert!(serde_json::from_str::<ConsistencyProof>(&short).is_err());
    }

    #[test]
    fn the_leaf_index_maps_to_a_seq() {
        let proof = |leaf_index| InclusionProof {
            leaf_index,
            tree_size: 1,
            proof: vec![],
        };
        assert_eq!(proof(0).seq(), Some(1));
        assert_eq!(proof(u64::MAX).seq(), None);
        assert_eq!(proof(i64::MAX as u64).seq(), None);
    }

    fn base64_standard(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn text_field() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(any::<String>())
    }

    proptest! {
        #[test]
        fn any_event_round_trips(
            chain in any::<String>(),
            seq in any::<i64>(),
            prev in proptest::collection::vec(any::<u8>(), 0..40),
            id in any::<[u8; 16]>(),
            at in any::<i64>(),
            action in any::<String>(),
            outcome in any::<String>(),
            agent in text_field(),
            org in text_field(),
            metadata in text_field(),
            hash in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let event = Event {
                chain_id: chain.as_bytes(),
                seq,
                prev_hash: &prev,
                event_id: &id,
                occurred_at_unix_micros: at,
                action: action.as_bytes(),
                outcome: outcome.as_bytes(),
                agent_id: agent.as_deref().map(str::as_bytes),
                org_id: org.as_deref().map(str::as_bytes),
                metadata: metadata.as_deref().map(str::as_bytes),
            };
            let line = line_of(&event, &hash);
            prop_assert_eq!(line.matches('\n').count(), 1);
            let read = parse(&line).expect("parses");
            prop_assert_eq!(read.event(), event);
            prop_assert_eq!(read.hash(), &hash[..]);
        }
    }
}
