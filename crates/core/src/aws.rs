//! AWS: the SDK configuration and clients, built once per cold start and shared by reference.
//!
//! Both functions call DynamoDB on every admitted request, so its client carries the explicit
//! per-attempt and per-operation timeouts and bounded retries of [`DynamoSettings`]; Secrets
//! Manager is read at init and on rare key reloads, with its own fixed bounds. Region,
//! credentials and endpoints come from the environment as usual (`AWS_ENDPOINT_URL_DYNAMODB`
//! points DynamoDB at DynamoDB Local); no code path differs between local and AWS.
//!
//! [`DynamoSettings`] is plain configuration and always compiled; everything that talks to AWS
//! sits behind the `aws` feature.

use std::time::Duration;

use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::config::{self, ConfigError, Vars};

/// Timeouts and retries of every DynamoDB call.
///
/// The operation timeout bounds a call including its retries; it sits well under the function
/// timeout so a slow DynamoDB turns into a 503 (or a fail-open admission), never a Lambda
/// timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamoSettings {
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_attempts: u32,
}

impl DynamoSettings {
    /// Reads `DYNAMODB_ATTEMPT_TIMEOUT_MS`, `DYNAMODB_OPERATION_TIMEOUT_MS` and
    /// `DYNAMODB_MAX_ATTEMPTS` (defaults in [`config::VARIABLES`]).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let attempt: u32 = vars.positive(&config::DYNAMODB_ATTEMPT_TIMEOUT_MS)?;
        let operation: u32 = vars.positive(&config::DYNAMODB_OPERATION_TIMEOUT_MS)?;
        if operation < attempt {
            return Err(ConfigError::invalid(
                &config::DYNAMODB_OPERATION_TIMEOUT_MS,
                format!(
                    "must be at least DYNAMODB_ATTEMPT_TIMEOUT_MS ({attempt} ms) (got {operation})"
                ),
            ));
        }
        let max_attempts: u32 = vars.positive(&config::DYNAMODB_MAX_ATTEMPTS)?;
        if max_attempts > 10 {
            return Err(ConfigError::invalid(
                &config::DYNAMODB_MAX_ATTEMPTS,
                format!("must be at most 10 (got {max_attempts})"),
            ));
        }
        Ok(Self {
            attempt_timeout: Duration::from_millis(u64::from(attempt)),
            operation_timeout: Duration::from_millis(u64::from(operation)),
            max_attempts,
        })
    }

    /// Per-attempt and per-operation timeouts; connecting counts against the attempt.
    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.attempt_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }

    /// Standard retries, bounded by `max_attempts`, with backoffs scaled to a sub-second
    /// budget (the SDK's default first backoff of 1 s alone would exceed it).
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(Duration::from_millis(20))
            .with_max_backoff(self.attempt_timeout)
    }
}

#[cfg(feature = "secrets")]
pub(crate) use clients::secrets_client;
#[cfg(feature = "aws")]
pub use clients::{Aws, check_table};

#[cfg(feature = "aws")]
mod clients {
    use std::time::Duration;

    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
    use aws_smithy_types::error::display::DisplayErrorContext;
    use aws_smithy_types::timeout::TimeoutConfig;

    use super::DynamoSettings;

    /// The SDK configuration and the DynamoDB client of one function instance.
    #[derive(Debug, Clone)]
    pub struct Aws {
        sdk: aws_config::SdkConfig,
        dynamodb: aws_sdk_dynamodb::Client,
    }

    impl Aws {
        /// Loads the SDK configuration once (region, credentials, endpoints from the
        /// environment) and builds the DynamoDB client with `dynamo`'s bounds.
        pub async fn load(dynamo: &DynamoSettings) -> Self {
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            Self::from_sdk(sdk, dynamo)
        }

        /// The same from an SDK configuration the caller built (tests, tools).
        pub fn from_sdk(sdk: aws_config::SdkConfig, dynamo: &DynamoSettings) -> Self {
            let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
                .timeout_config(dynamo.timeout_config())
                .retry_config(dynamo.retry_config())
                .build();
            Self {
                dynamodb: aws_sdk_dynamodb::Client::from_conf(config),
                sdk,
            }
        }

        /// The shared SDK configuration.
        pub fn sdk(&self) -> &aws_config::SdkConfig {
            &self.sdk
        }

        /// The DynamoDB client (cheap to clone: it is a handle).
        pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
            &self.dynamodb
        }

        /// A Secrets Manager client. Keys are read at init and on rare reloads; those reads
        /// must still never hang a request.
        #[cfg(feature = "secrets")]
        pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
            secrets_client(&self.sdk)
        }
    }

    /// A Secrets Manager client on `sdk` with the bounds key reads need.
    #[cfg(feature = "secrets")]
    pub(crate) fn secrets_client(sdk: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_attempt_timeout(Duration::from_secs(2))
                    .operation_timeout(Duration::from_secs(4))
                    .build(),
            )
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// Checks at init that `table` (named by the configuration variable `variable`) exists, so
    /// a deployment pointing at a missing table fails its init with one line that names it
    /// instead of answering 503 to every request. Only answers that prove a misconfiguration
    /// are errors (no such table, no permission); an unreachable or throttled DynamoDB is
    /// logged and left to each request's fail policy, so a passing blip cannot fail cold
    /// starts. The call also opens the connection the first request would otherwise open.
    pub async fn check_table(
        client: &aws_sdk_dynamodb::Client,
        table: &str,
        variable: &str,
    ) -> Result<(), String> {
        match client.describe_table().table_name(table).send().await {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(DescribeTableError::ResourceNotFoundException(_)) => Err(format!(
                    "DynamoDB table {table:?} ({variable}) does not exist in this account and region"
                )),
                Some(service) if service.code() == Some("AccessDeniedException") => Err(format!(
                    "not allowed to use DynamoDB table {table:?} ({variable}): the function's role needs dynamodb:DescribeTable on it"
                )),
                _ => {
                    tracing::warn!(table, error = %DisplayErrorContext(&error), "DynamoDB did not answer the table check at init; requests follow the fail policy until it does");
                    Ok(())
                }
            },
        }
    }
}
