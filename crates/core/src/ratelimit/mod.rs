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
//!   The SDK's attempt/operation timeouts and bounded retries ([`DynamoSettings`](crate::aws::DynamoSettings)) apply to
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

#[cfg(feature = "aws")]
mod cache;
mod clock;
mod config;
mod decision;
// Without `aws` only the rate arithmetic the policies need is used.
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
mod gcra;
mod key;
#[cfg(feature = "aws")]
mod limiter;
#[cfg(feature = "aws")]
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{FailPolicy, Group, Mode, Policy, PolicyError, RateLimitConfig};
pub use decision::{
    Basis, Decision, Outcome, RATELIMIT, RATELIMIT_POLICY, UNAVAILABLE_RETRY_AFTER_SECS,
};
pub use key::{ClientKey, client_key};

#[cfg(feature = "aws")]
pub use limiter::{RECENT_KEYS_CAPACITY, RateLimiter, Stats, THROTTLED_RETRY_MS};
