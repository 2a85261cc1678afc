//! The encryption keys: validated when set, without ever echoing the value; parsed once per
//! backend and reused, so a call costs a comparison of the setting with the cached copy.
//!
//! The settings themselves are defined in `gucs`. Their value is the secret, so every message
//! here is built from `agentidp-core`'s errors, which describe a bad key without quoting it.
//! PostgreSQL's own rejection message (`invalid value for parameter "...": "<value>"`) quotes the
//! value; a check hook that sets `GUC_check_errmsg_string` replaces it.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};

use agentidp_core::crypto::{CryptoError, EncryptionKey, InvalidKeyReason};
use pgrx::pg_sys;
use pgrx::prelude::*;
use zeroize::Zeroizing;

use crate::encryption::raise_crypto;
use crate::gucs;

/// A parsed setting and the bytes it was parsed from (wiped when replaced).
struct Cached<T> {
    setting: Zeroizing<Vec<u8>>,
    parsed: T,
}

thread_local! {
    static CURRENT: RefCell<Option<Cached<EncryptionKey>>> = const { RefCell::new(None) };
    static OLDS: RefCell<Option<Cached<Vec<EncryptionKey>>>> = const { RefCell::new(None) };
    /// What the show hooks last returned: guc.c only reads it before the next call.
    static SHOWN: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs `f` with the current key and the old keys. `KeyMissing` when no key is set.
///
/// The cache is keyed by the setting's contents, not its address: guc.c frees replaced values,
/// so a later value can land at an earlier one's address.
pub fn with_keys<R>(
    f: impl FnOnce(&EncryptionKey, &[EncryptionKey]) -> R,
) -> Result<R, CryptoError> {
    with_current(|current| with_olds(|olds| f(current, olds)))?
}

/// Runs `f` with the current key. `KeyMissing` when no key is set.
pub fn with_current<R>(f: impl FnOnce(&EncryptionKey) -> R) -> Result<R, CryptoError> {
    gucs::with_encryption_key(|setting| {
        if setting.is_empty() {
            return Err(CryptoError::KeyMissing);
        }
        CURRENT.with_borrow_mut(|cache| {
            let hit = cache
                .as_ref()
                .is_some_and(|c| c.setting.as_slice() == setting);
            if !hit {
                *cache = Some(Cached {
                    parsed: parse_key(setting)?,
                    setting: Zeroizing::new(setting.to_vec()),
                });
            }
            let cached = cache.as_ref().expect("filled above");
            Ok(f(&cached.parsed))
        })
    })
}

/// Runs `f` with the old keys, in the order the setting lists them (possibly none).
pub fn with_olds<R>(f: impl FnOnce(&[EncryptionKey]) -> R) -> Result<R, CryptoError> {
    gucs::with_encryption_old_keys(|setting| {
        if setting.is_empty() {
            return Ok(f(&[]));
        }
        OLDS.with_borrow_mut(|cache| {
            let hit = cache
                .as_ref()
                .is_some_and(|c| c.setting.as_slice() == setting);
            if !hit {
                let parsed = parse_old_keys(setting).map_err(|(_, e)| e)?;
                *cache = Some(Cached {
                    parsed,
                    setting: Zeroizing::new(setting.to_vec()),
                });
            }
            let cached = cache.as_ref().expect("filled above");
            Ok(f(&cached.parsed))
        })
    })
}

fn parse_key(setting: &[u8]) -> Result<EncryptionKey, CryptoError> {
    // A non-UTF-8 byte becomes U+FFFD, which the parser reports as "not a hex digit".
    let text = Zeroizing::new(String::from_utf8_lossy(setting).into_owned());
    EncryptionKey::from_hex(&text)
}

/// Parses a comma-separated list; blanks around entries and empty entries are ignored. On error,
/// the 1-based position of the bad entry.
fn parse_old_keys(setting: &[u8]) -> Result<Vec<EncryptionKey>, (usize, CryptoError)> {
    setting
        .split(|&b| b == b',')
        .map(|entry| entry.trim_ascii())
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(i, entry)| parse_key(entry).map_err(|e| (i + 1, e)))
        .collect()
}

/// The message for a bad old key: the library's, with the entry's position.
fn old_key_message(position: usize, e: &CryptoError) -> String {
    match e {
        CryptoError::InvalidKey(reason) => old_key_invalid(position, *reason),
        other => format!("agentidp.encryption_old_keys entry {position}: {other}"),
    }
}

fn old_key_invalid(position: usize, reason: InvalidKeyReason) -> String {
    format!(
        "Invalid encryption key in agentidp.encryption_old_keys (entry {position}: {reason}): expected a 64-character hex string"
    )
}

const KEY_HINT: &str = "Generate a key with: openssl rand -hex 32";

/// Where a value may come from. The others would store it where other roles, or the server log,
/// can read it: postgresql.conf and ALTER SYSTEM (logged as "parameter ... changed to" on
/// reload), the postmaster's command line (visible in ps), and ALTER ROLE / ALTER DATABASE ...
/// SET or a function's SET clause (pg_db_role_setting and pg_proc are readable by every role;
/// those commands check the value as PGC_S_TEST).
fn source_allowed(source: pg_sys::GucSource::Type) -> bool {
    use pg_sys::GucSource::*;
    matches!(
        source,
        PGC_S_DEFAULT | PGC_S_DYNAMIC_DEFAULT | PGC_S_CLIENT | PGC_S_OVERRIDE | PGC_S_SESSION
    )
}

/// Replaces PostgreSQL's rejection message (which quotes the value) with ours.
///
/// # Safety
/// Call from a check hook only: guc.c reads and resets these right after the hook returns.
unsafe fn reject(code: PgSqlErrorCode, message: &str, hint: &str) -> bool {
    let message = CString::new(message).unwrap_or_default();
    let hint = CString::new(hint).unwrap_or_default();
    unsafe {
        pg_sys::GUC_check_errcode(code as i32);
        pg_sys::GUC_check_errmsg_string = pg_sys::pstrdup(message.as_ptr());
        pg_sys::GUC_check_errhint_string = pg_sys::pstrdup(hint.as_ptr());
    }
    false
}

/// # Safety
/// `newval` points to the proposed value (or null), as guc.c passes it to a check hook.
unsafe fn proposed<'a>(newval: *mut *mut c_char) -> &'a [u8] {
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            b""
        } else {
            std::ffi::CStr::from_ptr(*newval).to_bytes()
        }
    }
}

/// # Safety
/// Called by guc.c as the check hook of a key setting.
unsafe fn check_source(source: pg_sys::GucSource::Type, name: &str) -> bool {
    if source_allowed(source) {
        return true;
    }
    unsafe {
        reject(
            PgSqlErrorCode::ERRCODE_CANT_CHANGE_RUNTIME_PARAM,
            &format!(
                "{name} can only be set by the session: in its connection options or with SET"
            ),
            "postgresql.conf, ALTER SYSTEM, ALTER ROLE/DATABASE ... SET and function SET clauses would store the key where other roles or the server log can read it; see docs/encryption-runbook.md.",
        )
    }
}

/// # Safety
/// Called by guc.c with a valid `newval`.
#[pg_guard]
pub unsafe extern "C-unwind" fn check_key(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    let value = unsafe { proposed(newval) };
    if value.is_empty() {
        return true;
    }
    if !unsafe { check_source(source, "agentidp.encryption_key") } {
        return false;
    }
    match parse_key(value) {
        Ok(_) => true,
        Err(e) => unsafe {
            reject(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                &e.to_string(),
                KEY_HINT,
            )
        },
    }
}

/// # Safety
/// Called by guc.c with a valid `newval`.
#[pg_guard]
pub unsafe extern "C-unwind" fn check_old_keys(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    let value = unsafe { proposed(newval) };
    if value.is_empty() {
        return true;
    }
    if !unsafe { check_source(source, "agentidp.encryption_old_keys") } {
        return false;
    }
    match parse_old_keys(value) {
        Ok(_) => true,
        Err((position, e)) => unsafe {
            reject(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                &old_key_message(position, &e),
                KEY_HINT,
            )
        },
    }
}

/// What SHOW prints to roles allowed to look: which key is loaded, never the key.
#[pg_guard]
pub extern "C-unwind" fn show_key() -> *const c_char {
    let shown = match with_current(|key| key.id().to_string()) {
        Ok(id) => format!("(set: key id {id})"),
        Err(CryptoError::KeyMissing) => String::new(),
        Err(_) => "(set: not a valid key)".to_owned(),
    };
    remember(shown)
}

#[pg_guard]
pub extern "C-unwind" fn show_old_keys() -> *const c_char {
    let shown = match with_olds(|olds| olds.iter().map(|k| k.id().to_string()).collect::<Vec<_>>())
    {
        Ok(ids) if ids.is_empty() => String::new(),
        Ok(ids) => format!("(set: key ids {})", ids.join(", ")),
        Err(_) => "(set: not a valid list of keys)".to_owned(),
    };
    remember(shown)
}

fn remember(shown: String) -> *const c_char {
    SHOWN.with_borrow_mut(|s| {
        *s = CString::new(shown).unwrap_or_default();
        s.as_ptr()
    })
}

/// The ids of the configured keys (never the keys): which key this session encrypts with, and
/// which old keys it still reads. The sidecar and the audit evidence compare them with Vault's.
#[pg_extern(stable, parallel_safe)]
fn agentidp_encryption_key_ids() -> TableIterator<
    'static,
    (
        name!(key_role, &'static str),
        name!(position, i32),
        name!(key_id, String),
    ),
> {
    let current = match with_current(|key| key.id().to_string()) {
        Ok(id) => Some(("current", 0, id)),
        Err(CryptoError::KeyMissing) => None,
        Err(e) => raise_crypto(e),
    };
    let olds = gucs::with_encryption_old_keys(parse_old_keys).unwrap_or_else(|(position, e)| {
        crate::error::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            old_key_message(position, &e),
            Some(KEY_HINT),
        )
    });
    let olds = olds.iter().enumerate().map(|(i, key)| {
        (
            "old",
            i32::try_from(i + 1).unwrap_or(i32::MAX),
            key.id().to_string(),
        )
    });
    TableIterator::new(current.into_iter().chain(olds).collect::<Vec<_>>())
}
