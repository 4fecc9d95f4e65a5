//! The per-instance penalty for sources whose requests keep being rejected.
//!
//! Rejected requests (a bad token, a bad body, an unknown path: 400, 401, 403, 404, 405, 413,
//! 415, 422) never reach the rate limiter, so they cost no DynamoDB write — and they are not
//! counted against any quota either. Without a bound, one address could send them without
//! end, each one verified, parsed and logged. So every instance counts rejections per source
//! key (an IPv4 address or an IPv6 /64) in fixed windows; once a key has had
//! `REJECTION_LIMIT` of them in the current window, the instance answers its requests with
//! 429 and `Retry-After` (the end of the window) before verifying or parsing anything.
//!
//! What this bounds, and what it does not: it makes rejected traffic as cheap as a request can
//! be and tells a misbehaving client to back off, in memory, without any I/O. It cannot give
//! back the capacity of the API Gateway throttle that every caller shares: a flood from many
//! addresses, or one larger than the throttle, is stopped only at the edge (README, "What
//! bounds what").
//!
//! The map is bounded ([`CAPACITY`] keys): when it is full, windows that have ended are
//! dropped first, then the entry whose window ends soonest. An attacker with more addresses
//! than that can push entries out, which only ever forgets a penalty, never creates one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::{self, ConfigError, Vars};
use crate::ratelimit::{ClientKey, Clock};

/// Keys an instance remembers (well under a megabyte).
pub const CAPACITY: usize = 10_000;

/// How many rejections, in which window, make a source wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PenaltyPolicy {
    pub limit: u32,
    pub window_ms: u64,
}

impl PenaltyPolicy {
    /// Reads `REJECTION_LIMIT` and `REJECTION_WINDOW_SECONDS`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let limit = vars.positive(&config::REJECTION_LIMIT)?;
        let window: u64 = vars.positive(&config::REJECTION_WINDOW_SECONDS)?;
        Ok(Self {
            limit,
            window_ms: window.saturating_mul(1_000),
        })
    }
}

/// Whether `status` is a rejection of the request as sent (counted), as opposed to an answer
/// (2xx), a refusal by the limits (429) or a fault of ours (5xx).
pub fn is_rejection(status: u16) -> bool {
    matches!(status, 400 | 401 | 403 | 404 | 405 | 413 | 415 | 422)
}

#[derive(Debug, Clone, Copy)]
struct Window {
    ends: u64,
    rejections: u32,
}

/// Rejections per source key in the current window.
pub struct Penalties {
    policy: PenaltyPolicy,
    clock: Arc<dyn Clock>,
    windows: Mutex<HashMap<ClientKey, Window>>,
}

impl std::fmt::Debug for Penalties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Penalties")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Penalties {
    pub fn new(policy: PenaltyPolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            policy,
            clock,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `key` may be served again, if it has used up its rejections.
    pub fn retry_after(&self, key: &ClientKey) -> Option<u64> {
        let now = self.clock.now_ms();
        let windows = self.lock();
        let window = windows.get(key)?;
        (window.ends > now && window.rejections >= self.policy.limit)
            .then(|| (window.ends - now).div_ceil(1_000).max(1))
    }

    /// Counts one rejection of `key`.
    pub fn record(&self, key: ClientKey) {
        let now = self.clock.now_ms();
        let mut windows = self.lock();
        if !windows.contains_key(&key) && windows.len() >= CAPACITY {
            windows.retain(|_, w| w.ends > now);
            if windows.len() >= CAPACITY
                && let Some(soonest) = windows.iter().min_by_key(|(_, w)| w.ends).map(|(k, _)| *k)
            {
                windows.remove(&soonest);
            }
        }
        let window = windows.entry(key).or_insert(Window {
            ends: 0,
            rejections: 0,
        });
        if window.ends <= now {
            *window = Window {
                ends: now.saturating_add(self.policy.window_ms),
                rejections: 0,
            };
        }
        window.rejections = window.rejections.saturating_add(1);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ClientKey, Window>> {
        // A panic while holding the lock cannot leave a map of plain integers inconsistent.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::ManualClock;

    fn penalties(limit: u32) -> (Penalties, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let policy = PenaltyPolicy {
            limit,
            window_ms: 60_000,
        };
        (Penalties::new(policy, clock.clone()), clock)
    }

    fn key(ip: &str) -> ClientKey {
        ip.parse().unwrap()
    }

    #[test]
    fn a_source_waits_once_it_has_used_up_its_rejections_and_others_do_not() {
        let (p, _) = penalties(3);
        for _ in 0..2 {
            p.record(key("203.0.113.7"));
        }
        assert_eq!(p.retry_after(&key("203.0.113.7")), None);
        p.record(key("203.0.113.7"));
        assert_eq!(p.retry_after(&key("203.0.113.7")), Some(60));
        assert_eq!(p.retry_after(&key("203.0.113.8")), None);
    }

    #[test]
    fn the_wait_ends_with_the_window() {
        let (p, clock) = penalties(1);
        p.record(key("203.0.113.7"));
        clock.advance(std::time::Duration::from_millis(59_500));
        assert_eq!(p.retry_after(&key("203.0.113.7")), Some(1));
        clock.advance(std::time::Duration::from_millis(500));
        assert_eq!(p.retry_after(&key("203.0.113.7")), None);
        p.record(key("203.0.113.7"));
        assert_eq!(p.retry_after(&key("203.0.113.7")), Some(60));
    }

    #[test]
    fn an_ipv6_source_is_its_64() {
        let (p, _) = penalties(2);
        p.record(key("2001:db8:1:2::1"));
        p.record(key("2001:db8:1:2:ffff::9"));
        assert!(p.retry_after(&key("2001:db8:1:2::77")).is_some());
        assert!(p.retry_after(&key("2001:db8:1:3::1")).is_none());
    }

    #[test]
    fn the_map_stays_bounded() {
        let (p, _) = penalties(1);
        for i in 0..(CAPACITY as u32 + 10) {
            p.record(ClientKey::from_ip(std::net::Ipv4Addr::from(i).into()));
        }
        assert!(p.lock().len() <= CAPACITY);
    }

    #[test]
    fn only_rejections_of_the_request_count() {
        for status in [400, 401, 403, 404, 405, 413, 415, 422] {
            assert!(is_rejection(status));
        }
        for status in [200, 204, 429, 500, 503] {
            assert!(!is_rejection(status));
        }
    }
}
