//! Shared by the rate limiter's test files: configuration from a literal map, an SDK
//! interceptor that counts attempts, and fakes at the SDK's HTTP boundary.

#![allow(dead_code)] // each test file uses a different subset

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents, SharedHttpClient,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use secure_ml_core::aws::DynamoSettings;
use secure_ml_core::config::Vars;
use secure_ml_core::ratelimit::RateLimitConfig;

/// A limiter configuration from literal variables on top of a test table.
pub fn config(pairs: &[(&str, &str)]) -> RateLimitConfig {
    let vars = pairs.iter().fold(
        Vars::from_pairs([("RATE_LIMIT_TABLE", "rl-test")]),
        |vars, (k, v)| vars.with(k, v),
    );
    RateLimitConfig::from_vars(&vars).expect("test configuration is valid")
}

/// Counts every attempt the SDK makes (retries included), i.e. every request DynamoDB sees.
#[derive(Debug, Clone, Default)]
pub struct Attempts(Arc<AtomicUsize>);

impl Attempts {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "Attempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A DynamoDB client config builder with the limiter's timeouts and retries, test
/// credentials, and the given HTTP client and attempt counter.
pub fn client_config(
    settings: &DynamoSettings,
    http_client: SharedHttpClient,
    attempts: &Attempts,
) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .timeout_config(settings.timeout_config())
        .retry_config(settings.retry_config())
        .http_client(http_client)
        .interceptor(attempts.clone())
}

/// A DynamoDB JSON error response, as the service sends it.
pub fn dynamodb_error(status: u16, error_type: &str, extra: serde_json::Value) -> HttpResponse {
    let mut body = serde_json::json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{error_type}"),
        "message": format!("{error_type} (fake)"),
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    HttpResponse::new(
        StatusCode::try_from(status).expect("valid status"),
        SdkBody::from(body.to_string()),
    )
}

/// An HTTP client whose every request hangs for `delay` before answering `{}`.
pub fn hanging_http_client(delay: Duration) -> SharedHttpClient {
    #[derive(Debug)]
    struct Hang(Duration);

    impl HttpConnector for Hang {
        fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
            let delay = self.0;
            HttpConnectorFuture::new(async move {
                tokio::time::sleep(delay).await;
                Ok(HttpResponse::new(
                    StatusCode::try_from(200_u16).expect("valid status"),
                    SdkBody::from("{}"),
                ))
            })
        }
    }

    let connector = SharedHttpConnector::new(Hang(delay));
    http_client_fn(move |_, _| connector.clone())
}
