//! Policies and settings, read once at init from a [`Vars`] snapshot.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

#[cfg(feature = "aws")]
use super::gcra::Rate;
use crate::config::{ConfigError, Vars};

/// The window every configured policy is expressed in (`*_RATE_PER_MINUTE`).
const MINUTE: u32 = 60;

/// A rate-limit policy: `quota` requests per `window` seconds, of which up to `burst` may
/// arrive at once. Valid by construction (see [`Policy::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    name: &'static str,
    quota: u32,
    window: u32,
    burst: u32,
}

/// Why a policy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the quota must be at least 1")]
    ZeroQuota,
    #[error("the window must be at least 1 second")]
    ZeroWindow,
    #[error("the burst must be at least 1")]
    ZeroBurst,
    #[error(
        "{quota} per {window} s is one request every {window}000/{quota} ms, which is not a whole \
         number of milliseconds; choose a quota that divides {window}000 (e.g. 10, 12, 15, 20, 30, \
         60, 100, 120, 300, 600, 1000)"
    )]
    FractionalInterval { quota: u64, window: u32 },
    #[error("the policy's numbers are too large")]
    Overflow,
}

impl Policy {
    /// A policy named `name` (the `RateLimit-Policy` identifier) admitting `quota` requests per
    /// `window_secs` with bursts of up to `burst`.
    ///
    /// The emission interval `window / quota` must be a whole number of milliseconds: the
    /// limiter's arithmetic is then exact integers end to end (and the stored `tat` readable
    /// epoch milliseconds). A fractional interval would either drift, or need a per-policy unit
    /// that silently misreads stored state whenever a policy changes.
    pub fn new(
        name: &'static str,
        quota: u32,
        window_secs: u32,
        burst: u32,
    ) -> Result<Self, PolicyError> {
        if quota == 0 {
            return Err(PolicyError::ZeroQuota);
        }
        if window_secs == 0 {
            return Err(PolicyError::ZeroWindow);
        }
        if burst == 0 {
            return Err(PolicyError::ZeroBurst);
        }
        let window_ms = u64::from(window_secs) * 1_000;
        if window_ms % u64::from(quota) != 0 {
            return Err(PolicyError::FractionalInterval {
                quota: u64::from(quota),
                window: window_secs,
            });
        }
        Ok(Self {
            name,
            quota,
            window: window_secs,
            burst,
        })
    }

    /// This policy with its quota and burst multiplied by `factor` (premium tier). The
    /// capacity in time, burst × interval, is unchanged: each request simply costs less of it,
    /// which is why tiers can share one bucket per key.
    pub fn scaled(&self, factor: u32) -> Result<Self, PolicyError> {
        let quota = self
            .quota
            .checked_mul(factor)
            .ok_or(PolicyError::Overflow)?;
        let burst = self
            .burst
            .checked_mul(factor)
            .ok_or(PolicyError::Overflow)?;
        Self::new(self.name, quota, self.window, burst)
    }

    /// The identifier used in `RateLimit-Policy` and `RateLimit` (`"predict"`, `"token"`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Requests admitted per window at the sustained rate (`q`).
    pub fn quota(&self) -> u32 {
        self.quota
    }

    /// The window in seconds (`w`).
    pub fn window_secs(&self) -> u32 {
        self.window
    }

    /// Requests admitted at once from an idle key.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// T, the time one request costs, in milliseconds.
    pub fn interval_ms(&self) -> u64 {
        u64::from(self.window) * 1_000 / u64::from(self.quota)
    }

    #[cfg(feature = "aws")]
    pub(crate) fn rate(&self) -> Rate {
        Rate {
            interval: self.interval_ms(),
            burst: self.burst,
        }
    }
}

/// An error parsing one of the small enums below; the message lists the accepted values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}")]
pub struct UnknownValue {
    expected: &'static str,
}

/// A client's service tier, from its access token. Premium multiplies the predict policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tier {
    #[default]
    Free,
    Premium,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Premium => "premium",
        }
    }
}

impl FromStr for Tier {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "free" => Ok(Self::Free),
            "premium" => Ok(Self::Premium),
            _ => Err(UnknownValue {
                expected: "\"free\" or \"premium\"",
            }),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A route group: the routes that share one budget per client key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// `POST /predict`, `POST /predict/batch`, `GET /model`, at the caller's tier.
    Predict(Tier),
    /// `POST /token`, checked before the client's credentials.
    Token,
}

impl Group {
    /// The group's name: the prefix of its items' `pk` and its policy's name.
    /// Tiers share the predict bucket (see [`Policy::scaled`]).
    pub fn name(self) -> &'static str {
        match self {
            Self::Predict(_) => "predict",
            Self::Token => "token",
        }
    }
}

/// Whether refusals are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Refuse requests over the limit.
    #[default]
    Enforce,
    /// Decide, count and report exactly as `Enforce`, but admit every request: for rolling
    /// out new limits safely.
    Shadow,
}

impl FromStr for Mode {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enforce" => Ok(Self::Enforce),
            "shadow" => Ok(Self::Shadow),
            _ => Err(UnknownValue {
                expected: "\"enforce\" or \"shadow\"",
            }),
        }
    }
}

/// What to do when DynamoDB cannot be asked (timeout, unreachable, server error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailPolicy {
    /// Answer 503 with `Retry-After`: no request escapes the limit.
    #[default]
    FailClosed,
    /// Admit the request, log a warning and count it: availability over the limit.
    FailOpen,
}

impl FromStr for FailPolicy {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail-closed" => Ok(Self::FailClosed),
            "fail-open" => Ok(Self::FailOpen),
            _ => Err(UnknownValue {
                expected: "\"fail-closed\" or \"fail-open\"",
            }),
        }
    }
}

/// Timeouts and retries of every DynamoDB call, shared by both functions' clients.
///
/// The operation timeout bounds a call including its retries; it should sit well under the
/// function timeout so a slow DynamoDB turns into a 503 (or a fail-open admission), never a
/// Lambda timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamoSettings {
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub max_attempts: u32,
}

impl Default for DynamoSettings {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_millis(200),
            operation_timeout: Duration::from_millis(800),
            max_attempts: 3,
        }
    }
}

impl DynamoSettings {
    /// Reads `DYNAMODB_ATTEMPT_TIMEOUT_MS` (200), `DYNAMODB_OPERATION_TIMEOUT_MS` (800) and
    /// `DYNAMODB_MAX_ATTEMPTS` (3).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let attempt = positive(
            vars,
            "DYNAMODB_ATTEMPT_TIMEOUT_MS",
            millis(defaults.attempt_timeout),
        )?;
        let operation = positive(
            vars,
            "DYNAMODB_OPERATION_TIMEOUT_MS",
            millis(defaults.operation_timeout),
        )?;
        if operation < attempt {
            return Err(invalid(
                "DYNAMODB_OPERATION_TIMEOUT_MS",
                format!(
                    "must be at least DYNAMODB_ATTEMPT_TIMEOUT_MS ({attempt} ms) (got {operation})"
                ),
            ));
        }
        let max_attempts = positive(vars, "DYNAMODB_MAX_ATTEMPTS", defaults.max_attempts)?;
        if max_attempts > 10 {
            return Err(invalid(
                "DYNAMODB_MAX_ATTEMPTS",
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

/// A DynamoDB client with [`DynamoSettings`]' timeouts and retries; region, credentials and
/// endpoint (`AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local) come from the environment as usual.
/// Build it once in `main` and share it.
#[cfg(feature = "aws")]
pub async fn dynamodb_client(settings: &DynamoSettings) -> aws_sdk_dynamodb::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(settings.timeout_config())
        .retry_config(settings.retry_config())
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

/// Checks at init that `table` (named by the environment variable `variable`) exists, so a
/// deployment pointing at a missing table fails its init with one line that names it instead of
/// answering 503 to every request. Only answers that prove a misconfiguration are errors (no such
/// table, no permission); an unreachable or throttled DynamoDB is logged and left to each
/// request's fail policy, so a passing blip cannot fail cold starts. The call also opens the
/// connection the first request would otherwise have to open.
#[cfg(feature = "aws")]
pub async fn check_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    variable: &str,
) -> Result<(), String> {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
    use aws_smithy_types::error::display::DisplayErrorContext;

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

/// Everything the rate limiter is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_TABLE`.
    pub table: String,
    /// `PREDICT_RATE_PER_MINUTE` (60), `PREDICT_BURST` (20).
    pub predict: Policy,
    /// The predict policy × `PREMIUM_MULTIPLIER` (5).
    pub predict_premium: Policy,
    /// `TOKEN_RATE_PER_MINUTE` (10), `TOKEN_BURST` (5).
    pub token: Policy,
    /// `RATE_LIMIT_MODE`: `enforce` (default) or `shadow`.
    pub mode: Mode,
    /// `RATE_LIMIT_FAIL_POLICY`: `fail-closed` (default) or `fail-open`.
    pub fail_policy: FailPolicy,
    /// `DYNAMODB_*`; the operation timeout also bounds a whole decision.
    pub dynamo: DynamoSettings,
}

impl RateLimitConfig {
    /// Reads and validates the configuration; an error names the offending variable.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let table = vars.required("RATE_LIMIT_TABLE")?.trim().to_owned();
        let predict = per_minute(
            vars,
            "predict",
            ("PREDICT_RATE_PER_MINUTE", 60),
            ("PREDICT_BURST", 20),
        )?;
        let token = per_minute(
            vars,
            "token",
            ("TOKEN_RATE_PER_MINUTE", 10),
            ("TOKEN_BURST", 5),
        )?;
        let multiplier = positive(vars, "PREMIUM_MULTIPLIER", 5)?;
        let predict_premium = predict
            .scaled(multiplier)
            .map_err(|e| invalid("PREMIUM_MULTIPLIER", format!("{e} (got {multiplier})")))?;
        Ok(Self {
            table,
            predict,
            predict_premium,
            token,
            mode: vars.parse_or("RATE_LIMIT_MODE", Mode::Enforce)?,
            fail_policy: vars.parse_or("RATE_LIMIT_FAIL_POLICY", FailPolicy::FailClosed)?,
            dynamo: DynamoSettings::from_vars(vars)?,
        })
    }

    /// The policy that applies to a request of `group`.
    pub fn policy(&self, group: Group) -> Policy {
        match group {
            Group::Predict(Tier::Free) => self.predict,
            Group::Predict(Tier::Premium) => self.predict_premium,
            Group::Token => self.token,
        }
    }
}

fn per_minute(
    vars: &Vars,
    name: &'static str,
    (rate_var, rate_default): (&str, u32),
    (burst_var, burst_default): (&str, u32),
) -> Result<Policy, ConfigError> {
    let quota = positive(vars, rate_var, rate_default)?;
    let burst = positive(vars, burst_var, burst_default)?;
    Policy::new(name, quota, MINUTE, burst).map_err(|e| {
        let var = match e {
            PolicyError::ZeroBurst => burst_var,
            _ => rate_var,
        };
        invalid(var, e.to_string())
    })
}

fn positive(vars: &Vars, name: &str, default: u32) -> Result<u32, ConfigError> {
    match vars.parse_or(name, default)? {
        0 => Err(invalid(name, "must be at least 1 (got 0)".to_owned())),
        value => Ok(value),
    }
}

fn invalid(name: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        reason,
    }
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
