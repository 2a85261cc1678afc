//! Start-up settings, declared once with clap: each with its environment variable, default and
//! parser, in the file of its concern (`database`, `http`, `mode`, `vault`, `jwt`, `jobs`,
//! `checkpoints`, `transparency`).
//! `agentidp-sidecar --help` lists them all; `sidecar/README.md`'s table lists the same ones (a
//! test here checks that).
//!
//! The environment is the usual source; a flag on the command line (`--port 3001`) wins over its
//! variable. Unset and empty (or blank) are the same: container platforms often render an unset
//! value as `""`. So values are taken from the environment here, trimmed, blanks dropped, and
//! given to clap as flags; clap's own reading of the variables is used only to document them.
//!
//! Every setting is parsed and checked before anything starts, so a typo stops the process with a
//! message naming the variable instead of surfacing hours later in a job. Messages never quote the
//! value of a secret (`VAULT_TOKEN`, `JWT_HS256_SECRET`, the database password), and the secrets
//! are held in `secrecy` types, whose `Debug` prints no value.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Command, CommandFactory, FromArgMatches, Parser};

pub mod checkpoints;
pub mod database;
pub mod http;
pub mod jobs;
pub mod jwt;
pub mod mode;
mod parse;
pub mod transparency;
pub mod vault;

pub use crate::backoff::RetryPolicy;
pub use checkpoints::{
    CheckpointConfig, CheckpointSettings, CheckpointSignerConfig, KvSignerConfig, SignerKind,
    TransitSignerConfig,
};
pub use database::DatabaseSettings;
pub use http::{HttpSettings, DEFAULT_PORT};
pub use jobs::{JobSchedules, JobSettings, DAILY_FULL_WALK, EVERY_FIVE_MINUTES, HOURLY};
pub use jwt::{JwtConfig, JwtKey, JwtSettings};
pub use mode::ModeSettings;
pub use transparency::{TransparencyConfig, TransparencySettings, WitnessConfig};
pub use vault::{
    KeySourceConfig, KeySourceSettings, VaultConfig, DEFAULT_OLD_KEYS_VAULT_FIELD,
    DEFAULT_VAULT_FIELD, DEFAULT_VAULT_PATH,
};

/// Every setting, as read; [`Settings::resolve`] checks the combinations and builds [`Config`].
#[derive(Parser, Clone, Debug)]
#[command(
    name = "agentidp-sidecar",
    version,
    about = "Loads the pg_agentidp encryption key from Vault into database sessions, runs the SOC 2 compliance jobs and serves the compliance REST API and Prometheus metrics.",
    after_help = "Every setting is read from its environment variable; a flag on the command line wins. Unset and empty are the same. A bad setting stops start-up with exit code 2 and a message naming the variable.",
    args_override_self = true
)]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub mode: ModeSettings,
    #[command(flatten)]
    pub key_source: KeySourceSettings,
    #[command(flatten)]
    pub jwt: JwtSettings,
    #[command(flatten)]
    pub jobs: JobSettings,
    #[command(flatten)]
    pub checkpoints: CheckpointSettings,
    #[command(flatten)]
    pub transparency: TransparencySettings,
}

/// A setting that stops start-up.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: String,
    pub reason: String,
}

fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_owned(),
        reason: reason.into(),
    }
}

/// Why [`from_env`] returned no [`Config`].
#[derive(Debug)]
pub enum LoadError {
    /// `--help` or `--version`: the text for stdout; the process exits 0.
    Print(String),
    /// A malformed command line (an unknown flag, say): clap's message; exit code 2.
    Usage(clap::Error),
    /// A bad setting: exit code 2.
    Invalid(ConfigError),
}

impl From<ConfigError> for LoadError {
    fn from(e: ConfigError) -> LoadError {
        LoadError::Invalid(e)
    }
}

/// The checked configuration the service runs with.
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
    pub checkpoints: CheckpointConfig,
    pub transparency: TransparencyConfig,
}

// `tokio_postgres::Config`'s `Debug` prints its options, where the key goes: left out.
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

/// Reads the process environment and command line.
pub fn from_env() -> Result<Config, LoadError> {
    // A variable or value that is not UTF-8 cannot be a setting's.
    let vars: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    Ok(Settings::parse_env(&vars, std::env::args_os())?.resolve()?)
}

impl Config {
    /// The configuration from these variables alone (no command line, no process environment).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        match Settings::parse_env(vars, ["agentidp-sidecar"]) {
            Ok(settings) => settings.resolve(),
            Err(LoadError::Invalid(e)) => Err(e),
            // Not reachable without a command line.
            Err(LoadError::Print(_) | LoadError::Usage(_)) => Err(invalid(
                "command line",
                "unexpected help, version or usage error",
            )),
        }
    }
}

impl Settings {
    /// The command as `--help` renders it: every setting with its variable, never its value.
    pub fn help_command() -> Command {
        Settings::command().mut_args(|a| a.hide_env_values(true))
    }

    /// Parses `vars` (an environment) and then `cli` (a command line, program name first).
    pub fn parse_env<I, T>(vars: &HashMap<String, String>, cli: I) -> Result<Settings, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        // Built, so that an argument renders as clap's errors name it (`--port <PORT>`).
        let mut documented = Settings::command();
        documented.build();
        // (flag, variable) of every setting.
        let names: Vec<(String, String)> = documented
            .get_arguments()
            .filter_map(|a| Some((a.to_string(), env_name(a)?.to_owned())))
            .collect();
        let mut cli: Vec<OsString> = cli.into_iter().map(Into::into).collect();
        // `-h` shows the summaries, `--help` everything, as clap does.
        let long_help = cli.iter().any(|a| a == "--help");
        let mut args: Vec<OsString> = Vec::new();
        args.push(if cli.is_empty() {
            "agentidp-sidecar".into()
        } else {
            cli.remove(0)
        });
        for arg in documented.get_arguments() {
            let (Some(var), Some(long)) = (env_name(arg), arg.get_long()) else {
                continue;
            };
            match vars.get(var).map(|v| v.trim()) {
                // `--flag=value`, so that a value starting with `-` is not taken for a flag.
                Some(value) if !value.is_empty() => args.push(format!("--{long}={value}").into()),
                _ => {}
            }
        }
        args.extend(cli);
        // The variables were read above, with blanks dropped; clap must not read them again.
        let mut command = Settings::command().mut_args(|a| a.env(None::<&'static str>));
        let matches = command
            .try_get_matches_from_mut(args)
            .map_err(|e| classify(e, &names, long_help))?;
        Settings::from_arg_matches(&matches).map_err(|e| classify(e, &names, long_help))
    }

    /// Checks the combinations (both Vault settings or neither, one JWT key, what production
    /// demands), reads the files named, and builds the configuration. The order of the checks is
    /// that of the messages operators see first: database, key source, JWT.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let production = self.mode.production();
        let database = self.database.resolve(production)?;
        let key_source = self.key_source.resolve(production)?;
        let jwt = self.jwt.resolve()?;
        let checkpoints = self.checkpoints.resolve(&key_source)?;
        let http = &self.http;
        Ok(Config {
            database,
            database_ca_file: self.database.database_ca_file.clone(),
            db_pool_size: self.database.db_pool_size,
            bind: SocketAddr::new(http.bind_address, http.port),
            production,
            public_host: http.public_host.clone(),
            trusted_proxy_hops: http.trusted_proxy_hops,
            key_source,
            vault_retry: self.key_source.retry(),
            jwt,
            audit_rate_limit_per_minute: http.rate_limit_audit_verify_per_minute,
            controls_rate_limit_per_minute: http.rate_limit_compliance_controls_per_minute,
            schedules: self.jobs.schedules(),
            credential_expiry_warning_days: self.jobs.credential_expiry_warning_days,
            dead_letter_threshold: self.jobs.webhook_dead_letter_threshold,
            controls_refresh: self.jobs.controls_refresh(),
            leader_retry: self.jobs.leader_retry(),
            shutdown_timeout: http.shutdown_timeout(),
            checkpoints,
            transparency: self.transparency.resolve()?,
        })
    }
}

fn env_name(arg: &clap::Arg) -> Option<&str> {
    arg.get_env()?.to_str()
}

/// A value a parser refused becomes a [`ConfigError`] naming the variable, with the parser's
/// reason (clap's own message would quote the value, which may be a secret).
fn classify(e: clap::Error, names: &[(String, String)], long_help: bool) -> LoadError {
    match e.kind() {
        // Rendered from the documented command: the parsed one has no variables.
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let mut help = Settings::help_command();
            let text = if long_help {
                help.render_long_help()
            } else {
                help.render_help()
            };
            LoadError::Print(text.to_string())
        }
        ErrorKind::DisplayVersion => LoadError::Print(e.render().to_string()),
        ErrorKind::ValueValidation => {
            let var = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(flag)) => names
                    .iter()
                    .find(|(f, _)| f == flag)
                    .map(|(_, var)| var.clone()),
                _ => None,
            };
            let reason = std::error::Error::source(&e).map(ToString::to_string);
            match (var, reason) {
                (Some(var), Some(reason)) => LoadError::Invalid(ConfigError { var, reason }),
                _ => LoadError::Usage(e),
            }
        }
        _ => LoadError::Usage(e),
    }
}

#[cfg(test)]
mod tests;
