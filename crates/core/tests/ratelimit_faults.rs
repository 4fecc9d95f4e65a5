//! The rate limiter against a faked SDK boundary (`aws-smithy-mocks` and fake HTTP clients):
//! which writes it sends, how it reads DynamoDB's answers, and what it does when DynamoDB
//! throttles, errs, hangs or is unreachable. Exactness under real concurrency is proven
//! against DynamoDB Local in `ratelimit_dynamodb.rs`.

// Helpers outside #[test] fns too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod ratelimit_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use http::header::RETRY_AFTER;
use ratelimit_support::{Attempts, client_config, config, dynamodb_error, hanging_http_client};
use secure_ml_core::auth::Tier;
use secure_ml_core::ratelimit::{
    Basis, ClientKey, Decision, Group, ManualClock, Outcome, RATELIMIT, RateLimitConfig,
    RateLimiter,
};
use serde_json::json;

/// Half a second past a whole second, so rounding to seconds is visible.
const NOW: u64 = 1_800_000_000_500;
const PREDICT: Group = Group::Predict(Tier::Free);

fn key() -> ClientKey {
    "203.0.113.7".parse().unwrap()
}

/// A limiter whose DynamoDB answers with `rules`, in order, on a clock stopped at [`NOW`].
fn limiter(config: RateLimitConfig, rules: &[&Rule]) -> (RateLimiter, Attempts, Arc<ManualClock>) {
    let mocks = rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(RuleMode::Sequential),
        |m, rule| m.with_rule(rule),
    );
    let attempts = Attempts::default();
    let client = Client::from_conf(
        client_config(&config.dynamo, create_mock_http_client(), &attempts)
            .interceptor(mocks)
            .build(),
    );
    let clock = Arc::new(ManualClock::new(NOW));
    (
        RateLimiter::with_clock(client, config, clock.clone()),
        attempts,
        clock,
    )
}

fn fast_config(extra: &[(&str, &str)]) -> RateLimitConfig {
    let mut pairs = vec![
        ("DYNAMODB_ATTEMPT_TIMEOUT_MS", "100"),
        ("DYNAMODB_OPERATION_TIMEOUT_MS", "300"),
    ];
    pairs.extend_from_slice(extra);
    config(&pairs)
}

/// The item DynamoDB returns with a failed condition (`ALL_OLD`).
fn condition_failed(tat: u64) -> aws_smithy_runtime_api::client::orchestrator::HttpResponse {
    dynamodb_error(
        400,
        "ConditionalCheckFailedException",
        json!({ "Item": {
            "pk": { "S": "predict#203.0.113.7" },
            "tat": { "N": tat.to_string() },
            "expires_at": { "N": (tat / 1000 + 61).to_string() },
        }}),
    )
}

fn written(tat: u64) -> UpdateItemOutput {
    UpdateItemOutput::builder()
        .attributes("tat", AttributeValue::N(tat.to_string()))
        .build()
}

fn ratelimit_header(decision: &Decision) -> String {
    let headers = decision.headers();
    let (_, value) = headers
        .iter()
        .find(|(name, _)| name == RATELIMIT)
        .expect("a RateLimit field");
    value.to_str().unwrap().to_owned()
}

/// Records every `UpdateItem` input a rule sees.
#[derive(Debug, Clone, Default)]
struct Sent(Arc<Mutex<Vec<UpdateItemInput>>>);

impl Sent {
    fn matcher(&self) -> impl Fn(&UpdateItemInput) -> bool + Send + Sync + 'static {
        let sent = self.0.clone();
        move |input| {
            sent.lock().unwrap().push(input.clone());
            true
        }
    }

    fn get(&self, i: usize) -> UpdateItemInput {
        self.0.lock().unwrap()[i].clone()
    }

    fn value(&self, i: usize, name: &str) -> String {
        match self
            .get(i)
            .expression_attribute_values()
            .and_then(|values| values.get(name).cloned())
        {
            Some(AttributeValue::N(n)) => n,
            other => panic!("{name} is not a number: {other:?}"),
        }
    }
}

mod conditional_writes {
    use super::*;

    #[tokio::test]
    async fn a_new_key_is_admitted_with_one_fresh_write_that_asks_for_the_old_item_on_failure() {
        let sent = Sent::default();
        let rule = mock!(Client::update_item)
            .match_requests(sent.matcher())
            .then_output(|| written(NOW + 1_000));
        let (limiter, attempts, _) = limiter(config(&[]), &[&rule]);

        let decision = limiter.check(PREDICT, &key(), 1).await;

        assert_eq!(decision.outcome(), Outcome::Admitted);
        assert_eq!(attempts.count(), 1);
        assert_eq!(ratelimit_header(&decision), "\"predict\";r=19;t=0");
        let input = sent.get(0);
        assert_eq!(input.table_name(), Some("rl-test"));
        assert_eq!(
            input.key().and_then(|k| k.get("pk")),
            Some(&AttributeValue::S("predict#203.0.113.7".into()))
        );
        assert_eq!(
            input.update_expression(),
            Some("SET tat = :tat, expires_at = :expires_at")
        );
        assert_eq!(
            input.condition_expression(),
            Some("attribute_not_exists(tat) OR tat <= :now OR expires_at < :now_s")
        );
        assert_eq!(
            input.return_values_on_condition_check_failure(),
            Some(&ReturnValuesOnConditionCheckFailure::AllOld)
        );
        assert_eq!(sent.value(0, ":tat"), (NOW + 1_000).to_string());
        assert_eq!(sent.value(0, ":now"), NOW.to_string());
        assert_eq!(sent.value(0, ":now_s"), (NOW / 1_000).to_string());
        assert_eq!(
            sent.value(0, ":expires_at"),
            (NOW / 1_000 + 2 + 60).to_string()
        );
    }

    #[tokio::test]
    async fn a_busy_key_with_room_is_admitted_by_extending_its_tat_in_a_second_write() {
        let sent = Sent::default();
        let busy = mock!(Client::update_item)
            .match_requests(sent.matcher())
            .then_http_response(|| condition_failed(NOW + 5_000));
        let extended = mock!(Client::update_item)
            .match_requests(sent.matcher())
            .then_output(|| written(NOW + 6_000));
        let (limiter, attempts, _) = limiter(config(&[]), &[&busy, &extended]);

        let decision = limiter.check(PREDICT, &key(), 1).await;

        assert_eq!(decision.outcome(), Outcome::Admitted);
        assert_eq!(attempts.count(), 2);
        assert_eq!(ratelimit_header(&decision), "\"predict\";r=14;t=0");
        let extend = sent.get(1);
        assert_eq!(
            extend.update_expression(),
            Some("SET tat = tat + :inc, expires_at = :expires_at")
        );
        assert_eq!(
            extend.condition_expression(),
            Some("tat > :now AND tat <= :allow_at AND expires_at >= :now_s")
        );
        assert_eq!(sent.value(1, ":inc"), "1000");
        assert_eq!(sent.value(1, ":allow_at"), (NOW + 19_000).to_string());
    }

    #[tokio::test]
    async fn a_key_remembered_as_busy_is_extended_directly_in_one_write() {
        let sent = Sent::default();
        let first = mock!(Client::update_item)
            .match_requests(sent.matcher())
            .then_output(|| written(NOW + 1_000));
        let second = mock!(Client::update_item)
            .match_requests(sent.matcher())
            .then_output(|| written(NOW + 2_000));
        let (limiter, attempts, _) = limiter(config(&[]), &[&first, &second]);

        limiter.check(PREDICT, &key(), 1).await;
        let decision = limiter.check(PREDICT, &key(), 1).await;

        assert_eq!(decision.outcome(), Outcome::Admitted);
        assert_eq!(attempts.count(), 2, "one write per admission");
        assert_eq!(
            sent.get(1).update_expression(),
            Some("SET tat = tat + :inc, expires_at = :expires_at")
        );
    }

    #[tokio::test]
    async fn a_full_bucket_is_refused_from_the_returned_item_with_an_exact_retry_after() {
        // 20 units outstanding: the next one fits at NOW + 1 s.
        let full = mock!(Client::update_item).then_http_response(|| condition_failed(NOW + 20_000));
        let (limiter, attempts, _) = limiter(config(&[]), &[&full]);

        let decision = limiter.check(PREDICT, &key(), 1).await;

        assert_eq!(decision.outcome(), Outcome::Refused);
        assert_eq!(decision.basis(), Basis::Store);
        assert_eq!(
            attempts.count(),
            1,
            "a refusal is decided from the returned item, no second read"
        );
        assert_eq!(ratelimit_header(&decision), "\"predict\";r=0;t=1");
        let response = decision.into_error().unwrap().into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn a_refused_key_is_refused_again_from_memory_until_its_retry_instant() {
        let full = mock!(Client::update_item).then_http_response(|| condition_failed(NOW + 20_000));
        let admitted = mock!(Client::update_item).then_output(|| written(NOW + 21_000));
        let (limiter, attempts, clock) = limiter(config(&[]), &[&full, &admitted]);

        limiter.check(PREDICT, &key(), 1).await;
        for _ in 0..100 {
            let again = limiter.check(PREDICT, &key(), 1).await;
            assert_eq!(
                (again.outcome(), again.basis()),
                (Outcome::Refused, Basis::Recent)
            );
        }
        assert_eq!(attempts.count(), 1);

        clock.set(NOW + 999);
        assert_eq!(
            limiter.check(PREDICT, &key(), 1).await.basis(),
            Basis::Recent
        );
        clock.set(NOW + 1_000);
        assert_eq!(
            limiter.check(PREDICT, &key(), 1).await.outcome(),
            Outcome::Admitted
        );
        assert_eq!(attempts.count(), 2);
        assert_eq!(limiter.stats().answered_locally, 101);
    }

    #[tokio::test]
    async fn a_batch_that_does_not_fit_is_refused_whole_with_the_units_left_reported() {
        // 12 units outstanding of 20: 8 left, a batch of 10 does not fit until 2 s later.
        let busy = mock!(Client::update_item).then_http_response(|| condition_failed(NOW + 12_000));
        let (limiter, attempts, _) = limiter(config(&[]), &[&busy]);

        let decision = limiter.check(PREDICT, &key(), 10).await;

        assert_eq!(decision.outcome(), Outcome::Refused);
        assert_eq!(attempts.count(), 1);
        assert_eq!(ratelimit_header(&decision), "\"predict\";r=8;t=2");
    }

    #[tokio::test]
    async fn a_request_costing_more_than_the_burst_never_reaches_dynamodb() {
        let (limiter, attempts, _) = limiter(config(&[]), &[]);

        let decision = limiter.check(PREDICT, &key(), 21).await;

        assert_eq!(
            (decision.outcome(), decision.basis()),
            (Outcome::Refused, Basis::CostExceedsBurst)
        );
        assert_eq!(attempts.count(), 0);
        // Unprocessable, not 429: no wait would ever admit it.
        assert_eq!(decision.retry_after_secs(), None);
        assert_eq!(decision.into_error().unwrap().status(), 422);
    }

    #[tokio::test]
    async fn a_malformed_item_is_a_store_fault_not_a_refusal() {
        let malformed = mock!(Client::update_item).then_http_response(|| {
            dynamodb_error(
                400,
                "ConditionalCheckFailedException",
                json!({ "Item": { "tat": { "S": "soon" } } }),
            )
        });
        let (limiter, _, _) = limiter(config(&[]), &[&malformed]);

        let decision = limiter.check(PREDICT, &key(), 1).await;

        assert_eq!(
            (decision.outcome(), decision.basis()),
            (Outcome::Unavailable, Basis::Fault("malformed-item"))
        );
    }
}

mod throttling {
    use super::*;

    #[tokio::test]
    async fn throttling_of_the_item_is_an_over_limit_refusal_for_a_second() {
        // Without reasons (what DynamoDB sent before it named them), and with the key range's.
        for extra in [
            json!({}),
            json!({"ThrottlingReasons": [{"reason": "TableWriteKeyRangeThroughputExceeded",
                                           "resource": "arn:aws:dynamodb:us-east-1:1:table/t"}]}),
        ] {
            let code = "ProvisionedThroughputExceededException";
            let throttled = mock!(Client::update_item)
                .then_http_response(move || dynamodb_error(400, code, extra.clone()));
            let (limiter, attempts, _) = limiter(fast_config(&[]), &[&throttled]);

            let decision = limiter.check(PREDICT, &key(), 1).await;

            assert_eq!(
                (decision.outcome(), decision.basis()),
                (Outcome::Refused, Basis::Throttled),
                "{code}"
            );
            assert_eq!(decision.retry_after_secs(), Some(1));
            assert!(
                attempts.count() <= 3,
                "retries are bounded: {}",
                attempts.count()
            );
            assert_eq!(decision.into_error().unwrap().status(), 429);
        }
    }

    /// Throttling of the whole table or account says nothing about this caller: the fail
    /// policy decides, as for any other store fault.
    #[tokio::test]
    async fn throttling_of_the_table_or_account_follows_the_fail_policy() {
        let table_level = json!({"ThrottlingReasons": [{
            "reason": "TableWriteProvisionedThroughputExceeded",
            "resource": "arn:aws:dynamodb:us-east-1:1:table/t"}]});
        let cases = [
            ("ProvisionedThroughputExceededException", table_level),
            ("RequestLimitExceeded", json!({})),
            ("ThrottlingException", json!({})),
        ];
        for (code, extra) in cases {
            for (policy, outcome) in [
                ("fail-closed", Outcome::Unavailable),
                ("fail-open", Outcome::FailedOpen),
            ] {
                let extra = extra.clone();
                let throttled = mock!(Client::update_item)
                    .then_http_response(move || dynamodb_error(400, code, extra.clone()));
                let config = fast_config(&[("RATE_LIMIT_FAIL_POLICY", policy)]);
                let (limiter, _, _) = limiter(config, &[&throttled]);

                let decision = limiter.check(PREDICT, &key(), 1).await;

                assert_eq!(
                    (decision.outcome(), decision.basis()),
                    (outcome, Basis::Fault("throttled")),
                    "{code} under {policy}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_throttled_key_is_refused_from_memory_for_that_second() {
        let throttled = mock!(Client::update_item).then_http_response(|| {
            dynamodb_error(400, "ProvisionedThroughputExceededException", json!({}))
        });
        let admitted = mock!(Client::update_item).then_output(|| written(NOW + 1_000));
        let (limiter, attempts, clock) = limiter(fast_config(&[]), &[&throttled, &admitted]);

        limiter.check(PREDICT, &key(), 1).await;
        let calls = attempts.count();
        let again = limiter.check(PREDICT, &key(), 1).await;
        assert_eq!(
            (again.outcome(), again.basis()),
            (Outcome::Refused, Basis::Recent)
        );
        assert_eq!(attempts.count(), calls);

        clock.advance(Duration::from_secs(1));
        assert_eq!(
            limiter.check(PREDICT, &key(), 1).await.outcome(),
            Outcome::Admitted
        );
    }
}

mod store_faults {
    use super::*;

    fn server_error() -> Rule {
        mock!(Client::update_item)
            .then_http_response(|| dynamodb_error(500, "InternalServerError", json!({})))
    }

    #[tokio::test]
    async fn server_errors_are_retried_a_bounded_number_of_times_then_fail_closed() {
        let failing = server_error();
        let (limiter, attempts, _) =
            limiter(fast_config(&[("DYNAMODB_MAX_ATTEMPTS", "3")]), &[&failing]);

        let decision = limiter.check(PREDICT, &key(), 1).await;

        assert_eq!(decision.outcome(), Outcome::Unavailable);
        assert_eq!(decision.basis(), Basis::Fault("service-error"));
        assert_eq!(attempts.count(), 3);
        let response = decision.into_error().unwrap().into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
    }

    #[tokio::test]
    async fn fail_open_admits_when_the_store_fails_and_counts_it() {
        let failing = server_error();
        let (limiter, _, _) = limiter(
            fast_config(&[("RATE_LIMIT_FAIL_POLICY", "fail-open")]),
            &[&failing],
        );

        let decision = limiter.check(PREDICT, &key(), 1).await;

        assert_eq!(decision.outcome(), Outcome::FailedOpen);
        assert!(decision.is_admitted());
        assert_eq!(decision.into_error(), None);
        assert_eq!(limiter.stats().failed_open, 1);
    }

    /// Bound on a decision against a store that never answers: the operation timeout
    /// (300 ms in these tests) plus scheduling slack.
    const BOUND: Duration = Duration::from_millis(300 + 200);

    async fn check_against_a_hanging_store(extra: &[(&str, &str)]) -> (Decision, Duration, usize) {
        let config = fast_config(extra);
        let attempts = Attempts::default();
        let client = Client::from_conf(
            client_config(
                &config.dynamo,
                hanging_http_client(Duration::from_secs(30)),
                &attempts,
            )
            .build(),
        );
        let limiter = RateLimiter::with_clock(client, config, Arc::new(ManualClock::new(NOW)));
        let started = Instant::now();
        let decision = limiter.check(PREDICT, &key(), 1).await;
        (decision, started.elapsed(), attempts.count())
    }

    #[tokio::test]
    async fn a_hanging_store_fails_closed_within_the_operation_timeout() {
        let (decision, elapsed, attempts) = check_against_a_hanging_store(&[]).await;
        assert_eq!(decision.outcome(), Outcome::Unavailable);
        assert_eq!(decision.basis(), Basis::Fault("timeout"));
        assert!(elapsed < BOUND, "took {elapsed:?}");
        assert!((1..=3).contains(&attempts), "{attempts} attempts");
    }

    #[tokio::test]
    async fn a_hanging_store_fails_open_within_the_operation_timeout_when_configured() {
        let (decision, elapsed, _) =
            check_against_a_hanging_store(&[("RATE_LIMIT_FAIL_POLICY", "fail-open")]).await;
        assert_eq!(decision.outcome(), Outcome::FailedOpen);
        assert!(elapsed < BOUND, "took {elapsed:?}");
    }

    #[tokio::test]
    async fn an_unreachable_store_obeys_the_fail_policy_within_the_operation_timeout() {
        let config = fast_config(&[]);
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url("http://127.0.0.1:9") // discard port: nothing listens
            .timeout_config(config.dynamo.timeout_config())
            .retry_config(config.dynamo.retry_config())
            .load()
            .await;
        let limiter =
            RateLimiter::with_clock(Client::new(&sdk), config, Arc::new(ManualClock::new(NOW)));

        let started = Instant::now();
        let decision = limiter.check(PREDICT, &key(), 1).await;

        assert_eq!(decision.outcome(), Outcome::Unavailable);
        assert!(
            matches!(
                decision.basis(),
                Basis::Fault("dispatch-failure" | "timeout")
            ),
            "{:?}",
            decision.basis()
        );
        assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    }
}

mod shadow_mode {
    use super::*;

    fn shadow() -> RateLimitConfig {
        fast_config(&[("RATE_LIMIT_MODE", "shadow")])
    }

    #[tokio::test]
    async fn shadow_mode_serves_what_enforce_would_refuse_and_reports_it_the_same() {
        let full = mock!(Client::update_item).then_http_response(|| condition_failed(NOW + 20_000));
        let (limiter, _, _) = limiter(shadow(), &[&full]);

        let decision = limiter.check(PREDICT, &key(), 1).await;

        assert_eq!(decision.outcome(), Outcome::ShadowRefused);
        assert_eq!(decision.as_str(), "shadow-refuse");
        assert!(decision.is_admitted());
        assert_eq!(ratelimit_header(&decision), "\"predict\";r=0;t=1");
        assert_eq!(decision.retry_after_secs(), Some(1));
        assert_eq!(decision.into_error(), None);
        assert_eq!(limiter.stats().shadow_refused, 1);
    }

    #[tokio::test]
    async fn shadow_mode_never_refuses_whatever_happens() {
        let throttled = mock!(Client::update_item).then_http_response(|| {
            dynamodb_error(400, "ProvisionedThroughputExceededException", json!({}))
        });
        let failing = mock!(Client::update_item)
            .then_http_response(|| dynamodb_error(500, "InternalServerError", json!({})));
        let (limiter, _, _) = limiter(shadow(), &[&throttled]);
        assert_eq!(
            limiter.check(PREDICT, &key(), 1).await.outcome(),
            Outcome::ShadowRefused
        );
        assert_eq!(
            limiter.check(PREDICT, &key(), 1).await.outcome(),
            Outcome::ShadowRefused,
            "from memory"
        );
        assert_eq!(
            limiter.check(PREDICT, &key(), 100).await.outcome(),
            Outcome::ShadowRefused,
            "too costly"
        );

        let (limiter, _, _) = super::limiter(shadow(), &[&failing]);
        let decision = limiter.check(PREDICT, &key(), 1).await;
        assert_eq!(decision.outcome(), Outcome::FailedOpen);
        assert!(decision.is_admitted());
    }
}
