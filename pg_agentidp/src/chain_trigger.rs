//! The BEFORE INSERT trigger that gives every audit event its place in a chain.
//!
//! Whatever chain columns the client sent are overwritten: the chain id comes from
//! `agentidp.chain_scope`, the sequence number and previous hash from the chain head
//! (`chain_head`), and the hash from `agentidp-core`.

use std::ffi::CStr;

use agentidp_core::chain::{self, ChainHead, Event};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::chain_head;
use crate::error::raise;
use crate::gucs::{self, ChainScope};
use crate::spi::varlena_bytes;

/// The columns the trigger reads and writes, in `audit_events` order of use.
const COLUMNS: [&CStr; 11] = [
    c"event_id",
    c"occurred_at",
    c"action",
    c"outcome",
    c"agent_id",
    c"org_id",
    c"metadata",
    c"chain_id",
    c"seq",
    c"prev_hash",
    c"hash",
];
const EVENT_ID: usize = 0;
const OCCURRED_AT: usize = 1;
const ACTION: usize = 2;
const OUTCOME: usize = 3;
const AGENT_ID: usize = 4;
const ORG_ID: usize = 5;
const METADATA: usize = 6;
const CHAIN_ID: usize = 7;
const SEQ: usize = 8;
const PREV_HASH: usize = 9;
const HASH: usize = 10;

/// Per-call-site state, kept in `fn_extra` for the statement: column positions resolved once,
/// and buffers reused for every row.
struct CallSite {
    relid: pg_sys::Oid,
    attnums: [i32; COLUMNS.len()],
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    preimage: Vec<u8>,
    chain_id: Vec<u8>,
}

impl CallSite {
    /// SAFETY: `rel` is the trigger's open relation.
    unsafe fn resolve(rel: pg_sys::Relation) -> CallSite {
        let desc = unsafe { (*rel).rd_att };
        let natts = usize::try_from(unsafe { (*desc).natts }).expect("natts is small");
        let mut attnums = [0i32; COLUMNS.len()];
        for (slot, name) in attnums.iter_mut().zip(COLUMNS) {
            let attnum = (0..natts)
                .find(|&i| {
                    // SAFETY: i < natts.
                    let att = unsafe { &*(*desc).attrs.as_ptr().add(i) };
                    !att.attisdropped
                        && unsafe { CStr::from_ptr(att.attname.data.as_ptr()) } == name
                })
                .map(|i| i32::try_from(i).expect("small") + 1);
            *slot = attnum.unwrap_or_else(|| {
                raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!("agentidp_chain_trigger: the table has no column {name:?}"),
                    Some("The trigger belongs on agentidp.audit_events only."),
                )
            });
        }
        CallSite {
            // SAFETY: rel is open.
            relid: unsafe { (*rel).rd_id },
            attnums,
            values: vec![pg_sys::Datum::from(0); natts],
            nulls: vec![false; natts],
            preimage: Vec::with_capacity(256),
            chain_id: Vec::with_capacity(64),
        }
    }

    fn index(&self, column: usize) -> usize {
        usize::try_from(self.attnums[column] - 1).expect("attnums start at 1")
    }

    fn value(&self, column: usize) -> Option<pg_sys::Datum> {
        let i = self.index(column);
        (!self.nulls[i]).then_some(self.values[i])
    }

    /// SAFETY: `column` holds a varlena type; the row outlives the slice.
    unsafe fn bytes<'a>(&self, column: usize) -> Option<&'a [u8]> {
        self.value(column).map(|d| unsafe { varlena_bytes(d) })
    }
}

// #[pg_trigger] hides fcinfo, and with it fn_extra, the per-call-site cache; so this one function
// is declared by hand (sql/triggers.sql creates it).
#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_agentidp_chain_trigger() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn agentidp_chain_trigger(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: PostgreSQL calls this as a trigger function with a valid fcinfo.
    unsafe { chain_row(fcinfo) }
}

unsafe fn chain_row(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let td = (*fcinfo).context as *mut pg_sys::TriggerData;
        let is_trigger = !td.is_null() && (*td).type_ == pg_sys::NodeTag::T_TriggerData;
        if !is_trigger
            || !pgrx::trigger_support::trigger_fired_before((*td).tg_event)
            || !pgrx::trigger_support::trigger_fired_for_row((*td).tg_event)
            || !pgrx::trigger_support::trigger_fired_by_insert((*td).tg_event)
        {
            raise(
                PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                "agentidp_chain_trigger must be a BEFORE INSERT FOR EACH ROW trigger",
                None,
            );
        }
        let rel = (*td).tg_relation;
        let flinfo = (*fcinfo).flinfo;
        let mut site = (*flinfo).fn_extra as *mut CallSite;
        if site.is_null() || (*site).relid != (*rel).rd_id {
            site = pgrx::PgMemoryContexts::For((*flinfo).fn_mcxt)
                .leak_and_drop_on_delete(CallSite::resolve(rel));
            (*flinfo).fn_extra = site.cast();
        }
        let site = &mut *site;
        let desc = (*rel).rd_att;
        pg_sys::heap_deform_tuple(
            (*td).tg_trigtuple,
            desc,
            site.values.as_mut_ptr(),
            site.nulls.as_mut_ptr(),
        );

        let org_id = site.bytes(ORG_ID);
        site.chain_id.clear();
        match (gucs::chain_scope(), org_id) {
            (ChainScope::Org, Some(org)) => {
                site.chain_id.extend_from_slice(b"org:");
                site.chain_id.extend_from_slice(org);
            }
            _ => site.chain_id.extend_from_slice(b"global"),
        }

        let event_id = site.value(EVENT_ID).expect("event_id is NOT NULL");
        let occurred_at = site.value(OCCURRED_AT).expect("occurred_at is NOT NULL");
        let occurred_at_unix_micros = chain::unix_micros_from_postgres(occurred_at.value() as i64)
            .unwrap_or_else(|| {
                raise(
                    PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
                    "audit event occurred_at is out of range",
                    None,
                )
            });
        let metadata = site.value(METADATA).map(|d| {
            let jsonb = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::Jsonb;
            let text = pg_sys::JsonbToCString(
                std::ptr::null_mut(),
                &mut (*jsonb).root,
                pgrx::varlena::varsize(jsonb.cast()) as i32,
            );
            CStr::from_ptr(text).to_bytes()
        });
        let action = site.bytes(ACTION).expect("action is NOT NULL");
        let outcome = site.bytes(OUTCOME).expect("outcome is NOT NULL");
        let agent_id = site.bytes(AGENT_ID);
        let event_id = &*event_id.cast_mut_ptr::<[u8; 16]>();

        let chain_id = std::mem::take(&mut site.chain_id);
        let mut preimage = std::mem::take(&mut site.preimage);
        let (seq, prev_hash, hash) = chain_head::append(&chain_id, |head| {
            let seq = head.next_seq();
            let hash = Event {
                chain_id: &chain_id,
                seq,
                prev_hash: &head.hash,
                event_id,
                occurred_at_unix_micros,
                action,
                outcome,
                agent_id,
                org_id,
                metadata,
            }
            .hash_with(&mut preimage);
            (ChainHead { seq, hash }, (seq, head.hash, hash))
        });

        let mut repl_cols = [
            site.attnums[CHAIN_ID],
            site.attnums[SEQ],
            site.attnums[PREV_HASH],
            site.attnums[HASH],
        ];
        // SAFETY: chain ids are built from text columns and are valid UTF-8.
        let chain_text = std::str::from_utf8_unchecked(&chain_id);
        let mut repl_values = [
            chain_text.into_datum().expect("text datum"),
            seq.into_datum().expect("int8 datum"),
            prev_hash.as_slice().into_datum().expect("bytea datum"),
            hash.as_slice().into_datum().expect("bytea datum"),
        ];
        let mut repl_nulls = [false; 4];
        site.chain_id = chain_id;
        site.preimage = preimage;
        let new_tuple = pg_sys::heap_modify_tuple_by_cols(
            (*td).tg_trigtuple,
            desc,
            repl_cols.len() as i32,
            repl_cols.as_mut_ptr(),
            repl_values.as_mut_ptr(),
            repl_nulls.as_mut_ptr(),
        );
        pg_sys::Datum::from(new_tuple)
    }
}
