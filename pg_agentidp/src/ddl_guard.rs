//! The event trigger that protects the audit log from DDL (sql/ddl_guard.sql installs it).
//!
//! At `ddl_command_start` it refuses a drop that would destroy the log while it holds events, and
//! at start or end it appends an `agentidp.ddl` event for every change to the log's protection.
//! Both read the command's parse tree: a `DROP EXTENSION` or `DROP SCHEMA ... CASCADE` would drop
//! this very trigger, so no `sql_drop` trigger would fire for it. The decisions are
//! `agentidp_core::ddl`'s; this module finds out what a command touches.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};

use agentidp_core::ddl::{self, Destruction, Phase, Trail};
use agentidp_core::distribution::keeps_its_chain;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::chain_head;
use crate::chain_trigger;
use crate::distribution;
use crate::error::raise;
use crate::gucs;

const EXTENSION: &str = "pg_agentidp";
/// Fixed by the control file (`relocatable = false`).
const SCHEMA: &CStr = c"agentidp";

/// A change to the log's protection, as the audit event records it.
struct Record {
    object_type: &'static str,
    object_identity: String,
    subcommands: Vec<String>,
}

thread_local! {
    /// Commands of this transaction whose start was seen: the parse tree's address (the same
    /// node reaches the end trigger), and the record kept for the end when it could not be
    /// appended at the start. Emptied when a transaction or subtransaction ends, so that a later
    /// command allocated at the same address is not taken for an earlier one.
    static STARTED: RefCell<Vec<(usize, Option<Record>)>> = const { RefCell::new(Vec::new()) };
}

pub fn init() {
    // SAFETY: registered once per backend from _PG_init; the callbacks only clear STARTED.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_end), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_end), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_end(_event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    STARTED.with_borrow_mut(Vec::clear);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact_end(
    event: pg_sys::SubXactEvent::Type,
    _mysubid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        STARTED.with_borrow_mut(Vec::clear);
    }
}

// Declared by hand in sql/ddl_guard.sql: pgrx has no event-trigger function macro.
#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_agentidp_ddl_guard() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn agentidp_ddl_guard(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fcinfo is valid; its context is checked to be event-trigger data before use.
    let data = unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || !pgrx::is_a(context, pg_sys::NodeTag::T_EventTriggerData) {
            raise(
                PgSqlErrorCode::ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED,
                "agentidp_ddl_guard must be called as an event trigger",
                None,
            );
        }
        &*context.cast::<pg_sys::EventTriggerData>()
    };
    // The extension's own scripts (CREATE EXTENSION, ALTER EXTENSION UPDATE) change its objects
    // by design; the ALTER EXTENSION that runs one is recorded at its end.
    // SAFETY: a plain global of the backend.
    if unsafe { pg_sys::creating_extension } {
        return pg_sys::Datum::from(0);
    }
    // SAFETY: event and tag name are static strings; the parse tree lives through the command.
    let (phase, tag) = unsafe {
        let phase = match CStr::from_ptr(data.event).to_bytes() {
            b"ddl_command_start" => Phase::Start,
            _ => Phase::End,
        };
        (phase, CStr::from_ptr(pg_sys::GetCommandTagName(data.tag)))
    };
    let tag = tag.to_string_lossy();
    let node = data.parsetree;
    let key = node as usize;
    if phase == Phase::Start {
        // SAFETY: node is the command's parse tree.
        if let Some(what) = unsafe { destruction(node) } {
            let verdict = ddl::drop_verdict(what, log_holds_events(), gucs::allow_drop());
            if let Err(refusal) = verdict {
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                    refusal.message,
                    "pg_agentidp",
                )
                .set_detail(refusal.detail)
                .set_hint(refusal.hint)
                .report(PgLogLevel::ERROR);
            }
        }
    }

    let started = STARTED.with_borrow_mut(|started| {
        let at = started.iter().position(|(k, _)| *k == key);
        at.map(|at| started.swap_remove(at))
    });
    let (recorded, record) = match (phase, started) {
        (Phase::End, Some((_, deferred))) => (deferred.is_none(), deferred),
        // SAFETY: node is the command's parse tree.
        _ => (false, unsafe { protection_change(node) }),
    };
    let Some(record) = record else {
        return pg_sys::Datum::from(0);
    };
    match ddl::trail(phase, chain_fires(), recorded) {
        Trail::Append => {
            append(&tag, &record);
            if phase == Phase::Start {
                STARTED.with_borrow_mut(|s| s.push((key, None)));
            }
        }
        Trail::Defer => STARTED.with_borrow_mut(|s| s.push((key, Some(record)))),
        Trail::Done => {}
        Trail::Unrecordable => pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "{tag} of {} is not recorded in the audit chain: the chain trigger does not fire",
                record.object_identity
            ),
            "pg_agentidp",
        )
        .set_hint("Re-enable it: ALTER TABLE agentidp.audit_events ENABLE ALWAYS TRIGGER zz_agentidp_chain. The server log keeps this warning.")
        .report(PgLogLevel::WARNING),
    }
    pg_sys::Datum::from(0)
}

/// What a drop would destroy of the log, if anything.
///
/// # Safety
/// `node` is a parse tree.
unsafe fn destruction(node: *mut pg_sys::Node) -> Option<Destruction<'static>> {
    // SAFETY: each node is cast only after is_a checked its tag; its lists and names belong to
    // the parse tree, which outlives the command.
    unsafe {
        if pgrx::is_a(node, pg_sys::NodeTag::T_DropStmt) {
            let stmt = &*node.cast::<pg_sys::DropStmt>();
            let objects = PgList::<pg_sys::Node>::from_pg(stmt.objects);
            match stmt.removeType {
                pg_sys::ObjectType::OBJECT_EXTENSION => objects
                    .iter_ptr()
                    .any(|name| string_node(name) == Some(EXTENSION))
                    .then_some(Destruction::Extension),
                pg_sys::ObjectType::OBJECT_SCHEMA => objects
                    .iter_ptr()
                    .any(|name| string_node(name).map(str::as_bytes) == Some(SCHEMA.to_bytes()))
                    .then_some(Destruction::Schema("agentidp")),
                pg_sys::ObjectType::OBJECT_TABLE => objects.iter_ptr().find_map(|names| {
                    let rv = pg_sys::makeRangeVarFromNameList(names.cast());
                    protected_table(relation_oid(rv)).map(Destruction::Table)
                }),
                _ => None,
            }
        } else if pgrx::is_a(node, pg_sys::NodeTag::T_AlterExtensionContentsStmt) {
            let stmt = &*node.cast::<pg_sys::AlterExtensionContentsStmt>();
            (stmt.action < 0 && c_str(stmt.extname) == Some(EXTENSION))
                .then_some(Destruction::Membership)
        } else {
            None
        }
    }
}

/// The record of a change to the log's protection, if the command is one: a change to one of
/// the protected tables (its columns, triggers, rules, owner, name), to one of the extension's
/// functions, or to the extension.
///
/// # Safety
/// `node` is a parse tree.
unsafe fn protection_change(node: *mut pg_sys::Node) -> Option<Record> {
    use pg_sys::NodeTag::*;
    // SAFETY: as in `destruction`: casts follow tag checks, and the lists, names and RangeVars
    // belong to the parse tree.
    unsafe {
        let table = |rv: *mut pg_sys::RangeVar, subcommands: Vec<String>| {
            let relid = relation_oid(rv);
            protected_table(relid).map(|_| Record {
                object_type: "table",
                object_identity: relation_identity(relid),
                subcommands,
            })
        };
        if pgrx::is_a(node, T_AlterTableStmt) {
            let stmt = &*node.cast::<pg_sys::AlterTableStmt>();
            let cmds = PgList::<pg_sys::AlterTableCmd>::from_pg(stmt.cmds);
            let subcommands = cmds.iter_ptr().map(|cmd| subcommand(&*cmd)).collect();
            table(stmt.relation, subcommands)
        } else if pgrx::is_a(node, T_RenameStmt) {
            let stmt = &*node.cast::<pg_sys::RenameStmt>();
            if stmt.relation.is_null() {
                return None;
            }
            let what = match stmt.renameType {
                pg_sys::ObjectType::OBJECT_TRIGGER => "TRIGGER ",
                pg_sys::ObjectType::OBJECT_COLUMN => "COLUMN ",
                pg_sys::ObjectType::OBJECT_TABCONSTRAINT => "CONSTRAINT ",
                _ => "",
            };
            let from = c_str(stmt.subname)
                .map(|s| format!("{s} "))
                .unwrap_or_default();
            let to = c_str(stmt.newname).unwrap_or_default();
            table(stmt.relation, vec![format!("RENAME {what}{from}TO {to}")])
        } else if pgrx::is_a(node, T_AlterObjectSchemaStmt) {
            let stmt = &*node.cast::<pg_sys::AlterObjectSchemaStmt>();
            if stmt.relation.is_null() {
                return None;
            }
            let to = c_str(stmt.newschema).unwrap_or_default();
            table(stmt.relation, vec![format!("SET SCHEMA {to}")])
        } else if pgrx::is_a(node, T_CreateTrigStmt) {
            let stmt = &*node.cast::<pg_sys::CreateTrigStmt>();
            let verb = if stmt.replace {
                "CREATE OR REPLACE"
            } else {
                "CREATE"
            };
            let name = c_str(stmt.trigname).unwrap_or_default();
            table(stmt.relation, vec![format!("{verb} TRIGGER {name}")])
        } else if pgrx::is_a(node, T_RuleStmt) {
            let stmt = &*node.cast::<pg_sys::RuleStmt>();
            let name = c_str(stmt.rulename).unwrap_or_default();
            table(stmt.relation, vec![format!("CREATE RULE {name}")])
        } else if pgrx::is_a(node, T_DropStmt) {
            let stmt = &*node.cast::<pg_sys::DropStmt>();
            let verb = match stmt.removeType {
                pg_sys::ObjectType::OBJECT_TRIGGER => "DROP TRIGGER",
                pg_sys::ObjectType::OBJECT_RULE => "DROP RULE",
                pg_sys::ObjectType::OBJECT_TABLE => "DROP TABLE",
                _ => return None,
            };
            let objects = PgList::<pg_sys::List>::from_pg(stmt.objects);
            let record = objects.iter_ptr().find_map(|names| {
                // A trigger or rule is named by its table's name and its own, last.
                let (table_names, name) = if stmt.removeType == pg_sys::ObjectType::OBJECT_TABLE {
                    (names, String::new())
                } else {
                    let length = (*names).length;
                    let last = pg_sys::list_nth(names, length - 1).cast::<pg_sys::Node>();
                    let name = string_node(last).unwrap_or_default();
                    (
                        pg_sys::list_copy_head(names, length - 1),
                        format!(" {name}"),
                    )
                };
                table(
                    pg_sys::makeRangeVarFromNameList(table_names),
                    vec![format!("{verb}{name}")],
                )
            });
            record
        } else if pgrx::is_a(node, T_CreateFunctionStmt) {
            let stmt = &*node.cast::<pg_sys::CreateFunctionStmt>();
            if !stmt.replace {
                return None;
            }
            extension_function(stmt.funcname, "CREATE OR REPLACE FUNCTION")
        } else if pgrx::is_a(node, T_AlterFunctionStmt) {
            let stmt = &*node.cast::<pg_sys::AlterFunctionStmt>();
            extension_function((*stmt.func).objname, "ALTER FUNCTION")
        } else if pgrx::is_a(node, T_AlterExtensionStmt) {
            let stmt = &*node.cast::<pg_sys::AlterExtensionStmt>();
            (c_str(stmt.extname) == Some(EXTENSION)).then(|| Record {
                object_type: "extension",
                object_identity: EXTENSION.to_owned(),
                subcommands: vec!["UPDATE".to_owned()],
            })
        } else if pgrx::is_a(node, T_AlterExtensionContentsStmt) {
            let stmt = &*node.cast::<pg_sys::AlterExtensionContentsStmt>();
            let verb = if stmt.action > 0 { "ADD" } else { "DROP" };
            (c_str(stmt.extname) == Some(EXTENSION)).then(|| Record {
                object_type: "extension",
                object_identity: EXTENSION.to_owned(),
                subcommands: vec![verb.to_owned()],
            })
        } else {
            None
        }
    }
}

/// A function of the extension's named by `names`, as a record, if it is one.
///
/// # Safety
/// `names` is a parse tree's qualified name list.
unsafe fn extension_function(names: *mut pg_sys::List, verb: &str) -> Option<Record> {
    let mut name: *mut c_char = std::ptr::null_mut();
    // SAFETY: names is a qualified name; the namespace is looked up, not created.
    let namespace = unsafe { pg_sys::QualifiedNameGetCreationNamespace(names, &mut name) };
    // SAFETY: name points into the parse tree.
    let name = unsafe { c_str(name) }?.to_owned();
    let member = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
           SELECT FROM pg_catalog.pg_proc p
           JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass
             AND d.objid = p.oid AND d.deptype = 'e'
           JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = $3
           WHERE p.pronamespace = $1 AND p.proname = $2)",
        &[namespace.into(), name.as_str().into(), EXTENSION.into()],
    );
    matches!(member, Ok(Some(true))).then(|| Record {
        object_type: "function",
        // SAFETY: namespace is a valid namespace oid (the function lives there).
        object_identity: format!(
            "{}.{name}",
            unsafe { c_str(pg_sys::get_namespace_name(namespace)) }.unwrap_or_default()
        ),
        subcommands: vec![verb.to_owned()],
    })
}

/// The text of an ALTER TABLE subcommand, as far as an auditor needs it.
fn subcommand(cmd: &pg_sys::AlterTableCmd) -> String {
    use pg_sys::AlterTableType as At;
    // SAFETY: name is null or a string of the parse tree.
    let name = unsafe { c_str(cmd.name) }.unwrap_or_default();
    let text = match cmd.subtype {
        At::AT_EnableTrig => "ENABLE TRIGGER",
        At::AT_EnableAlwaysTrig => "ENABLE ALWAYS TRIGGER",
        At::AT_EnableReplicaTrig => "ENABLE REPLICA TRIGGER",
        At::AT_DisableTrig => "DISABLE TRIGGER",
        At::AT_EnableTrigAll => return "ENABLE TRIGGER ALL".to_owned(),
        At::AT_DisableTrigAll => return "DISABLE TRIGGER ALL".to_owned(),
        At::AT_EnableTrigUser => return "ENABLE TRIGGER USER".to_owned(),
        At::AT_DisableTrigUser => return "DISABLE TRIGGER USER".to_owned(),
        At::AT_EnableRule => "ENABLE RULE",
        At::AT_EnableAlwaysRule => "ENABLE ALWAYS RULE",
        At::AT_EnableReplicaRule => "ENABLE REPLICA RULE",
        At::AT_DisableRule => "DISABLE RULE",
        At::AT_AddColumn => "ADD COLUMN",
        At::AT_DropColumn => "DROP COLUMN",
        At::AT_AlterColumnType => "ALTER COLUMN TYPE",
        At::AT_ColumnDefault => "ALTER COLUMN DEFAULT",
        At::AT_DropNotNull => "ALTER COLUMN DROP NOT NULL",
        At::AT_SetNotNull => "ALTER COLUMN SET NOT NULL",
        At::AT_AddConstraint => "ADD CONSTRAINT",
        At::AT_DropConstraint => "DROP CONSTRAINT",
        At::AT_ChangeOwner => return "OWNER TO".to_owned(),
        At::AT_EnableRowSecurity => return "ENABLE ROW LEVEL SECURITY".to_owned(),
        At::AT_DisableRowSecurity => return "DISABLE ROW LEVEL SECURITY".to_owned(),
        At::AT_SetLogged => return "SET LOGGED".to_owned(),
        At::AT_SetUnLogged => return "SET UNLOGGED".to_owned(),
        _ => "OTHER",
    };
    if name.is_empty() {
        text.to_owned()
    } else {
        format!("{text} {name}")
    }
}

/// Whether the chain trigger would chain an event inserted now: a BEFORE INSERT row trigger on
/// the log runs the extension's chain function, is enabled for this session's replication role,
/// and no restore or replay is keeping the chain columns rows bring.
fn chain_fires() -> bool {
    if keeps_its_chain(chain_trigger::arrival()) {
        return false;
    }
    let fires = Spi::get_one::<bool>(
        "SELECT EXISTS (
           SELECT FROM pg_catalog.pg_trigger t
           JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
           WHERE t.tgrelid = 'agentidp.audit_events'::regclass
             AND t.tgtype::int & 7 = 7
             AND p.prolang = (SELECT oid FROM pg_catalog.pg_language WHERE lanname = 'c')
             AND p.prosrc = 'agentidp_chain_trigger' AND p.probin = '$libdir/pg_agentidp'
             AND (t.tgenabled = 'A'
               OR t.tgenabled = 'O' AND current_setting('session_replication_role') <> 'replica'
               OR t.tgenabled = 'R' AND current_setting('session_replication_role') = 'replica'))",
    );
    matches!(fires, Ok(Some(true)))
}

fn append(tag: &str, record: &Record) {
    chain_head::forget_known_heads();
    let result = Spi::run_with_args(
        // chain_id given, though the trigger sets it: on a distributed log Citus routes by it.
        "INSERT INTO agentidp.audit_events (action, outcome, chain_id, metadata)
         VALUES ($1, 'success', $6, jsonb_build_object(
           'command_tag', $2, 'object_type', $3, 'object_identity', $4,
           'subcommands', to_jsonb($5::text[]),
           'role', current_user, 'session_user', session_user,
           'application_name', current_setting('application_name')))",
        &[
            ddl::DDL_ACTION.into(),
            tag.into(),
            record.object_type.into(),
            record.object_identity.as_str().into(),
            record.subcommands.clone().into(),
            distribution::chain_of(None).into(),
        ],
    );
    if let Err(e) = result {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("cannot record {tag} in the audit chain: {e}"),
            None,
        );
    }
}

fn log_holds_events() -> bool {
    let holds = Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM agentidp.audit_events)
             OR EXISTS (SELECT FROM agentidp.audit_events_archive)",
    );
    // Unreadable counts as holding events: refusing a drop is the safe side.
    !matches!(holds, Ok(Some(false)))
}

/// The protected table `relid` is, if it is one.
fn protected_table(relid: pg_sys::Oid) -> Option<&'static str> {
    if relid == pg_sys::InvalidOid {
        return None;
    }
    // SAFETY: plain catalog lookups by oid and name.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(SCHEMA.as_ptr(), true);
        if pg_sys::get_rel_namespace(relid) != namespace {
            return None;
        }
        let name = c_str(pg_sys::get_rel_name(relid))?;
        ddl::PROTECTED_TABLES.iter().copied().find(|t| *t == name)
    }
}

/// The relation a name resolves to now, or InvalidOid. Resolution without a lock: the command
/// itself locks it, later; this only needs to know what it names.
///
/// # Safety
/// `rv` is a valid RangeVar.
unsafe fn relation_oid(rv: *mut pg_sys::RangeVar) -> pg_sys::Oid {
    if rv.is_null() {
        return pg_sys::InvalidOid;
    }
    // SAFETY: rv is valid (the caller's promise); no lock is taken and no callback is run.
    unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    }
}

fn relation_identity(relid: pg_sys::Oid) -> String {
    // SAFETY: relid is a relation that exists (it was just resolved).
    unsafe {
        let namespace = c_str(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid)));
        let name = c_str(pg_sys::get_rel_name(relid));
        format!(
            "{}.{}",
            namespace.unwrap_or_default(),
            name.unwrap_or_default()
        )
    }
}

/// # Safety
/// `node` is null or a parse-tree node.
unsafe fn string_node<'a>(node: *mut pg_sys::Node) -> Option<&'a str> {
    // SAFETY: the node is read as a String only once its tag says it is one.
    unsafe {
        if node.is_null() || !pgrx::is_a(node, pg_sys::NodeTag::T_String) {
            return None;
        }
        c_str((*node.cast::<pg_sys::String>()).sval)
    }
}

/// # Safety
/// `s` is null or a NUL-terminated string that outlives the result.
unsafe fn c_str<'a>(s: *const c_char) -> Option<&'a str> {
    if s.is_null() {
        None
    } else {
        // SAFETY: as the caller promises.
        unsafe { CStr::from_ptr(s) }.to_str().ok()
    }
}
