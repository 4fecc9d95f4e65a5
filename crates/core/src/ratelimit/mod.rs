//! Per-IP rate limiting: GCRA with its state in DynamoDB, one conditional write per admission.
//!
//! Layout: [`key`](client_key) says who is asking, [`config`](RateLimitConfig) what they may
//! do, `gcra` is the arithmetic, `store` the two conditional writes, `cache` what this instance
//! remembers, [`Decision`] what the response says. [`RateLimiter::check`] ties them together.
//!
//! # The algorithm
//!
//! GCRA (the generic cell rate algorithm) keeps one instant per key, the *theoretical arrival
//! time* `tat`: when the key's bucket will be empty again, every admitted request paid for at
//! the sustained rate. A policy of `quota` per `window` with burst `b` gives
//!
//! ```text
//! T = window / quota    the emission interval: what one unit costs, in ms
//! L = b × T             the capacity: how far ahead of now a full bucket's tat runs
//! ```
//!
//! A request of cost `n` arriving at `now` is admitted iff `max(tat, now) + n·T <= now + L`,
//! and then `tat := max(tat, now) + n·T`. Otherwise it is refused, `tat` is untouched (a batch
//! that does not fit is refused whole and costs nothing), and it would be admitted at
//! `tat + n·T − L`: that instant, rounded *up* to whole seconds, is its `Retry-After`.
//!
//! Time is integer milliseconds and `T` must be a whole number of them ([`Policy::new`]), so
//! there is no rounding anywhere: over any span, a greedy client gets exactly
//! `b + span / T` requests. One item holds one number; an idle key costs nothing but storage,
//! and TTL removes it.
//!
//! Timeline of `predict` (60/min: T = 1 s; burst 3 for brevity: L = 3 s), requests of cost 1:
//!
//! ```text
//!  now (s)    0.0      0.0      0.0      0.0      0.5      2.0      9.0
//!  request    a        b        c        d        e        f        g
//!  tat before -        1.0      2.0      3.0      3.0      3.0      4.0 (< now: drained)
//!  test       1 <= 3   2 <= 3   3 <= 3   4 <= 3   4 <= 3.5 4 <= 5   10 <= 12
//!  tat after  1.0      2.0      3.0      3.0      3.0      4.0      10.0
//!  status     200      200      200      429      429      200      200
//!  RateLimit  r=2;t=0  r=1;t=0  r=0;t=1  r=0;t=1  r=0;t=1  r=1;t=0  r=2;t=0
//!  d and e fit again at 1.0: Retry-After is 1 for both (e: 0.5 s, rounded up)
//! ```
//!
//! # One conditional write per admission
//!
//! The new `tat` depends on the old one through a `max`, which DynamoDB expressions cannot
//! compute. But each side of the `max` is a single write whose condition is exactly the state
//! in which that side applies, so the read-compute-write is one atomic `UpdateItem` either way:
//!
//! ```text
//!  FRESH   SET tat = :tat, expires_at = :expires_at            (:tat = now + n·T)
//!          IF  attribute_not_exists(tat)      ABSENT   first request, or TTL deleted it
//!           OR tat <= :now                    DRAINED  no debt: the same state as absent
//!           OR expires_at < :now_s            EXPIRED  TTL lags by days; past its lifetime
//!                                                      the item counts as absent, whatever
//!                                                      its tat says
//!
//!  EXTEND  SET tat = tat + :inc, expires_at = :expires_at      (:inc = n·T)
//!          IF  tat > :now                     BUSY     debt to extend; without it, tat + inc
//!                                                      on a drained bucket would hand out the
//!                                                      idle time as extra capacity
//!          AND tat <= :allow_at               FITS     the admission test: tat + n·T <= now + L
//!          AND expires_at >= :now_s           LIVE     never extend an expired item's tat
//! ```
//!
//! Every state of an item satisfies exactly one of: FRESH's condition, EXTEND's, or "busy but
//! does not fit" — a refusal. (An item this module could not have written, such as a text
//! `tat`, satisfies none and is reported as a fault, never guessed at.) DynamoDB serializes writes to an item, so the admitted writes
//! form one sequential GCRA run however many instances race: **no interleaving admits more
//! than the policy allows**, and the writes' conditions are the only arbiter.
//!
//! Which write to try first is a guess: FRESH for a key this instance knows nothing about
//! (first requests and sporadic clients), EXTEND when it remembers the key as busy. A wrong
//! guess fails its condition, and `ReturnValuesOnConditionCheckFailure = ALL_OLD` returns the
//! item *as the condition saw it* — no second read. From that item the limiter either refuses
//! (the data says the request does not fit) or makes the other write. EXTEND's guard is a
//! range, not a compare-and-set on the observed `tat`: a concurrent admission that leaves
//! room does not fail it, so under contention it fails only when the request truly no longer
//! fits — and then the returned item is the refusal's evidence. A decision therefore makes at
//! most two writes; the loop allows three, and reports contention beyond that as a fault.
//!
//! ```text
//!            ┌──────────── FRESH ok ───────────────────────────► admitted (1 write)
//!  request ──┤
//!  (guess)   └─ FRESH fails, ALL_OLD busy ─┬─ fits ─ EXTEND ok ─► admitted (2 writes)
//!                                          │         EXTEND fails, ALL_OLD ─► refused (2)
//!                                          └─ does not fit ─────────────────► refused (1)
//!
//!  guessing EXTEND is the mirror image: if it fails, ALL_OLD says drained (→ FRESH) or
//!  "does not fit" (→ refused, 1 write)
//! ```
//!
//! `expires_at` (epoch seconds, the table's TTL attribute) is set by every write to the second
//! after the bucket can last have drained, plus a minute of grace. So for items written here
//! EXPIRED implies DRAINED — the fragment never changes a decision about a live bucket, even
//! with some clock skew — and it exists so that an item whose `tat` cannot be trusted (written
//! under an old policy, by hand, by an older version) behaves exactly like no item.
//!
//! # Cost per decision
//!
//! | situation                                                   | DynamoDB writes          |
//! |-------------------------------------------------------------|--------------------------|
//! | admitted, guess right (new, drained, or remembered busy key)| 1                        |
//! | admitted, guess wrong (busy key new to this instance)       | 1 failed + 1             |
//! | refused by DynamoDB's data                                  | 1 failed (2 if raced)    |
//! | refused from this instance's memory                         | 0                        |
//! | cost larger than the burst (can never fit)                  | 0                        |
//!
//! A failed conditional write is billed like a write. The memory (`cache`) keeps a lower
//! bound of each recently seen key's `tat`; while an item lives its `tat` only grows, so a
//! request the bound refuses would be refused by DynamoDB too. A flood from one address is
//! answered from memory until the instant its next request could fit, instead of becoming a
//! flood of writes (each billed, one item tops out near 1,000 writes/s).
//!
//! `Retry-After` is the admission instant implied by the state the decision saw: from
//! DynamoDB's returned item, or from this instance's memory of it. A retry at that instant is
//! admitted unless other requests of the same key (one NAT, or other instances since this one
//! last looked) took the freed capacity first — in which case it is refused again with a
//! fresh, later `Retry-After`. It is never early with respect to that state: it is rounded up.
//!
//! # Faults
//!
//! - Throttling of the key's item (`ProvisionedThroughputExceededException`,
//!   `ThrottlingException`, `RequestLimitExceeded`) means the key is written far too often:
//!   refused for a second, remembered locally for that second.
//! - A timeout, a dispatch failure, another service error: the fail policy decides —
//!   `fail-closed` answers 503 with `Retry-After`, `fail-open` admits and logs a warning.
//!   The SDK's attempt/operation timeouts and bounded retries ([`DynamoSettings`]) apply to
//!   each call, and the whole decision is bounded by the operation timeout as well.
//!   A write that timed out may still have landed; its retry then finds the key busier and
//!   charges it again. Faults can under-admit, never over-admit.
//! - Shadow mode decides, reports, logs and counts exactly like enforce mode, but serves the
//!   request; a store fault in shadow mode fails open.
//!
//! Every decision is logged (`decision`, `basis`, `group`, `tier`, `key`, `cost`,
//! `remaining`, `reset`) and counted ([`RateLimiter::stats`]).
//!
//! # Keys and buckets
//!
//! The key is the source IP from API Gateway's request context, IPv6 grouped by /64
//! ([`client_key`]). An item's `pk` is `<group>#<key>`: `predict#203.0.113.7`,
//! `token#2001:db8:1:2::/64`. Tiers share their group's bucket: premium multiplies quota and
//! burst alike, so `L` is the same and each premium request just costs less of it.

mod cache;
mod clock;
mod config;
mod decision;
mod gcra;
mod key;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    DynamoSettings, FailPolicy, Group, Mode, Policy, PolicyError, RateLimitConfig, Tier,
    UnknownValue, check_table, dynamodb_client,
};
pub use decision::{
    Basis, Decision, Outcome, RATELIMIT, RATELIMIT_POLICY, UNAVAILABLE_RETRY_AFTER_SECS,
};
pub use key::{ClientKey, client_key};

use cache::RecentKeys;
use gcra::{Bucket, Rate, Step, step};
use store::{Answer, Fault, Observed, Store, Write};

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
