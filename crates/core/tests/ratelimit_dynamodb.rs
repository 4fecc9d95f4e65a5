//! The rate limiter against DynamoDB Local: exactness under concurrency, the sustained rate,
//! `Retry-After`, expired items, batches, and what a flood costs. Plus a latency table.
//!
//! ```text
//! AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8000 AWS_REGION=us-east-1 \
//! AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local RATE_LIMIT_TABLE=rl-dev \
//!   cargo test -p secure-ml-core --test ratelimit_dynamodb -- --include-ignored --nocapture
//! ```
//!
//! Every test uses keys of its own (unique per run), so the table may be shared and reused.

// Helpers outside #[test] fns too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod ratelimit_support;

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use ratelimit_support::{Attempts, config};
use secure_ml_core::auth::Tier;
use secure_ml_core::aws::DynamoSettings;
use secure_ml_core::ratelimit::{
    Basis, ClientKey, Clock, Decision, Group, ManualClock, Outcome, RateLimitConfig, RateLimiter,
    SystemClock,
};

const PREDICT: Group = Group::Predict(Tier::Free);

/// A DynamoDB Local client whose attempts are counted, and the table to use.
struct Local {
    client: Client,
    attempts: Attempts,
    table: String,
}

async fn local() -> Local {
    let need = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: these tests need DynamoDB Local and its rate-limit table (run `make test`)")
        })
    };
    need("AWS_ENDPOINT_URL_DYNAMODB");
    let table = need("RATE_LIMIT_TABLE");
    // Generous timeouts: these tests are about the conditional writes, and a timed-out write
    // would be a fault (an under-count), not a measurement of exactness.
    let settings = DynamoSettings {
        attempt_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(10),
        max_attempts: 3,
    };
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(settings.timeout_config())
        .retry_config(settings.retry_config())
        .load()
        .await;
    let attempts = Attempts::default();
    let client = Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(attempts.clone())
            .build(),
    );
    Local {
        client,
        attempts,
        table,
    }
}

impl Local {
    fn config(&self, extra: &[(&str, &str)]) -> RateLimitConfig {
        let mut pairs = vec![
            ("RATE_LIMIT_TABLE", self.table.as_str()),
            ("DYNAMODB_ATTEMPT_TIMEOUT_MS", "5000"),
            ("DYNAMODB_OPERATION_TIMEOUT_MS", "10000"),
        ];
        pairs.extend_from_slice(extra);
        config(&pairs)
    }

    fn limiter(&self, config: RateLimitConfig, clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter::with_clock(self.client.clone(), config, clock)
    }
}

/// A /64 no other test (in this run or an earlier one) uses.
fn fresh_network() -> [u16; 4] {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    [
        0xfd00 | (run >> 40) as u16 & 0xff,
        (run >> 24) as u16,
        (run >> 8) as u16,
        n as u16,
    ]
}

fn address_in(network: [u16; 4], host: u16) -> ClientKey {
    let [a, b, c, d] = network;
    ClientKey::from_ip(IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, host)))
}

fn fresh_key() -> ClientKey {
    address_in(fresh_network(), 1)
}

/// A fresh IPv4 key: an address from the benchmarking range, its leftover items deleted.
async fn fresh_ipv4(local: &Local) -> ClientKey {
    let [_, _, c, d] = fresh_network();
    let key: ClientKey = format!("198.18.{}.{}", c % 256, d % 256).parse().unwrap();
    for group in ["predict", "token"] {
        local
            .client
            .delete_item()
            .table_name(&local.table)
            .key("pk", AttributeValue::S(format!("{group}#{key}")))
            .send()
            .await
            .unwrap();
    }
    key
}

fn now_ms() -> u64 {
    SystemClock.now_ms()
}

fn count(decisions: &[Decision], outcome: Outcome) -> usize {
    decisions.iter().filter(|d| d.outcome() == outcome).count()
}

async fn admitted_in_a_row(
    limiter: &RateLimiter,
    group: Group,
    key: &ClientKey,
    n: usize,
) -> usize {
    let mut admitted = 0;
    for _ in 0..n {
        if limiter.check(group, key, 1).await.outcome() == Outcome::Admitted {
            admitted += 1;
        }
    }
    admitted
}

mod exactness {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn exactly_the_burst_is_admitted_from_200_concurrent_requests_of_one_key_twenty_times_over()
     {
        let local = local().await;
        // A frozen clock: no refill during a round, so anything above 20 would be an
        // over-admission by the conditional writes, not a second that happened to pass.
        let clock = Arc::new(ManualClock::starting_now());
        for round in 0..20 {
            // Eight instances with memories of their own race on one item.
            let limiters: Vec<_> = (0..8)
                .map(|_| Arc::new(local.limiter(local.config(&[]), clock.clone())))
                .collect();
            let key = fresh_key();
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let limiter = limiters[i % limiters.len()].clone();
                    tokio::spawn(async move { limiter.check(PREDICT, &key, 1).await })
                })
                .collect();
            let mut decisions = Vec::new();
            for task in tasks {
                decisions.push(task.await.unwrap());
            }
            assert_eq!(
                count(&decisions, Outcome::Admitted),
                20,
                "round {round}: {decisions:#?}"
            );
            assert_eq!(count(&decisions, Outcome::Refused), 180, "round {round}");
        }
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn distinct_addresses_and_groups_never_share_a_budget() {
        let local = local().await;
        let limiter = local.limiter(local.config(&[]), Arc::new(ManualClock::starting_now()));
        let (a, b) = (fresh_ipv4(&local).await, fresh_ipv4(&local).await);

        assert_eq!(admitted_in_a_row(&limiter, PREDICT, &a, 25).await, 20);
        assert_eq!(admitted_in_a_row(&limiter, PREDICT, &b, 25).await, 20);
        assert_eq!(admitted_in_a_row(&limiter, Group::Token, &a, 10).await, 5);
        let (c, d) = (fresh_key(), fresh_key());
        assert_eq!(admitted_in_a_row(&limiter, PREDICT, &c, 25).await, 20);
        assert_eq!(admitted_in_a_row(&limiter, PREDICT, &d, 25).await, 20);
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn two_ipv6_addresses_in_one_64_share_a_budget() {
        let local = local().await;
        let limiter = local.limiter(local.config(&[]), Arc::new(ManualClock::starting_now()));
        let network = fresh_network();

        assert_eq!(
            admitted_in_a_row(&limiter, PREDICT, &address_in(network, 0x1), 12).await,
            12
        );
        assert_eq!(
            admitted_in_a_row(&limiter, PREDICT, &address_in(network, 0xbeef), 12).await,
            8
        );
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn tiers_share_the_bucket_and_a_premium_request_costs_a_fifth() {
        let local = local().await;
        let limiter = local.limiter(local.config(&[]), Arc::new(ManualClock::starting_now()));
        let key = fresh_key();

        // Ten free requests spend 10 s of the 20 s capacity; premium requests cost 0.2 s each.
        assert_eq!(admitted_in_a_row(&limiter, PREDICT, &key, 10).await, 10);
        assert_eq!(
            admitted_in_a_row(&limiter, Group::Predict(Tier::Premium), &key, 60).await,
            50
        );
    }
}

mod clock_driven {
    use super::*;

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn sustained_admissions_over_a_long_span_are_exactly_burst_plus_span_times_rate() {
        let local = local().await;
        let clock = Arc::new(ManualClock::starting_now());
        let limiter = local.limiter(local.config(&[]), clock.clone());
        let key = fresh_key();
        let start = clock.now_ms();
        let span = 30 * 60 * 1_000; // half an hour at 60/min, burst 20

        // A greedy client: every 250 ms it asks until it is refused.
        let mut admitted = 0_u64;
        while clock.now_ms() <= start + span {
            while limiter.check(PREDICT, &key, 1).await.outcome() == Outcome::Admitted {
                admitted += 1;
            }
            clock.advance(Duration::from_millis(250));
        }

        assert_eq!(admitted, 20 + span / 1_000);
        let stats = limiter.stats();
        assert_eq!(stats.unavailable, 0);
        assert!(
            stats.store_writes < admitted + admitted / 10,
            "most refusals come from memory: {stats:?}"
        );
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn a_request_at_the_retry_after_instant_is_admitted_and_one_just_before_is_refused() {
        let local = local().await;
        let t0 = now_ms() / 1_000 * 1_000 + 300; // not on a whole second
        let clock = Arc::new(ManualClock::new(t0));
        let limiter = local.limiter(local.config(&[]), clock.clone());
        let key = fresh_key();
        assert_eq!(admitted_in_a_row(&limiter, PREDICT, &key, 20).await, 20);

        // Refused at t0: the next unit fits at exactly t0 + 1 s, and Retry-After says 1.
        let refused = limiter.check(PREDICT, &key, 1).await;
        assert_eq!(refused.retry_after_secs(), Some(1));
        // Refused 0.7 s later: 0.3 s to go, still rounded up to 1 — never early.
        clock.set(t0 + 700);
        assert_eq!(
            limiter.check(PREDICT, &key, 1).await.retry_after_secs(),
            Some(1)
        );

        // One millisecond early: refused, from memory and by DynamoDB alike.
        clock.set(t0 + 999);
        assert_eq!(
            limiter.check(PREDICT, &key, 1).await.outcome(),
            Outcome::Refused
        );
        let forgetful = local.limiter(local.config(&[]), clock.clone());
        let by_store = forgetful.check(PREDICT, &key, 1).await;
        assert_eq!(
            (by_store.outcome(), by_store.basis()),
            (Outcome::Refused, Basis::Store)
        );

        // At the Retry-After instant: admitted.
        clock.set(t0 + 1_000);
        assert_eq!(
            limiter.check(PREDICT, &key, 1).await.outcome(),
            Outcome::Admitted
        );
    }
}

mod items {
    use super::*;

    async fn put_item(local: &Local, key: &ClientKey, tat: u64, expires_at: u64) {
        local
            .client
            .put_item()
            .table_name(&local.table)
            .item("pk", AttributeValue::S(format!("predict#{key}")))
            .item("tat", AttributeValue::N(tat.to_string()))
            .item("expires_at", AttributeValue::N(expires_at.to_string()))
            .send()
            .await
            .unwrap();
    }

    /// What a client sees, request by request: outcome, `r` and `t`.
    async fn transcript(
        limiter: &RateLimiter,
        key: &ClientKey,
    ) -> Vec<(Outcome, Option<u32>, Option<u64>)> {
        let mut seen = Vec::new();
        for _ in 0..25 {
            let d = limiter.check(PREDICT, key, 1).await;
            seen.push((d.outcome(), d.remaining(), d.reset_secs()));
        }
        seen
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn an_expired_item_still_in_the_table_behaves_exactly_like_no_item() {
        let local = local().await;
        let now = now_ms();
        let clock = Arc::new(ManualClock::new(now));
        let (expired, stale, absent) = (fresh_key(), fresh_key(), fresh_key());
        // TTL has not deleted them yet. One claims an hour of debt; one a tat long past.
        put_item(&local, &expired, now + 3_600_000, now / 1_000 - 1).await;
        put_item(&local, &stale, now - 86_400_000, now / 1_000 - 86_000).await;

        let expected = transcript(&local.limiter(local.config(&[]), clock.clone()), &absent).await;
        assert_eq!(
            expected
                .iter()
                .filter(|(o, ..)| *o == Outcome::Admitted)
                .count(),
            20
        );
        assert_eq!(
            transcript(&local.limiter(local.config(&[]), clock.clone()), &expired).await,
            expected
        );
        assert_eq!(
            transcript(&local.limiter(local.config(&[]), clock.clone()), &stale).await,
            expected
        );
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn a_batch_that_does_not_fit_is_refused_whole_and_leaves_the_budget_untouched() {
        let local = local().await;
        let clock = Arc::new(ManualClock::starting_now());
        let config = || local.config(&[("PREDICT_BURST", "60")]);
        let key = fresh_key();

        // One instance spends 20 of 60; another, which has never seen the key, asks DynamoDB.
        assert_eq!(
            local
                .limiter(config(), clock.clone())
                .check(PREDICT, &key, 20)
                .await
                .outcome(),
            Outcome::Admitted
        );
        let other = local.limiter(config(), clock.clone());
        let batch = other.check(PREDICT, &key, 50).await;
        assert_eq!(
            (batch.outcome(), batch.basis()),
            (Outcome::Refused, Basis::Store)
        );
        assert_eq!(batch.remaining(), Some(40));

        let fits = other.check(PREDICT, &key, 40).await;
        assert_eq!(
            fits.outcome(),
            Outcome::Admitted,
            "the refused batch took nothing"
        );
        assert_eq!(fits.remaining(), Some(0));
        assert_eq!(
            other.check(PREDICT, &key, 1).await.outcome(),
            Outcome::Refused
        );
    }
}

mod cost {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn a_flood_from_an_over_limit_key_makes_a_handful_of_dynamodb_calls() {
        let local = local().await;
        // The real clock, and a slow policy (1/min, burst 5) so nothing refills mid-flood.
        let limiter = Arc::new(RateLimiter::new(
            local.client.clone(),
            local.config(&[("PREDICT_RATE_PER_MINUTE", "1"), ("PREDICT_BURST", "5")]),
        ));
        let key = fresh_key();
        assert_eq!(admitted_in_a_row(&limiter, PREDICT, &key, 6).await, 5);
        let before = local.attempts.count();

        let flood: Vec<_> = (0..1_000)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.check(PREDICT, &key, 1).await })
            })
            .collect();
        for request in flood {
            assert_eq!(request.await.unwrap().outcome(), Outcome::Refused);
        }

        let calls = local.attempts.count() - before;
        assert!(
            calls <= 3,
            "{calls} DynamoDB calls for 1,000 refused requests"
        );
        assert!(limiter.stats().answered_locally >= 997);
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn an_admitted_request_costs_exactly_one_write() {
        let local = local().await;
        let limiter = local.limiter(local.config(&[]), Arc::new(ManualClock::starting_now()));
        let key = fresh_key();
        let before = local.attempts.count();

        assert_eq!(admitted_in_a_row(&limiter, PREDICT, &key, 20).await, 20);

        assert_eq!(local.attempts.count() - before, 20);
    }
}

/// Not a test of behaviour: prints what a decision costs in time next to a bare `UpdateItem`.
mod latency {
    use super::*;

    const SAMPLES: usize = 300;

    struct Row {
        label: &'static str,
        writes: &'static str,
        micros: Vec<u128>,
    }

    impl Row {
        fn print(&mut self) {
            self.micros.sort_unstable();
            let pct = |p: usize| self.micros[(self.micros.len() - 1) * p / 100];
            let mean = self.micros.iter().sum::<u128>() / self.micros.len() as u128;
            println!(
                "| {:<44} | {:<10} | {:>7} | {:>7} | {:>7} | {:>7} |",
                self.label,
                self.writes,
                pct(50),
                pct(90),
                pct(99),
                mean
            );
        }
    }

    async fn time<F: std::future::Future<Output = T>, T>(samples: &mut Vec<u128>, f: F) -> T {
        let started = Instant::now();
        let out = f.await;
        samples.push(started.elapsed().as_micros());
        out
    }

    #[tokio::test]
    #[ignore = "needs DynamoDB Local: run make test"]
    async fn prints_decision_latency_next_to_a_raw_update_item() {
        let local = local().await;
        let clock = Arc::new(ManualClock::starting_now());
        // T = 5 ms and a huge burst, so one key can be admitted hundreds of times in a row.
        let roomy = || {
            local.config(&[
                ("PREDICT_RATE_PER_MINUTE", "12000"),
                ("PREDICT_BURST", "1000000"),
            ])
        };
        let mut rows = Vec::new();

        let mut raw = Row {
            label: "raw UpdateItem (unconditional SET)",
            writes: "1",
            micros: vec![],
        };
        let scratch = format!("bench#{}", fresh_key());
        for i in 0..SAMPLES {
            let update = local
                .client
                .update_item()
                .table_name(&local.table)
                .key("pk", AttributeValue::S(scratch.clone()))
                .update_expression("SET tat = :tat")
                .expression_attribute_values(":tat", AttributeValue::N(i.to_string()))
                .send();
            time(&mut raw.micros, update).await.unwrap();
        }
        rows.push(raw);

        let limiter = local.limiter(roomy(), clock.clone());
        let mut fresh = Row {
            label: "admitted: new key (FRESH)",
            writes: "1",
            micros: vec![],
        };
        for _ in 0..SAMPLES {
            let key = fresh_key();
            let d = time(&mut fresh.micros, limiter.check(PREDICT, &key, 1)).await;
            assert_eq!(d.outcome(), Outcome::Admitted);
        }
        rows.push(fresh);

        let busy_key = fresh_key();
        let mut busy = Row {
            label: "admitted: busy key, remembered (EXTEND)",
            writes: "1",
            micros: vec![],
        };
        for _ in 0..SAMPLES {
            let d = time(&mut busy.micros, limiter.check(PREDICT, &busy_key, 1)).await;
            assert_eq!(d.outcome(), Outcome::Admitted);
        }
        rows.push(busy);

        let mut guess = Row {
            label: "admitted: busy key, new to instance",
            writes: "1 failed+1",
            micros: vec![],
        };
        for _ in 0..SAMPLES {
            let newcomer = local.limiter(roomy(), clock.clone());
            let d = time(&mut guess.micros, newcomer.check(PREDICT, &busy_key, 1)).await;
            assert_eq!(d.outcome(), Outcome::Admitted);
        }
        rows.push(guess);

        let strict = || local.config(&[]);
        let full_key = fresh_key();
        let filler = local.limiter(strict(), clock.clone());
        assert_eq!(admitted_in_a_row(&filler, PREDICT, &full_key, 20).await, 20);
        let mut by_store = Row {
            label: "refused: by DynamoDB (ALL_OLD)",
            writes: "1 failed",
            micros: vec![],
        };
        for _ in 0..SAMPLES {
            let newcomer = local.limiter(strict(), clock.clone());
            let d = time(&mut by_store.micros, newcomer.check(PREDICT, &full_key, 1)).await;
            assert_eq!((d.outcome(), d.basis()), (Outcome::Refused, Basis::Store));
        }
        rows.push(by_store);

        let mut by_memory = Row {
            label: "refused: from memory",
            writes: "0",
            micros: vec![],
        };
        for _ in 0..SAMPLES {
            let d = time(&mut by_memory.micros, filler.check(PREDICT, &full_key, 1)).await;
            assert_eq!((d.outcome(), d.basis()), (Outcome::Refused, Basis::Recent));
        }
        rows.push(by_memory);

        println!("\n{SAMPLES} samples each, sequential, DynamoDB Local, latency in µs");
        println!(
            "| {:<44} | {:<10} | {:>7} | {:>7} | {:>7} | {:>7} |",
            "decision", "writes", "p50", "p90", "p99", "mean"
        );
        println!(
            "|{:-<46}|{:-<12}|{:->9}|{:->9}|{:->9}|{:->9}|",
            "", "", "", "", "", ""
        );
        for row in &mut rows {
            row.print();
        }
    }
}
