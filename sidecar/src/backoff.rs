//! Exponential backoff with jitter between attempts to reach Vault (key loads and token
//! renewals).
//!
//! Without jitter every replica that saw the same outage retries at the same moments, so a Vault
//! coming back meets all of them at once, again and again. backon's exponential backoff adds a
//! random part to each delay, so the replicas drift apart.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// `VAULT_RETRY_INITIAL_MS` and `VAULT_RETRY_MAX_MS`: the delays double from `initial`, each
/// stretched by a random part of up to itself, and never exceed `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

/// Doublings after which any delay is at the cap (2^64 times a nanosecond exceeds every
/// `Duration` the settings can hold).
const MAX_DOUBLINGS: u32 = 64;

impl RetryPolicy {
    /// Where the doubling stops: half of `max`, so that the jitter (up to the delay again) still
    /// fits under `max` and replicas at the cap spread over `max / 2 .. max` instead of all
    /// waiting exactly `max`. Never below `initial`.
    fn cap(&self) -> Duration {
        (self.max / 2).max(self.initial)
    }

    fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(self.initial)
            .with_max_delay(self.cap())
            .with_jitter()
            .without_max_times()
    }

    /// Delay before retry number `attempt` (0-based): `d * (1 + r)` with `d` = `initial * 2^attempt`
    /// capped at `max / 2` and `r` uniformly random in `[0, 1)`, at most `max`. So it lies in
    /// `[d, 2d)`; two replicas on the same attempt wait differently.
    ///
    /// Each call draws afresh (backon's delays are independent draws around a deterministic
    /// exponential), so a caller needs to keep only the attempt count.
    pub fn delay(&self, attempt: u32) -> Duration {
        let steps = usize::try_from(attempt.min(MAX_DOUBLINGS)).unwrap_or(0);
        self.builder()
            .build()
            .nth(steps)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    /// backon computes in f32 seconds, so a bound may be missed by float rounding.
    const SLACK: Duration = Duration::from_micros(10);

    #[test]
    fn delays_double_within_their_jittered_bounds_and_never_pass_the_cap() {
        let r = policy(100, 1_000);
        // The un-jittered base: doubles from 100 ms to half the cap.
        let bases = [100, 200, 400, 500, 500, 500];
        for _ in 0..200 {
            for (attempt, base) in (0..).zip(bases) {
                let base = Duration::from_millis(base);
                let d = r.delay(attempt);
                assert!(d + SLACK >= base, "attempt {attempt}: {d:?} < {base:?}");
                assert!(
                    d <= (base * 2 + SLACK).min(r.max),
                    "attempt {attempt}: {d:?}"
                );
            }
            let last = r.delay(u32::MAX);
            assert!(last + SLACK >= r.max / 2 && last <= r.max, "{last:?}");
        }
    }

    #[test]
    fn the_configured_maximum_holds_even_when_it_is_below_twice_the_first_delay() {
        for r in [
            policy(800, 1_000),
            policy(1_000, 1_000),
            policy(5_000, 1_000),
        ] {
            for attempt in [0, 1, 2, 10, u32::MAX] {
                for _ in 0..50 {
                    let d = r.delay(attempt);
                    assert!(d <= r.max, "{r:?} attempt {attempt}: {d:?}");
                    assert!(d + SLACK >= r.initial.min(r.max), "{r:?}: {d:?}");
                }
            }
        }
    }

    #[test]
    fn two_policies_built_alike_do_not_retry_in_step() {
        let (a, b) = (policy(1_000, 60_000), policy(1_000, 60_000));
        assert_eq!(a, b);
        let sequence = |r: &RetryPolicy| (0..12).map(|n| r.delay(n)).collect::<Vec<_>>();
        let (sa, sb) = (sequence(&a), sequence(&b));
        assert_ne!(sa, sb);
        // Not a constant offset either: at the cap both still spread.
        let at_cap: std::collections::HashSet<_> = (0..20).map(|_| a.delay(40)).collect();
        assert!(at_cap.len() > 1, "{at_cap:?}");
    }
}
