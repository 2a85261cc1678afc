//! The encryption keys: validated when set, without ever echoing the value; parsed once per
//! backend and reused, so a call costs a comparison of the setting with the cached copy.
//!
//! The settings themselves are defined in `gucs`. Their value is the secret, so every message
//! here is built from `agentidp-core`'s errors, which describe a bad key without quoting it.
//! PostgreSQL's own rejection message (`invalid value for parameter "...": "<value>"`) quotes the
//! value; a check hook that sets `GUC_check_errmsg_string` replaces it.
//!
//! A wrong setup fails closed. Without the library in `shared_preload_libraries`, a key set in
//! the connection options is a placeholder, readable with `SHOW`, until a statement loads the
//! library; PostgreSQL then hands the value to the check hook while `gucs::init` defines the
//! setting. The hook applies `agentidp_core::crypto::key_setting::at_load`: such a value is
//! refused (PostgreSQL drops it with our WARNING), as is one that is not a key, and the refusal is
//! remembered, so that a call finding the setting empty reports it (`on_use`) instead of
//! "No encryption key configured". Nothing of the value is kept.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr, CString};
use std::thread::LocalKey;

use agentidp_core::crypto::key_list;
use agentidp_core::crypto::key_setting::{self, OnUse};
use agentidp_core::crypto::{CryptoError, EncryptionKey, KeySetting};
use pgrx::pg_sys;
use pgrx::prelude::*;
use zeroize::Zeroizing;

use crate::error::{raise_crypto, sqlstate_and_hint};
use crate::gucs;
use crate::worker_options;

/// The library's name in `session_preload_libraries` and the like.
const LIBRARY: &str = "pg_agentidp";

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
    /// While `gucs::init` defines the key settings: whether the library was loaded before the
    /// session could run a statement. A check hook called then judges a value set before the
    /// setting existed.
    static DEFINING: Cell<Option<bool>> = const { Cell::new(None) };
    /// Why the value each setting held when the library loaded was refused, if it was.
    static REFUSED_CURRENT: RefCell<Option<CryptoError>> = const { RefCell::new(None) };
    static REFUSED_OLDS: RefCell<Option<CryptoError>> = const { RefCell::new(None) };
}

/// Runs `define`, which defines the key settings, with their check hooks judging the values the
/// settings held before they existed.
pub fn defining(define: impl FnOnce()) {
    /// Ends the definition even if `define` raises.
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            DEFINING.set(None);
        }
    }
    DEFINING.set(Some(loaded_before_statements()));
    let _done = Done;
    define();
}

/// Whether this backend loads the library before any statement could read a placeholder:
/// `shared_preload_libraries` (in the postmaster), or `session_preload_libraries` and
/// `local_preload_libraries`, which load it at the session's start, after its connection options
/// are set and before its first statement (when no statement is running). Any other load comes
/// from a statement: `LOAD`, `CREATE EXTENSION`, or a first call of one of its functions.
fn loaded_before_statements() -> bool {
    // SAFETY: plain reads of globals of this backend's own (only) thread; the strings are guc.c's
    // current values, alive until those settings change, which nothing here does.
    unsafe {
        if pg_sys::process_shared_preload_libraries_in_progress {
            return true;
        }
        let names_us = |list: *const c_char| {
            !list.is_null()
                && key_setting::lists_library(&CStr::from_ptr(list).to_string_lossy(), LIBRARY)
        };
        pg_sys::debug_query_string.is_null()
            && (names_us(pg_sys::session_preload_libraries_string)
                || names_us(pg_sys::local_preload_libraries_string))
    }
}

fn refusal(setting: KeySetting) -> &'static LocalKey<RefCell<Option<CryptoError>>> {
    match setting {
        KeySetting::Current => &REFUSED_CURRENT,
        KeySetting::Old => &REFUSED_OLDS,
    }
}

/// `key_setting::on_use` for `setting`, whose value now is `value`.
fn on_use(setting: KeySetting, value: &[u8]) -> OnUse {
    refusal(setting)
        .with_borrow(|refused| key_setting::on_use(setting, value.is_empty(), refused.as_ref()))
}

/// Runs `f` with the current key and the old keys. `KeyMissing` when no key is set, or why the
/// value the session gave before the library loaded was refused.
///
/// The cache is keyed by the setting's contents, not its address: guc.c frees replaced values,
/// so a later value can land at an earlier one's address.
pub fn with_keys<R>(
    f: impl FnOnce(&EncryptionKey, &[EncryptionKey]) -> R,
) -> Result<R, CryptoError> {
    with_current(|current| with_olds(|olds| f(current, olds)))?
}

/// Runs `f` with the current key. `KeyMissing` when no key is set (or the refusal at load).
pub fn with_current<R>(f: impl FnOnce(&EncryptionKey) -> R) -> Result<R, CryptoError> {
    gucs::with_encryption_key(|setting| {
        match on_use(KeySetting::Current, setting) {
            OnUse::Parse => {}
            OnUse::Refuse(e) => return Err(e),
            OnUse::NoKeys => return Err(CryptoError::KeyMissing),
        }
        CURRENT.with_borrow_mut(|cache| {
            let hit = cache
                .as_ref()
                .is_some_and(|c| c.setting.as_slice() == setting);
            if !hit {
                *cache = Some(Cached {
                    parsed: EncryptionKey::from_hex_bytes(setting)?,
                    setting: Zeroizing::new(setting.to_vec()),
                });
            }
            let cached = cache.as_ref().expect("filled above");
            Ok(f(&cached.parsed))
        })
    })
}

/// Runs `f` with the old keys, in the order the setting lists them (possibly none; or the
/// refusal at load).
pub fn with_olds<R>(f: impl FnOnce(&[EncryptionKey]) -> R) -> Result<R, CryptoError> {
    gucs::with_encryption_old_keys(|setting| {
        match on_use(KeySetting::Old, setting) {
            OnUse::Parse => {}
            OnUse::Refuse(e) => return Err(e),
            OnUse::NoKeys => return Ok(f(&[])),
        }
        OLDS.with_borrow_mut(|cache| {
            let hit = cache
                .as_ref()
                .is_some_and(|c| c.setting.as_slice() == setting);
            if !hit {
                let parsed = key_list::parse(setting)?;
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
    // SAFETY: inside a check hook (the caller's promise); the strings are copied with pstrdup
    // into guc.c's memory before the CStrings go.
    unsafe {
        pg_sys::GUC_check_errcode(code as i32);
        pg_sys::GUC_check_errmsg_string = pg_sys::pstrdup(message.as_ptr());
        pg_sys::GUC_check_errhint_string = pg_sys::pstrdup(hint.as_ptr());
    }
    false
}

/// Rejects with `e`'s message, SQLSTATE and hint, as a call would raise it.
///
/// # Safety
/// As [`reject`].
unsafe fn reject_with(e: &CryptoError) -> bool {
    let (code, hint) = sqlstate_and_hint(e);
    // SAFETY: as the caller promises, inside a check hook.
    unsafe { reject(code, &e.to_string(), hint.unwrap_or_default()) }
}

/// The check hooks' verdict on a value that parsed as `parsed`. While the settings are being
/// defined, the value was there before them: `key_setting::at_load` decides, and a refusal is
/// remembered (the first, should guc.c re-apply several values).
fn verdict(setting: KeySetting, parsed: Result<(), CryptoError>) -> Result<(), CryptoError> {
    let Some(loaded_before_statements) = DEFINING.get() else {
        return parsed;
    };
    let verdict = key_setting::at_load(setting, loaded_before_statements, parsed);
    if let Err(e) = &verdict {
        refusal(setting).with_borrow_mut(|refused| {
            refused.get_or_insert_with(|| e.clone());
        });
    }
    verdict
}

/// # Safety
/// `newval` points to the proposed value (or null), as guc.c passes it to a check hook.
unsafe fn proposed<'a>(newval: *mut *mut c_char) -> &'a [u8] {
    // SAFETY: null or a NUL-terminated string guc.c keeps through the hook (the caller's promise).
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
    // SAFETY: called as a check hook (the caller's promise).
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
    // SAFETY: guc.c calls this as the setting's check hook with a valid `newval`, so each call
    // below runs inside a check hook, as they require.
    let value = unsafe { proposed(newval) };
    if value.is_empty() {
        return true;
    }
    if !unsafe { check_source(source, KeySetting::Current.name()) } {
        return false;
    }
    match verdict(
        KeySetting::Current,
        EncryptionKey::from_hex_bytes(value).map(drop),
    ) {
        Ok(()) => true,
        // SAFETY: inside the check hook, as above.
        Err(e) => unsafe { reject_with(&e) },
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
    // SAFETY: guc.c calls this as the setting's check hook with a valid `newval`, so each call
    // below runs inside a check hook, as they require.
    let value = unsafe { proposed(newval) };
    if value.is_empty() {
        return true;
    }
    if !unsafe { check_source(source, KeySetting::Old.name()) } {
        return false;
    }
    match verdict(KeySetting::Old, key_list::parse(value).map(drop)) {
        Ok(()) => true,
        // SAFETY: inside the check hook, as above.
        Err(e) => unsafe { reject_with(&e) },
    }
}

/// Passes the new key on to the connections Citus opens from this session (`worker_options`).
///
/// # Safety
/// Called by guc.c with the value being assigned (null for none).
#[pg_guard]
pub unsafe extern "C-unwind" fn assign_key(newval: *const c_char, _extra: *mut c_void) {
    // SAFETY: guc.c passes a NUL-terminated value or null.
    let key = unsafe { assigned(newval) };
    gucs::with_encryption_old_keys(|old_keys| worker_options::pass_on(key, old_keys));
}

/// # Safety
/// As [`assign_key`].
#[pg_guard]
pub unsafe extern "C-unwind" fn assign_old_keys(newval: *const c_char, _extra: *mut c_void) {
    // SAFETY: as above.
    let old_keys = unsafe { assigned(newval) };
    gucs::with_encryption_key(|key| worker_options::pass_on(key, old_keys));
}

/// SAFETY: `value` is null or NUL-terminated, and outlives the returned slice.
unsafe fn assigned<'a>(value: *const c_char) -> &'a [u8] {
    if value.is_null() {
        b""
    } else {
        // SAFETY: the caller's promise.
        unsafe { CStr::from_ptr(value) }.to_bytes()
    }
}

/// Shown for an empty setting whose value at load was refused.
const SHOWN_REFUSED: &str = "(not set: the value set before the library was loaded was refused)";

/// What SHOW prints to roles allowed to look: which key is loaded, never the key.
#[pg_guard]
pub extern "C-unwind" fn show_key() -> *const c_char {
    let shown = match with_current(|key| key.id().to_string()) {
        Ok(id) => format!("(set: key id {id})"),
        Err(CryptoError::KeyMissing) => String::new(),
        Err(_) if gucs::with_encryption_key(<[u8]>::is_empty) => SHOWN_REFUSED.to_owned(),
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
        Err(_) if gucs::with_encryption_old_keys(<[u8]>::is_empty) => SHOWN_REFUSED.to_owned(),
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
    let olds = with_olds(|olds| olds.iter().map(|k| k.id().to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|e| raise_crypto(e));
    let olds = olds
        .into_iter()
        .enumerate()
        .map(|(i, id)| ("old", i32::try_from(i + 1).unwrap_or(i32::MAX), id));
    TableIterator::new(current.into_iter().chain(olds).collect::<Vec<_>>())
}
