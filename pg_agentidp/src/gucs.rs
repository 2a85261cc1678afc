//! Every setting of the extension, registered from `_PG_init`, read through typed accessors.

use std::ffi::{CStr, CString};

use agentidp_core::chain;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// Which chain an event joins.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChainScope {
    /// One chain for the whole table, `global`.
    #[name = c"global"]
    Global,
    /// One chain per organisation, `org:<org_id>`, so that unrelated orgs never wait on one
    /// lock; events without an org (`org_id` NULL or empty) stay on `global`.
    #[name = c"org"]
    Org,
}

static CHAIN_SCOPE: GucSetting<ChainScope> = GucSetting::<ChainScope>::new(ChainScope::Global);
static RESTORING: GucSetting<bool> = GucSetting::<bool>::new(false);
static ALLOW_DROP: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Which format the column triggers and `agentidp_encrypt` write; both are always readable.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum EncryptionFormat {
    /// The seed format, `base64(iv):base64(ciphertext)`: compatible, not authenticated.
    #[name = c"cbc"]
    Cbc,
    /// `agentidp:v2:...`: AES-256-GCM, bound to its column, names its key.
    #[name = c"gcm"]
    Gcm,
}

static ENCRYPTION_FORMAT: GucSetting<EncryptionFormat> =
    GucSetting::<EncryptionFormat>::new(EncryptionFormat::Cbc);
static ENCRYPTION_STRICT: GucSetting<bool> = GucSetting::<bool>::new(false);
static ENCRYPTION_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static ENCRYPTION_OLD_KEYS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The key settings are the session's secret. SUPERUSER_ONLY: SHOW and current_setting() refuse
/// roles without pg_read_all_settings. NO_SHOW_ALL (which includes NOT_IN_SAMPLE): no row in
/// SHOW ALL or pg_settings, for anyone. DISALLOW_IN_FILE: not in postgresql.conf or ALTER SYSTEM.
/// The show hook prints a key id, never the key, to those allowed to look; the check hook refuses
/// the other places that store a value where others can read it, and validates without echoing.
/// Not NO_RESET_ALL: RESET ALL (a pooler's DISCARD ALL) should drop a key SET by a client and
/// return to the connection's own.
fn key_flags() -> GucFlags {
    GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL | GucFlags::DISALLOW_IN_FILE
}

/// The hooks of the key settings. They live with the keys (keys.rs), which read these settings:
/// passed in by `_PG_init`, so that this module depends on no other of the extension's.
pub struct KeyHooks {
    pub check_key: pgrx::pg_sys::GucStringCheckHook,
    pub check_old_keys: pgrx::pg_sys::GucStringCheckHook,
    pub assign_key: pgrx::pg_sys::GucStringAssignHook,
    pub assign_old_keys: pgrx::pg_sys::GucStringAssignHook,
    pub show_key: pgrx::pg_sys::GucShowHook,
    pub show_old_keys: pgrx::pg_sys::GucShowHook,
}

pub fn init(key_hooks: KeyHooks) {
    // SUSET: the scope decides which chain a row proves its place in; a session must not pick its
    // own. Set it per database (ALTER DATABASE ... SET) or in postgresql.conf.
    GucRegistry::define_enum_guc(
        c"agentidp.chain_scope",
        c"Which audit chain an event joins: global or org.",
        c"global: one chain for all events. org: one chain per org_id, so orgs do not serialize on one lock.",
        &CHAIN_SCOPE,
        GucContext::Suset,
        GucFlags::default(),
    );
    // SUSET: it lets the rows inserted carry their own chain columns, which only a superuser (who
    // could disable the trigger anyway) may allow. pg_restore runs with it on.
    GucRegistry::define_bool_guc(
        c"agentidp.restoring",
        c"Keeps the chain columns audit events carry: on while pg_restore loads a dump.",
        c"Off: every inserted event is chained anew. On: events keep chain_id, seq, prev_hash and hash as the dump has them; verify against the exported digests afterwards. See docs/audit-log-runbook.md.",
        &RESTORING,
        GucContext::Suset,
        GucFlags::default(),
    );
    // SUSET and for one session only (see `session_only`): dropping the log must be a deliberate
    // act of a superuser, never a standing configuration.
    // SAFETY: the hook is #[pg_guard]ed and only reads its arguments.
    unsafe {
        GucRegistry::define_bool_guc_with_hooks(
            c"agentidp.allow_drop",
            c"Lets this session drop the audit log while it holds events.",
            c"Off: DROP EXTENSION pg_agentidp, DROP SCHEMA agentidp and DROP TABLE of the log, its archive, anchors or checkpoints are refused while the log holds events. Set it with SET, in one session.",
            &ALLOW_DROP,
            GucContext::Suset,
            GucFlags::DISALLOW_IN_FILE,
            Some(session_only),
            None,
            None,
        );
    }
    // SUSET, like the scope: the format and the strictness are the deployment's policy, which a
    // session must not downgrade. Set them per database or in postgresql.conf.
    GucRegistry::define_enum_guc(
        c"agentidp.encryption_format",
        c"Which format encrypted column values are written in: cbc or gcm.",
        c"cbc: the seed format, compatible with the Node.js service, not authenticated. gcm: agentidp:v2, AES-256-GCM bound to its column. Both are always readable.",
        &ENCRYPTION_FORMAT,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"agentidp.encryption_strict",
        c"Makes agentidp_decrypt() refuse values that are not encrypted.",
        c"Off: a plaintext value is returned unchanged and counted (agentidp_plaintext_reads()). On: it is an error.",
        &ENCRYPTION_STRICT,
        GucContext::Suset,
        GucFlags::default(),
    );
    // USERSET: the sidecar, ideally not a superuser, sets the key in its connection options.
    // A value set before the library was loaded (a placeholder, which SHOW prints) reaches the
    // check hooks while they are defined; `_PG_init` runs this inside `keys::defining`, which has
    // them refuse it unless the library was preloaded, see keys.rs.
    // SAFETY: the hooks are #[pg_guard]ed; they read the new value and the key cache, record a
    // refusal in keys.rs's thread-locals, and (assign) set the backend's PGOPTIONS for Citus's
    // connections (worker_options.rs).
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"agentidp.encryption_key",
            c"The column-encryption key: 64 hex digits. Set it in the connection options only.",
            c"Hidden from SHOW, current_setting() and pg_settings. See docs/encryption-runbook.md.",
            &ENCRYPTION_KEY,
            GucContext::Userset,
            key_flags(),
            key_hooks.check_key,
            key_hooks.assign_key,
            key_hooks.show_key,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"agentidp.encryption_old_keys",
            c"Keys of a rotation under way, comma-separated: read, never written.",
            c"Hidden like agentidp.encryption_key. Empty once agentidp_reencrypt_all() has finished.",
            &ENCRYPTION_OLD_KEYS,
            GucContext::Userset,
            key_flags(),
            key_hooks.check_old_keys,
            key_hooks.assign_old_keys,
            key_hooks.show_old_keys,
        );
    }
}

/// The scope in `agentidp-core`'s terms, which derives the chain id from it.
pub fn chain_scope() -> chain::ChainScope {
    match CHAIN_SCOPE.get() {
        ChainScope::Global => chain::ChainScope::Global,
        ChainScope::Org => chain::ChainScope::Org,
    }
}

pub fn restoring() -> bool {
    RESTORING.get()
}

pub fn allow_drop() -> bool {
    ALLOW_DROP.get()
}

/// Accepts a value only from the session itself (SET, connection options): ALTER ROLE/DATABASE
/// ... SET and function SET clauses would turn a deliberate act into a standing one.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn session_only(
    newval: *mut bool,
    _extra: *mut *mut std::ffi::c_void,
    source: pgrx::pg_sys::GucSource::Type,
) -> bool {
    use pgrx::pg_sys::GucSource::*;
    // SAFETY: guc.c passes a valid pointer to the proposed value.
    let turning_on = unsafe { *newval };
    let allowed = !turning_on
        || matches!(
            source,
            PGC_S_DEFAULT | PGC_S_DYNAMIC_DEFAULT | PGC_S_CLIENT | PGC_S_OVERRIDE | PGC_S_SESSION
        );
    if !allowed {
        // SAFETY: a check hook may set these; guc.c reads and resets them when the hook returns.
        unsafe {
            pgrx::pg_sys::GUC_check_errcode(
                pgrx::PgSqlErrorCode::ERRCODE_CANT_CHANGE_RUNTIME_PARAM as i32,
            );
            pgrx::pg_sys::GUC_check_errmsg_string = pgrx::pg_sys::pstrdup(
                c"agentidp.allow_drop can only be turned on by a session, with SET".as_ptr(),
            );
        }
    }
    allowed
}

pub fn encryption_format() -> EncryptionFormat {
    ENCRYPTION_FORMAT.get()
}

pub fn encryption_strict() -> bool {
    ENCRYPTION_STRICT.get()
}

/// Runs `f` on the key setting's bytes ("" when unset), borrowed from guc.c without a copy.
pub fn with_encryption_key<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    with_string(&ENCRYPTION_KEY, f)
}

/// Runs `f` on the old-keys setting's bytes ("" when unset), borrowed without a copy.
pub fn with_encryption_old_keys<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    with_string(&ENCRYPTION_OLD_KEYS, f)
}

fn with_string<R>(setting: &GucSetting<Option<CString>>, f: impl FnOnce(&[u8]) -> R) -> R {
    // SAFETY: guc.c keeps the value alive until the setting next changes, which nothing in `f`
    // does; null means unset.
    let value = unsafe { *setting.as_ptr() };
    if value.is_null() {
        f(b"")
    } else {
        f(unsafe { CStr::from_ptr(value) }.to_bytes())
    }
}
