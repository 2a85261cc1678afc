//! On a node where Citus is loaded, an INSERT into `agentidp.audit_events` that names no
//! `chain_id` gets one at parse analysis: `agentidp.agentidp_chain_of(org_id)`. Citus routes a row
//! by the `chain_id` its INSERT carries, before any trigger runs (docs/scaling.md), so without it
//! every plain insert would be refused by the shard it reached. The chain trigger on the shard
//! still derives the chain itself and checks the routing; an INSERT that names `chain_id` is left
//! as it is (a restore's `--inserts` dump, or an application that names it).
//!
//! Covered: `VALUES` with one row or many, `INSERT ... SELECT`, and inserts without an org (the
//! chain `global`). What is left alone (a multi-row `VALUES` or a SELECT whose `org_id` column is
//! not text, a SELECT with UNION or DISTINCT) is refused on the shards with the error that says
//! to name the chain.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::citus;

static mut PREVIOUS: pg_sys::post_parse_analyze_hook_type = None;

pub fn init() {
    // SAFETY: _PG_init runs once per backend, before any query; the previous hook is kept and
    // called first.
    unsafe {
        PREVIOUS = pg_sys::post_parse_analyze_hook;
        pg_sys::post_parse_analyze_hook = Some(name_the_chain);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn name_the_chain(
    pstate: *mut pg_sys::ParseState,
    query: *mut pg_sys::Query,
    jstate: *mut pg_sys::JumbleState,
) {
    // SAFETY: called by the parser with a valid query; the previous hook gets the same arguments.
    unsafe {
        if let Some(previous) = PREVIOUS {
            previous(pstate, query, jstate);
        }
        if (*query).commandType == pg_sys::CmdType::CMD_INSERT && citus::loaded() {
            add_chain_id(query);
        }
    }
}

/// SAFETY: `query` is an analyzed INSERT.
unsafe fn add_chain_id(query: *mut pg_sys::Query) {
    unsafe {
        let target = rte((*query).rtable, (*query).resultRelation);
        let namespace = pg_sys::get_namespace_oid(c"agentidp".as_ptr(), true);
        if namespace == pg_sys::InvalidOid
            || (*target).relid != pg_sys::get_relname_relid(c"audit_events".as_ptr(), namespace)
        {
            return;
        }
        let chain_att = pg_sys::get_attnum((*target).relid, c"chain_id".as_ptr());
        let org_att = pg_sys::get_attnum((*target).relid, c"org_id".as_ptr());
        if chain_att <= 0 || org_att <= 0 || target_entry((*query).targetList, chain_att).is_some()
        {
            return;
        }
        let Some(chain_of) = chain_of_function() else {
            return;
        };
        let org = target_entry((*query).targetList, org_att).map(|tle| (*tle).expr);
        let chain = match org {
            None => Some(call(chain_of, null_text())),
            Some(expr) => match source_column(query, expr) {
                Some((varno, source, column))
                    if (*source).rtekind == pg_sys::RTEKind::RTE_VALUES =>
                {
                    add_values_column(varno, source, column, chain_of)
                }
                Some((varno, source, column))
                    if (*source).rtekind == pg_sys::RTEKind::RTE_SUBQUERY =>
                {
                    add_subquery_column(varno, source, column, chain_of)
                }
                Some(_) => None,
                // A row's own expressions (one-row VALUES): the call can take them as they are.
                None if !pg_sys::contain_vars_of_level(expr.cast(), 0) => {
                    Some(call(chain_of, pg_sys::copyObjectImpl(expr.cast()).cast()))
                }
                None => None,
            },
        };
        let Some(chain) = chain else {
            return;
        };
        let entry = pg_sys::makeTargetEntry(
            chain,
            chain_att,
            pg_sys::pstrdup(c"chain_id".as_ptr()),
            false,
        );
        (*query).targetList = pg_sys::lappend((*query).targetList, entry.cast());
    }
}

/// `agentidp.agentidp_chain_of(text)`, if this version of the extension has it.
unsafe fn chain_of_function() -> Option<pg_sys::Oid> {
    unsafe {
        let mut name = pg_sys::lappend(
            std::ptr::null_mut(),
            pg_sys::makeString(pg_sys::pstrdup(c"agentidp".as_ptr())).cast(),
        );
        name = pg_sys::lappend(
            name,
            pg_sys::makeString(pg_sys::pstrdup(c"agentidp_chain_of".as_ptr())).cast(),
        );
        let args = [pg_sys::TEXTOID];
        let oid = pg_sys::LookupFuncName(name, 1, args.as_ptr(), true);
        (oid != pg_sys::InvalidOid).then_some(oid)
    }
}

/// `agentidp_chain_of(arg)`, evaluated where Citus evaluates a STABLE function of an INSERT:
/// on the node that plans it, before routing.
unsafe fn call(chain_of: pg_sys::Oid, arg: *mut pg_sys::Expr) -> *mut pg_sys::Expr {
    unsafe {
        let args = pg_sys::lappend(std::ptr::null_mut(), arg.cast());
        pg_sys::makeFuncExpr(
            chain_of,
            pg_sys::TEXTOID,
            args,
            pg_sys::DEFAULT_COLLATION_OID,
            pg_sys::DEFAULT_COLLATION_OID,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        )
        .cast()
    }
}

unsafe fn null_text() -> *mut pg_sys::Expr {
    unsafe { pg_sys::makeNullConst(pg_sys::TEXTOID, -1, pg_sys::DEFAULT_COLLATION_OID).cast() }
}

/// The range table entry (index and entry) and the column that `expr` (the org_id target)
/// reads, if it is a plain column of the query's own FROM: a multi-row VALUES list, or the SELECT
/// of an `INSERT ... SELECT`.
unsafe fn source_column(
    query: *mut pg_sys::Query,
    expr: *mut pg_sys::Expr,
) -> Option<(i32, *mut pg_sys::RangeTblEntry, i32)> {
    unsafe {
        if (*expr.cast::<pg_sys::Node>()).type_ != pg_sys::NodeTag::T_Var {
            return None;
        }
        let var = expr.cast::<pg_sys::Var>();
        if (*var).varlevelsup != 0 {
            return None;
        }
        Some((
            (*var).varno,
            rte((*query).rtable, (*var).varno),
            i32::from((*var).varattno),
        ))
    }
}

/// Adds a column to the SELECT of an `INSERT ... SELECT` holding each row's chain, computed from
/// its org column, and returns the Var reading it. Citus plans the SELECT apart and routes its
/// rows by the column the target reads, so the call must be in the SELECT. Left alone (None):
/// a UNION or the like, whose columns its set operation fixes, a DISTINCT, which a column more
/// would change, and set-returning targets.
unsafe fn add_subquery_column(
    varno: i32,
    source: *mut pg_sys::RangeTblEntry,
    org_column: i32,
    chain_of: pg_sys::Oid,
) -> Option<*mut pg_sys::Expr> {
    unsafe {
        let select = (*source).subquery;
        if select.is_null()
            || !(*select).setOperations.is_null()
            || !(*select).distinctClause.is_null()
            || (*select).hasTargetSRFs
        {
            return None;
        }
        let org = target_entry((*select).targetList, i16::try_from(org_column).ok()?)?;
        if pg_sys::exprType((*org).expr.cast()) != pg_sys::TEXTOID {
            return None;
        }
        let column = i16::try_from(list_len((*select).targetList) + 1).ok()?;
        let arg = pg_sys::copyObjectImpl((*org).expr.cast()).cast();
        let entry = pg_sys::makeTargetEntry(
            call(chain_of, arg),
            column,
            pg_sys::pstrdup(c"chain_id".as_ptr()),
            false,
        );
        (*select).targetList = pg_sys::lappend((*select).targetList, entry.cast());
        let names = &mut (*(*source).eref).colnames;
        *names = pg_sys::lappend(
            *names,
            pg_sys::makeString(pg_sys::pstrdup(c"chain_id".as_ptr())).cast(),
        );
        Some(text_var(varno, column))
    }
}

unsafe fn text_var(varno: i32, column: i16) -> *mut pg_sys::Expr {
    unsafe {
        pg_sys::makeVar(
            varno,
            column,
            pg_sys::TEXTOID,
            -1,
            pg_sys::DEFAULT_COLLATION_OID,
            0,
        )
        .cast()
    }
}

/// Adds a column to a multi-row VALUES list holding each row's chain, computed from its org
/// column, and returns the Var reading it. Citus copies a target that is no Var into every row
/// of the list as it is, so the call must sit in each row, over that row's own org value.
unsafe fn add_values_column(
    varno: i32,
    values: *mut pg_sys::RangeTblEntry,
    org_column: i32,
    chain_of: pg_sys::Oid,
) -> Option<*mut pg_sys::Expr> {
    unsafe {
        let index = org_column - 1;
        let column = i16::try_from(list_len((*values).coltypes) + 1).ok()?;
        if pg_sys::list_nth_oid((*values).coltypes, index) != pg_sys::TEXTOID {
            return None;
        }
        let rows = (*values).values_lists;
        for n in 0..list_len(rows) {
            let row = pg_sys::list_nth(rows, n).cast::<pg_sys::List>();
            let org = pg_sys::list_nth(row, index).cast::<pg_sys::Expr>();
            let arg = if (*org.cast::<pg_sys::Node>()).type_ == pg_sys::NodeTag::T_SetToDefault {
                // org_id has no default: DEFAULT is NULL, and the rewriter only expands a DEFAULT
                // that stands alone.
                null_text()
            } else {
                pg_sys::copyObjectImpl(org.cast()).cast()
            };
            let cell = (*rows).elements.add(usize::try_from(n).expect("n >= 0"));
            (*cell).ptr_value = pg_sys::lappend(row, call(chain_of, arg).cast()).cast();
        }
        (*values).coltypes = pg_sys::lappend_oid((*values).coltypes, pg_sys::TEXTOID);
        (*values).coltypmods = pg_sys::lappend_int((*values).coltypmods, -1);
        (*values).colcollations =
            pg_sys::lappend_oid((*values).colcollations, pg_sys::DEFAULT_COLLATION_OID);
        let names = &mut (*(*values).eref).colnames;
        *names = pg_sys::lappend(
            *names,
            pg_sys::makeString(pg_sys::pstrdup(c"chain_id".as_ptr())).cast(),
        );
        Some(text_var(varno, column))
    }
}

unsafe fn rte(rtable: *mut pg_sys::List, index: i32) -> *mut pg_sys::RangeTblEntry {
    unsafe { pg_sys::list_nth(rtable, index - 1).cast() }
}

unsafe fn target_entry(list: *mut pg_sys::List, attnum: i16) -> Option<*mut pg_sys::TargetEntry> {
    unsafe {
        (0..list_len(list))
            .map(|n| pg_sys::list_nth(list, n).cast::<pg_sys::TargetEntry>())
            .find(|&tle| (*tle).resno == attnum && !(*tle).resjunk)
    }
}

fn list_len(list: *mut pg_sys::List) -> i32 {
    // SAFETY: a List pointer from the parser, or NIL.
    if list.is_null() {
        0
    } else {
        unsafe { (*list).length }
    }
}
