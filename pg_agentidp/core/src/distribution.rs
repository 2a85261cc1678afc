//! The rules of a log distributed by Citus (docs/scaling.md): which rows keep the chain columns
//! they arrive with, and where an event may be stored.
//!
//! The log is distributed by `chain_id`, so a chain lives whole in one shard and its head, its
//! lock and its numbering stay on one node. Citus routes an INSERT by the `chain_id` it carries,
//! before any trigger runs; the trigger on the shard then checks that the row was routed to the
//! chain it belongs to, because a row stored in another chain's shard would fork its chain there.

use serde::{Deserialize, Serialize};

use crate::chain::ChainScope;

/// How an inserted row reached the chain trigger, as far as the session can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrival {
    /// `agentidp.restoring` is on (superusers only): pg_restore loading a dump.
    pub restoring: bool,
    /// The session replays changes under a replication origin: logical replication's apply and
    /// table-sync workers (a subscriber of the log, a shard move's catch-up), and Citus's shard
    /// copies (moves, splits, distributing a table) with `citus.enable_change_data_capture`.
    /// Setting one up takes a superuser. `session_replication_role = replica` alone does not
    /// count: a superuser's session can set it, and the apply workers have an origin anyway.
    pub replication_origin: bool,
    /// The session's user is a superuser.
    pub superuser: bool,
}

/// Whether a row keeps the chain columns it arrived with instead of being chained anew.
///
/// Rows copied or replicated from another node were chained where they were first written; the
/// trigger on the target would number and hash them again, from whatever that node's shard holds,
/// and every exported digest and signed checkpoint would stop matching. Only a restore or a
/// replay keeps them, and a replay only when a superuser runs it: a client session cannot send
/// its own chain columns, whatever it sets.
pub fn keeps_its_chain(arrival: Arrival) -> bool {
    arrival.restoring || (arrival.superuser && arrival.replication_origin)
}

/// Why a shard refuses an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementError {
    /// `citus.enable_change_data_capture` is off: Citus's shard copies would then arrive without a
    /// replication origin and be chained anew on the target, so no row is taken at all.
    UnmarkedCopies,
    /// `agentidp.chain_scope = global`: one chain for every event cannot span shards.
    GlobalScope,
    /// The row was routed by a `chain_id` other than the chain it belongs to.
    Misrouted,
}

/// Checks that an event with chain `chain` may be stored in the shard Citus routed it to by
/// `routed` (the `chain_id` the INSERT carried), on a node whose shard copies are marked with a
/// replication origin (`copies_marked`).
pub fn check_placement(
    scope: ChainScope,
    copies_marked: bool,
    routed: &[u8],
    chain: &[u8],
) -> Result<(), PlacementError> {
    if !copies_marked {
        return Err(PlacementError::UnmarkedCopies);
    }
    if scope == ChainScope::Global {
        return Err(PlacementError::GlobalScope);
    }
    if routed != chain {
        return Err(PlacementError::Misrouted);
    }
    Ok(())
}

/// Whether `relname` is one of Citus's shards of the table named `table`: `<table>_<shard id>`.
pub fn is_shard_of(relname: &[u8], table: &[u8]) -> bool {
    relname
        .strip_prefix(table)
        .and_then(|rest| rest.strip_prefix(b"_"))
        .is_some_and(|id| !id.is_empty() && id.iter().all(u8::is_ascii_digit))
}

/// The `options` of the connections a backend opens to other nodes (Citus's, to the workers):
/// `inherited`, the options the backend found in its own environment, then `-c name=value` for
/// each setting with a value.
///
/// Citus offers no way to add a connection option of ours (`citus.node_conninfo` and
/// `pg_dist_authinfo` accept a fixed list), but libpq takes `options` from `PGOPTIONS` when the
/// connection sets none. So a session's key travels to the workers as it came to it, in the
/// startup packet: never as a statement, which `log_statement` would write to every node's log.
/// The value is escaped as the server splits options (`pg_split_opts`): a backslash before every
/// backslash and every whitespace byte.
pub fn passed_on_options(inherited: &[u8], settings: &[(&str, &[u8])]) -> Vec<u8> {
    let mut options = inherited.to_vec();
    for (name, value) in settings.iter().filter(|(_, value)| !value.is_empty()) {
        if !options.is_empty() {
            options.push(b' ');
        }
        options.extend_from_slice(b"-c ");
        for &byte in name.as_bytes().iter().chain(b"=").chain(value.iter()) {
            if byte == b'\\' || byte.is_ascii_whitespace() {
                options.push(b'\\');
            }
            options.push(byte);
        }
    }
    options
}

/// What archiving moved from one chain on a shard: a row of `agentidp_archive_events()`, as the
/// worker holding the shard reports it to the coordinator (the text `run_command_on_shards`
/// returns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedChain {
    pub chain_id: String,
    pub archived_count: i64,
    pub boundary_seq: i64,
    pub boundary_hash: Vec<u8>,
}

/// A shard's report: a JSON array of [`ArchivedChain`].
pub fn encode_archived(chains: &[ArchivedChain]) -> String {
    serde_json::to_string(chains).expect("plain fields serialize")
}

pub fn decode_archived(report: &str) -> Result<Vec<ArchivedChain>, serde_json::Error> {
    serde_json::from_str(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::chain_id;

    const CLIENT: Arrival = Arrival {
        restoring: false,
        replication_origin: false,
        superuser: false,
    };

    #[test]
    fn a_client_insert_is_chained_anew() {
        assert!(!keeps_its_chain(CLIENT));
        assert!(!keeps_its_chain(Arrival {
            superuser: true,
            ..CLIENT
        }));
    }

    #[test]
    fn a_replay_keeps_its_chain_only_when_a_superuser_runs_it() {
        let replay = Arrival {
            replication_origin: true,
            ..CLIENT
        };
        assert!(!keeps_its_chain(replay));
        assert!(keeps_its_chain(Arrival {
            superuser: true,
            ..replay
        }));
    }

    #[test]
    fn a_restore_keeps_its_chain() {
        // The setting itself is superuser-only; the trigger sees it on only when one set it.
        assert!(keeps_its_chain(Arrival {
            restoring: true,
            ..CLIENT
        }));
    }

    #[test]
    fn a_shard_takes_only_the_chain_it_was_routed_by() {
        let acme = chain_id(ChainScope::Org, Some(b"acme"));
        assert_eq!(check_placement(ChainScope::Org, true, &acme, &acme), Ok(()));
        assert_eq!(
            check_placement(ChainScope::Org, true, b"", &acme),
            Err(PlacementError::Misrouted)
        );
        assert_eq!(
            check_placement(ChainScope::Org, true, b"org:globex", &acme),
            Err(PlacementError::Misrouted)
        );
        let global = chain_id(ChainScope::Org, None);
        assert_eq!(
            check_placement(ChainScope::Org, true, &global, &global),
            Ok(())
        );
    }

    #[test]
    fn the_global_scope_is_refused_on_a_shard_even_when_routed_right() {
        let global = chain_id(ChainScope::Global, Some(b"acme"));
        assert_eq!(
            check_placement(ChainScope::Global, true, &global, &global),
            Err(PlacementError::GlobalScope)
        );
    }

    #[test]
    fn a_shard_takes_nothing_while_its_copies_would_be_chained_anew() {
        let acme = chain_id(ChainScope::Org, Some(b"acme"));
        assert_eq!(
            check_placement(ChainScope::Org, false, &acme, &acme),
            Err(PlacementError::UnmarkedCopies)
        );
    }

    #[test]
    fn shards_are_the_table_name_and_a_shard_id() {
        assert!(is_shard_of(b"audit_events_102008", b"audit_events"));
        assert!(!is_shard_of(b"audit_events", b"audit_events"));
        assert!(!is_shard_of(b"audit_events_", b"audit_events"));
        assert!(!is_shard_of(b"audit_events_archive", b"audit_events"));
        assert!(!is_shard_of(
            b"audit_events_archive_102040",
            b"audit_events"
        ));
        assert!(!is_shard_of(b"audit_events_12a", b"audit_events"));
        assert!(!is_shard_of(b"xaudit_events_1", b"audit_events"));
    }

    #[test]
    fn settings_are_passed_on_after_the_inherited_options() {
        assert_eq!(
            passed_on_options(
                b"-c work_mem=64MB",
                &[
                    ("agentidp.encryption_key", b"00ff"),
                    ("agentidp.encryption_old_keys", b"")
                ]
            ),
            b"-c work_mem=64MB -c agentidp.encryption_key=00ff"
        );
        assert_eq!(
            passed_on_options(b"", &[("a.b", b"1"), ("a.c", b"2")]),
            b"-c a.b=1 -c a.c=2"
        );
        assert_eq!(passed_on_options(b"-c x=1", &[("a.b", b"")]), b"-c x=1");
    }

    #[test]
    fn values_are_escaped_as_the_server_splits_options() {
        assert_eq!(
            passed_on_options(b"", &[("a.b", b"k1, k2\\x\tk3")]),
            b"-c a.b=k1,\\ k2\\\\x\\\tk3"
        );
    }

    #[test]
    fn a_shards_archive_report_round_trips() {
        let chains = vec![
            ArchivedChain {
                chain_id: "org:acme".into(),
                archived_count: 40,
                boundary_seq: 40,
                boundary_hash: vec![0xab; 32],
            },
            ArchivedChain {
                chain_id: "org:\"quoted\" é".into(),
                archived_count: 1,
                boundary_seq: 7,
                boundary_hash: vec![0; 32],
            },
        ];
        assert_eq!(
            decode_archived(&encode_archived(&chains)).expect("round trip"),
            chains
        );
        assert_eq!(
            decode_archived(&encode_archived(&[])).expect("round trip"),
            vec![]
        );
        assert!(decode_archived("ERROR: something").is_err());
    }
}
