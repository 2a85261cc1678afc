//! Who signs the audit log's checkpoints, and as whom: the signer source (`CHECKPOINT_SIGNER`),
//! the log's name (the note signer name and the origin prefix), and where each source finds its
//! key. The signer itself is `crate::signer`.
//!
//! No source configured means no signer: the sealing job then only seals (the checkpoints it
//! records are unsigned). A key file named without `CHECKPOINT_SIGNER=file` is refused rather
//! than ignored, so an operator who meant to sign does not silently get unsigned checkpoints.

use std::fmt;
use std::path::PathBuf;

use agentidp_core::checkpoint;
use clap::{Args, ValueEnum};

use super::vault::{split_kv2_path_of, KeySourceConfig, VaultConfig};
use super::{invalid, ConfigError};

pub const DEFAULT_CHECKPOINT_LOG_NAME: &str = "agentidp.local";
pub const DEFAULT_CHECKPOINT_TRANSIT_MOUNT: &str = "transit";
pub const DEFAULT_CHECKPOINT_TRANSIT_KEY: &str = "agentidp-checkpoints";
pub const DEFAULT_CHECKPOINT_KV_PATH: &str = "secret/data/agentidp/checkpoint-signing-key";
pub const DEFAULT_CHECKPOINT_KV_FIELD: &str = "signingKey";

/// Where a checkpoint's signature comes from.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignerKind {
    /// Vault's transit engine signs; the private key never leaves Vault.
    Transit,
    /// A PKCS#8 PEM private key read from a Vault KV v2 secret.
    Kv,
    /// A PKCS#8 PEM private key file, for development.
    File,
}

impl SignerKind {
    /// As the setting spells it, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SignerKind::Transit => "transit",
            SignerKind::Kv => "kv",
            SignerKind::File => "file",
        }
    }
}

impl fmt::Display for SignerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Checkpoint signing")]
pub struct CheckpointSettings {
    /// Source of the checkpoints' Ed25519 signatures: transit (Vault's transit engine signs, the
    /// key never leaves Vault), kv (a PKCS#8 PEM key in Vault KV v2) or file (a PKCS#8 PEM key
    /// file, for development). transit and kv use VAULT_ADDR and VAULT_TOKEN. Unset: no signer,
    /// checkpoints are sealed but not signed.
    #[arg(long, env = "CHECKPOINT_SIGNER", value_name = "SOURCE", value_parser = signer_kind)]
    pub checkpoint_signer: Option<SignerKind>,

    /// The log's name: the signer name of every checkpoint note (its verifier key is
    /// <name>+<id>+<key>) and the prefix of every checkpoint origin, <name>/<chain id>. No spaces,
    /// no '+', no '/'.
    #[arg(long, env = "CHECKPOINT_LOG_NAME", value_name = "NAME", default_value = DEFAULT_CHECKPOINT_LOG_NAME, value_parser = log_name)]
    pub checkpoint_log_name: String,

    /// Mount of Vault's transit engine (CHECKPOINT_SIGNER=transit).
    #[arg(long, env = "CHECKPOINT_TRANSIT_MOUNT", value_name = "MOUNT", default_value = DEFAULT_CHECKPOINT_TRANSIT_MOUNT, value_parser = mount)]
    pub checkpoint_transit_mount: String,

    /// Name of the transit key, which must be of type ed25519 (CHECKPOINT_SIGNER=transit).
    #[arg(long, env = "CHECKPOINT_TRANSIT_KEY", value_name = "KEY", default_value = DEFAULT_CHECKPOINT_TRANSIT_KEY)]
    pub checkpoint_transit_key: String,

    /// KV v2 path of the secret holding the signing key: <mount>/data/<path> (<mount>/<path> is
    /// accepted too) (CHECKPOINT_SIGNER=kv).
    #[arg(long, env = "CHECKPOINT_KV_PATH", value_name = "PATH", default_value = DEFAULT_CHECKPOINT_KV_PATH)]
    pub checkpoint_kv_path: String,

    /// Field of that secret holding the PKCS#8 PEM Ed25519 private key (CHECKPOINT_SIGNER=kv).
    #[arg(long, env = "CHECKPOINT_KV_FIELD", value_name = "FIELD", default_value = DEFAULT_CHECKPOINT_KV_FIELD)]
    pub checkpoint_kv_field: String,

    /// PKCS#8 PEM Ed25519 private key file, as `openssl genpkey -algorithm ed25519` writes it
    /// (CHECKPOINT_SIGNER=file). Refused when group or others may access it (chmod 600).
    #[arg(long, env = "CHECKPOINT_KEY_FILE", value_name = "FILE")]
    pub checkpoint_key_file: Option<PathBuf>,
}

fn signer_kind(value: &str) -> Result<SignerKind, String> {
    SignerKind::from_str(value, true)
        .map_err(|_| format!("expected transit, kv or file, got {value:?}"))
}

/// A signed-note key name without `/` (the core crate's rule), so that the verifier key can be
/// written and an origin `<log name>/<chain id>` split back at its first `/`.
fn log_name(value: &str) -> Result<String, String> {
    if !checkpoint::is_log_name_valid(value) {
        return Err(format!(
            "expected a signed-note key name without '/' (no spaces, no '+'), such as {DEFAULT_CHECKPOINT_LOG_NAME:?}, got {value:?}"
        ));
    }
    Ok(value.to_owned())
}

fn mount(value: &str) -> Result<String, String> {
    let trimmed = value.trim_matches('/');
    if trimmed.is_empty() {
        return Err(format!(
            "expected a Vault mount such as \"transit\", got {value:?}"
        ));
    }
    Ok(trimmed.to_owned())
}

/// The checked checkpoint configuration.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// `CHECKPOINT_LOG_NAME`.
    pub log_name: String,
    pub signer: CheckpointSignerConfig,
}

#[derive(Clone, Debug)]
pub enum CheckpointSignerConfig {
    /// No signer: checkpoints are sealed, not signed.
    None,
    Transit(TransitSignerConfig),
    Kv(KvSignerConfig),
    File(PathBuf),
}

impl CheckpointSignerConfig {
    pub fn kind(&self) -> Option<SignerKind> {
        match self {
            CheckpointSignerConfig::None => None,
            CheckpointSignerConfig::Transit(_) => Some(SignerKind::Transit),
            CheckpointSignerConfig::Kv(_) => Some(SignerKind::Kv),
            CheckpointSignerConfig::File(_) => Some(SignerKind::File),
        }
    }
}

/// The transit key, reached with the sidecar's Vault client settings (address, token, TLS).
#[derive(Clone, Debug)]
pub struct TransitSignerConfig {
    /// The encryption key's Vault settings; only the address and token are used here.
    pub vault: VaultConfig,
    pub mount: String,
    pub key: String,
}

impl TransitSignerConfig {
    /// `<mount>/keys/<key>`, as Vault's API names it.
    pub fn display_path(&self) -> String {
        format!("{}/keys/{}", self.mount, self.key)
    }
}

/// The KV v2 secret holding the signing key.
#[derive(Clone, Debug)]
pub struct KvSignerConfig {
    /// The encryption key's Vault settings; only the address and token are used here.
    pub vault: VaultConfig,
    /// KV v2 mount, e.g. `secret`.
    pub mount: String,
    /// Path of the secret inside the mount.
    pub path: String,
    pub field: String,
}

impl KvSignerConfig {
    /// The API path as operators write it in `CHECKPOINT_KV_PATH`.
    pub fn display_path(&self) -> String {
        format!("{}/data/{}", self.mount, self.path)
    }
}

impl CheckpointSettings {
    /// transit and kv reach Vault as the encryption key does, so they need it configured.
    pub(super) fn resolve(
        &self,
        key_source: &KeySourceConfig,
    ) -> Result<CheckpointConfig, ConfigError> {
        let vault = |kind: SignerKind| match key_source {
            KeySourceConfig::Vault(vault) => Ok(vault.clone()),
            KeySourceConfig::File(_) | KeySourceConfig::None => Err(invalid(
                "CHECKPOINT_SIGNER",
                format!("{kind} signs through Vault: set VAULT_ADDR and VAULT_TOKEN"),
            )),
        };
        let signer = match self.checkpoint_signer {
            None if self.checkpoint_key_file.is_some() => {
                return Err(invalid(
                    "CHECKPOINT_SIGNER",
                    "CHECKPOINT_KEY_FILE is set: set CHECKPOINT_SIGNER=file to sign with it (unset, checkpoints are not signed)",
                ))
            }
            None => CheckpointSignerConfig::None,
            Some(kind @ SignerKind::Transit) => {
                CheckpointSignerConfig::Transit(TransitSignerConfig {
                    vault: vault(kind)?,
                    mount: self.checkpoint_transit_mount.clone(),
                    key: self.checkpoint_transit_key.clone(),
                })
            }
            Some(kind @ SignerKind::Kv) => {
                let vault = vault(kind)?;
                let (mount, path) = split_kv2_path(&self.checkpoint_kv_path)?;
                CheckpointSignerConfig::Kv(KvSignerConfig {
                    vault,
                    mount,
                    path,
                    field: self.checkpoint_kv_field.clone(),
                })
            }
            Some(SignerKind::File) => match &self.checkpoint_key_file {
                Some(path) => CheckpointSignerConfig::File(path.clone()),
                None => {
                    return Err(invalid(
                        "CHECKPOINT_KEY_FILE",
                        "required when CHECKPOINT_SIGNER=file",
                    ))
                }
            },
        };
        Ok(CheckpointConfig {
            log_name: self.checkpoint_log_name.clone(),
            signer,
        })
    }
}

fn split_kv2_path(raw: &str) -> Result<(String, String), ConfigError> {
    split_kv2_path_of("CHECKPOINT_KV_PATH", DEFAULT_CHECKPOINT_KV_PATH, raw)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::Config;
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<CheckpointConfig, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("DATABASE_URL", "postgresql://agentidp@localhost/agentidp"),
            ("JWT_HS256_SECRET", "0123456789abcdef0123456789abcdef-test"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            vars.insert(k.to_string(), v.to_string());
        }
        Config::from_map(&vars).map(|c| c.checkpoints)
    }

    const VAULT: [(&str, &str); 2] = [
        ("VAULT_ADDR", "http://127.0.0.1:8200"),
        ("VAULT_TOKEN", "s.SuperSecretToken"),
    ];

    #[test]
    fn unset_means_no_signer_under_the_default_name() {
        let c = config(&[]).unwrap();
        assert_eq!(c.log_name, "agentidp.local");
        assert!(matches!(c.signer, CheckpointSignerConfig::None));
        // Vault configured for the encryption key does not turn signing on.
        let c = config(&VAULT).unwrap();
        assert!(matches!(c.signer, CheckpointSignerConfig::None));
    }

    #[test]
    fn transit_defaults() {
        let c = config(&[&VAULT[..], &[("CHECKPOINT_SIGNER", "Transit")]].concat()).unwrap();
        let CheckpointSignerConfig::Transit(t) = &c.signer else {
            panic!("expected transit: {c:?}");
        };
        assert_eq!(t.display_path(), "transit/keys/agentidp-checkpoints");
        assert_eq!(t.vault.addr, "http://127.0.0.1:8200");
        assert!(!format!("{c:?}").contains("SuperSecretToken"));
    }

    #[test]
    fn kv_defaults_and_paths() {
        let c = config(&[&VAULT[..], &[("CHECKPOINT_SIGNER", "kv")]].concat()).unwrap();
        let CheckpointSignerConfig::Kv(kv) = &c.signer else {
            panic!("expected kv: {c:?}");
        };
        assert_eq!(kv.display_path(), DEFAULT_CHECKPOINT_KV_PATH);
        assert_eq!(kv.field, "signingKey");
        let c = config(
            &[
                &VAULT[..],
                &[
                    ("CHECKPOINT_SIGNER", "kv"),
                    ("CHECKPOINT_KV_PATH", "/kv/log/key/"),
                ],
            ]
            .concat(),
        )
        .unwrap();
        let CheckpointSignerConfig::Kv(kv) = &c.signer else {
            panic!("expected kv: {c:?}");
        };
        assert_eq!((kv.mount.as_str(), kv.path.as_str()), ("kv", "log/key"));
    }

    #[test]
    fn file() {
        let c = config(&[
            ("CHECKPOINT_SIGNER", "file"),
            ("CHECKPOINT_KEY_FILE", "/etc/agentidp/checkpoint.pem"),
            ("CHECKPOINT_LOG_NAME", "log.example"),
        ])
        .unwrap();
        assert_eq!(c.log_name, "log.example");
        assert!(
            matches!(&c.signer, CheckpointSignerConfig::File(p) if p.to_str() == Some("/etc/agentidp/checkpoint.pem"))
        );
        assert_eq!(c.signer.kind(), Some(SignerKind::File));
    }

    #[test]
    fn bad_combinations_name_the_variable() {
        for (pairs, var, reason) in [
            (
                vec![("CHECKPOINT_SIGNER", "hsm")],
                "CHECKPOINT_SIGNER",
                "expected transit, kv or file, got \"hsm\"",
            ),
            (
                vec![("CHECKPOINT_SIGNER", "transit")],
                "CHECKPOINT_SIGNER",
                "transit signs through Vault: set VAULT_ADDR and VAULT_TOKEN",
            ),
            (
                vec![
                    ("CHECKPOINT_SIGNER", "kv"),
                    ("ENCRYPTION_KEY_FILE", "/dev/null"),
                ],
                "CHECKPOINT_SIGNER",
                "kv signs through Vault: set VAULT_ADDR and VAULT_TOKEN",
            ),
            (
                vec![("CHECKPOINT_SIGNER", "file")],
                "CHECKPOINT_KEY_FILE",
                "required when CHECKPOINT_SIGNER=file",
            ),
            (
                vec![("CHECKPOINT_KEY_FILE", "/k.pem")],
                "CHECKPOINT_SIGNER",
                "CHECKPOINT_KEY_FILE is set: set CHECKPOINT_SIGNER=file to sign with it (unset, checkpoints are not signed)",
            ),
            (
                vec![("CHECKPOINT_LOG_NAME", "my log")],
                "CHECKPOINT_LOG_NAME",
                "expected a signed-note key name without '/' (no spaces, no '+'), such as \"agentidp.local\", got \"my log\"",
            ),
            (
                vec![("CHECKPOINT_LOG_NAME", "a+b")],
                "CHECKPOINT_LOG_NAME",
                "expected a signed-note key name without '/' (no spaces, no '+'), such as \"agentidp.local\", got \"a+b\"",
            ),
            (
                vec![("CHECKPOINT_LOG_NAME", "log.example/prod")],
                "CHECKPOINT_LOG_NAME",
                "expected a signed-note key name without '/' (no spaces, no '+'), such as \"agentidp.local\", got \"log.example/prod\"",
            ),
            (
                vec![("CHECKPOINT_TRANSIT_MOUNT", "//")],
                "CHECKPOINT_TRANSIT_MOUNT",
                "expected a Vault mount such as \"transit\", got \"//\"",
            ),
        ] {
            let e = config(&pairs).unwrap_err();
            assert_eq!((e.var.as_str(), e.reason.as_str()), (var, reason), "{pairs:?}");
        }
        let e = config(
            &[
                &VAULT[..],
                &[
                    ("CHECKPOINT_SIGNER", "kv"),
                    ("CHECKPOINT_KV_PATH", "kv/data"),
                ],
            ]
            .concat(),
        )
        .unwrap_err();
        assert_eq!(e.var, "CHECKPOINT_KV_PATH");
    }
}
