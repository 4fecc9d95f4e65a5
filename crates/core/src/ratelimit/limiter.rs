//! [`RateLimiter`]: the decision for one request, from this instance's memory of recent keys
//! or from one conditional write to DynamoDB (the module docs of [`super`] explain both).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{debug, warn};

use super::cache::RecentKeys;
use super::gcra::{Bucket, Step, step};
use super::store::{Answer, Fault, Store};
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

/// One request's question to the limiter.
#[derive(Debug)]
struct Ask {
    pk: String,
    policy: Policy,
    now: u64,
    units: u32,
}

impl Ask {
    fn decision(
        &self,
        outcome: Outcome,
        basis: Basis,
        remaining: Option<u32>,
        wait_ms: Option<u64>,
    ) -> Decision {
        Decision {
            outcome,
            basis,
            policy: self.policy,
            cost: self.units,
            remaining,
            wait_ms,
        }
    }

    /// Over the limit; admissible at `admissible_at` with `remaining` units left.
    fn refusal(
        &self,
        outcome: Outcome,
        admissible_at: u64,
        remaining: u32,
        basis: Basis,
    ) -> Decision {
        self.decision(
            outcome,
            basis,
            Some(remaining),
            Some(admissible_at.saturating_sub(self.now)),
        )
    }
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
        let units = cost.max(1);
        let ask = Ask {
            pk: format!("{}#{key}", group.name()),
            policy: self.config.policy(group),
            now: self.clock.now_ms(),
            units,
        };
        let decision = self.decide(&ask).await;
        self.record(&decision, group, key);
        decision
    }

    /// From memory if it already settles the request, else from DynamoDB within the deadline.
    async fn decide(&self, ask: &Ask) -> Decision {
        let rate = ask.policy.rate();
        if !rate.fits_at_all(ask.units) {
            return ask.decision(self.refused(), Basis::CostExceedsBurst, None, None);
        }
        let known = self.recent.get(&ask.pk, ask.now);
        if let Some(known) = known {
            if ask.now < known.blocked_until {
                return ask.refusal(self.refused(), known.blocked_until, 0, Basis::Recent);
            }
            if let Step::Refuse { tat, admissible_at } = step(
                rate,
                Bucket::at(Some(known.tat), ask.now),
                ask.now,
                ask.units,
            ) {
                let remaining = rate.remaining(tat, ask.now);
                return ask.refusal(self.refused(), admissible_at, remaining, Basis::Recent);
            }
        }
        let guess = known.map_or(Bucket::Drained, |known| {
            Bucket::at(Some(known.tat), ask.now)
        });
        let deadline = self.config.dynamo.operation_timeout;
        match tokio::time::timeout(deadline, self.converse(ask, guess)).await {
            Ok(decision) => decision,
            Err(_elapsed) => {
                warn!(
                    pk = ask.pk,
                    deadline_ms = deadline.as_millis(),
                    "rate limit decision ran out of time"
                );
                self.fault(ask, Fault::Timeout)
            }
        }
    }

    /// The conditional-write conversation with DynamoDB (see the module docs).
    async fn converse(&self, ask: &Ask, guess: Bucket) -> Decision {
        let (pk, now, units) = (ask.pk.as_str(), ask.now, ask.units);
        let rate = ask.policy.rate();
        let capacity_end = now.saturating_add(rate.capacity());
        let mut bucket = guess;
        for _ in 0..MAX_WRITES {
            let answer = match step(rate, bucket, now, units) {
                Step::Fresh { tat } => {
                    self.counters.store_writes.fetch_add(1, Ordering::Relaxed);
                    self.store.fresh(pk, tat, now).await
                }
                Step::Extend { inc, allow_at } => {
                    self.counters.store_writes.fetch_add(1, Ordering::Relaxed);
                    self.store
                        .extend(pk, (inc, allow_at), now, capacity_end)
                        .await
                }
                Step::Refuse { tat, admissible_at } => {
                    self.recent.saw_tat(pk, tat, now);
                    let remaining = rate.remaining(tat, now);
                    return ask.refusal(self.refused(), admissible_at, remaining, Basis::Store);
                }
            };
            match answer {
                Answer::Written { tat } => {
                    // DynamoDB returns the new tat (UPDATED_NEW); should it not, `now + n·T`
                    // is a lower bound, which is what the memory needs.
                    let tat = tat.unwrap_or_else(|| now.saturating_add(rate.cost(units)));
                    self.recent.saw_tat(pk, tat, now);
                    let wait = rate.admissible_at(tat, now, 1) - now;
                    let remaining = rate.remaining(tat, now);
                    return ask.decision(
                        Outcome::Admitted,
                        Basis::Store,
                        Some(remaining),
                        Some(wait),
                    );
                }
                Answer::ConditionFailed(observed) => bucket = observed,
                Answer::Malformed => {
                    warn!(pk, "rate limit item is malformed; neither write can apply");
                    return self.fault(ask, Fault::MalformedItem);
                }
                Answer::Throttled => {
                    let until = now.saturating_add(THROTTLED_RETRY_MS);
                    self.recent.block(pk, until, now);
                    return ask.refusal(self.refused(), until, 0, Basis::Throttled);
                }
                Answer::Fault(fault) => return self.fault(ask, fault),
            }
        }
        warn!(
            pk,
            writes = MAX_WRITES,
            "rate limit item kept changing under the limiter"
        );
        self.fault(ask, Fault::Contention)
    }

    /// The outcome of a request over its limit: refused, or only reported in shadow mode.
    fn refused(&self) -> Outcome {
        match self.config.mode {
            Mode::Enforce => Outcome::Refused,
            Mode::Shadow => Outcome::ShadowRefused,
        }
    }

    /// The fail policy's answer when DynamoDB could not be asked (shadow mode always serves).
    fn fault(&self, ask: &Ask, fault: Fault) -> Decision {
        let outcome = match (self.config.mode, self.config.fail_policy) {
            (Mode::Enforce, FailPolicy::FailClosed) => Outcome::Unavailable,
            _ => Outcome::FailedOpen,
        };
        ask.decision(outcome, Basis::Fault(fault.as_str()), None, None)
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
            _ => debug!(
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
