//! The SQL side of a log distributed by Citus (docs/scaling.md); the rules are
//! `agentidp_core::distribution`'s, and `sql/citus.sql` distributes the tables.

use agentidp_core::chain;
use pgrx::prelude::*;

use crate::gucs;

/// The chain an event of `org_id` joins under this session's `agentidp.chain_scope`. On a
/// distributed log an INSERT names it as `chain_id`: Citus routes the row by it, before the chain
/// trigger on the shard checks it.
#[pg_extern(stable, parallel_safe)]
fn agentidp_chain_of(org_id: Option<&str>) -> String {
    chain_of(org_id)
}

pub(crate) fn chain_of(org_id: Option<&str>) -> String {
    let id = chain::chain_id(gucs::chain_scope(), org_id.map(str::as_bytes));
    String::from_utf8(id).expect("a chain id is a prefix and the org id's text")
}
