//! Typed configuration, read once at init.
//!
//! Every function builds its configuration from a [`Vars`] snapshot: in production that is the
//! process environment read once in `main`, in tests a literal map. Handlers never read the
//! environment, and nothing here calls `std::env::set_var`, so tests can run in parallel.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

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

    /// The value of `name`, or [`ConfigError::Missing`].
    pub fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::Missing {
            name: name.to_owned(),
        })
    }

    /// Parses `name` if set, else returns `default`.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => parse(name, raw),
        }
    }

    /// Parses a required `name`.
    pub fn parse_required<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        parse(name, self.required(name)?)
    }
}

fn parse<T>(name: &str, raw: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    raw.trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::Invalid {
            name: name.to_owned(),
            reason: format!("{e} (got {raw:?})"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_value_names_the_variable() {
        let err = Vars::default().required("CLIENTS_TABLE").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration variable CLIENTS_TABLE is required but not set"
        );
    }

    #[test]
    fn malformed_value_names_the_variable_and_the_value() {
        let vars = Vars::from_pairs([("TOKEN_LIFETIME_SECONDS", "soon")]);
        let err = vars
            .parse_or::<u64>("TOKEN_LIFETIME_SECONDS", 900)
            .unwrap_err();
        assert!(err.to_string().contains("TOKEN_LIFETIME_SECONDS"));
        assert!(err.to_string().contains("\"soon\""));
    }

    #[test]
    fn empty_value_counts_as_unset() {
        let vars = Vars::from_pairs([("X", "  ")]);
        assert_eq!(vars.parse_or::<u32>("X", 7), Ok(7));
    }
}
