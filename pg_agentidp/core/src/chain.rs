//! The audit chain: canonical encoding (version 1), hashing, and verification of a run of events.
//!
//! The seed formula `SHA-256(eventId+timestamp+action+outcome+agentId+orgId+prevHash)` let bytes
//! slide between adjacent fields and made NULL equal to the empty string. Version 1 frames every
//! field the way PostgreSQL's binary COPY does: a big-endian `int32` length, `-1` for NULL, then the
//! bytes. `docs/audit-log-runbook.md` documents the layout byte for byte with a worked vector, so an
//! auditor can recompute a hash with any SHA-256 tool.

use sha2::{Digest, Sha256};

/// Length of a chain hash (SHA-256).
pub const HASH_LEN: usize = 32;

/// A chain hash.
pub type Hash = [u8; HASH_LEN];

/// The previous hash of a chain's first event.
pub const GENESIS_PREV_HASH: Hash = [0; HASH_LEN];

/// The first framed field of every preimage: names the encoding, so a later version can never
/// produce the same preimage as this one.
pub const ENCODING_TAG: &[u8] = b"agentidp.audit_event.v1";

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01 (both UTC).
pub const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Sequence number of a chain's first event.
pub const FIRST_SEQ: i64 = 1;

/// The fields of one audit event that its hash covers. Text fields are the column's UTF-8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub chain_id: &'a [u8],
    pub seq: i64,
    /// The stored previous hash: 32 bytes unless the row was tampered with, and framed with its
    /// length either way, so a malformed one is hashed, compared and reported like any other.
    pub prev_hash: &'a [u8],
    pub event_id: &'a [u8; 16],
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    pub occurred_at_unix_micros: i64,
    pub action: &'a [u8],
    pub outcome: &'a [u8],
    pub agent_id: Option<&'a [u8]>,
    pub org_id: Option<&'a [u8]>,
    /// The `jsonb` value's text output, as PostgreSQL prints it.
    pub metadata: Option<&'a [u8]>,
}

impl Event<'_> {
    /// Appends the canonical preimage to `out`, which callers reuse across rows to avoid an
    /// allocation per event.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        frame(out, Some(ENCODING_TAG));
        frame(out, Some(self.chain_id));
        frame(out, Some(&self.seq.to_be_bytes()));
        frame(out, Some(self.prev_hash));
        frame(out, Some(self.event_id));
        frame(out, Some(&self.occurred_at_unix_micros.to_be_bytes()));
        frame(out, Some(self.action));
        frame(out, Some(self.outcome));
        frame(out, self.agent_id);
        frame(out, self.org_id);
        frame(out, self.metadata);
    }

    /// The canonical preimage, in a fresh buffer.
    pub fn preimage(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out);
        out
    }

    /// The event's hash, using `scratch` as the preimage buffer.
    pub fn hash_with(&self, scratch: &mut Vec<u8>) -> Hash {
        scratch.clear();
        self.encode_into(scratch);
        Sha256::digest(scratch.as_slice()).into()
    }

    /// The event's hash.
    pub fn hash(&self) -> Hash {
        self.hash_with(&mut Vec::with_capacity(256))
    }
}

fn frame(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(bytes) => {
            // PostgreSQL caps a field at 1 GB, far below i32::MAX: a longer one cannot reach here.
            let len = i32::try_from(bytes.len()).expect("a PostgreSQL field is at most 1 GB");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// Converts a PostgreSQL `timestamptz` (microseconds since 2000-01-01 UTC) to the encoding's
/// microseconds since 1970-01-01 UTC. `None` for the infinities and values whose Unix form
/// overflows, which the schema rejects before they reach the chain.
pub fn unix_micros_from_postgres(pg_micros: i64) -> Option<i64> {
    pg_micros.checked_add(POSTGRES_EPOCH_UNIX_MICROS)
}

/// The chain id of every event outside an org chain.
pub const GLOBAL_CHAIN_ID: &[u8] = b"global";

/// What an org chain's id starts with; the org id follows.
pub const ORG_CHAIN_PREFIX: &[u8] = b"org:";

/// How events are split into chains (`agentidp.chain_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainScope {
    /// One chain, [`GLOBAL_CHAIN_ID`].
    Global,
    /// One chain per organisation, `org:<org_id>`; events without an org stay on `global`.
    Org,
}

/// Writes the id of the chain an event with `org_id` joins under `scope` into `out`, replacing
/// its contents. `out` is reused across rows, so the insert path allocates nothing once it has
/// grown to fit.
///
/// The id is hashed into the event's preimage. Under [`ChainScope::Org`], an event with no org
/// joins `global`, and so does one whose `org_id` is the empty string: it is "no org" too, not a
/// chain named `org:`. The org id's bytes are copied as they are, so the id is text whenever the
/// org id is.
pub fn chain_id_into(scope: ChainScope, org_id: Option<&[u8]>, out: &mut Vec<u8>) {
    out.clear();
    match (scope, org_id) {
        (ChainScope::Org, Some(org)) if !org.is_empty() => {
            out.extend_from_slice(ORG_CHAIN_PREFIX);
            out.extend_from_slice(org);
        }
        _ => out.extend_from_slice(GLOBAL_CHAIN_ID),
    }
}

/// [`chain_id_into`], in a fresh buffer.
pub fn chain_id(scope: ChainScope, org_id: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(ORG_CHAIN_PREFIX.len() + org_id.map_or(0, <[u8]>::len));
    chain_id_into(scope, org_id, &mut out);
    out
}

/// What kind of break verification found; each points a forensic investigation elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakKind {
    /// The sequence number is not its predecessor's plus one: a row was deleted, or rows were
    /// renumbered.
    SequenceGap,
    /// The stored previous hash is not the predecessor's hash: a row was removed or reordered, or
    /// the link was rewritten.
    LinkBroken,
    /// The stored hash is not the hash of the row's content: a field was edited, or the row forged.
    ContentEdited,
    /// The chain ends before a head exported earlier: its tail was cut.
    Truncated,
    /// The event at an exported head's position no longer has the exported hash: the history was
    /// rewritten (and, to verify, rehashed from there on).
    Rewritten,
}

impl BreakKind {
    /// The name SQL callers and the runbook use.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakKind::SequenceGap => "sequence_gap",
            BreakKind::LinkBroken => "link_broken",
            BreakKind::ContentEdited => "content_edited",
            BreakKind::Truncated => "truncated",
            BreakKind::Rewritten => "rewritten",
        }
    }
}

impl std::fmt::Display for BreakKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BreakKind {
    /// Every kind, in the order the runbook lists them.
    pub const ALL: [BreakKind; 5] = [
        BreakKind::ContentEdited,
        BreakKind::LinkBroken,
        BreakKind::SequenceGap,
        BreakKind::Truncated,
        BreakKind::Rewritten,
    ];
}

/// A name that is not one of [`BreakKind::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown break kind {0:?}")]
pub struct UnknownBreakKind(pub String);

impl std::str::FromStr for BreakKind {
    type Err = UnknownBreakKind;

    /// Reads the name the extension returns: the sidecar parses its verdicts with this, so a kind
    /// the extension never emits cannot reach a control's detail or an API response.
    fn from_str(name: &str) -> Result<BreakKind, UnknownBreakKind> {
        BreakKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownBreakKind(name.to_owned()))
    }
}

/// The position a chain has reached: what the next event must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the last event (0 before the first).
    pub seq: i64,
    /// Hash of the last event ([`GENESIS_PREV_HASH`] before the first).
    pub hash: Hash,
}

impl ChainHead {
    /// The head of an empty chain.
    pub const GENESIS: ChainHead = ChainHead {
        seq: FIRST_SEQ - 1,
        hash: GENESIS_PREV_HASH,
    };

    /// The sequence number the next event gets.
    pub fn next_seq(&self) -> i64 {
        self.seq + 1
    }
}

/// Walks a run of one chain's events in sequence order, checking each against the head before it.
///
/// Checks run in the order sequence, link, content, so a deleted row reports a gap rather than the
/// link break it also causes.
#[derive(Debug)]
pub struct Verifier {
    head: ChainHead,
    checked: u64,
    scratch: Vec<u8>,
}

impl Verifier {
    /// Starts verification after a trusted head: the genesis, a retention boundary or a checkpoint.
    pub fn starting_after(head: ChainHead) -> Self {
        Verifier {
            head,
            checked: 0,
            scratch: Vec::with_capacity(256),
        }
    }

    /// Checks the next stored event and, when it holds, advances past it.
    pub fn check(&mut self, event: &Event<'_>, stored_hash: &[u8]) -> Result<(), BreakKind> {
        self.checked += 1;
        if event.seq != self.head.next_seq() {
            return Err(BreakKind::SequenceGap);
        }
        if event.prev_hash != self.head.hash {
            return Err(BreakKind::LinkBroken);
        }
        let hash = event.hash_with(&mut self.scratch);
        if hash != stored_hash {
            return Err(BreakKind::ContentEdited);
        }
        self.head = ChainHead {
            seq: event.seq,
            hash,
        };
        Ok(())
    }

    /// Checks that the event after the verified run links to it, without recomputing that event's
    /// hash (it lies outside the run). Does not count it as checked.
    pub fn check_successor_link(&self, seq: i64, prev_hash: &[u8]) -> Result<(), BreakKind> {
        if seq != self.head.next_seq() {
            Err(BreakKind::SequenceGap)
        } else if prev_hash != self.head.hash {
            Err(BreakKind::LinkBroken)
        } else {
            Ok(())
        }
    }

    /// The last event verified so far (the starting head when none was).
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// How many events [`Verifier::check`] examined, the failing one included.
    pub fn checked(&self) -> u64 {
        self.checked
    }
}

/// Compares a chain with a head exported earlier (a digest, or a stored checkpoint), which no
/// walk of the chain alone can do: a cut tail or a chain rehashed from some point on verifies.
///
/// `last_seq` is the chain's current last sequence number; `hash_at_digest_seq` the hash stored
/// at the digest's position, if an event is there.
pub fn check_digest(
    digest: &ChainHead,
    last_seq: i64,
    hash_at_digest_seq: Option<&Hash>,
) -> Result<(), BreakKind> {
    if last_seq < digest.seq {
        return Err(BreakKind::Truncated);
    }
    match hash_at_digest_seq {
        Some(hash) if hash == &digest.hash => Ok(()),
        _ => Err(BreakKind::Rewritten),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT_ID: [u8; 16] = [
        0x0b, 0x7e, 0x5c, 0x1a, 0x2d, 0x3f, 0x4e, 0x5a, 0x8b, 0x9c, 0xad, 0xbe, 0xcf, 0xd0, 0xe1,
        0xf2,
    ];

    fn event<'a>(prev: &'a [u8], seq: i64) -> Event<'a> {
        Event {
            chain_id: b"global",
            seq,
            prev_hash: prev,
            event_id: &EVENT_ID,
            occurred_at_unix_micros: 1_774_915_200_123_456,
            action: b"agent.token.issued",
            outcome: b"success",
            agent_id: Some(b"agent-42"),
            org_id: Some(b"org-7"),
            metadata: None,
        }
    }

    #[test]
    fn sha256_is_the_fips_180_2_function() {
        // FIPS 180-2 appendix B.1 ("abc"), so the chain's hash is the standard one.
        assert_eq!(
            hex::encode(Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn preimage_frames_every_field_as_documented() {
        let e = event(&GENESIS_PREV_HASH, 1);
        let p = e.preimage();
        let mut expected = Vec::new();
        expected.extend_from_slice(&23i32.to_be_bytes());
        expected.extend_from_slice(b"agentidp.audit_event.v1");
        expected.extend_from_slice(&6i32.to_be_bytes());
        expected.extend_from_slice(b"global");
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&1i64.to_be_bytes());
        expected.extend_from_slice(&32i32.to_be_bytes());
        expected.extend_from_slice(&[0; 32]);
        expected.extend_from_slice(&16i32.to_be_bytes());
        expected.extend_from_slice(&EVENT_ID);
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&1_774_915_200_123_456i64.to_be_bytes());
        expected.extend_from_slice(&18i32.to_be_bytes());
        expected.extend_from_slice(b"agent.token.issued");
        expected.extend_from_slice(&7i32.to_be_bytes());
        expected.extend_from_slice(b"success");
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(b"agent-42");
        expected.extend_from_slice(&5i32.to_be_bytes());
        expected.extend_from_slice(b"org-7");
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(p, expected);
        assert_eq!(e.hash(), <Hash>::from(Sha256::digest(&expected)));
    }

    /// The worked vector of docs/audit-log-runbook.md; the pg_regress suite checks the same row
    /// through the trigger, so the document, the library and the database agree.
    #[test]
    fn runbook_vector() {
        let e = event(&GENESIS_PREV_HASH, 1);
        assert_eq!(
            hex::encode(e.preimage()),
            concat!(
                "00000017",
                "6167656e746964702e61756469745f6576656e742e7631",
                "00000006",
                "676c6f62616c",
                "00000008",
                "0000000000000001",
                "00000020",
                "0000000000000000000000000000000000000000000000000000000000000000",
                "00000010",
                "0b7e5c1a2d3f4e5a8b9cadbecfd0e1f2",
                "00000008",
                "00064e46a6028240",
                "00000012",
                "6167656e742e746f6b656e2e697373756564",
                "00000007",
                "73756363657373",
                "00000008",
                "6167656e742d3432",
                "00000005",
                "6f72672d37",
                "ffffffff",
            )
        );
        assert_eq!(hex::encode(e.hash()), RUNBOOK_VECTOR_HASH);
    }

    const RUNBOOK_VECTOR_HASH: &str =
        "56fe566ce4fafdd690d38fd7949de86d8fc78a17883179559163e61dce23af69";

    #[test]
    fn null_differs_from_empty() {
        let mut a = event(&GENESIS_PREV_HASH, 1);
        let mut b = a;
        a.agent_id = None;
        b.agent_id = Some(b"");
        assert_ne!(a.hash(), b.hash());
        a.metadata = None;
        b.agent_id = None;
        b.metadata = Some(b"");
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn bytes_cannot_slide_between_adjacent_fields() {
        let a = event(&GENESIS_PREV_HASH, 1);
        let b = Event {
            action: b"agent.token.issuedsuc",
            outcome: b"cess",
            ..a
        };
        let c = Event {
            agent_id: Some(b"agent-42org-7"),
            org_id: Some(b""),
            ..a
        };
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_ne!(b.hash(), c.hash());
    }

    #[test]
    fn every_field_is_covered() {
        let prev = [7u8; 32];
        let base = event(&GENESIS_PREV_HASH, 1);
        let other_id = [1u8; 16];
        let variants = [
            Event {
                chain_id: b"org:org-7",
                ..base
            },
            Event { seq: 2, ..base },
            Event {
                prev_hash: &prev,
                ..base
            },
            Event {
                event_id: &other_id,
                ..base
            },
            Event {
                occurred_at_unix_micros: base.occurred_at_unix_micros + 1,
                ..base
            },
            Event {
                action: b"agent.token.revoked",
                ..base
            },
            Event {
                outcome: b"failure",
                ..base
            },
            Event {
                agent_id: Some(b"agent-43"),
                ..base
            },
            Event {
                org_id: None,
                ..base
            },
            Event {
                metadata: Some(b"{}"),
                ..base
            },
        ];
        for v in variants {
            assert_ne!(v.hash(), base.hash(), "{v:?}");
        }
    }

    #[test]
    fn unix_micros_shift_by_the_postgres_epoch() {
        assert_eq!(unix_micros_from_postgres(0), Some(946_684_800_000_000));
        assert_eq!(unix_micros_from_postgres(-946_684_800_000_000), Some(0));
        assert_eq!(unix_micros_from_postgres(i64::MAX), None);
    }

    #[test]
    fn chain_ids_by_scope() {
        assert_eq!(chain_id(ChainScope::Global, Some(b"org-7")), b"global");
        assert_eq!(chain_id(ChainScope::Global, None), b"global");
        assert_eq!(chain_id(ChainScope::Global, Some(b"")), b"global");
        assert_eq!(chain_id(ChainScope::Org, Some(b"org-7")), b"org:org-7");
        assert_eq!(chain_id(ChainScope::Org, None), b"global");
        // Bytes are copied as they are: blanks and colons are part of the org id.
        assert_eq!(chain_id(ChainScope::Org, Some(b" a:b ")), b"org: a:b ");
        assert_eq!(
            chain_id(ChainScope::Org, Some("é".as_bytes())),
            "org:é".as_bytes()
        );
    }

    /// The empty org id is "no org", like NULL: its events join `global`, never a chain `org:`.
    #[test]
    fn an_empty_org_id_joins_the_global_chain() {
        assert_eq!(chain_id(ChainScope::Org, Some(b"")), GLOBAL_CHAIN_ID);
        assert_eq!(
            chain_id(ChainScope::Org, Some(b"")),
            chain_id(ChainScope::Org, None)
        );
    }

    #[test]
    fn chain_id_into_replaces_and_reuses_the_buffer() {
        let mut out = Vec::with_capacity(64);
        chain_id_into(ChainScope::Org, Some(b"acme"), &mut out);
        assert_eq!(out, b"org:acme");
        let ptr = out.as_ptr();
        chain_id_into(ChainScope::Org, None, &mut out);
        assert_eq!(out, b"global");
        chain_id_into(ChainScope::Org, Some(b"globex"), &mut out);
        assert_eq!(out, b"org:globex");
        assert_eq!(out.as_ptr(), ptr, "no reallocation within capacity");
    }

    struct Stored {
        seq: i64,
        prev: Hash,
        hash: Hash,
        action: &'static [u8],
    }

    fn build_chain(n: i64) -> Vec<Stored> {
        let mut head = ChainHead::GENESIS;
        (0..n)
            .map(|_| {
                let seq = head.next_seq();
                let prev = head.hash;
                let hash = event(&prev, seq).hash();
                head = ChainHead { seq, hash };
                Stored {
                    seq,
                    prev,
                    hash,
                    action: b"agent.token.issued",
                }
            })
            .collect()
    }

    fn verify(rows: &[Stored]) -> Result<u64, (usize, BreakKind)> {
        let mut v = Verifier::starting_after(ChainHead::GENESIS);
        for (i, r) in rows.iter().enumerate() {
            let e = Event {
                action: r.action,
                ..event(&r.prev, r.seq)
            };
            v.check(&e, &r.hash).map_err(|k| (i, k))?;
        }
        Ok(v.checked())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&build_chain(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn tamper_matrix() {
        let mut edited = build_chain(5);
        edited[2].action = b"agent.token.revoked";
        assert_eq!(verify(&edited), Err((2, BreakKind::ContentEdited)));

        let mut deleted = build_chain(5);
        deleted.remove(2);
        assert_eq!(verify(&deleted), Err((2, BreakKind::SequenceGap)));

        let mut reordered = build_chain(5);
        reordered.swap(1, 2);
        (reordered[1].seq, reordered[2].seq) = (2, 3);
        assert_eq!(verify(&reordered), Err((1, BreakKind::LinkBroken)));

        let mut relinked = build_chain(5);
        relinked[3].prev = [9; 32];
        assert_eq!(verify(&relinked), Err((3, BreakKind::LinkBroken)));

        let mut forged = build_chain(5);
        let prev = forged[4].hash;
        forged.push(Stored {
            seq: 6,
            prev,
            hash: [1; 32],
            action: b"x",
        });
        assert_eq!(verify(&forged), Err((5, BreakKind::ContentEdited)));

        let mut rehashed = build_chain(5);
        rehashed[1].action = b"agent.token.revoked";
        rehashed[1].hash = Event {
            action: rehashed[1].action,
            ..event(&rehashed[1].prev, 2)
        }
        .hash();
        assert_eq!(verify(&rehashed), Err((2, BreakKind::LinkBroken)));
    }

    #[test]
    fn malformed_lengths_are_breaks_not_panics() {
        let chain = build_chain(2);
        let mut v = Verifier::starting_after(ChainHead::GENESIS);
        assert_eq!(
            v.check(&event(&chain[0].prev, 1), &chain[0].hash[..16]),
            Err(BreakKind::ContentEdited)
        );
        let mut v = Verifier::starting_after(ChainHead::GENESIS);
        assert_eq!(
            v.check(&event(&[0; 31], 1), &chain[0].hash),
            Err(BreakKind::LinkBroken)
        );
        assert_eq!(v.checked(), 1);
    }

    #[test]
    fn verification_can_start_from_a_checkpoint() {
        let chain = build_chain(6);
        let mut v = Verifier::starting_after(ChainHead {
            seq: 3,
            hash: chain[2].hash,
        });
        for r in &chain[3..] {
            v.check(&event(&r.prev, r.seq), &r.hash).expect("intact");
        }
        assert_eq!(v.checked(), 3);
        assert_eq!(
            v.head(),
            ChainHead {
                seq: 6,
                hash: chain[5].hash
            }
        );

        let mut wrong = Verifier::starting_after(ChainHead {
            seq: 3,
            hash: [5; 32],
        });
        assert_eq!(
            wrong.check(&event(&chain[3].prev, 4), &chain[3].hash),
            Err(BreakKind::LinkBroken)
        );
    }

    #[test]
    fn digests_catch_truncation_and_rewrites() {
        let digest = ChainHead {
            seq: 5,
            hash: [4; 32],
        };
        assert_eq!(check_digest(&digest, 5, Some(&[4; 32])), Ok(()));
        assert_eq!(check_digest(&digest, 9, Some(&[4; 32])), Ok(()));
        assert_eq!(check_digest(&digest, 4, None), Err(BreakKind::Truncated));
        assert_eq!(
            check_digest(&digest, 9, Some(&[5; 32])),
            Err(BreakKind::Rewritten)
        );
        assert_eq!(check_digest(&digest, 9, None), Err(BreakKind::Rewritten));
    }

    #[test]
    fn successor_link_is_checked_without_its_content() {
        let chain = build_chain(3);
        let mut v = Verifier::starting_after(ChainHead::GENESIS);
        v.check(&event(&chain[0].prev, 1), &chain[0].hash)
            .expect("intact");
        assert_eq!(v.check_successor_link(2, &chain[1].prev), Ok(()));
        assert_eq!(
            v.check_successor_link(3, &chain[1].prev),
            Err(BreakKind::SequenceGap)
        );
        assert_eq!(
            v.check_successor_link(2, &[3; 32]),
            Err(BreakKind::LinkBroken)
        );
        assert_eq!(v.checked(), 1);
    }
    #[test]
    fn break_kinds_read_back_from_their_names() {
        for kind in BreakKind::ALL {
            assert_eq!(kind.as_str().parse::<BreakKind>(), Ok(kind));
        }
        assert_eq!(
            "hash_mismatch".parse::<BreakKind>(),
            Err(UnknownBreakKind("hash_mismatch".to_owned()))
        );
    }
}
