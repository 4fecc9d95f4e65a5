//! The rate limiter's surface without a store: client keys from API Gateway events, and
//! policies from configuration.

// Helpers outside #[test] fns too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use secure_ml_core::auth::Tier;
use secure_ml_core::config::{ConfigError, Vars};
use secure_ml_core::problem::ApiError;
use secure_ml_core::ratelimit::{
    ClientKey, FailPolicy, Group, Mode, Policy, RateLimitConfig, client_key,
};
use serde_json::{Value, json};

const HTTP_API_EVENT: &str = include_str!("../../../events/predict.json");
const NO_SOURCE_IP_EVENT: &str = include_str!("../../../events/predict-no-source-ip.json");

fn http_api_event(source_ip: Option<&str>, headers: Value) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(HTTP_API_EVENT).unwrap();
    match source_ip {
        Some(ip) => event["requestContext"]["http"]["sourceIp"] = json!(ip),
        None => {
            event["requestContext"]["http"]
                .as_object_mut()
                .unwrap()
                .remove("sourceIp");
        }
    }
    event["headers"]
        .as_object_mut()
        .unwrap()
        .extend(headers.as_object().unwrap().clone());
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn rest_api_event(source_ip: &str) -> lambda_http::Request {
    let event = json!({
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": { "X-Forwarded-For": "198.51.100.99", "Content-Type": "application/json" },
        "multiValueHeaders": {},
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "abc",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": { "sourceIp": source_ip, "userAgent": "curl/8.5.0" },
            "resourcePath": "/predict",
            "httpMethod": "POST",
            "apiId": "abc123"
        },
        "body": "{}",
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn key(s: &str) -> ClientKey {
    s.parse().unwrap()
}

mod client_keys {
    use super::*;

    #[test]
    fn http_api_events_are_keyed_by_the_context_source_ip() {
        let request = lambda_http::request::from_str(HTTP_API_EVENT).unwrap();
        assert_eq!(client_key(&request).unwrap().to_string(), "203.0.113.7");
    }

    #[test]
    fn rest_api_events_are_keyed_by_the_identity_source_ip() {
        assert_eq!(
            client_key(&rest_api_event("192.0.2.44"))
                .unwrap()
                .to_string(),
            "192.0.2.44"
        );
    }

    #[test]
    fn forwarding_headers_are_never_read() {
        let request = http_api_event(
            Some("203.0.113.7"),
            json!({ "x-forwarded-for": "1.2.3.4", "forwarded": "for=5.6.7.8", "x-real-ip": "9.9.9.9" }),
        );
        assert_eq!(client_key(&request).unwrap(), key("203.0.113.7"));
    }

    #[test]
    fn forwarding_headers_do_not_stand_in_for_a_missing_source_ip() {
        let request = http_api_event(None, json!({ "x-real-ip": "9.9.9.9" }));
        assert_eq!(client_key(&request), Err(ApiError::NoSourceIp));
    }

    #[test]
    fn a_request_without_source_ip_is_refused_with_403() {
        let request = lambda_http::request::from_str(NO_SOURCE_IP_EVENT).unwrap();
        let error = client_key(&request).unwrap_err();
        assert_eq!(error, ApiError::NoSourceIp);
        assert_eq!(error.status(), 403);
    }

    #[test]
    fn an_unparseable_source_ip_is_refused_with_403() {
        let request = http_api_event(Some("not-an-ip"), json!({}));
        assert_eq!(client_key(&request), Err(ApiError::NoSourceIp));
    }

    #[test]
    fn a_request_without_api_gateway_context_is_refused_with_403() {
        let request = lambda_http::Request::new(lambda_http::Body::Empty);
        assert_eq!(client_key(&request), Err(ApiError::NoSourceIp));
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_their_64_in_canonical_form() {
        let request = http_api_event(Some("2001:0DB8:0001:0002:aaaa:bbbb:cccc:dddd"), json!({}));
        assert_eq!(
            client_key(&request).unwrap().to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key(&rest_api_event("2001:db8:1:2::1"))
                .unwrap()
                .to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn two_addresses_in_one_64_share_a_key_and_neighbouring_64s_do_not() {
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        let request = http_api_event(Some("::ffff:203.0.113.7"), json!({}));
        assert_eq!(client_key(&request).unwrap(), key("203.0.113.7"));
        assert_eq!(client_key(&request).unwrap().to_string(), "203.0.113.7");
    }

    #[test]
    fn distinct_ipv4_addresses_are_distinct_keys() {
        assert_ne!(key("203.0.113.7"), key("203.0.113.8"));
    }
}

mod configuration {
    use super::*;

    fn vars() -> Vars {
        Vars::from_pairs([("RATE_LIMIT_TABLE", "rl-dev")])
    }

    fn invalid_variable(result: Result<RateLimitConfig, ConfigError>) -> (String, String) {
        match result {
            Err(ConfigError::Invalid { name, reason }) => (name, reason),
            other => panic!("expected an invalid variable, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_policies() {
        let config = RateLimitConfig::from_vars(&vars()).unwrap();
        assert_eq!(config.table, "rl-dev");
        assert_eq!(config.predict, Policy::new("predict", 60, 60, 20).unwrap());
        assert_eq!(
            config.predict_premium,
            Policy::new("predict", 300, 60, 100).unwrap()
        );
        assert_eq!(config.token, Policy::new("token", 10, 60, 5).unwrap());
        assert_eq!(config.mode, Mode::Enforce);
        assert_eq!(config.fail_policy, FailPolicy::FailClosed);
        assert_eq!(config.dynamo.attempt_timeout.as_millis(), 250);
        assert_eq!(config.dynamo.operation_timeout.as_millis(), 800);
        assert_eq!(config.dynamo.max_attempts, 3);
    }

    #[test]
    fn every_variable_is_read() {
        let config = RateLimitConfig::from_vars(
            &vars()
                .with("PREDICT_RATE_PER_MINUTE", "120")
                .with("PREDICT_BURST", "30")
                .with("TOKEN_RATE_PER_MINUTE", "6")
                .with("TOKEN_BURST", "2")
                .with("PREMIUM_MULTIPLIER", "10")
                .with("RATE_LIMIT_MODE", "shadow")
                .with("RATE_LIMIT_FAIL_POLICY", "fail-open")
                .with("DYNAMODB_ATTEMPT_TIMEOUT_MS", "150")
                .with("DYNAMODB_OPERATION_TIMEOUT_MS", "500")
                .with("DYNAMODB_MAX_ATTEMPTS", "2"),
        )
        .unwrap();
        assert_eq!((config.predict.quota(), config.predict.burst()), (120, 30));
        assert_eq!(
            (
                config.predict_premium.quota(),
                config.predict_premium.burst()
            ),
            (1200, 300)
        );
        assert_eq!((config.token.quota(), config.token.burst()), (6, 2));
        assert_eq!(config.mode, Mode::Shadow);
        assert_eq!(config.fail_policy, FailPolicy::FailOpen);
        assert_eq!(config.dynamo.attempt_timeout.as_millis(), 150);
        assert_eq!(config.dynamo.operation_timeout.as_millis(), 500);
        assert_eq!(config.dynamo.max_attempts, 2);
    }

    #[test]
    fn the_tier_selects_the_predict_policy_and_the_token_policy_has_none() {
        let config = RateLimitConfig::from_vars(&vars()).unwrap();
        assert_eq!(config.policy(Group::Predict(Tier::Free)).quota(), 60);
        assert_eq!(config.policy(Group::Predict(Tier::Premium)).quota(), 300);
        assert_eq!(config.policy(Group::Token).quota(), 10);
        assert_eq!(
            config.policy(Group::Predict(Tier::Premium)).name(),
            "predict"
        );
    }

    #[test]
    fn premium_capacity_in_time_equals_free_capacity() {
        let config = RateLimitConfig::from_vars(&vars()).unwrap();
        let capacity = |p: Policy| p.interval_ms() * u64::from(p.burst());
        assert_eq!(capacity(config.predict), capacity(config.predict_premium));
        assert_eq!(config.predict.interval_ms(), 1_000);
        assert_eq!(config.predict_premium.interval_ms(), 200);
    }

    #[test]
    fn a_missing_table_names_the_variable() {
        let error = RateLimitConfig::from_vars(&Vars::default()).unwrap_err();
        assert_eq!(
            error,
            ConfigError::Missing {
                name: "RATE_LIMIT_TABLE".into()
            }
        );
    }

    #[test]
    fn a_malformed_rate_names_the_variable_and_the_value() {
        let (name, reason) = invalid_variable(RateLimitConfig::from_vars(
            &vars().with("PREDICT_RATE_PER_MINUTE", "lots"),
        ));
        assert_eq!(name, "PREDICT_RATE_PER_MINUTE");
        assert!(reason.contains("\"lots\""), "{reason}");
    }

    #[test]
    fn a_zero_burst_names_the_variable() {
        let (name, _) =
            invalid_variable(RateLimitConfig::from_vars(&vars().with("TOKEN_BURST", "0")));
        assert_eq!(name, "TOKEN_BURST");
    }

    #[test]
    fn a_rate_with_a_fractional_interval_is_rejected_with_the_reason() {
        let (name, reason) = invalid_variable(RateLimitConfig::from_vars(
            &vars().with("TOKEN_RATE_PER_MINUTE", "7"),
        ));
        assert_eq!(name, "TOKEN_RATE_PER_MINUTE");
        assert!(reason.contains("whole number of milliseconds"), "{reason}");
    }

    #[test]
    fn a_multiplier_that_breaks_the_interval_names_premium_multiplier() {
        let (name, _) = invalid_variable(RateLimitConfig::from_vars(
            &vars().with("PREMIUM_MULTIPLIER", "7"),
        ));
        assert_eq!(name, "PREMIUM_MULTIPLIER");
    }

    #[test]
    fn unknown_mode_and_fail_policy_list_the_accepted_values() {
        let (name, reason) = invalid_variable(RateLimitConfig::from_vars(
            &vars().with("RATE_LIMIT_MODE", "block"),
        ));
        assert_eq!(name, "RATE_LIMIT_MODE");
        assert!(reason.contains("\"enforce\" or \"shadow\""), "{reason}");
        let (name, reason) = invalid_variable(RateLimitConfig::from_vars(
            &vars().with("RATE_LIMIT_FAIL_POLICY", "open"),
        ));
        assert_eq!(name, "RATE_LIMIT_FAIL_POLICY");
        assert!(
            reason.contains("\"fail-closed\" or \"fail-open\""),
            "{reason}"
        );
    }

    #[test]
    fn an_operation_timeout_shorter_than_an_attempt_is_rejected() {
        let (name, _) = invalid_variable(RateLimitConfig::from_vars(
            &vars()
                .with("DYNAMODB_ATTEMPT_TIMEOUT_MS", "500")
                .with("DYNAMODB_OPERATION_TIMEOUT_MS", "400"),
        ));
        assert_eq!(name, "DYNAMODB_OPERATION_TIMEOUT_MS");
    }

    #[test]
    fn tiers_parse_from_their_token_claim_values() {
        assert_eq!("free".parse::<Tier>(), Ok(Tier::Free));
        assert_eq!("premium".parse::<Tier>(), Ok(Tier::Premium));
        assert!("gold".parse::<Tier>().is_err());
        assert_eq!(Tier::Premium.to_string(), "premium");
    }
}
