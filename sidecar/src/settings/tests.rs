//! Start-up configuration from environment variables.
//!
//! Every setting is parsed and checked before anything starts, so a typo stops the process with a
//! message naming the variable instead of surfacing hours later in a job. Messages never quote the
//! value of a secret (`VAULT_TOKEN`, `JWT_HS256_SECRET`, the database password).
//!
//! The variables and their defaults are listed in `sidecar/README.md`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use cron::Schedule;

pub const DEFAULT_PORT: u16 = 3000;
pub const DEFAULT_VAULT_PATH: &str = "secret/data/agentidp/encryption-key";
pub const DEFAULT_VAULT_FIELD: &str = "encryptionKey";
/// Where `docs/encryption-runbook.md` ("Rotating the key", step 1) puts the key being replaced.
pub const DEFAULT_OLD_KEYS_VAULT_FIELD: &str = "previousEncryptionKey";
/// Top of every hour; the cron crate's expressions start with a seconds field.
pub const HOURLY: &str = "0 0 * * * *";
pub const DAILY_FULL_WALK: &str = "0 30 3 * * *";
pub const EVERY_FIVE_MINUTES: &str = "0 */5 * * * *";

/// A setting that stops start-up.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

#[derive(Clone)]
pub struct Config {
    pub database: tokio_postgres::Config,
    pub database_ca_file: Option<PathBuf>,
    pub db_pool_size: usize,
    pub bind: SocketAddr,
    pub production: bool,
    pub public_host: Option<String>,
    pub trusted_proxy_hops: usize,
    pub key_source: KeySourceConfig,
    pub vault_retry: RetryPolicy,
    pub jwt: JwtConfig,
    pub audit_rate_limit_per_minute: u32,
    pub controls_rate_limit_per_minute: u32,
    pub schedules: JobSchedules,
    pub credential_expiry_warning_days: u32,
    pub dead_letter_threshold: i64,
    pub controls_refresh: Duration,
    pub leader_retry: Duration,
    pub shutdown_timeout: Duration,
}

// Hand-written so that no secret (database password, Vault token, JWT secret) can reach a log line
// through `{:?}`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("production", &self.production)
            .field("key_source", &self.key_source)
            .field("jwt", &self.jwt)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub enum KeySourceConfig {
    Vault(VaultConfig),
    File(PathBuf),
    None,
}

impl fmt::Debug for KeySourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySourceConfig::Vault(v) => write!(f, "Vault({}, {})", v.addr, v.display_path()),
            KeySourceConfig::File(p) => write!(f, "File({})", p.display()),
            KeySourceConfig::None => f.write_str("None"),
        }
    }
}

#[derive(Clone)]
pub struct VaultConfig {
    pub addr: String,
    pub token: String,
    /// KV v2 mount, e.g. `secret`.
    pub mount: String,
    /// Path of the secret inside the mount, e.g. `agentidp/encryption-key`.
    pub path: String,
    pub field: String,
    /// Optional field of the same secret: the keys of a rotation in progress, comma-separated.
    pub old_keys_field: String,
}

impl VaultConfig {
    /// The API path as operators write it in `ENCRYPTION_KEY_VAULT_PATH`.
    pub fn display_path(&self) -> String {
        format!("{}/data/{}", self.mount, self.path)
    }
}

/// Exponential backoff between attempts to reach Vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (0-based): initial, 2x, 4x, ... capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

#[derive(Clone)]
pub enum JwtKey {
    Hs256(Vec<u8>),
    Rs256Pem(Vec<u8>),
}

#[derive(Clone)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = match self.key {
            JwtKey::Hs256(_) => "HS256",
            JwtKey::Rs256Pem(_) => "RS256",
        };
        f.debug_struct("JwtConfig")
            .field("alg", &alg)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_seconds", &self.leeway_seconds)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct JobSchedules {
    pub chain_verification: Schedule,
    pub chain_full_walk: Schedule,
    pub secrets_rotation: Schedule,
    pub encryption_at_rest: Schedule,
    pub tls_enforcement: Schedule,
    pub webhook_dead_letters: Schedule,
    pub key_refresh: Schedule,
}

/// Reads the process environment.
pub fn from_env() -> Result<Config, ConfigError> {
    Config::from_map(&std::env::vars().collect())
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// Unset and empty are the same: container platforms often render an unset value as `""`.
    fn get(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(
        &self,
        var: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| invalid(var, format!("expected {expected}, got {v:?}"))),
        }
    }

    fn positive<T: FromStr + PartialOrd + Default>(
        &self,
        var: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        let value = self.parse(var, default, "a positive integer")?;
        if value <= T::default() {
            return Err(invalid(var, "expected a positive integer"));
        }
        Ok(value)
    }

    fn bool(&self, var: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
            Some("0" | "false" | "no" | "off") => Ok(Some(false)),
            Some(other) => Err(invalid(
                var,
                format!("expected true or false, got {other:?}"),
            )),
        }
    }

    fn schedule(&self, var: &'static str, default: &str) -> Result<Schedule, ConfigError> {
        let expr = self.get(var).unwrap_or(default);
        Schedule::from_str(expr).map_err(|e| {
            invalid(
                var,
                format!("expected a cron expression with a seconds field such as {default:?}, got {expr:?}: {e}"),
            )
        })
    }

    fn file(&self, var: &'static str) -> Result<Option<Vec<u8>>, ConfigError> {
        self.get(var)
            .map(|path| {
                std::fs::read(path).map_err(|e| invalid(var, format!("cannot read {path}: {e}")))
            })
            .transpose()
    }
}

impl Config {
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let env = Env(vars);
        // AGENTIDP_PRODUCTION wins so that a deployment can be explicit regardless of NODE_ENV,
        // which the platform's Node services share.
        let production = match env.bool("AGENTIDP_PRODUCTION")? {
            Some(p) => p,
            None => env.get("NODE_ENV") == Some("production"),
        };

        let database = parse_database(&env, production)?;
        let key_source = parse_key_source(&env, production)?;
        let jwt = parse_jwt(&env)?;

        let port: u16 = env.parse("PORT", DEFAULT_PORT, "a TCP port number (0-65535)")?;
        let ip: IpAddr = env.parse(
            "BIND_ADDRESS",
            IpAddr::from([0, 0, 0, 0]),
            "an IP address such as 0.0.0.0",
        )?;

        let public_host = env.get("PUBLIC_HOST").map(str::to_owned);
        if let Some(host) = &public_host {
            if host.parse::<axum::http::uri::Authority>().is_err() {
                return Err(invalid(
                    "PUBLIC_HOST",
                    format!("expected a host name with an optional port, got {host:?}"),
                ));
            }
        }

        let dead_letter_threshold: i64 = env.parse(
            "WEBHOOK_DEAD_LETTER_THRESHOLD",
            100,
            "a non-negative integer",
        )?;
        if dead_letter_threshold < 0 {
            return Err(invalid(
                "WEBHOOK_DEAD_LETTER_THRESHOLD",
                "expected a non-negative integer",
            ));
        }

        Ok(Config {
            database,
            database_ca_file: env.get("DATABASE_CA_FILE").map(PathBuf::from),
            db_pool_size: env.positive("DB_POOL_SIZE", 8)?,
            bind: SocketAddr::new(ip, port),
            production,
            public_host,
            trusted_proxy_hops: env.parse("TRUSTED_PROXY_HOPS", 0, "a non-negative integer")?,
            key_source,
            vault_retry: RetryPolicy {
                initial: Duration::from_millis(env.positive("VAULT_RETRY_INITIAL_MS", 1_000)?),
                max: Duration::from_millis(env.positive("VAULT_RETRY_MAX_MS", 60_000)?),
            },
            jwt,
            audit_rate_limit_per_minute: env.positive("RATE_LIMIT_AUDIT_VERIFY_PER_MINUTE", 30)?,
            controls_rate_limit_per_minute: env
                .positive("RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE", 120)?,
            schedules: JobSchedules {
                chain_verification: env.schedule("JOB_CHAIN_VERIFICATION_SCHEDULE", HOURLY)?,
                chain_full_walk: env.schedule("JOB_CHAIN_FULL_WALK_SCHEDULE", DAILY_FULL_WALK)?,
                secrets_rotation: env.schedule("JOB_SECRETS_ROTATION_SCHEDULE", HOURLY)?,
                encryption_at_rest: env.schedule("JOB_ENCRYPTION_AT_REST_SCHEDULE", HOURLY)?,
                tls_enforcement: env.schedule("JOB_TLS_ENFORCEMENT_SCHEDULE", HOURLY)?,
                webhook_dead_letters: env.schedule("JOB_WEBHOOK_DEAD_LETTERS_SCHEDULE", HOURLY)?,
                key_refresh: env.schedule("KEY_REFRESH_SCHEDULE", EVERY_FIVE_MINUTES)?,
            },
            credential_expiry_warning_days: env.positive("CREDENTIAL_EXPIRY_WARNING_DAYS", 7)?,
            dead_letter_threshold,
            controls_refresh: Duration::from_secs(env.positive("CONTROLS_REFRESH_SECONDS", 5)?),
            leader_retry: Duration::from_secs(env.positive("LEADER_RETRY_SECONDS", 15)?),
            shutdown_timeout: Duration::from_secs(env.positive("SHUTDOWN_TIMEOUT_SECONDS", 30)?),
        })
    }
}

fn parse_database(env: &Env<'_>, production: bool) -> Result<tokio_postgres::Config, ConfigError> {
    let url = env.get("DATABASE_URL").ok_or_else(|| {
        invalid(
            "DATABASE_URL",
            "required, e.g. postgresql://agentidp@db:5432/agentidp?sslmode=require",
        )
    })?;
    // tokio-postgres' parse errors name the offending option, never its value.
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        invalid(
            "DATABASE_URL",
            format!("not a PostgreSQL connection string: {e}"),
        )
    })?;
    // The encryption key travels in the connection's startup packet; over TCP that packet is only
    // private once TLS is up, and `prefer` would silently fall back to clear text.
    let over_tcp = config
        .get_hosts()
        .iter()
        .any(|h| matches!(h, tokio_postgres::config::Host::Tcp(_)));
    if production && over_tcp && config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
        return Err(invalid(
            "DATABASE_URL",
            "production mode requires sslmode=require for TCP connections, because the encryption key is sent in the connection's startup options",
        ));
    }
    Ok(config)
}

fn parse_key_source(env: &Env<'_>, production: bool) -> Result<KeySourceConfig, ConfigError> {
    match (env.get("VAULT_ADDR"), env.get("VAULT_TOKEN")) {
        (Some(addr), Some(token)) => {
            let url = url::Url::parse(addr).map_err(|e| {
                invalid("VAULT_ADDR", format!("expected a URL such as https://vault:8200, got {addr:?}: {e}"))
            })?;
            match url.scheme() {
                "https" => {}
                "http" if !production => {}
                "http" => {
                    return Err(invalid(
                        "VAULT_ADDR",
                        "production mode requires an https:// address, because the Vault token is sent with every request",
                    ))
                }
                other => {
                    return Err(invalid(
                        "VAULT_ADDR",
                        format!("expected an http:// or https:// URL, got scheme {other:?}"),
                    ))
                }
            }
            let (mount, path) = split_kv2_path(
                env.get("ENCRYPTION_KEY_VAULT_PATH")
                    .unwrap_or(DEFAULT_VAULT_PATH),
            )?;
            let field = env
                .get("ENCRYPTION_KEY_VAULT_FIELD")
                .unwrap_or(DEFAULT_VAULT_FIELD);
            let old_keys_field = env
                .get("ENCRYPTION_OLD_KEYS_VAULT_FIELD")
                .unwrap_or(DEFAULT_OLD_KEYS_VAULT_FIELD);
            // One field for both would make the current key its own old key: never a rotation.
            if old_keys_field == field {
                return Err(invalid(
                    "ENCRYPTION_OLD_KEYS_VAULT_FIELD",
                    format!("must differ from ENCRYPTION_KEY_VAULT_FIELD ({field:?})"),
                ));
            }
            Ok(KeySourceConfig::Vault(VaultConfig {
                addr: addr.to_owned(),
                token: token.to_owned(),
                mount,
                path,
                field: field.to_owned(),
                old_keys_field: old_keys_field.to_owned(),
            }))
        }
        (Some(_), None) => Err(invalid("VAULT_TOKEN", "required when VAULT_ADDR is set")),
        (None, Some(_)) => Err(invalid("VAULT_ADDR", "required when VAULT_TOKEN is set")),
        (None, None) => match env.get("ENCRYPTION_KEY_FILE") {
            Some(path) => Ok(KeySourceConfig::File(PathBuf::from(path))),
            None if production => Err(invalid(
                "VAULT_ADDR",
                "production mode requires an encryption key source: set VAULT_ADDR and VAULT_TOKEN (or ENCRYPTION_KEY_FILE)",
            )),
            None => Ok(KeySourceConfig::None),
        },
    }
}

/// Splits `mount/data/path` (the KV v2 API path) into mount and secret path. `mount/path`
/// (the form `vault kv get` takes) is accepted too.
fn split_kv2_path(raw: &str) -> Result<(String, String), ConfigError> {
    let trimmed = raw.trim_matches('/');
    let bad = || {
        invalid(
            "ENCRYPTION_KEY_VAULT_PATH",
            format!("expected a KV v2 path such as {DEFAULT_VAULT_PATH:?}, got {raw:?}"),
        )
    };
    let (mount, rest) = trimmed.split_once('/').ok_or_else(bad)?;
    let path = rest.strip_prefix("data/").unwrap_or(rest);
    // `mount/data` alone names the data endpoint, not a secret.
    if mount.is_empty() || rest == "data" || path.split('/').any(str::is_empty) {
        return Err(bad());
    }
    Ok((mount.to_owned(), path.to_owned()))
}

fn parse_jwt(env: &Env<'_>) -> Result<JwtConfig, ConfigError> {
    let secret = env.get("JWT_HS256_SECRET");
    let pem = match (
        env.get("JWT_RS256_PUBLIC_KEY"),
        env.file("JWT_RS256_PUBLIC_KEY_FILE")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "JWT_RS256_PUBLIC_KEY_FILE",
                "set either JWT_RS256_PUBLIC_KEY or JWT_RS256_PUBLIC_KEY_FILE, not both",
            ))
        }
        // Platforms that cannot hold multi-line values pass the PEM with literal "\n".
        (Some(inline), None) => Some(inline.replace("\\n", "\n").into_bytes()),
        (None, file) => file,
    };
    let key = match (secret, pem) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "JWT_HS256_SECRET",
                "set either JWT_HS256_SECRET or an RS256 public key, not both",
            ))
        }
        (None, None) => {
            return Err(invalid(
                "JWT_HS256_SECRET",
                "a JWT verification key is required: set JWT_HS256_SECRET or JWT_RS256_PUBLIC_KEY / JWT_RS256_PUBLIC_KEY_FILE",
            ))
        }
        // RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
        (Some(s), None) if s.len() < 32 => {
            return Err(invalid("JWT_HS256_SECRET", "must be at least 32 bytes long"))
        }
        (Some(s), None) => JwtKey::Hs256(s.as_bytes().to_vec()),
        (None, Some(pem)) => {
            jsonwebtoken::DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                invalid(
                    "JWT_RS256_PUBLIC_KEY",
                    format!("not a PEM-encoded RSA public key: {e}"),
                )
            })?;
            JwtKey::Rs256Pem(pem)
        }
    };
    Ok(JwtConfig {
        key,
        issuer: env.get("JWT_ISSUER").map(str::to_owned),
        audience: env.get("JWT_AUDIENCE").map(str::to_owned),
        leeway_seconds: env.parse("JWT_LEEWAY_SECONDS", 30, "a number of seconds")?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = [
            ("DATABASE_URL", "postgresql://agentidp@localhost/agentidp"),
            ("JWT_HS256_SECRET", SECRET),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    fn err(pairs: &[(&str, &str)]) -> ConfigError {
        Config::from_map(&vars(pairs)).unwrap_err()
    }

    #[test]
    fn defaults() {
        let c = Config::from_map(&vars(&[])).unwrap();
        assert_eq!(c.bind.port(), 3000);
        assert!(!c.production);
        assert!(matches!(c.key_source, KeySourceConfig::None));
        assert_eq!(c.audit_rate_limit_per_minute, 30);
        assert_eq!(c.controls_rate_limit_per_minute, 120);
        assert_eq!(c.credential_expiry_warning_days, 7);
        assert_eq!(c.trusted_proxy_hops, 0);
        assert_eq!(c.schedules.secrets_rotation.source(), HOURLY);
        assert_eq!(c.controls_refresh, Duration::from_secs(5));
    }

    #[test]
    fn vault_defaults_to_the_documented_path_and_field() {
        let c = Config::from_map(&vars(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_TOKEN", "root"),
        ]))
        .unwrap();
        let KeySourceConfig::Vault(v) = c.key_source else {
            panic!("expected Vault");
        };
        assert_eq!(v.mount, "secret");
        assert_eq!(v.path, "agentidp/encryption-key");
        assert_eq!(v.field, "encryptionKey");
        assert_eq!(v.old_keys_field, "previousEncryptionKey");
        assert_eq!(v.display_path(), DEFAULT_VAULT_PATH);
    }

    #[test]
    fn kv2_paths() {
        assert_eq!(
            split_kv2_path("kv/data/a/b").unwrap(),
            ("kv".into(), "a/b".into())
        );
        assert_eq!(split_kv2_path("kv/a").unwrap(), ("kv".into(), "a".into()));
        assert_eq!(
            split_kv2_path("/kv/data/a/").unwrap(),
            ("kv".into(), "a".into())
        );
        assert!(split_kv2_path("kv").is_err());
        assert!(split_kv2_path("kv/data/").is_err());
        assert!(split_kv2_path("kv//a").is_err());
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (pairs, var) in [
            (vec![("PORT", "http")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
            (vec![("BIND_ADDRESS", "everywhere")], "BIND_ADDRESS"),
            (
                vec![("AGENTIDP_PRODUCTION", "maybe")],
                "AGENTIDP_PRODUCTION",
            ),
            (vec![("DATABASE_URL", "")], "DATABASE_URL"),
            (
                vec![("DATABASE_URL", "postgresql://h/db?sslmode=sometimes")],
                "DATABASE_URL",
            ),
            (vec![("VAULT_ADDR", "http://v:8200")], "VAULT_TOKEN"),
            (vec![("VAULT_TOKEN", "t")], "VAULT_ADDR"),
            (
                vec![("VAULT_ADDR", "not a url"), ("VAULT_TOKEN", "t")],
                "VAULT_ADDR",
            ),
            (
                vec![
                    ("VAULT_ADDR", "http://v"),
                    ("VAULT_TOKEN", "t"),
                    ("ENCRYPTION_KEY_VAULT_PATH", "secret"),
                ],
                "ENCRYPTION_KEY_VAULT_PATH",
            ),
            (
                vec![
                    ("VAULT_ADDR", "http://v"),
                    ("VAULT_TOKEN", "t"),
                    ("ENCRYPTION_KEY_VAULT_FIELD", "key"),
                    ("ENCRYPTION_OLD_KEYS_VAULT_FIELD", "key"),
                ],
                "ENCRYPTION_OLD_KEYS_VAULT_FIELD",
            ),
            (vec![("JWT_HS256_SECRET", "")], "JWT_HS256_SECRET"),
            (vec![("JWT_HS256_SECRET", "short")], "JWT_HS256_SECRET"),
            (
                vec![("JWT_RS256_PUBLIC_KEY", "not pem")],
                "JWT_HS256_SECRET",
            ),
            (
                vec![("JWT_RS256_PUBLIC_KEY_FILE", "/nonexistent/key.pem")],
                "JWT_RS256_PUBLIC_KEY_FILE",
            ),
            (
                vec![("RATE_LIMIT_AUDIT_VERIFY_PER_MINUTE", "0")],
                "RATE_LIMIT_AUDIT_VERIFY_PER_MINUTE",
            ),
            (
                vec![("RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE", "-1")],
                "RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE",
            ),
            (
                vec![("JOB_SECRETS_ROTATION_SCHEDULE", "@sometimes")],
                "JOB_SECRETS_ROTATION_SCHEDULE",
            ),
            (
                vec![("KEY_REFRESH_SCHEDULE", "* * *")],
                "KEY_REFRESH_SCHEDULE",
            ),
            (
                vec![("WEBHOOK_DEAD_LETTER_THRESHOLD", "-5")],
                "WEBHOOK_DEAD_LETTER_THRESHOLD",
            ),
            (vec![("PUBLIC_HOST", "exa mple.com")], "PUBLIC_HOST"),
            (vec![("TRUSTED_PROXY_HOPS", "two")], "TRUSTED_PROXY_HOPS"),
        ] {
            let e = err(&pairs);
            assert_eq!(e.var, var, "for {pairs:?}: {e}");
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    #[test]
    fn rs256_key_with_hs256_secret_is_ambiguous() {
        let mut v = vars(&[("JWT_RS256_PUBLIC_KEY", "x")]);
        v.insert("JWT_HS256_SECRET".into(), SECRET.into());
        // The PEM is not checked when the combination is already wrong.
        assert_eq!(Config::from_map(&v).unwrap_err().var, "JWT_HS256_SECRET");
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let e = err(&[
            ("VAULT_ADDR", "ftp://v"),
            ("VAULT_TOKEN", "s.SuperSecretToken"),
        ]);
        assert!(!e.to_string().contains("SuperSecretToken"));
        let c = Config::from_map(&vars(&[
            ("VAULT_ADDR", "http://v:8200"),
            ("VAULT_TOKEN", "s.SuperSecretToken"),
            ("DATABASE_URL", "postgresql://u:hunter2pass@h/db"),
        ]))
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("SuperSecretToken"), "{debug}");
        assert!(!debug.contains("hunter2pass"), "{debug}");
        assert!(!debug.contains(SECRET), "{debug}");
    }

    #[test]
    fn production_switch() {
        let p = |pairs: &[(&str, &str)]| {
            Config::from_map(&vars(&[&[("ENCRYPTION_KEY_FILE", "/k")], pairs].concat()))
                .map(|c| c.production)
        };
        assert!(!p(&[]).unwrap());
        assert_eq!(
            p(&[("NODE_ENV", "production")]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert!(p(&[
            ("NODE_ENV", "production"),
            ("DATABASE_URL", "postgresql://h/db?sslmode=require")
        ])
        .unwrap());
        assert!(!p(&[("NODE_ENV", "production"), ("AGENTIDP_PRODUCTION", "false")]).unwrap());
        // A Unix socket never leaves the host, so TLS is not demanded there.
        assert!(p(&[
            ("AGENTIDP_PRODUCTION", "1"),
            ("DATABASE_URL", "host=/var/run/postgresql dbname=agentidp")
        ])
        .unwrap());
    }

    #[test]
    fn production_demands_a_key_source_and_https_vault() {
        let base = [
            ("AGENTIDP_PRODUCTION", "true"),
            ("DATABASE_URL", "postgresql://h/db?sslmode=require"),
        ];
        assert_eq!(err(&base).var, "VAULT_ADDR");
        let e = err(&[
            &base[..],
            &[("VAULT_ADDR", "http://v:8200"), ("VAULT_TOKEN", "t")],
        ]
        .concat());
        assert_eq!(e.var, "VAULT_ADDR");
        assert!(Config::from_map(&vars(
            &[
                &base[..],
                &[("VAULT_ADDR", "https://v:8200"), ("VAULT_TOKEN", "t")]
            ]
            .concat()
        ))
        .is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1_000),
        };
        let delays: Vec<_> = (0..6).map(|a| r.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(r.delay(u32::MAX), Duration::from_millis(1_000));
    }
}
