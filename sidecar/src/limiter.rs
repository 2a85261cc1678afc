//! Fixed-window rate limiters: one kept in this replica's memory, one whose windows live in
//! PostgreSQL (`agentidp.api_rate_windows`) and hold across replicas. The middleware in
//! `middleware/rate_limit.rs` applies them; the state holds them.
//!
//! Why not `governor`: its GCRA has no window, so `X-RateLimit-Remaining` and `X-RateLimit-Reset`
//! ("when the window resets") would have to be synthesised and would not match what the limiter
//! then does. A per-key fixed window starting at the key's first request makes all three headers
//! exact. The price is the classic boundary burst (up to twice the limit across two adjacent
//! windows), acceptable for limits meant to stop runaway pollers.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::db::{ApiBackend, RateWindow};

const WINDOW_MS: u64 = 60_000;
const WINDOW: Duration = Duration::from_millis(WINDOW_MS);
/// The audit route's name in `agentidp.api_rate_windows`.
pub const AUDIT_VERIFY_ROUTE: &str = "/api/v1/audit/verify";

pub struct FixedWindowLimiter<K> {
    limit: u32,
    state: Mutex<Windows<K>>,
}

struct Windows<K> {
    by_key: HashMap<K, Window>,
    last_prune_ms: u64,
}

#[derive(Clone, Copy)]
struct Window {
    start_ms: u64,
    count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the key's window ends, rounded up.
    pub reset: u64,
}

impl<K: Hash + Eq + Clone> FixedWindowLimiter<K> {
    pub fn per_minute(limit: u32) -> FixedWindowLimiter<K> {
        FixedWindowLimiter {
            limit,
            state: Mutex::new(Windows {
                by_key: HashMap::new(),
                last_prune_ms: 0,
            }),
        }
    }

    pub fn check(&self, key: &K) -> Decision {
        self.check_at(key, now_ms())
    }

    fn check_at(&self, key: &K, now_ms: u64) -> Decision {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Expired windows are dropped once per window length, so memory follows the number of
        // clients active in the last minute, not every client ever seen.
        if now_ms.saturating_sub(state.last_prune_ms) >= WINDOW_MS {
            state
                .by_key
                .retain(|_, w| now_ms < w.start_ms.saturating_add(WINDOW_MS));
            state.last_prune_ms = now_ms;
        }
        let window = match state.by_key.get_mut(key) {
            Some(w) if now_ms < w.start_ms.saturating_add(WINDOW_MS) => w,
            _ => state
                .by_key
                .entry(key.to_owned())
                .insert_entry(Window {
                    start_ms: now_ms,
                    count: 0,
                })
                .into_mut(),
        };
        let allowed = window.count < self.limit;
        if allowed {
            window.count += 1;
        }
        Decision {
            allowed,
            limit: self.limit,
            remaining: self.limit - window.count,
            reset: (window.start_ms + WINDOW_MS).div_ceil(1000),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fixed window per key whose count lives in the database ([`ApiBackend::hit_rate_window`]),
/// shared by every replica of the sidecar.
pub struct SharedWindowLimiter {
    route: &'static str,
    limit: u32,
    window: Duration,
    /// When this replica next deletes the windows that have ended (Unix ms).
    next_prune_ms: AtomicU64,
}

impl SharedWindowLimiter {
    /// `route` names the route's windows in the table: replicas limiting the same route share
    /// them.
    pub fn per_minute(route: &'static str, limit: u32) -> SharedWindowLimiter {
        SharedWindowLimiter::new(route, limit, WINDOW)
    }

    pub fn new(route: &'static str, limit: u32, window: Duration) -> SharedWindowLimiter {
        SharedWindowLimiter {
            route,
            limit,
            window,
            next_prune_ms: AtomicU64::new(0),
        }
    }

    /// Counts one request of `key`. Once a window, this replica also deletes the windows that
    /// have ended, in the background, so the table holds the clients of the last window rather
    /// than every client ever seen; a replica-local schedule needs no leader, and N replicas
    /// delete N times a window, each time a handful of rows.
    pub async fn check(
        &self,
        backend: &Arc<dyn ApiBackend>,
        key: &str,
    ) -> Result<Decision, crate::db::DbError> {
        let window = backend
            .hit_rate_window(self.route, key, self.limit, self.window)
            .await?;
        let now = now_ms();
        let due = self.next_prune_ms.load(Ordering::Relaxed);
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        if now >= due
            && self
                .next_prune_ms
                .compare_exchange(
                    due,
                    now.saturating_add(window_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let backend = Arc::clone(backend);
            tokio::spawn(async move {
                if let Err(e) = backend.prune_rate_windows().await {
                    tracing::warn!(error = %e, "cannot delete the rate-limit windows that have ended");
                }
            });
        }
        Ok(self.decide(window))
    }

    fn decide(&self, window: RateWindow) -> Decision {
        let ends_ms = u64::try_from(window.ends_at.timestamp_millis()).unwrap_or(0);
        Decision {
            allowed: window.count <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(window.count),
            reset: ends_ms.div_ceil(1000),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_down_then_refuses_until_the_window_ends() {
        let l = FixedWindowLimiter::<&str>::per_minute(2);
        let t0 = 1_743_155_340_500;
        let d = l.check_at(&"a", t0);
        assert_eq!(
            d,
            Decision {
                allowed: true,
                limit: 2,
                remaining: 1,
                reset: 1_743_155_401
            }
        );
        assert!(l.check_at(&"a", t0 + 1).allowed);
        let refused = l.check_at(&"a", t0 + 59_999);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset, 1_743_155_401);
        // Other keys are independent.
        assert!(l.check_at(&"b", t0 + 2).allowed);
        let fresh = l.check_at(&"a", t0 + 60_000);
        assert!(fresh.allowed);
        assert_eq!(fresh.remaining, 1);
    }

    #[test]
    fn a_shared_window_is_read_like_a_local_one() {
        let l = SharedWindowLimiter::per_minute(AUDIT_VERIFY_ROUTE, 2);
        let ends_at = chrono::DateTime::from_timestamp_millis(1_743_155_400_500).unwrap();
        let at = |count| l.decide(RateWindow { count, ends_at });
        assert_eq!(
            at(1),
            Decision {
                allowed: true,
                limit: 2,
                remaining: 1,
                reset: 1_743_155_401
            }
        );
        assert_eq!((at(2).allowed, at(2).remaining), (true, 0));
        assert_eq!((at(3).allowed, at(3).remaining), (false, 0));
        assert_eq!(at(3).reset, 1_743_155_401);
    }

    #[test]
    fn idle_keys_are_pruned() {
        let l = FixedWindowLimiter::<String>::per_minute(5);
        for i in 0..100 {
            l.check_at(&format!("k{i}"), 1_000);
        }
        l.check_at(&"late".to_owned(), 200_000);
        assert_eq!(l.state.lock().unwrap().by_key.len(), 1);
    }
}
