//! [`RateLimiter`]: the decision for one request, from this instance's memory of recent keys
//! or from one conditional write to DynamoDB (the module docs of [`super`] explain both).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

use super::cache::RecentKeys;
use super::gcra::{Bucket, Rate, Step, step};
use super::store::{Answer, Fault, Observed, Store, Write};
use super::{
    Basis, ClientKey, Clock, Decision, FailPolicy, Group, Mode, Outcome, Policy, RateLimitConfig,
    SystemClock,
};

/// How many keys an instance remembers (a few hundred kB at most).
pub const RECENT_KEYS_CAPACITY: usize = 10_000;

/// How long a key whose item DynamoDB throttled is refused.
pub const THROTTLED_RETRY_MS: u64 = 1_000;

/// Conditional writes one decision may make (two suffice unless the item is deleted mid-way).
const MAX_WRITES: usize = 3;

/// The rate limiter of one Lambda instance. Build it once at init and share it by reference:
/// it is `Sync`, and its memory of recent keys is what keeps floods off DynamoDB.
#[derive(Debug)]
pub struct RateLimiter {
    store: Store,
    config: RateLimitConfig,
    clock: Arc<dyn Clock>,
    recent: RecentKeys,
    counters: Counters,
}

/// Decisions counted since the limiter was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub admitted: u64,
    pub refused: u64,
    pub shadow_refused: u64,
    pub failed_open: u64,
    pub unavailable: u64,
    /// Decisions taken from this instance's memory, without calling DynamoDB.
    pub answered_locally: u64,
    /// Conditional writes sent (before SDK retries).
    pub store_writes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    refused: AtomicU64,
    shadow_refused: AtomicU64,
    failed_open: AtomicU64,
    unavailable: AtomicU64,
    answered_locally: AtomicU64,
    store_writes: AtomicU64,
}

/// What the store (or the memory of it) said, before mode and fail policy apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Admitted {
        tat: u64,
    },
    Refused {
        tat: u64,
        admissible_at: u64,
        basis: Basis,
    },
    Throttled {
        until: u64,
        basis: Basis,
    },
    CostExceedsBurst,
    Fault(Fault),
}

impl RateLimiter {
    /// A limiter on the system clock.
    pub fn new(client: aws_sdk_dynamodb::Client, config: RateLimitConfig) -> Self {
        Self::with_clock(client, config, Arc::new(SystemClock))
    }

    /// A limiter on the given clock (tests, simulations, benchmarks).
    pub fn with_clock(
        client: aws_sdk_dynamodb::Client,
        config: RateLimitConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store: Store::new(client, config.table.clone()),
            config,
            clock,
            recent: RecentKeys::new(RECENT_KEYS_CAPACITY),
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Decisions counted so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            admitted: load(&c.admitted),
            refused: load(&c.refused),
            shadow_refused: load(&c.shadow_refused),
            failed_open: load(&c.failed_open),
            unavailable: load(&c.unavailable),
            answered_locally: load(&c.answered_locally),
            store_writes: load(&c.store_writes),
        }
    }

    /// Decides whether `key` may make a request of `cost` units (at least 1) in `group`.
    ///
    /// Never fails and never takes longer than the configured operation timeout: faults are
    /// decisions too ([`Outcome::FailedOpen`], [`Outcome::Unavailable`]).
    pub async fn check(&self, group: Group, key: &ClientKey, cost: u32) -> Decision {
        let policy = self.config.policy(group);
        let rate = policy.rate();
        let units = cost.max(1);
        let pk = format!("{}#{key}", group.name());
        let now = self.clock.now_ms();

        let verdict = self.verdict(&pk, rate, now, units).await;
        let decision = self.decide(verdict, policy, rate, now, units);
        self.record(&decision, group, key);
        decision
    }

    async fn verdict(&self, pk: &str, rate: Rate, now: u64, units: u32) -> Verdict {
        if !rate.fits_at_all(units) {
            return Verdict::CostExceedsBurst;
        }
        let known = self.recent.get(pk, now);
        if let Some(known) = known {
            if now < known.blocked_until {
                return Verdict::Throttled {
                    until: known.blocked_until,
                    basis: Basis::Recent,
                };
            }
            if let Step::Refuse { tat, admissible_at } =
                step(rate, Bucket::at(Some(known.tat), now), now, units)
            {
                return Verdict::Refused {
                    tat,
                    admissible_at,
                    basis: Basis::Recent,
                };
            }
        }
        let guess = known.map_or(Bucket::Drained, |known| Bucket::at(Some(known.tat), now));
        let deadline = self.config.dynamo.operation_timeout;
        match tokio::time::timeout(deadline, self.converse(pk, rate, now, units, guess)).await {
            Ok(verdict) => verdict,
            Err(_elapsed) => {
                warn!(
                    pk,
                    deadline_ms = deadline.as_millis(),
                    "rate limit decision ran out of time"
                );
                Verdict::Fault(Fault::Timeout)
            }
        }
    }

    /// The conditional-write conversation with DynamoDB (see the module docs).
    async fn converse(&self, pk: &str, rate: Rate, now: u64, units: u32, guess: Bucket) -> Verdict {
        let capacity_end = now.saturating_add(rate.capacity());
        let mut bucket = guess;
        for _ in 0..MAX_WRITES {
            let write = match step(rate, bucket, now, units) {
                Step::Fresh { tat } => Write::Fresh { tat },
                Step::Extend { inc, allow_at } => Write::Extend { inc, allow_at },
                Step::Refuse { tat, admissible_at } => {
                    self.recent.saw_tat(pk, tat, now);
                    return Verdict::Refused {
                        tat,
                        admissible_at,
                        basis: Basis::Store,
                    };
                }
            };
            self.counters.store_writes.fetch_add(1, Ordering::Relaxed);
            match self.store.write(pk, write, now, capacity_end).await {
                Answer::Written { tat } => {
                    // DynamoDB returns the new tat (UPDATED_NEW); should it not, `now + n·T`
                    // is a lower bound, which is what the memory needs.
                    let tat = tat.unwrap_or_else(|| now.saturating_add(rate.cost(units)));
                    self.recent.saw_tat(pk, tat, now);
                    return Verdict::Admitted { tat };
                }
                Answer::ConditionFailed(Observed::Bucket(observed)) => bucket = observed,
                Answer::ConditionFailed(Observed::Malformed) => {
                    warn!(pk, "rate limit item is malformed; neither write can apply");
                    return Verdict::Fault(Fault::MalformedItem);
                }
                Answer::Throttled => {
                    let until = now.saturating_add(THROTTLED_RETRY_MS);
                    self.recent.block(pk, until, now);
                    return Verdict::Throttled {
                        until,
                        basis: Basis::Throttled,
                    };
                }
                Answer::Fault(fault) => return Verdict::Fault(fault),
            }
        }
        warn!(
            pk,
            writes = MAX_WRITES,
            "rate limit item kept changing under the limiter"
        );
        Verdict::Fault(Fault::Contention)
    }

    /// Applies the mode and the fail policy, and computes what the headers report.
    fn decide(
        &self,
        verdict: Verdict,
        policy: Policy,
        rate: Rate,
        now: u64,
        units: u32,
    ) -> Decision {
        let refused = match self.config.mode {
            Mode::Enforce => Outcome::Refused,
            Mode::Shadow => Outcome::ShadowRefused,
        };
        let (outcome, basis, remaining, wait_ms) = match verdict {
            Verdict::Admitted { tat } => {
                let next = rate.admissible_at(tat, now, 1);
                (
                    Outcome::Admitted,
                    Basis::Store,
                    Some(rate.remaining(tat, now)),
                    Some(next - now),
                )
            }
            Verdict::Refused {
                tat,
                admissible_at,
                basis,
            } => (
                refused,
                basis,
                Some(rate.remaining(tat, now)),
                Some(admissible_at.saturating_sub(now)),
            ),
            Verdict::Throttled { until, basis } => {
                (refused, basis, Some(0), Some(until.saturating_sub(now)))
            }
            Verdict::CostExceedsBurst => (refused, Basis::CostExceedsBurst, None, None),
            Verdict::Fault(fault) => {
                let outcome = match (self.config.mode, self.config.fail_policy) {
                    (Mode::Enforce, FailPolicy::FailClosed) => Outcome::Unavailable,
                    _ => Outcome::FailedOpen,
                };
                (outcome, Basis::Fault(fault.as_str()), None, None)
            }
        };
        Decision {
            outcome,
            basis,
            policy,
            cost: units,
            remaining,
            wait_ms,
        }
    }

    fn record(&self, decision: &Decision, group: Group, key: &ClientKey) {
        let c = &self.counters;
        let counter = match decision.outcome {
            Outcome::Admitted => &c.admitted,
            Outcome::Refused => &c.refused,
            Outcome::ShadowRefused => &c.shadow_refused,
            Outcome::FailedOpen => &c.failed_open,
            Outcome::Unavailable => &c.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if matches!(decision.basis, Basis::Recent | Basis::CostExceedsBurst) {
            c.answered_locally.fetch_add(1, Ordering::Relaxed);
        }

        let tier = match group {
            Group::Predict(tier) => Some(tier.as_str()),
            Group::Token => None,
        };
        match decision.outcome {
            Outcome::FailedOpen | Outcome::Unavailable => warn!(
                decision = decision.as_str(),
                basis = decision.basis.as_str(),
                group = group.name(),
                tier,
                key = %key,
                cost = decision.cost,
                "rate limit store unavailable"
            ),
            _ => info!(
                decision = decision.as_str(),
                basis = decision.basis.as_str(),
                group = group.name(),
                tier,
                key = %key,
                cost = decision.cost,
                remaining = decision.remaining,
                reset = decision.reset_secs(),
                "rate limit decision"
            ),
        }
    }
}
