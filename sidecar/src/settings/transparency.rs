//! The transparency log's sealing and publishing: how often the leader seals and signs, whether
//! it waits for standbys, where signed checkpoints are published, and whether the C2SP
//! tlog-tiles endpoints are served. Who signs is `checkpoints`.

use std::path::PathBuf;
use std::time::Duration;

use agentidp_core::witness::cosignature_verifier;
use clap::Args;
use url::Url;

use super::parse::{boolean, positive};
use super::{invalid, ConfigError};

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Transparency log")]
pub struct TransparencySettings {
    /// How often, in seconds, the leader seals every chain's tree and signs its checkpoint.
    #[arg(long, env = "CHECKPOINT_INTERVAL_SECONDS", value_name = "SECONDS", default_value_t = 30, value_parser = positive::<u64>)]
    pub checkpoint_interval_seconds: u64,

    /// Sign only trees every connected streaming standby has replayed (pg_stat_replication's
    /// replay_lsn), so that a failover never loses a signed event. Needs the pg_monitor role to
    /// read the standbys' positions.
    #[arg(long, env = "CHECKPOINT_WAIT_FOR_STANDBYS", value_name = "BOOL", default_value_t = true, value_parser = boolean, action = clap::ArgAction::Set)]
    pub checkpoint_wait_for_standbys: bool,

    /// Directory to publish every signed checkpoint and its tiles to, one file each, never
    /// overwritten (for a WORM store through a sync agent). Unset: not published to a directory.
    #[arg(long, env = "CHECKPOINT_DIRECTORY", value_name = "DIR")]
    pub checkpoint_directory: Option<PathBuf>,

    /// C2SP tlog-witnesses to submit every signed checkpoint to, comma-separated, each as its
    /// base URL and its verifier key (cosignature/v1), separated by a space:
    /// "https://w.example/ w.example+1a2b3c4d+BASE64". Unset: no witness.
    #[arg(long, env = "CHECKPOINT_WITNESSES", value_name = "URL VKEY,...")]
    pub checkpoint_witnesses: Option<String>,

    /// Seconds to wait for a witness's answer. A witness that is down delays only its cosignature.
    #[arg(long, env = "CHECKPOINT_WITNESS_TIMEOUT_SECONDS", value_name = "SECONDS", default_value_t = 10, value_parser = positive::<u64>)]
    pub checkpoint_witness_timeout_seconds: u64,

    /// Serve the C2SP tlog-tiles static endpoints, /tlog/<chain>/checkpoint and
    /// /tlog/<chain>/tile/8/<L>/<N>[.p/<W>], so that off-the-shelf clients and witnesses can
    /// follow each chain's log.
    #[arg(long, env = "TLOG_TILES_ENABLED", value_name = "BOOL", default_value_t = false, value_parser = boolean, action = clap::ArgAction::Set)]
    pub tlog_tiles_enabled: bool,
}

/// A witness: where it listens and the key its cosignatures verify with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessConfig {
    /// The name in its verifier key, which labels its metrics.
    pub name: String,
    pub url: Url,
    pub vkey: String,
}

#[derive(Clone, Debug)]
pub struct TransparencyConfig {
    pub interval: Duration,
    pub wait_for_standbys: bool,
    pub directory: Option<PathBuf>,
    pub witnesses: Vec<WitnessConfig>,
    pub witness_timeout: Duration,
    pub tlog_tiles: bool,
}

impl TransparencySettings {
    pub fn resolve(&self) -> Result<TransparencyConfig, ConfigError> {
        Ok(TransparencyConfig {
            interval: Duration::from_secs(self.checkpoint_interval_seconds),
            wait_for_standbys: self.checkpoint_wait_for_standbys,
            directory: self.checkpoint_directory.clone(),
            witnesses: self
                .checkpoint_witnesses
                .as_deref()
                .map(witnesses)
                .transpose()?
                .unwrap_or_default(),
            witness_timeout: Duration::from_secs(self.checkpoint_witness_timeout_seconds),
            tlog_tiles: self.tlog_tiles_enabled,
        })
    }
}

fn witnesses(list: &str) -> Result<Vec<WitnessConfig>, ConfigError> {
    const VAR: &str = "CHECKPOINT_WITNESSES";
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let mut parts = entry.split_whitespace();
            let (Some(url), Some(vkey), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(invalid(
                    VAR,
                    format!("expected \"<url> <verifier key>\", got {entry:?}"),
                ));
            };
            let mut url = Url::parse(url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| invalid(VAR, format!("{url:?} is not an http(s) URL")))?;
            // add-checkpoint is joined onto the base: without the slash, its last segment would
            // be replaced.
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            cosignature_verifier(vkey).map_err(|e| {
                invalid(VAR, format!("{vkey:?} is not a witness verifier key: {e}"))
            })?;
            let name = vkey.split('+').next().unwrap_or_default().to_owned();
            Ok(WitnessConfig {
                name,
                url,
                vkey: vkey.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use agentidp_core::witness::witness_verifier_key;
    use ed25519_dalek::SigningKey;

    #[test]
    fn witnesses_are_a_url_and_a_cosignature_key_each() {
        let vkey = witness_verifier_key(
            "w.example",
            &SigningKey::from_bytes(&[3; 32]).verifying_key(),
        )
        .unwrap();
        let list = witnesses(&format!(
            "https://w.example/base {vkey}, http://127.0.0.1:3941/ {vkey}"
        ))
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "w.example");
        assert_eq!(list[0].url.as_str(), "https://w.example/base/");
        assert_eq!(
            list[1].url.join("add-checkpoint").unwrap().as_str(),
            "http://127.0.0.1:3941/add-checkpoint"
        );
        assert!(witnesses("https://w.example/").is_err(), "no key");
        assert!(witnesses(&format!("ftp://w.example/ {vkey}")).is_err());
        let log_key = agentidp_core::checkpoint::verifier_key(
            "log.example",
            &SigningKey::from_bytes(&[4; 32]).verifying_key(),
        )
        .unwrap();
        assert!(
            witnesses(&format!("https://w.example/ {log_key}")).is_err(),
            "a log's key is not a witness's"
        );
        assert_eq!(witnesses(" , ").unwrap(), vec![]);
    }
}
