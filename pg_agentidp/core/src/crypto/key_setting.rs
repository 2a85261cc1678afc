//! Which value of a key setting a session may use: the rule for a value that was already there
//! when the library was loaded.
//!
//! Until pg_agentidp is loaded in a backend, `agentidp.encryption_key` and
//! `agentidp.encryption_old_keys` are PostgreSQL "placeholders": untyped, unchecked, readable by
//! `SHOW` and `current_setting()`. A session that sets a key in its connection options on a
//! cluster that does not preload the library can therefore read the key back until its first
//! call into the extension. When the library loads, PostgreSQL passes the placeholder's value to
//! the setting's check hook, and [`at_load`] decides: the value is accepted only if the library
//! was loaded before the session could run a statement (`shared_preload_libraries`, or
//! `session_preload_libraries` / `local_preload_libraries`); otherwise it is refused, and so is
//! a value that is not a key. A refused value is dropped (the setting is empty from then on) and
//! its error is remembered, so that [`on_use`] reports it instead of "No encryption key
//! configured". A value set after the library was loaded passed the check hook of the real,
//! hidden setting, and is used.

use std::fmt;

use super::CryptoError;

/// One of the two key settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySetting {
    /// `agentidp.encryption_key`.
    Current,
    /// `agentidp.encryption_old_keys`.
    Old,
}

impl KeySetting {
    /// The setting's name.
    pub fn name(self) -> &'static str {
        match self {
            KeySetting::Current => "agentidp.encryption_key",
            KeySetting::Old => "agentidp.encryption_old_keys",
        }
    }
}

impl fmt::Display for KeySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The verdict on a value `setting` already held when the library defined it in this backend.
///
/// `loaded_before_statements`: the library was loaded before the session could run a statement
/// (preloaded), so nothing could read the placeholder. `parsed`: the outcome of parsing the
/// value (never the value). `Ok`: the value is kept. `Err`: it is refused with this error, which
/// later calls report while the setting stays empty.
pub fn at_load(
    setting: KeySetting,
    loaded_before_statements: bool,
    parsed: Result<(), CryptoError>,
) -> Result<(), CryptoError> {
    parsed?;
    if loaded_before_statements {
        Ok(())
    } else {
        Err(CryptoError::KeyReadableBeforeLoad(setting))
    }
}

/// What a call that needs `setting`'s keys does with its value now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnUse {
    /// Parse and use the value: it passed the check hook of the defined setting.
    Parse,
    /// Go on without keys (only old keys may be absent).
    NoKeys,
    /// Fail with this error.
    Refuse(CryptoError),
}

/// The rule for a call: a non-empty value is used; an empty one is the error [`at_load`]
/// refused the load-time value with, if it refused one, else `KeyMissing` for the current key
/// and no keys for the old ones.
pub fn on_use(
    setting: KeySetting,
    empty_now: bool,
    refused_at_load: Option<&CryptoError>,
) -> OnUse {
    match (empty_now, refused_at_load, setting) {
        (false, _, _) => OnUse::Parse,
        (true, Some(refusal), _) => OnUse::Refuse(refusal.clone()),
        (true, None, KeySetting::Current) => OnUse::Refuse(CryptoError::KeyMissing),
        (true, None, KeySetting::Old) => OnUse::NoKeys,
    }
}

/// Whether a library list in the syntax of `session_preload_libraries` (comma-separated, names
/// optionally double-quoted, with or without a directory and the `.so` suffix) names `library`.
pub fn lists_library(list: &str, library: &str) -> bool {
    list.split(',').any(|entry| {
        let entry = entry.trim();
        let entry = entry
            .strip_prefix('"')
            .and_then(|e| e.strip_suffix('"'))
            .unwrap_or(entry);
        let file = entry.rsplit('/').next().unwrap_or(entry);
        file.strip_suffix(".so").unwrap_or(file) == library
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::InvalidKeyReason;

    const INVALID: CryptoError = CryptoError::InvalidKey(InvalidKeyReason::NotHex { position: 64 });

    #[test]
    fn a_valid_value_at_load_is_kept_only_when_the_library_was_preloaded() {
        for setting in [KeySetting::Current, KeySetting::Old] {
            assert_eq!(at_load(setting, true, Ok(())), Ok(()));
            assert_eq!(
                at_load(setting, false, Ok(())),
                Err(CryptoError::KeyReadableBeforeLoad(setting))
            );
        }
    }

    #[test]
    fn an_invalid_value_at_load_is_refused_as_invalid_either_way() {
        // Invalid wins over "not preloaded": the key needs fixing first, and the error says so.
        for preloaded in [true, false] {
            assert_eq!(
                at_load(KeySetting::Current, preloaded, Err(INVALID)),
                Err(INVALID)
            );
        }
        let old = CryptoError::InvalidOldKey {
            position: 2,
            reason: InvalidKeyReason::WrongLength { chars: 4 },
        };
        assert_eq!(at_load(KeySetting::Old, false, Err(old.clone())), Err(old));
    }

    #[test]
    fn a_value_set_is_used() {
        // Whatever happened at load: a value there now passed the defined setting's check hook.
        let refused = CryptoError::KeyReadableBeforeLoad(KeySetting::Current);
        for refusal in [None, Some(&refused), Some(&INVALID)] {
            for setting in [KeySetting::Current, KeySetting::Old] {
                assert_eq!(on_use(setting, false, refusal), OnUse::Parse);
            }
        }
    }

    #[test]
    fn an_empty_setting_reports_the_refusal_at_load() {
        let refused = CryptoError::KeyReadableBeforeLoad(KeySetting::Old);
        assert_eq!(
            on_use(KeySetting::Current, true, Some(&INVALID)),
            OnUse::Refuse(INVALID)
        );
        assert_eq!(
            on_use(KeySetting::Old, true, Some(&refused)),
            OnUse::Refuse(refused.clone())
        );
    }

    #[test]
    fn an_empty_setting_without_a_refusal_is_no_key() {
        assert_eq!(
            on_use(KeySetting::Current, true, None),
            OnUse::Refuse(CryptoError::KeyMissing)
        );
        assert_eq!(on_use(KeySetting::Old, true, None), OnUse::NoKeys);
    }

    #[test]
    fn the_refusal_names_the_setting_and_the_cause_never_a_value() {
        assert_eq!(
            CryptoError::KeyReadableBeforeLoad(KeySetting::Current).to_string(),
            "agentidp.encryption_key refused: it was set before the pg_agentidp library was \
             loaded, when SHOW could read it back"
        );
        assert_eq!(
            CryptoError::KeyReadableBeforeLoad(KeySetting::Old).to_string(),
            "agentidp.encryption_old_keys refused: it was set before the pg_agentidp library was \
             loaded, when SHOW could read it back"
        );
    }

    #[test]
    fn library_lists_are_matched_by_library_name() {
        for list in [
            "pg_agentidp",
            "pg_stat_statements, pg_agentidp",
            " \"pg_agentidp\" ",
            "$libdir/pg_agentidp",
            "/usr/lib/postgresql/15/lib/pg_agentidp.so",
            "pg_agentidp.so,auto_explain",
        ] {
            assert!(lists_library(list, "pg_agentidp"), "{list}");
        }
        for list in [
            "",
            "pg_stat_statements",
            "pg_agentidp_other",
            "not_pg_agentidp",
            "pg_agentidp/x",
        ] {
            assert!(!lists_library(list, "pg_agentidp"), "{list}");
        }
    }
}
