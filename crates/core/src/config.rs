//! Typed configuration, read once at init, and the configuration contract.
//!
//! [`VARIABLES`] is the one list of every variable a program of this project reads: its name,
//! who reads it, its default, and what it means. The parsers below take their names and
//! defaults from it; everything else is derived from it or checked against it by a test —
//! `template.yaml`'s environment blocks and parameter defaults, the README's configuration
//! table, the local stack's function environment (`admin config vars`), the benchmark
//! harness's function environment and the init tests' variable lists.
//!
//! Every function builds its configuration from a [`Vars`] snapshot: in production that is the
//! process environment read once in `main`, in tests a literal map. Handlers never read the
//! environment, and nothing here calls `std::env::set_var`, so tests can run in parallel.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

/// A program that reads configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Program {
    /// The prediction function.
    Predict,
    /// The token function.
    Token,
    /// The operators' command-line tool.
    Admin,
}

impl Program {
    pub const ALL: [Program; 3] = [Program::Predict, Program::Token, Program::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Self::Predict => "predict",
            Self::Token => "token",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for Program {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown program {s:?} (predict, token or admin)"))
    }
}

/// Whether a variable must be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Init stops when it is unset.
    Required,
    /// Unset means this value.
    Default(&'static str),
    /// Exactly one of this variable and the named one is set: the AWS resource (on AWS) or a
    /// local file (the local stack).
    OneOf(&'static str),
    /// May be unset; unset means the behaviour its meaning describes.
    Optional,
}

/// One configuration variable of the contract.
#[derive(Debug, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    pub readers: &'static [Program],
    pub presence: Presence,
    /// Only for the local stack; never set on AWS (the template must not set it).
    pub local_only: bool,
    pub meaning: &'static str,
}

impl Var {
    /// Whether `program` reads this variable.
    pub fn read_by(&self, program: Program) -> bool {
        self.readers.contains(&program)
    }

    /// The default, if unset means a value.
    pub fn default(&self) -> Option<&'static str> {
        match self.presence {
            Presence::Default(value) => Some(value),
            _ => None,
        }
    }
}

use Program::{Admin, Predict, Token};

const FUNCTIONS: &[Program] = &[Predict, Token];

macro_rules! var {
    ($name:ident, $readers:expr, $presence:expr, $meaning:expr) => {
        var!($name, $readers, $presence, false, $meaning);
    };
    ($name:ident, $readers:expr, $presence:expr, $local:expr, $meaning:expr) => {
        #[doc = $meaning]
        pub const $name: Var = Var {
            name: stringify!($name),
            readers: $readers,
            presence: $presence,
            local_only: $local,
            meaning: $meaning,
        };
    };
}

var!(
    RATE_LIMIT_TABLE,
    &[Predict, Token, Admin],
    Presence::Required,
    "rate-limit table name; its item `jwks` is the public key set (admin writes it, predict reads it)"
);
var!(
    CLIENTS_TABLE,
    &[Token, Admin],
    Presence::Required,
    "clients table name"
);
var!(
    TOKEN_ISSUER,
    FUNCTIONS,
    Presence::Required,
    "`iss` of issued and accepted tokens"
);
var!(
    TOKEN_AUDIENCE,
    FUNCTIONS,
    Presence::Required,
    "`aud` of issued and accepted tokens"
);
var!(
    TOKEN_LIFETIME_SECONDS,
    &[Token, Admin],
    Presence::Default("900"),
    "access token lifetime (60 to 3600); admin keeps retired keys this long plus 330 s"
);
var!(
    SIGNING_KEYS_SECRET_ID,
    &[Token, Admin],
    Presence::OneOf("SIGNING_KEYS_FILE"),
    "private key set in Secrets Manager (AWS)"
);
var!(
    SIGNING_KEYS_FILE,
    &[Token, Admin],
    Presence::OneOf("SIGNING_KEYS_SECRET_ID"),
    true,
    "private key set in a 0600 file (local)"
);
var!(
    PREDICT_RATE_PER_MINUTE,
    &[Predict],
    Presence::Default("60"),
    "sustained predictions per minute per source IP (free tier)"
);
var!(
    PREDICT_BURST,
    &[Predict],
    Presence::Default("20"),
    "predictions a source IP may make at once (free tier)"
);
var!(
    PREMIUM_MULTIPLIER,
    &[Predict],
    Presence::Default("5"),
    "multiplies the predict rate and burst for `tier: premium` tokens"
);
var!(
    TOKEN_RATE_PER_MINUTE,
    &[Token],
    Presence::Default("10"),
    "sustained token requests per minute per source IP"
);
var!(
    TOKEN_BURST,
    &[Token],
    Presence::Default("5"),
    "token requests a source IP may make at once"
);
var!(
    RATE_LIMIT_MODE,
    FUNCTIONS,
    Presence::Default("enforce"),
    "`shadow`: count and report, never refuse"
);
var!(
    RATE_LIMIT_FAIL_POLICY,
    FUNCTIONS,
    Presence::Default("fail-closed"),
    "DynamoDB unreachable or throttled as a whole: `fail-closed` (503 + `Retry-After`) or `fail-open` (admit, log, count)"
);
var!(
    DYNAMODB_ATTEMPT_TIMEOUT_MS,
    FUNCTIONS,
    Presence::Default("250"),
    "timeout of one DynamoDB attempt, connecting included"
);
var!(
    DYNAMODB_OPERATION_TIMEOUT_MS,
    FUNCTIONS,
    Presence::Default("800"),
    "timeout of one DynamoDB call, retries included"
);
var!(
    DYNAMODB_MAX_ATTEMPTS,
    FUNCTIONS,
    Presence::Default("3"),
    "attempts per DynamoDB call (1 to 10)"
);
var!(
    REJECTION_LIMIT,
    FUNCTIONS,
    Presence::Default("50"),
    "rejected requests (400, 401, 403, 404, 405, 413, 415, 422) one source may send an instance per window before it answers 429 without looking"
);
var!(
    REJECTION_WINDOW_SECONDS,
    FUNCTIONS,
    Presence::Default("60"),
    "the window of `REJECTION_LIMIT`"
);
var!(
    RUST_LOG,
    FUNCTIONS,
    Presence::Default("info"),
    "log filter (`info`: one line per request; `debug` adds every rate-limit decision)"
);
var!(
    AWS_ENDPOINT_URL_DYNAMODB,
    &[Predict, Token, Admin],
    Presence::Optional,
    true,
    "DynamoDB endpoint: DynamoDB Local; unset on AWS"
);
var!(
    SSL_CERT_FILE,
    FUNCTIONS,
    Presence::Optional,
    "PEM bundle of the certificate authorities the functions trust instead of the Amazon Trust Services roots built in (an endpoint under another CA, such as a TLS proxy or DynamoDB Local behind TLS)"
);

/// The contract: every variable any program of this project reads.
pub const VARIABLES: &[&Var] = &[
    &RATE_LIMIT_TABLE,
    &CLIENTS_TABLE,
    &TOKEN_ISSUER,
    &TOKEN_AUDIENCE,
    &TOKEN_LIFETIME_SECONDS,
    &SIGNING_KEYS_SECRET_ID,
    &SIGNING_KEYS_FILE,
    &PREDICT_RATE_PER_MINUTE,
    &PREDICT_BURST,
    &PREMIUM_MULTIPLIER,
    &TOKEN_RATE_PER_MINUTE,
    &TOKEN_BURST,
    &RATE_LIMIT_MODE,
    &RATE_LIMIT_FAIL_POLICY,
    &DYNAMODB_ATTEMPT_TIMEOUT_MS,
    &DYNAMODB_OPERATION_TIMEOUT_MS,
    &DYNAMODB_MAX_ATTEMPTS,
    &REJECTION_LIMIT,
    &REJECTION_WINDOW_SECONDS,
    &RUST_LOG,
    &AWS_ENDPOINT_URL_DYNAMODB,
    &SSL_CERT_FILE,
];

/// What the Lambda service itself sets for every function (region and the execution role's
/// credentials); locally the stack sets fakes. Not part of the contract, but a function's
/// environment needs them.
pub const PLATFORM: &[&str] = &["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

/// The variables `program` reads, in contract order.
pub fn read_by(program: Program) -> impl Iterator<Item = &'static Var> {
    VARIABLES
        .iter()
        .copied()
        .filter(move |v| v.read_by(program))
}

/// The contract entry named `name`.
pub fn lookup(name: &str) -> Option<&'static Var> {
    VARIABLES.iter().copied().find(|v| v.name == name)
}

/// A value outside a small set of accepted words; the message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}")]
pub struct UnknownValue {
    expected: &'static str,
}

impl UnknownValue {
    /// `expected` lists the accepted values, e.g. `"enforce" or "shadow"`.
    pub fn expected(expected: &'static str) -> Self {
        Self { expected }
    }
}

/// A snapshot of configuration variables (name → value).
#[derive(Debug, Clone, Default)]
pub struct Vars(HashMap<String, String>);

/// A configuration value is missing or malformed. The message names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration variable {name} is required but not set")]
    Missing { name: String },
    #[error("configuration variable {name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
}

impl ConfigError {
    /// `var` is set to something unacceptable, for `reason`.
    pub fn invalid(var: &Var, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name: var.name.to_owned(),
            reason: reason.into(),
        }
    }
}

impl Vars {
    /// Snapshot of the process environment. Call once, in `main`.
    pub fn from_env() -> Self {
        Self(std::env::vars().collect())
    }

    /// Build from literal pairs (tests, tools).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// Returns a copy with `name` set to `value` (tests).
    #[must_use]
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The value of `name`, treating an empty string as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The value of `var` as set, else its default; `None` when neither exists.
    pub fn value(&self, var: &Var) -> Option<&str> {
        self.get(var.name).or(var.default())
    }

    /// The value of a required `var`, or [`ConfigError::Missing`].
    pub fn required(&self, var: &Var) -> Result<&str, ConfigError> {
        self.value(var).ok_or_else(|| ConfigError::Missing {
            name: var.name.to_owned(),
        })
    }

    /// `var` parsed (its default when unset); a required variable that is unset is
    /// [`ConfigError::Missing`].
    pub fn parse<T>(&self, var: &Var) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.required(var)?;
        raw.trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::invalid(var, format!("{e} (got {raw:?})")))
    }

    /// `var` parsed as a whole number of at least 1.
    pub fn positive<T>(&self, var: &Var) -> Result<T, ConfigError>
    where
        T: FromStr + Default + PartialEq + Display,
        T::Err: Display,
    {
        let value: T = self.parse(var)?;
        if value == T::default() {
            return Err(ConfigError::invalid(var, "must be at least 1 (got 0)"));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_value_names_the_variable() {
        let err = Vars::default().required(&CLIENTS_TABLE).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration variable CLIENTS_TABLE is required but not set"
        );
    }

    #[test]
    fn malformed_value_names_the_variable_and_the_value() {
        let vars = Vars::from_pairs([("TOKEN_LIFETIME_SECONDS", "soon")]);
        let err = vars.parse::<u64>(&TOKEN_LIFETIME_SECONDS).unwrap_err();
        assert!(err.to_string().contains("TOKEN_LIFETIME_SECONDS"));
        assert!(err.to_string().contains("\"soon\""));
    }

    #[test]
    fn empty_value_counts_as_unset_and_gets_the_default() {
        let vars = Vars::from_pairs([("PREDICT_BURST", "  ")]);
        assert_eq!(vars.parse::<u32>(&PREDICT_BURST), Ok(20));
    }

    #[test]
    fn zero_is_not_positive() {
        let vars = Vars::from_pairs([("PREDICT_BURST", "0")]);
        assert!(
            vars.positive::<u32>(&PREDICT_BURST)
                .unwrap_err()
                .to_string()
                .contains("at least 1")
        );
    }

    #[test]
    fn the_contract_names_each_variable_once_and_pairs_point_at_each_other() {
        let mut seen = std::collections::HashSet::new();
        for var in VARIABLES {
            assert!(seen.insert(var.name), "{} twice", var.name);
            assert!(!var.readers.is_empty(), "{} has no reader", var.name);
            if let Presence::OneOf(other) = var.presence {
                let other = lookup(other).unwrap_or_else(|| panic!("{other} missing"));
                assert_eq!(other.presence, Presence::OneOf(var.name));
                assert_eq!(other.readers, var.readers);
            }
        }
    }
}
