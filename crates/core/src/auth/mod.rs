//! Access tokens, signing keys and the client registry.
//!
//! Layout:
//! - [`keys`]: the private Ed25519 [`KeySet`] (with rotation and pruning) and the public [`Jwks`].
//! - [`store`]: where key sets and JWKS live: files locally, Secrets Manager on AWS.
//! - [`token`]: [`TokenIssuer`] signs RFC 9068 `at+jwt` access tokens with the active key.
//! - [`verify`]: [`Verifier`] checks `Authorization: Bearer` tokens against an in-memory JWKS.
//! - [`secret`]: client ids, client secrets and their salted hashes (constant-time comparison).
//! - [`registry`]: the DynamoDB client table and [`registry::authenticate`].
//! - [`client_auth`]: the token endpoint's form body and HTTP Basic client credentials.
//!
//! # Key distribution
//!
//! ```text
//!   admin keys generate|rotate|revoke|publish
//!      │ 1. item `jwks` of RATE_LIMIT_TABLE   public JWKS, written first, so verifiers can
//!      │                                      learn a key before any token is signed with it
//!      │ 2. SIGNING_KEYS_SECRET_ID            private key set (readable by the token function only)
//!      ▼
//!   token function ── loads the key set at init, re-reads it every KEY_REFRESH_SECONDS (300 s),
//!                     signs with the active key, serves GET /.well-known/jwks.json from it
//!   predict function ─ reads the JWKS item at init and when its copy is 300 s old; a token
//!                     whose `kid` it does not know triggers one bounded reload
//! ```
//!
//! The private half is a Secrets Manager secret on AWS (readable by the token function only,
//! SPEC §5) and a 0600 file locally (`SIGNING_KEYS_FILE`). The public half is an item of the
//! rate-limit table, on AWS and locally alike; why not a second secret: see [`store`].

//! # Rotation timeline
//!
//! ```text
//!   t0 rotate: K1 retired_at=t0, K2 active ─────────────────────────────────────────────▶
//!   t0 … t0+300s   token instances still holding the old set may sign with K1
//!   K1 stays in the JWKS until t0 + retention, retention = lifetime + 300 s refresh + 30 s leeway,
//!   so every token K1 signed has expired before K1 disappears; the next rotation prunes it.
//! ```
//!
//! # Client secrets
//!
//! 256 random bits (OsRng), shown once, stored as SHA-256(salt ‖ secret) with a 128-bit per-client
//! salt. A slow KDF (Argon2, bcrypt) protects *low-entropy* passwords from offline guessing; a
//! 256-bit random secret cannot be guessed, so a fast hash loses nothing and keeps the token
//! endpoint cheap. Comparison is constant-time (`subtle`), and an unknown or disabled client does
//! the same hash + comparison work as a wrong secret (see [`registry::authenticate`]).
//!
//! # The `Bearer` scheme is case-insensitive
//!
//! RFC 6750 §2.1 spells the scheme `Bearer`, but it is an HTTP authentication scheme, and
//! RFC 9110 §11.1 says those are matched case-insensitively. Refusing `bearer` would break
//! conforming clients and buy no security, so [`Verifier::verify`] accepts any casing.
//! The token itself is taken only from the `Authorization` header: never from a query string
//! or body (RFC 6750 §2.2/§2.3 are optional and leak tokens into logs and caches).

pub mod client_auth;
pub mod keys;
pub mod oauth;
#[cfg(feature = "aws")]
pub mod registry;
pub mod secret;
pub mod store;
pub mod token;
pub mod verify;

use std::str::FromStr;

use crate::config::UnknownValue;

pub use keys::{Jwks, KeySet, PublicJwk};
#[cfg(feature = "aws")]
pub use registry::{ClientRecord, ClientRegistry, ClientStatus, RegistryError};
pub use secret::ClientSecret;
pub use store::{JwksSource, KeySetSource, SigningKeys};
pub use token::{IssuedToken, TokenIssuer, TokenSettings};
pub use verify::{AccessClaims, Verifier, VerifierConfig};

/// A client's service tier: a claim of its access tokens, and the multiplier of its predict
/// rate limit (premium).
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
            _ => Err(UnknownValue::expected("\"free\" or \"premium\"")),
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scope for single and batch predictions and `GET /model`.
pub const SCOPE_PREDICT: &str = "predict";
/// Scope that adds class probabilities to prediction responses.
pub const SCOPE_PROBA: &str = "predict:proba";
/// Every scope a client can hold, in canonical order.
pub const KNOWN_SCOPES: [&str; 2] = [SCOPE_PREDICT, SCOPE_PROBA];

/// Longest access-token lifetime `TOKEN_LIFETIME_SECONDS` may set (the template's `MaxValue`).
pub const MAX_TOKEN_LIFETIME_SECONDS: u64 = 3600;
/// Clock-skew allowance for `exp` and `nbf`. Small and fixed (RFC 8725 §3.10 spirit).
pub const LEEWAY_SECONDS: u64 = 30;
/// How often the token function re-reads its private key set.
pub const KEY_REFRESH_SECONDS: u64 = 300;
/// Minimum interval between two JWKS reloads triggered by an unknown `kid`, per verifier.
pub const JWKS_RELOAD_INTERVAL_SECONDS: u64 = 60;
/// Tokens longer than this are refused before any parsing. Ours are ~600 bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The JWT header `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// How long a retired key must stay verifiable: every token it may have signed must have
/// expired first. Covers the token lifetime, token functions still holding the previous key set
/// (refresh interval) and clock leeway.
pub fn key_retention_seconds(token_lifetime_seconds: u64) -> u64 {
    token_lifetime_seconds
        .saturating_add(KEY_REFRESH_SECONDS)
        .saturating_add(LEEWAY_SECONDS)
}

/// Parses a space-separated scope list (RFC 6749 §3.3) into known scopes, deduplicated, in
/// canonical order. Unknown names are an error naming the first one.
pub fn parse_scopes(raw: &str) -> Result<Vec<String>, String> {
    let mut wanted = Vec::new();
    for name in raw.split(' ').filter(|s| !s.is_empty()) {
        if !KNOWN_SCOPES.contains(&name) {
            return Err(format!("unknown scope {name:?}"));
        }
        wanted.push(name);
    }
    Ok(KNOWN_SCOPES
        .iter()
        .filter(|known| wanted.contains(known))
        .map(|s| (*s).to_owned())
        .collect())
}

/// Serde for [`Tier`] as its lowercase name (`"free"`, `"premium"`), as tokens and the client
/// table carry it.
pub mod tier_serde {
    use super::Tier;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(tier: &Tier, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tier.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tier, D::Error> {
        let raw = std::borrow::Cow::<'de, str>::deserialize(d)?;
        raw.parse().map_err(|_| D::Error::custom("unknown tier"))
    }
}

/// Errors of key handling: parsing, storage, signing. Messages are sentences; none carries key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the signing key set is invalid: {0}")]
    InvalidKeySet(String),
    #[error("the JWKS is invalid: {0}")]
    InvalidJwks(String),
    #[error("the signing key set has no active key; run `admin keys generate`")]
    NoActiveKey,
    #[error("could not read {what} from {location}: {reason}")]
    Load {
        what: &'static str,
        location: String,
        reason: String,
    },
    #[error("the signing key set in {location} has no active key; run `admin keys generate`")]
    NoActiveKeyIn { location: String },
    #[error("could not write {what} to {location}: {reason}")]
    Save {
        what: &'static str,
        location: String,
        reason: String,
    },
    #[error("could not sign the access token: {0}")]
    Signing(String),
    #[error("the cryptographic self-test failed: {0}")]
    SelfTest(String),
}

/// Signs and verifies a token with a throwaway key through the same jsonwebtoken backend the
/// functions use, so a broken crypto provider fails at init, not on the first request.
pub fn self_test() -> Result<(), AuthError> {
    let set = KeySet::generate(0).map_err(|e| AuthError::SelfTest(e.to_string()))?;
    let settings = TokenSettings {
        issuer: "self-test".into(),
        audience: "self-test".into(),
        lifetime_seconds: 60,
    };
    let now = token::unix_now();
    let issuer = TokenIssuer::new(&set, settings)?;
    let issued = issuer.issue("cl_selftest", &[SCOPE_PREDICT.to_owned()], Tier::Free, now)?;
    let verifier = Verifier::from_jwks("self-test", "self-test", &set.public_jwks(now, 60))
        .map_err(|e| AuthError::SelfTest(e.to_string()))?;
    verifier
        .verify_token_with_loaded_keys(&issued.access_token)
        .map(|_| ())
        .map_err(|e| AuthError::SelfTest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_deduplicated_and_put_in_canonical_order() {
        assert_eq!(
            parse_scopes("predict:proba  predict predict").unwrap(),
            vec!["predict".to_owned(), "predict:proba".to_owned()]
        );
        assert_eq!(parse_scopes("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn unknown_scope_is_named_in_the_error() {
        assert!(
            parse_scopes("predict admin")
                .unwrap_err()
                .contains("\"admin\"")
        );
    }

    #[test]
    fn tier_round_trips_through_its_string_form() {
        for tier in [Tier::Free, Tier::Premium] {
            assert_eq!(tier.as_str().parse::<Tier>().unwrap(), tier);
        }
        assert!("gold".parse::<Tier>().is_err());
    }

    #[test]
    fn tier_serializes_as_its_lowercase_name() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Wrapper(#[serde(with = "tier_serde")] Tier);
        assert_eq!(
            serde_json::to_string(&Wrapper(Tier::Premium)).unwrap(),
            "\"premium\""
        );
        assert!(serde_json::from_str::<Wrapper>("\"free\"").is_ok_and(|w| w.0 == Tier::Free));
        assert!(serde_json::from_str::<Wrapper>("\"gold\"").is_err());
    }

    #[test]
    fn retention_covers_lifetime_refresh_and_leeway() {
        assert_eq!(key_retention_seconds(900), 900 + 300 + 30);
    }

    #[test]
    fn crypto_self_test_passes() {
        self_test().unwrap();
    }
}
