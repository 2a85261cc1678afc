//! The HTTP server: where it listens, the HTTPS redirect, proxies, rate limits and shutdown.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::Args;

use super::parse::{parsed, positive};

pub const DEFAULT_PORT: u16 = 3000;

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "HTTP")]
pub struct HttpSettings {
    /// HTTP port.
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = DEFAULT_PORT, value_parser = port)]
    pub port: u16,

    /// HTTP bind address.
    #[arg(long, env = "BIND_ADDRESS", value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED), value_parser = bind_address)]
    pub bind_address: IpAddr,

    /// Host (and port) the HTTPS redirect points to; without it the request's Host is used. Set
    /// it, so a forged Host cannot poison a cached 301.
    #[arg(long, env = "PUBLIC_HOST", value_name = "HOST[:PORT]", value_parser = public_host)]
    pub public_host: Option<String>,

    /// Proxies in front of the service whose X-Forwarded-For entries are trusted for the per-IP
    /// limit. 0 uses the socket peer.
    #[arg(long, env = "TRUSTED_PROXY_HOPS", value_name = "N", default_value_t = 0, value_parser = hops)]
    pub trusted_proxy_hops: usize,

    /// Requests per minute per client_id (or sub) on /api/v1/audit/verify.
    #[arg(long, env = "RATE_LIMIT_AUDIT_VERIFY_PER_MINUTE", value_name = "N", default_value_t = 30, value_parser = positive::<u32>)]
    pub rate_limit_audit_verify_per_minute: u32,

    /// Requests per minute per client IP on /api/v1/compliance/controls.
    #[arg(long, env = "RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE", value_name = "N", default_value_t = 120, value_parser = positive::<u32>)]
    pub rate_limit_compliance_controls_per_minute: u32,

    /// Grace period, in seconds, for in-flight requests on shutdown.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", value_name = "SECONDS", default_value_t = 30, value_parser = positive::<u64>)]
    pub shutdown_timeout_seconds: u64,
}

impl HttpSettings {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_seconds)
    }
}

fn port(value: &str) -> Result<u16, String> {
    parsed(value, "a TCP port number (0-65535)")
}

fn bind_address(value: &str) -> Result<IpAddr, String> {
    parsed(value, "an IP address such as 0.0.0.0")
}

// usize has no negative values, so a parse error is all "non-negative" has to say.
fn hops(value: &str) -> Result<usize, String> {
    parsed(value, "a non-negative integer")
}

fn public_host(value: &str) -> Result<String, String> {
    match value.parse::<axum::http::uri::Authority>() {
        Ok(_) => Ok(value.to_owned()),
        Err(_) => Err(format!(
            "expected a host name with an optional port, got {value:?}"
        )),
    }
}
