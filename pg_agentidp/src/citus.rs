//! Whether the audit log is distributed by Citus (docs/scaling.md). On a distributed log the
//! table on the coordinator is an empty shell and the rows live in shards on the workers: reading
//! it directly would verify nothing, so the walks read through Citus instead (`spi_chain_scan`).

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::prelude::*;

thread_local! {
    /// The answer, and the local transaction it was found in: a log is distributed in one
    /// transaction and used in later ones, never undistributed (Citus would need the triggers
    /// dropped), so a transaction's answer holds for all of it.
    static DISTRIBUTED: Cell<Option<(pg_sys::LocalTransactionId, bool)>> = const { Cell::new(None) };
}

/// Whether Citus is loaded in this backend (it must be preloaded, so in every backend or none).
pub(crate) fn loaded() -> bool {
    // SAFETY: a GUC lookup by name; NULL when no such setting is defined.
    unsafe { !pg_sys::GetConfigOption(c"citus.node_conninfo".as_ptr(), true, false).is_null() }
}

/// `citus.enable_change_data_capture`: with it on, Citus copies shards under a replication origin.
pub(crate) fn marks_copies() -> bool {
    // SAFETY: a GUC lookup by name; NULL when Citus is not loaded.
    unsafe {
        let value =
            pg_sys::GetConfigOption(c"citus.enable_change_data_capture".as_ptr(), true, false);
        !value.is_null() && std::ffi::CStr::from_ptr(value).to_bytes() == b"on"
    }
}

/// Whether `agentidp.audit_events` is a Citus distributed table. Call inside `Spi::connect`.
pub(crate) fn log_is_distributed() -> bool {
    // Without Citus no query is needed: a single node's verification pays nothing for this.
    if !loaded() {
        return false;
    }
    // SAFETY: MyProc is this backend's PGPROC, valid for the backend's life.
    let xact = unsafe { (*pg_sys::MyProc).lxid };
    if let Some((seen_in, distributed)) = DISTRIBUTED.get() {
        if seen_in == xact {
            return distributed;
        }
    }
    // pg_dist_partition exists only where Citus is installed: asked by name first, so the query
    // over it is planned only then. Read-only (Spi::connect, not get_one, which marks the
    // transaction writable): verification runs on standbys.
    let asked = |sql: &str| {
        Spi::connect(|client| client.select(sql, Some(1), &[])?.first().get_one::<bool>())
            .ok()
            .flatten()
            == Some(true)
    };
    let distributed = asked("SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL")
        && asked(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                             WHERE logicalrelid = 'agentidp.audit_events'::regclass)",
        );
    DISTRIBUTED.set(Some((xact, distributed)));
    distributed
}
