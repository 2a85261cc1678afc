//! The audit log's protection against DDL: which drops are refused, and when a change to the
//! protection is written into the chain.
//!
//! The extension's event triggers (`pg_agentidp/src/ddl_guard.rs`) find out what a command
//! touches; the decisions are made here, so they can be tested without a server.

/// The setting a superuser turns on, for one session, to drop the log deliberately.
pub const ALLOW_DROP_SETTING: &str = "agentidp.allow_drop";

/// The `action` of the audit event that records a change to the log's protection.
pub const DDL_ACTION: &str = "agentidp.ddl";

/// The tables whose loss would lose evidence: the log, its archive, the retention anchors and
/// the verification checkpoints. A drop of one of them is refused while the log holds events.
pub const PROTECTED_TABLES: [&str; 8] = [
    "audit_events",
    "audit_events_archive",
    "chain_anchors",
    "chain_checkpoints",
    "merkle_trees",
    "merkle_tiles",
    "checkpoints",
    "checkpoint_refusals",
];

/// What a command would destroy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destruction<'a> {
    /// `DROP EXTENSION pg_agentidp`, with or without CASCADE.
    Extension,
    /// `DROP SCHEMA agentidp`: its CASCADE drops the extension with it.
    Schema(&'a str),
    /// `DROP TABLE` of one of [`PROTECTED_TABLES`].
    Table(&'a str),
    /// `ALTER EXTENSION pg_agentidp DROP ...`: a member let go of is one plain DROP away from
    /// gone, and an event trigger let go of can be dropped without any event trigger seeing it.
    Membership,
}

/// Why a drop is refused: the parts of the error the caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub detail: String,
    pub hint: String,
}

/// Whether a destructive command may run. `log_holds_events`: the log or its archive has a row.
/// `deliberate`: [`ALLOW_DROP_SETTING`] is on in this session.
pub fn drop_verdict(
    what: Destruction<'_>,
    log_holds_events: bool,
    deliberate: bool,
) -> Result<(), Refusal> {
    if !log_holds_events || deliberate {
        return Ok(());
    }
    let (message, detail) = match what {
        Destruction::Extension => (
            "cannot drop extension pg_agentidp while its audit log holds events".to_owned(),
            "DROP EXTENSION would delete the audit log, its archive, its anchors and its checkpoints.".to_owned(),
        ),
        Destruction::Schema(schema) => (
            format!("cannot drop schema {schema} while the audit log in it holds events"),
            format!("Schema {schema} holds the pg_agentidp extension; dropping it drops the audit log."),
        ),
        Destruction::Table(table) => (
            format!("cannot drop table {table} while the audit log holds events"),
            format!("Table {table} is part of the audit trail's evidence."),
        ),
        Destruction::Membership => (
            "cannot remove objects from extension pg_agentidp while its audit log holds events".to_owned(),
            "An object removed from the extension loses the extension's protection: it can then be dropped, or, for an event trigger, dropped unseen.".to_owned(),
        ),
    };
    Err(Refusal {
        message,
        detail,
        hint: format!(
            "To drop it deliberately, a superuser runs SET {ALLOW_DROP_SETTING} = on in this session first; archive the events (docs/audit-log-runbook.md) before."
        ),
    })
}

/// Where a command is in its run when an event trigger sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `ddl_command_start`: the command has not changed anything yet.
    Start,
    /// `ddl_command_end`: the command has run.
    End,
}

/// What to do with the record of a change to the protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trail {
    /// Append it to the chain now.
    Append,
    /// Keep it for the end of the command: the chain trigger does not fire now (this command
    /// may be the one that turns it back on).
    Defer,
    /// Already appended at the start of the command.
    Done,
    /// The chain trigger fires neither before nor after the command: an append would bypass the
    /// chain, so the record cannot be written and the caller is warned instead.
    Unrecordable,
}

/// Decides the record's fate. A command that turns the chain off is recorded before it runs, one
/// that turns it back on after: either way the record is chained, whichever way the command goes.
/// `recorded`: the record was appended at this command's start.
pub fn trail(phase: Phase, chain_fires: bool, recorded: bool) -> Trail {
    match (phase, recorded, chain_fires) {
        (_, true, _) => Trail::Done,
        (_, false, true) => Trail::Append,
        (Phase::Start, false, false) => Trail::Defer,
        (Phase::End, false, false) => Trail::Unrecordable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_log_may_be_dropped() {
        for what in [
            Destruction::Extension,
            Destruction::Schema("agentidp"),
            Destruction::Table("audit_events"),
            Destruction::Membership,
        ] {
            assert_eq!(drop_verdict(what, false, false), Ok(()));
        }
    }

    #[test]
    fn a_log_with_events_is_dropped_only_deliberately() {
        assert_eq!(drop_verdict(Destruction::Extension, true, true), Ok(()));
        let refusal = drop_verdict(Destruction::Extension, true, false).expect_err("refused");
        assert_eq!(
            refusal.message,
            "cannot drop extension pg_agentidp while its audit log holds events"
        );
        assert!(
            refusal.hint.contains("SET agentidp.allow_drop = on"),
            "{}",
            refusal.hint
        );
    }

    #[test]
    fn each_refusal_names_what_it_protects() {
        let schema =
            drop_verdict(Destruction::Schema("agentidp"), true, false).expect_err("refused");
        assert_eq!(
            schema.message,
            "cannot drop schema agentidp while the audit log in it holds events"
        );
        let table =
            drop_verdict(Destruction::Table("chain_anchors"), true, false).expect_err("refused");
        assert_eq!(
            table.message,
            "cannot drop table chain_anchors while the audit log holds events"
        );
        let member = drop_verdict(Destruction::Membership, true, false).expect_err("refused");
        assert!(member
            .message
            .starts_with("cannot remove objects from extension pg_agentidp"));
        for refusal in [schema, table, member] {
            assert!(refusal.hint.contains(ALLOW_DROP_SETTING));
        }
    }

    #[test]
    fn the_record_is_written_where_the_chain_fires() {
        // Turning the chain off: recorded before, while the trigger still fires.
        assert_eq!(trail(Phase::Start, true, false), Trail::Append);
        assert_eq!(trail(Phase::End, false, true), Trail::Done);
        // Turning it back on: recorded after.
        assert_eq!(trail(Phase::Start, false, false), Trail::Defer);
        assert_eq!(trail(Phase::End, true, false), Trail::Append);
        // Neither: never appended around the chain.
        assert_eq!(trail(Phase::End, false, false), Trail::Unrecordable);
        // Never twice.
        assert_eq!(trail(Phase::End, true, true), Trail::Done);
    }

    #[test]
    fn every_protected_table_is_in_the_schema_the_extension_creates() {
        let schema = [
            include_str!("../../../sql/schema.sql"),
            include_str!("../../../sql/transparency.sql"),
        ]
        .concat();
        for table in PROTECTED_TABLES {
            assert!(
                schema.contains(&format!("CREATE TABLE {table} ")),
                "{table} is not created by sql/schema.sql or sql/transparency.sql"
            );
        }
    }
}
