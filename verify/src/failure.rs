//! How a verification stops: a failure of the evidence (exit 1, one `FAIL: ` line) or an input the
//! verifier cannot read (exit 2, one `error: ` line). The `FAIL: ` line is documented in the
//! README and scripts match it, so its shape changes only with a release note.

use std::fmt;
use std::path::{Path, PathBuf};

use agentidp_core::chain::BreakKind;
use agentidp_core::export::EventId;

/// The exit status of a run whose evidence did not hold.
pub const EXIT_FAILED: u8 = 1;

/// The exit status of a run that could not verify: usage, unreadable or malformed input.
pub const EXIT_UNUSABLE: u8 = 2;

/// What a failure is about, named first on the `FAIL: ` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Event { id: EventId, seq: i64 },
    Checkpoint { size: u64 },
}

/// What is wrong. The chain's own kinds keep the names SQL and the runbook use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chain(BreakKind),
    /// An event of another chain in a one-chain export.
    OtherChain,
    /// Not signed by any of the log's keys, or one of their signatures is invalid.
    BadSignature,
    /// The checkpoint is of another chain or log than the rest of the evidence.
    WrongOrigin,
    /// The signed root is not the root of the export's first `size` events.
    RootMismatch,
    /// A cosignature by a given witness key does not verify.
    BadCosignature,
    /// Fewer witnesses cosigned than `--quorum` requires.
    NoQuorum,
    /// Two signed checkpoints cannot both be true of one history.
    Inconsistent,
    /// An inclusion proof is for another leaf than the event's.
    WrongLeaf,
    /// A proof is for another tree size than its checkpoint's.
    WrongSize,
    /// The inclusion proof does not prove the event in the checkpoint's tree.
    NotIncluded,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Chain(kind) => kind.as_str(),
            Kind::OtherChain => "other_chain",
            Kind::BadSignature => "bad_signature",
            Kind::WrongOrigin => "wrong_origin",
            Kind::RootMismatch => "root_mismatch",
            Kind::BadCosignature => "bad_cosignature",
            Kind::NoQuorum => "no_quorum",
            Kind::Inconsistent => "inconsistent",
            Kind::WrongLeaf => "wrong_leaf",
            Kind::WrongSize => "wrong_size",
            Kind::NotIncluded => "not_included",
        }
    }
}

/// The first thing found wrong with the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub subject: Subject,
    pub kind: Kind,
    pub detail: String,
}

impl Failure {
    pub fn event(id: EventId, seq: i64, kind: Kind, detail: impl Into<String>) -> Failure {
        Failure {
            subject: Subject::Event { id, seq },
            kind,
            detail: detail.into(),
        }
    }

    pub fn checkpoint(size: u64, kind: Kind, detail: impl Into<String>) -> Failure {
        Failure {
            subject: Subject::Checkpoint { size },
            kind,
            detail: detail.into(),
        }
    }
}

/// The `FAIL: ` line without its prefix: `event <id> seq <seq> <kind>: <detail>` or
/// `checkpoint <size> <kind>: <detail>`.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subject {
            Subject::Event { id, seq } => write!(f, "event {id} seq {seq}")?,
            Subject::Checkpoint { size } => write!(f, "checkpoint {size}")?,
        }
        write!(f, " {}: {}", self.kind.as_str(), self.detail)
    }
}

/// Why the verifier could not run.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
}

impl Unusable {
    pub fn read(path: &Path, source: std::io::Error) -> Unusable {
        Unusable::Read {
            path: path.to_owned(),
            source,
        }
    }

    pub fn malformed(path: &Path, message: impl fmt::Display) -> Unusable {
        Unusable::Malformed {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Why a verification stopped.
#[derive(Debug)]
pub enum Stop {
    Failed(Failure),
    Unusable(Unusable),
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Stop {
        Stop::Failed(failure)
    }
}

impl From<Unusable> for Stop {
    fn from(unusable: Unusable) -> Stop {
        Stop::Unusable(unusable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: EventId = EventId([
        0x0b, 0x7e, 0x5c, 0x1a, 0x2d, 0x3f, 0x4e, 0x5a, 0x8b, 0x9c, 0xad, 0xbe, 0xcf, 0xd0, 0xe1,
        0xf2,
    ]);

    #[test]
    fn fail_lines_have_the_documented_shape() {
        assert_eq!(
            Failure::event(
                ID,
                3,
                Kind::Chain(BreakKind::ContentEdited),
                "the stored hash is not the hash of the event's fields"
            )
            .to_string(),
            "event 0b7e5c1a-2d3f-4e5a-8b9c-adbecfd0e1f2 seq 3 content_edited: \
             the stored hash is not the hash of the event's fields"
        );
        assert_eq!(
            Failure::checkpoint(8, Kind::RootMismatch, "rewritten within seqs 5-8").to_string(),
            "checkpoint 8 root_mismatch: rewritten within seqs 5-8"
        );
    }

    #[test]
    fn kind_names_are_distinct_and_keep_the_chain_names() {
        let kinds = [
            Kind::OtherChain,
            Kind::BadSignature,
            Kind::WrongOrigin,
            Kind::RootMismatch,
            Kind::BadCosignature,
            Kind::NoQuorum,
            Kind::Inconsistent,
            Kind::WrongLeaf,
            Kind::WrongSize,
            Kind::NotIncluded,
        ];
        let mut names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        names.extend(BreakKind::ALL.iter().map(|k| Kind::Chain(*k).as_str()));
        for kind in BreakKind::ALL {
            assert_eq!(Kind::Chain(kind).as_str(), kind.as_str());
        }
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{names:?}");
    }
}
