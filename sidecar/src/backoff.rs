//! Exponential backoff between attempts to reach Vault (key loads and token renewals).

use std::time::Duration;

/// Doubles from `initial` to the cap `max`; `VAULT_RETRY_INITIAL_MS` and `VAULT_RETRY_MAX_MS`.
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

#[cfg(test)]
mod tests {
    use super::*;

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
