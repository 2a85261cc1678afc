//! The compliance jobs and the replicas' shared state: schedules, thresholds and intervals.

use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use cron::Schedule;

use super::parse::{non_negative, positive};

/// Top of every hour; the cron crate's expressions start with a seconds field.
pub const HOURLY: &str = "0 0 * * * *";
pub const DAILY_FULL_WALK: &str = "0 30 3 * * *";
pub const EVERY_FIVE_MINUTES: &str = "0 */5 * * * *";

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Jobs (cron expressions with a seconds field, UTC)")]
pub struct JobSettings {
    /// CC7.2: incremental chain verification, from the last checkpoint.
    #[arg(long, env = "JOB_CHAIN_VERIFICATION_SCHEDULE", value_name = "CRON", default_value = HOURLY, value_parser = cron(HOURLY))]
    pub job_chain_verification_schedule: Schedule,

    /// CC7.2: the full chain walk.
    #[arg(long, env = "JOB_CHAIN_FULL_WALK_SCHEDULE", value_name = "CRON", default_value = DAILY_FULL_WALK, value_parser = cron(DAILY_FULL_WALK))]
    pub job_chain_full_walk_schedule: Schedule,

    /// CC9.2 secrets rotation.
    #[arg(long, env = "JOB_SECRETS_ROTATION_SCHEDULE", value_name = "CRON", default_value = HOURLY, value_parser = cron(HOURLY))]
    pub job_secrets_rotation_schedule: Schedule,

    /// CC6.1 encryption at rest (also re-evaluated whenever the key's state changes).
    #[arg(long, env = "JOB_ENCRYPTION_AT_REST_SCHEDULE", value_name = "CRON", default_value = HOURLY, value_parser = cron(HOURLY))]
    pub job_encryption_at_rest_schedule: Schedule,

    /// CC6.7 TLS enforcement.
    #[arg(long, env = "JOB_TLS_ENFORCEMENT_SCHEDULE", value_name = "CRON", default_value = HOURLY, value_parser = cron(HOURLY))]
    pub job_tls_enforcement_schedule: Schedule,

    /// CC7.1 webhook dead letters.
    #[arg(long, env = "JOB_WEBHOOK_DEAD_LETTERS_SCHEDULE", value_name = "CRON", default_value = HOURLY, value_parser = cron(HOURLY))]
    pub job_webhook_dead_letters_schedule: Schedule,

    /// Re-reading the key (every replica).
    #[arg(long, env = "KEY_REFRESH_SCHEDULE", value_name = "CRON", default_value = EVERY_FIVE_MINUTES, value_parser = cron(EVERY_FIVE_MINUTES))]
    pub key_refresh_schedule: Schedule,

    /// Window, in days, of agentidp_credentials_expiring_soon (and of the _total counter of credentials entering it).
    #[arg(long, env = "CREDENTIAL_EXPIRY_WARNING_DAYS", value_name = "DAYS", default_value_t = 7, value_parser = positive::<u32>)]
    pub credential_expiry_warning_days: u32,

    /// CC7.1 passes while unresolved dead letters are at most this many.
    #[arg(long, env = "WEBHOOK_DEAD_LETTER_THRESHOLD", value_name = "N", default_value_t = 100, value_parser = non_negative::<i64>)]
    pub webhook_dead_letter_threshold: i64,

    /// How often, in seconds, each replica re-reads agentidp.control_status into memory.
    #[arg(long, env = "CONTROLS_REFRESH_SECONDS", value_name = "SECONDS", default_value_t = 5, value_parser = positive::<u64>)]
    pub controls_refresh_seconds: u64,

    /// How often, in seconds, followers try for the job lock (and the leader checks its lock
    /// session).
    #[arg(long, env = "LEADER_RETRY_SECONDS", value_name = "SECONDS", default_value_t = 15, value_parser = positive::<u64>)]
    pub leader_retry_seconds: u64,
}

/// A cron expression; the error shows `default` as an example of the expected form.
fn cron(
    default: &'static str,
) -> impl Fn(&str) -> Result<Schedule, String> + Clone + Send + Sync + 'static {
    move |expr| {
        Schedule::from_str(expr).map_err(|e| {
            format!("expected a cron expression with a seconds field such as {default:?}, got {expr:?}: {e}")
        })
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

impl JobSettings {
    pub fn schedules(&self) -> JobSchedules {
        JobSchedules {
            chain_verification: self.job_chain_verification_schedule.clone(),
            chain_full_walk: self.job_chain_full_walk_schedule.clone(),
            secrets_rotation: self.job_secrets_rotation_schedule.clone(),
            encryption_at_rest: self.job_encryption_at_rest_schedule.clone(),
            tls_enforcement: self.job_tls_enforcement_schedule.clone(),
            webhook_dead_letters: self.job_webhook_dead_letters_schedule.clone(),
            key_refresh: self.key_refresh_schedule.clone(),
        }
    }

    pub fn controls_refresh(&self) -> Duration {
        Duration::from_secs(self.controls_refresh_seconds)
    }

    pub fn leader_retry(&self) -> Duration {
        Duration::from_secs(self.leader_retry_seconds)
    }
}
