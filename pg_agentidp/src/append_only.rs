//! The audit log is append-only: UPDATE, DELETE and TRUNCATE fail, whoever runs them.
//!
//! Retention is the one sanctioned removal. It runs inside `retention`, which opens a
//! [`RemovalPermit`] around its own DELETE: a flag in this backend's memory that no SQL can set.

use std::cell::Cell;

use pgrx::prelude::*;

use crate::error::raise;

thread_local! {
    static REMOVAL_PERMITTED: Cell<bool> = const { Cell::new(false) };
}

/// Lets the guard pass DELETEs while alive. The flag is cleared on drop, which also runs when an
/// error unwinds through the holder.
pub struct RemovalPermit(());

impl RemovalPermit {
    pub fn open() -> RemovalPermit {
        REMOVAL_PERMITTED.set(true);
        RemovalPermit(())
    }
}

impl Drop for RemovalPermit {
    fn drop(&mut self) {
        REMOVAL_PERMITTED.set(false);
    }
}

#[pg_trigger]
fn agentidp_append_only_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let event = trigger.event();
    let op = if event.fired_by_delete() {
        if REMOVAL_PERMITTED.get() {
            return Ok(trigger.old());
        }
        "DELETE"
    } else if event.fired_by_update() {
        "UPDATE"
    } else {
        "TRUNCATE"
    };
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("agentidp.audit_events is append-only: {op} is not allowed"),
        Some("Events leave the log only through agentidp.agentidp_archive_events(); see docs/audit-log-runbook.md."),
    );
}
