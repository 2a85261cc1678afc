//! Raising PostgreSQL errors with a SQLSTATE and a hint the reader can act on.

use agentidp_core::crypto::CryptoError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises an ERROR: aborts the statement, like `ereport(ERROR, ...)`.
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>, hint: Option<&str>) -> ! {
    let mut report = ErrorReport::new(code, message.into(), "pg_agentidp");
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// Raises `e` as an ERROR with the SQLSTATE an operator can act on.
pub fn raise_crypto(e: CryptoError) -> ! {
    let (code, hint) = sqlstate_and_hint(&e);
    raise(code, e.to_string(), hint)
}

/// The SQLSTATE and hint `e` is reported with, as an ERROR or by a setting's check hook.
pub fn sqlstate_and_hint(e: &CryptoError) -> (PgSqlErrorCode, Option<&'static str>) {
    use PgSqlErrorCode::*;
    match e {
        CryptoError::KeyMissing => (
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Some("Set it in the connection options: -c agentidp.encryption_key=<64 hex digits>. See docs/encryption-runbook.md."),
        ),
        CryptoError::InvalidKey(_) | CryptoError::InvalidOldKey { .. } => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            Some("Generate a key with: openssl rand -hex 32"),
        ),
        // As pg_stat_statements reports "must be loaded via shared_preload_libraries".
        CryptoError::KeyReadableBeforeLoad(_) => (
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Some("Add pg_agentidp to shared_preload_libraries in postgresql.conf (shared_preload_libraries = 'pg_agentidp') and restart PostgreSQL: preloaded, the key settings are hidden before a session can read them. See docs/encryption-runbook.md."),
        ),
        CryptoError::KeyMismatch | CryptoError::AuthenticationFailed => (
            ERRCODE_DATA_EXCEPTION,
            Some("During a rotation, put the previous key in agentidp.encryption_old_keys. See docs/encryption-runbook.md."),
        ),
        CryptoError::UnknownKeyId(_) => (
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Some("Put that key in agentidp.encryption_old_keys; agentidp_encryption_key_ids() lists the loaded ones."),
        ),
        CryptoError::PlaintextRefused => (
            ERRCODE_DATA_EXCEPTION,
            Some("Encrypt the column's plaintext rows: CALL agentidp.agentidp_reencrypt_all(); see docs/encryption-runbook.md."),
        ),
        CryptoError::MalformedV2 => (ERRCODE_INVALID_TEXT_REPRESENTATION, None),
        CryptoError::NotUtf8 => (ERRCODE_CHARACTER_NOT_IN_REPERTOIRE, None),
        CryptoError::TooLong => (ERRCODE_PROGRAM_LIMIT_EXCEEDED, None),
        CryptoError::RandomUnavailable => (ERRCODE_SYSTEM_ERROR, None),
        _ => (ERRCODE_INTERNAL_ERROR, None),
    }
}
