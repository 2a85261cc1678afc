//! The BEFORE INSERT OR UPDATE trigger that keeps plaintext out of the sensitive columns.
//!
//! One function serves every table: the columns come as trigger arguments,
//! `EXECUTE FUNCTION agentidp_encrypt_columns('secret_hash', 'vault_path')`. A value already in
//! either format is left as it is, so restoring a dump or saving a row back never encrypts twice,
//! and no key is needed to write values that are already encrypted. A plaintext with no key
//! configured is an error: the row is not written.

use pgrx::prelude::*;
use pgrx::AllocatedByRust;

use crate::encryption::{encrypt_value, is_sealed};
use crate::error::raise;

#[pg_trigger]
fn agentidp_encrypt_columns<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, PgTriggerError> {
    let event = trigger.event();
    if !event.fired_before()
        || !event.fired_for_row()
        || !(event.fired_by_insert() || event.fired_by_update())
    {
        raise(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "agentidp_encrypt_columns must be a BEFORE INSERT OR UPDATE FOR EACH ROW trigger",
            None,
        );
    }
    let columns = trigger.extra_args()?;
    if columns.is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "agentidp_encrypt_columns needs the names of the columns to encrypt as arguments",
            None,
        );
    }
    let Some(new) = trigger.new() else {
        return Ok(None);
    };
    let mut row = new.into_owned();
    let mut prefix = None;
    for column in &columns {
        let value: Option<String> = row
            .get_by_name(column)
            .unwrap_or_else(|e| bad_column(trigger, column, e));
        let Some(value) = value.filter(|v| !is_sealed(v)) else {
            continue;
        };
        // The context binds a v2 value to its column: moved anywhere else, it fails to decrypt.
        let prefix = match &prefix {
            Some(p) => p,
            None => prefix.insert(format!(
                "{}.{}.",
                trigger.table_schema()?,
                trigger.table_name()?
            )),
        };
        let sealed = encrypt_value(&value, &format!("{prefix}{column}"));
        row.set_by_name(column, sealed)
            .unwrap_or_else(|e| bad_column(trigger, column, e));
    }
    Ok(Some(row))
}

fn bad_column(trigger: &PgTrigger<'_>, column: &str, e: impl std::fmt::Display) -> ! {
    let table = trigger.table_name().unwrap_or_default();
    raise(
        PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
        format!("agentidp_encrypt_columns: cannot use column \"{column}\" of \"{table}\": {e}"),
        Some("Its arguments must name text columns of the trigger's table."),
    )
}
