//! `agentidp.audit_events` as an open relation, for the scans of `event_scan`.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::raise;
use crate::event_scan::Columns;

/// `agentidp.audit_events`, opened for reading and closed on drop.
pub(crate) struct EventsRelation {
    pub rel: pg_sys::Relation,
    pub columns: Columns,
}

impl EventsRelation {
    pub(crate) fn open() -> EventsRelation {
        // SAFETY: catalog lookups and an AccessShareLock open, as any query of the table does.
        unsafe {
            let namespace = pg_sys::get_namespace_oid(c"agentidp".as_ptr(), false);
            let relid = pg_sys::get_relname_relid(c"audit_events".as_ptr(), namespace);
            if relid == pg_sys::InvalidOid {
                raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                    "agentidp.audit_events does not exist",
                    None,
                );
            }
            let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            EventsRelation {
                rel,
                columns: Columns::of(rel),
            }
        }
    }
}

impl Drop for EventsRelation {
    fn drop(&mut self) {
        // SAFETY: opened once in `open`; the lock is kept until the transaction ends.
        unsafe { pg_sys::table_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE) }
    }
}
