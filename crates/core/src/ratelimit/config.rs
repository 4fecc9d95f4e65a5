//! Policies and settings, read once at init from a [`Vars`] snapshot.

use std::str::FromStr;

#[cfg(feature = "aws")]
use super::gcra::Rate;
use crate::auth::Tier;
use crate::aws::DynamoSettings;
use crate::config::{self, ConfigError, UnknownValue, Var, Vars};

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
            _ => Err(UnknownValue::expected("\"enforce\" or \"shadow\"")),
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
            _ => Err(UnknownValue::expected("\"fail-closed\" or \"fail-open\"")),
        }
    }
}

/// Everything the rate limiter is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_TABLE`.
    pub table: String,
    /// `PREDICT_RATE_PER_MINUTE`, `PREDICT_BURST`.
    pub predict: Policy,
    /// The predict policy × `PREMIUM_MULTIPLIER`.
    pub predict_premium: Policy,
    /// `TOKEN_RATE_PER_MINUTE`, `TOKEN_BURST`.
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
        let table = vars.required(&config::RATE_LIMIT_TABLE)?.trim().to_owned();
        let predict = per_minute(
            vars,
            "predict",
            &config::PREDICT_RATE_PER_MINUTE,
            &config::PREDICT_BURST,
        )?;
        let token = per_minute(
            vars,
            "token",
            &config::TOKEN_RATE_PER_MINUTE,
            &config::TOKEN_BURST,
        )?;
        let multiplier: u32 = vars.positive(&config::PREMIUM_MULTIPLIER)?;
        let predict_premium = predict.scaled(multiplier).map_err(|e| {
            ConfigError::invalid(
                &config::PREMIUM_MULTIPLIER,
                format!("{e} (got {multiplier})"),
            )
        })?;
        Ok(Self {
            table,
            predict,
            predict_premium,
            token,
            mode: vars.parse(&config::RATE_LIMIT_MODE)?,
            fail_policy: vars.parse(&config::RATE_LIMIT_FAIL_POLICY)?,
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
    rate: &Var,
    burst: &Var,
) -> Result<Policy, ConfigError> {
    let quota = vars.positive(rate)?;
    let burst_value = vars.positive(burst)?;
    Policy::new(name, quota, MINUTE, burst_value).map_err(|e| {
        let var = match e {
            PolicyError::ZeroBurst => burst,
            _ => rate,
        };
        ConfigError::invalid(var, e.to_string())
    })
}
