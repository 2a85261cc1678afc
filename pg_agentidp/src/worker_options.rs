//! The key settings passed on to the connections Citus opens from this backend to the workers
//! (`agentidp_core::distribution::passed_on_options`): in their startup options, through libpq's
//! `PGOPTIONS`, so that the column triggers on the workers' placements encrypt with the session's
//! key, and no statement ever carries it.

use std::cell::OnceCell;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use agentidp_core::crypto::KeySetting;
use agentidp_core::distribution::passed_on_options;
use zeroize::Zeroizing;

use crate::citus;

thread_local! {
    /// `PGOPTIONS` as the backend inherited it from the postmaster, read before the first change.
    static INHERITED: OnceCell<Vec<u8>> = const { OnceCell::new() };
}

/// Sets this backend's `PGOPTIONS` to what it inherited plus the key settings, when Citus is
/// loaded here (without Citus no connection would need them).
///
/// Every libpq connection the backend opens afterwards carries them, dblink's and postgres_fdw's
/// too: a session holding the key must not connect to servers it would not give the key to
/// (docs/scaling.md).
pub(crate) fn pass_on(key: &[u8], old_keys: &[u8]) {
    if !citus::loaded() {
        return;
    }
    let inherited = INHERITED.with(|inherited| {
        inherited
            .get_or_init(|| {
                std::env::var_os("PGOPTIONS")
                    .map(OsStringExt::into_vec)
                    .unwrap_or_default()
            })
            .clone()
    });
    let options = Zeroizing::new(passed_on_options(
        &inherited,
        &[
            (KeySetting::Current.name(), key),
            (KeySetting::Old.name(), old_keys),
        ],
    ));
    // The backend runs one thread here: nothing reads the environment while it changes.
    if options.is_empty() {
        std::env::remove_var("PGOPTIONS");
    } else {
        std::env::set_var("PGOPTIONS", OsStr::from_bytes(&options));
    }
}
