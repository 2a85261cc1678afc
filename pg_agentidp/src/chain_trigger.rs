//! The BEFORE INSERT trigger that gives every audit event its place in a chain.
//!
//! Whatever chain columns the client sent are overwritten: the chain id comes from
//! `agentidp.chain_scope`, the sequence number and previous hash from the chain head
//! (`chain_head`), and the hash from `agentidp-core`. The exceptions are a restore
//! (`agentidp.restoring`, superusers only) and a superuser's replay under a replication origin
//! (logical replication, Citus's shard copies): those rows keep the chain they were written in
//! (`distribution::keeps_its_chain`).
//!
//! On a Citus shard the trigger also refuses a row routed by another chain's `chain_id`
//! (`distribution::check_placement`).

use agentidp_core::chain::{self, ChainHead};
use agentidp_core::distribution::{self, Arrival, PlacementError};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::chain_head;
use crate::citus;
use crate::error::raise;
use crate::event_scan::{
    Columns, JsonbText, Values, CHAIN_ID, HASH, OCCURRED_AT, ORG_ID, PREV_HASH, SEQ,
};
use crate::gucs;

/// Per-call-site state, kept in `fn_extra` for the statement: column positions resolved once,
/// and buffers reused for every row.
struct CallSite {
    relid: pg_sys::Oid,
    columns: Columns,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    preimage: Vec<u8>,
    chain_id: Vec<u8>,
    metadata: JsonbText,
    /// A Citus shard of the log, which Citus fills by the `chain_id` each INSERT carries.
    on_shard: bool,
    /// Whether Citus marks its shard copies into this node with a replication origin.
    copies_marked: bool,
}

impl CallSite {
    /// SAFETY: `rel` is the trigger's open relation; `context` lives as long as the call site
    /// (the trigger itself runs in a per-row context, reset after each row).
    unsafe fn resolve(rel: pg_sys::Relation, context: pg_sys::MemoryContext) -> CallSite {
        let natts = usize::try_from(unsafe { (*(*rel).rd_att).natts }).expect("natts is small");
        CallSite {
            // SAFETY: rel is open.
            relid: unsafe { (*rel).rd_id },
            columns: unsafe { Columns::of(rel) },
            values: vec![pg_sys::Datum::from(0); natts],
            nulls: vec![false; natts],
            preimage: Vec::with_capacity(256),
            chain_id: Vec::with_capacity(64),
            metadata: JsonbText::new_in(context),
            // SAFETY: rel is open; relname is its NUL-terminated pg_class name.
            on_shard: distribution::is_shard_of(
                unsafe { std::ffi::CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()) }
                    .to_bytes(),
                b"audit_events",
            ),
            copies_marked: citus::marks_copies(),
        }
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
        if distribution::keeps_its_chain(arrival()) {
            // Re-chaining a dump or a replayed row would renumber and rehash it whenever this
            // session's scope differs, or events arrive before their chain's retention anchor, or
            // out of order: the exported digests would no longer match. Appends after it, here or
            // in any backend, re-read heads.
            chain_head::forget_heads((*td).tg_relation);
            return pg_sys::Datum::from((*td).tg_trigtuple);
        }
        let rel = (*td).tg_relation;
        let flinfo = (*fcinfo).flinfo;
        let mut site = (*flinfo).fn_extra as *mut CallSite;
        if site.is_null() || (*site).relid != (*rel).rd_id {
            site = pgrx::PgMemoryContexts::For((*flinfo).fn_mcxt)
                .leak_and_drop_on_delete(CallSite::resolve(rel, (*flinfo).fn_mcxt));
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

        let mut chain_id = std::mem::take(&mut site.chain_id);
        let mut metadata_text = std::mem::replace(&mut site.metadata, JsonbText::empty());
        let mut preimage = std::mem::take(&mut site.preimage);
        let columns = site.columns;
        // The trigger tuple was deformed whole, into arrays of the relation's natts.
        let row = Values::from_raw(&columns, site.values.as_ptr(), site.nulls.as_ptr());
        let org_id = row.bytes(ORG_ID);
        let scope = gucs::chain_scope();
        chain::chain_id_into(scope, org_id, &mut chain_id);
        if site.on_shard {
            let routed = row.bytes(CHAIN_ID).unwrap_or_default();
            if let Err(refusal) =
                distribution::check_placement(scope, site.copies_marked, routed, &chain_id)
            {
                refuse_placement(refusal, &chain_id, routed);
            }
        }
        let occurred_at = row.datum(OCCURRED_AT).expect("occurred_at is NOT NULL");
        if chain::unix_micros_from_postgres(occurred_at.value() as i64).is_none() {
            raise(
                PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
                "audit event occurred_at is out of range",
                None,
            );
        }
        let metadata = row.metadata_text(&mut metadata_text);
        let table = chain_head::EventsTable { rel, columns };
        let (seq, prev_hash, hash) = chain_head::append(table, &chain_id, |head| {
            let seq = head.next_seq();
            let hash = row
                .event(&chain_id, seq, &head.hash, metadata)
                .hash_with(&mut preimage);
            (ChainHead { seq, hash }, (seq, head.hash, hash))
        });

        let attnums = &columns.attnums;
        let mut repl_cols = [
            attnums[CHAIN_ID],
            attnums[SEQ],
            attnums[PREV_HASH],
            attnums[HASH],
        ];
        let mut repl_values = [
            text_datum(&chain_id),
            seq.into_datum().expect("int8 datum"),
            prev_hash.as_slice().into_datum().expect("bytea datum"),
            hash.as_slice().into_datum().expect("bytea datum"),
        ];
        let mut repl_nulls = [false; 4];
        site.chain_id = chain_id;
        site.preimage = preimage;
        site.metadata = metadata_text;
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

/// How this row reached the trigger. The superuser check is made only for a replay, which is
/// rare: every client insert would pay for it otherwise.
pub(crate) fn arrival() -> Arrival {
    // SAFETY: a plain read of a backend global.
    let replication_origin = unsafe {
        pg_sys::replorigin_session_origin != pg_sys::InvalidRepOriginId as pg_sys::RepOriginId
    };
    Arrival {
        restoring: gucs::restoring(),
        replication_origin,
        // SAFETY: a syscache lookup of the current user, cached by PostgreSQL.
        superuser: replication_origin && unsafe { pg_sys::superuser() },
    }
}

fn refuse_placement(refusal: PlacementError, chain_id: &[u8], routed: &[u8]) -> ! {
    match refusal {
        PlacementError::UnmarkedCopies => raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "a shard of the audit log takes no events while citus.enable_change_data_capture is off",
            Some("Set citus.enable_change_data_capture = on on every node: Citus then copies shards (moves, splits) under a replication origin, and the rows keep their chain. Without it the copies would be chained anew. See docs/scaling.md."),
        ),
        PlacementError::GlobalScope => raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "agentidp.chain_scope = 'global' cannot be used on a distributed audit log: its one chain would have to span the shards",
            Some("Set agentidp.chain_scope = 'org' on every node (ALTER SYSTEM, then SELECT pg_reload_conf()): each org's chain then lives whole on one shard, and events without an org on the chain 'global'. See docs/scaling.md."),
        ),
        PlacementError::Misrouted => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "audit event of chain \"{}\" was routed to the shard of chain_id \"{}\"",
                String::from_utf8_lossy(chain_id),
                String::from_utf8_lossy(routed)
            ),
            Some("On a distributed log Citus places a row by the chain_id its INSERT carries, before the chain trigger runs: give chain_id => agentidp.agentidp_chain_of(org_id), with agentidp.chain_scope = 'org' on every node. See docs/scaling.md."),
        ),
    }
}

/// A `text` datum holding `bytes` as they are, in the current memory context. The chain id is the
/// org id's bytes behind a prefix, so it is in the server encoding whenever the org id is; no
/// UTF-8 check is needed (or made) to store it back into a text column.
fn text_datum(bytes: &[u8]) -> pg_sys::Datum {
    let len = i32::try_from(bytes.len()).expect("a chain id is shorter than a PostgreSQL field");
    // SAFETY: `bytes` is a live slice of `len` bytes; the function copies them into a fresh
    // palloc'd varlena and reads nothing past them.
    let text = unsafe { pg_sys::cstring_to_text_with_len(bytes.as_ptr().cast(), len) };
    pg_sys::Datum::from(text)
}
