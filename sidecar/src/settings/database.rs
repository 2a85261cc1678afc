//! The database connection: `DATABASE_URL`, `DATABASE_CA_FILE`, `DB_POOL_SIZE`.

use std::fmt;
use std::path::PathBuf;

use clap::Args;

use super::parse::positive;
use super::{invalid, ConfigError};

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Database")]
pub struct DatabaseSettings {
    /// Required. libpq-style URL or key=value string. In production a TCP connection must use
    /// sslmode=require: the key travels in the connection's startup packet.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", value_parser = database_url)]
    pub database_url: Option<DatabaseUrl>,

    /// PEM CA bundle for the database's certificate, added to the public web roots.
    #[arg(long, env = "DATABASE_CA_FILE", value_name = "FILE")]
    pub database_ca_file: Option<PathBuf>,

    /// Pooled sessions (each carries the key).
    #[arg(long, env = "DB_POOL_SIZE", value_name = "N", default_value_t = 8, value_parser = positive::<usize>)]
    pub db_pool_size: usize,
}

/// A parsed connection string. `tokio_postgres::Config`'s own `Debug` prints its options (where
/// the sidecar later puts the key), so this one prints nothing of it.
#[derive(Clone)]
pub struct DatabaseUrl(pub tokio_postgres::Config);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

/// tokio-postgres' parse errors name the offending option, never its value (which may be the
/// password), so the value is not quoted either.
fn database_url(value: &str) -> Result<DatabaseUrl, String> {
    value
        .parse()
        .map(DatabaseUrl)
        .map_err(|e| format!("not a PostgreSQL connection string: {e}"))
}

impl DatabaseSettings {
    pub(super) fn resolve(&self, production: bool) -> Result<tokio_postgres::Config, ConfigError> {
        let Some(DatabaseUrl(config)) = &self.database_url else {
            return Err(invalid(
                "DATABASE_URL",
                "required, e.g. postgresql://agentidp@db:5432/agentidp?sslmode=require",
            ));
        };
        // The encryption key travels in the connection's startup packet; over TCP that packet is
        // only private once TLS is up, and `prefer` would silently fall back to clear text.
        let over_tcp = config
            .get_hosts()
            .iter()
            .any(|h| matches!(h, tokio_postgres::config::Host::Tcp(_)));
        if production
            && over_tcp
            && config.get_ssl_mode() != tokio_postgres::config::SslMode::Require
        {
            return Err(invalid(
                "DATABASE_URL",
                "production mode requires sslmode=require for TCP connections, because the encryption key is sent in the connection's startup options",
            ));
        }
        Ok(config.clone())
    }
}
