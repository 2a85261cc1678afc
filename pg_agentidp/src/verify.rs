//! Chain verification in SQL: by time range, from a checkpoint, and against an exported digest.
//!
//! The functions here only choose where a walk starts and ends; `agentidp-core` decides whether
//! each event holds. Every read runs on the caller's snapshot and nothing is written (except by
//! `agentidp_verify_incremental`, which records checkpoints), so verification runs on a standby.

// pgrx reads each result column's name from the `name!` in the signature, so the row types cannot
// hide behind an alias.
#![allow(clippy::type_complexity)]

use agentidp_core::chain::{ChainHead, HASH_LEN};
use agentidp_core::verdict::{self, Verdict};
use pgrx::prelude::*;
use pgrx::Uuid;

use crate::checkpoints;
use crate::error::raise;
use crate::positions::{
    chain_ids, check_against, predecessor, text, trusted_start, HEAD, NO_SNAPSHOT, RANGE_BOUNDS,
};
use crate::walk::{walk, walk_from_starts, Start};

/// One verdict row: see `Verdict::into_row`.
type VerdictRow = (
    bool,
    i64,
    Option<Uuid>,
    Option<&'static str>,
    Option<String>,
);

/// Verifies every event whose `occurred_at` lies in [from_ts, to_ts] (either bound optional), and
/// the events between them in chain order, on every chain or one.
#[pg_extern(stable, parallel_safe)]
fn agentidp_verify_chain(
    from_ts: default!(Option<TimestampWithTimeZone>, "NULL"),
    to_ts: default!(Option<TimestampWithTimeZone>, "NULL"),
    chain: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(verified, bool),
        name!(checked_count, i64),
        name!(broken_at_event_id, Option<Uuid>),
        name!(break_kind, Option<&'static str>),
        name!(broken_chain_id, Option<String>),
    ),
> {
    if let (Some(from), Some(to)) = (from_ts, to_ts) {
        if from > to {
            raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "from_ts must be before or equal to to_ts",
                None,
            );
        }
    }
    let verdict = Spi::connect(|_| {
        let mut verdict = Verdict::default();
        if from_ts.is_none() && to_ts.is_none() {
            for (id, outcome) in walk_from_starts(chain_ids(chain), chain.is_none()) {
                verdict.add(&id, &outcome);
                if verdict.is_broken() {
                    break;
                }
            }
        } else {
            let bounds =
                RANGE_BOUNDS.query(&[from_ts.into_datum(), to_ts.into_datum()], NO_SNAPSHOT, 0);
            for row in bounds.iter() {
                let id = text(&row, 1);
                if chain.is_some_and(|c| c != id) {
                    continue;
                }
                let lo = row.int8(2).expect("min(seq) of a non-empty group");
                let hi = row.int8(3).expect("max(seq) of a non-empty group");
                let (start, from) = match predecessor(&id, lo) {
                    Some(p) => (p, Start::After(p.seq)),
                    None => (trusted_start(&id), Start::Beginning),
                };
                verdict.add(&id, &walk(&id, start, from, Some(hi)));
                if verdict.is_broken() {
                    break;
                }
            }
        }
        verdict
    });
    TableIterator::once(into_row(verdict))
}

/// Verifies each chain from its last checkpoint (all of it when `full_walk`) and, when it holds,
/// moves the checkpoint to its head: an hourly check then costs the new rows only.
#[pg_extern(volatile, parallel_unsafe)]
fn agentidp_verify_incremental(
    full_walk: default!(bool, "false"),
) -> TableIterator<
    'static,
    (
        name!(verified, bool),
        name!(checked_count, i64),
        name!(broken_at_event_id, Option<Uuid>),
        name!(break_kind, Option<&'static str>),
        name!(broken_chain_id, Option<String>),
    ),
> {
    let verdict = Spi::connect(|_| {
        let mut verdict = Verdict::default();
        let outcomes = if full_walk {
            walk_from_starts(chain_ids(None), true)
        } else {
            chain_ids(None)
                .into_iter()
                .map(|id| {
                    let outcome = match checkpoints::checkpoint(&id) {
                        Some(cp) => match check_against(&id, &cp) {
                            Ok(()) => walk(&id, cp, Start::After(cp.seq), None),
                            Err(broken) => broken,
                        },
                        None => walk(&id, trusted_start(&id), Start::Beginning, None),
                    };
                    (id, outcome)
                })
                .collect()
        };
        for (id, outcome) in outcomes {
            checkpoints::settle(&id, &outcome);
            verdict.add(&id, &outcome);
            if verdict.is_broken() {
                break;
            }
        }
        verdict
    });
    TableIterator::once(into_row(verdict))
}

/// Each chain's current head, to export to a store outside this database: a later
/// `agentidp_verify_digest` against it reveals a cut tail or a rewritten history.
#[pg_extern(stable, parallel_safe)]
fn agentidp_chain_heads(
    chain: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(chain_id, String),
        name!(seq, i64),
        name!(hash, Vec<u8>),
        name!(occurred_at, Option<TimestampWithTimeZone>),
    ),
> {
    let heads = Spi::connect(|_| {
        chain_ids(chain)
            .into_iter()
            .filter_map(|id| {
                let rows = HEAD.query(&[id.as_str().into_datum()], NO_SNAPSHOT, 1);
                let row = rows.first()?;
                let seq = row.int8(1)?;
                let hash = row.bytes(2)?.to_vec();
                // SAFETY: column 3 of HEAD is occurred_at, a timestamptz.
                let at = row
                    .datum(3)
                    .and_then(|d| unsafe { TimestampWithTimeZone::from_datum(d, false) });
                Some((id, seq, hash, at))
            })
            .collect::<Vec<_>>()
    });
    TableIterator::new(heads)
}

/// Verifies a whole chain, and that it still contains the head exported earlier.
#[pg_extern(stable, parallel_safe)]
fn agentidp_verify_digest(
    chain_id: &str,
    seq: i64,
    hash: &[u8],
) -> TableIterator<
    'static,
    (
        name!(verified, bool),
        name!(checked_count, i64),
        name!(broken_at_event_id, Option<Uuid>),
        name!(break_kind, Option<&'static str>),
        name!(broken_chain_id, Option<String>),
    ),
> {
    let Ok(hash) = <[u8; HASH_LEN]>::try_from(hash) else {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("a digest hash is 32 bytes, got {}", hash.len()),
            None,
        );
    };
    let digest = ChainHead { seq, hash };
    let verdict = Spi::connect(|_| {
        let mut verdict = Verdict::default();
        let walked = walk(chain_id, trusted_start(chain_id), Start::Beginning, None);
        let outcome = if walked.broken.is_some() {
            walked
        } else {
            verdict::with_digest(walked, check_against(chain_id, &digest))
        };
        verdict.add(chain_id, &outcome);
        verdict
    });
    TableIterator::once(into_row(verdict))
}

/// The verdict as the functions' result row.
fn into_row(verdict: Verdict) -> VerdictRow {
    let checked = i64::try_from(verdict.checked).unwrap_or(i64::MAX);
    match verdict.broken {
        None => (true, checked, None, None, None),
        Some((event, kind, chain)) => (
            false,
            checked,
            event.map(Uuid::from_bytes),
            Some(kind.as_str()),
            Some(chain),
        ),
    }
}
