//! Test support for the crates built on this one (feature `test-support`, enabled only as a
//! dev-dependency): DynamoDB clients whose every response comes from `aws-smithy-mocks` rules.
//!
//! `aws_smithy_mocks::mock_client!` needs the SDK's `test-util` feature, which changes the
//! features of the whole SDK and so makes the test build and the build that `cargo lambda
//! watch` runs compile it twice. This builder sets the same test defaults by hand instead.

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_smithy_mocks::{MockResponseInterceptor, create_mock_http_client};

pub use aws_smithy_mocks::{Rule, RuleMode, mock};

/// A DynamoDB client answered by `rules` (matched per `mode`); an unmatched request fails the
/// call, so no test can reach a real endpoint.
pub fn mock_dynamodb(mode: RuleMode, rules: &[&Rule]) -> aws_sdk_dynamodb::Client {
    let interceptor = rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(mode),
        |interceptor, rule| interceptor.with_rule(rule),
    );
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
