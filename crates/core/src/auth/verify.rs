//! Access-token verification (RFC 8725, RFC 9068, RFC 6750).
//!
//! Order of checks, cheapest and least trusting first:
//!
//! 1. `Authorization` header: exactly one, scheme `Bearer` (any case), a token after it.
//! 2. Size cap ([`MAX_TOKEN_BYTES`]) and JWS compact shape, before any decoding.
//! 3. Header, parsed by us: `alg` must be exactly `EdDSA`; `typ` must be `at+jwt`; `kid` must be
//!    present; `jku`, `jwk`, `x5u`, `x5c`, `x5t`, `crit` are refused (our issuer never sets them,
//!    and we never fetch or trust keys a token points at).
//! 4. Key lookup by `kid` in the in-memory JWKS; an unknown `kid` may trigger one bounded reload.
//! 5. jsonwebtoken: signature with the key's algorithm (EdDSA only), then `exp`, `nbf`, `iss`,
//!    `aud`, `sub` required and checked with [`LEEWAY_SECONDS`]; numeric dates only.
//! 6. Our claims: `sub == client_id`, a known `tier`.
//!
//! Every refusal is [`ApiError::InvalidToken`] with a short generic `detail`; the token itself is
//! never echoed or logged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::store::{JwksSource, JwksStore};
use super::token::TokenClaims;
use super::{
    ACCESS_TOKEN_TYP, AuthError, JWKS_RELOAD_INTERVAL_SECONDS, Jwks, LEEWAY_SECONDS,
    MAX_TOKEN_BYTES, Tier,
};
use crate::config::{self, ConfigError, Vars};
use crate::problem::ApiError;

/// What a route learns about a caller from a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub tier: Tier,
    pub jti: String,
    pub exp: u64,
}

impl AccessClaims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// `Ok` if the token grants `scope`, else the 403 `insufficient_scope` error.
    pub fn require_scope(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope { scope })
        }
    }
}

/// Verifier configuration: `TOKEN_ISSUER`, `TOKEN_AUDIENCE`, and `JWKS_SECRET_ID` (AWS) or
/// `JWKS_FILE` (local).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks: JwksSource,
}

impl VerifierConfig {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: vars.required(&config::TOKEN_ISSUER)?.to_owned(),
            audience: vars.required(&config::TOKEN_AUDIENCE)?.to_owned(),
            jwks: JwksSource::from_vars(vars)?,
        })
    }
}

type KeyMap = HashMap<String, DecodingKey>;

/// Verifies bearer tokens against an in-memory JWKS. Built once at init; `Send + Sync`.
///
/// The hot path makes no network call. Only a token whose `kid` is unknown makes the verifier
/// re-read its JWKS source, at most once per [`JWKS_RELOAD_INTERVAL_SECONDS`]: that is how a key
/// rotation reaches a warm instance without letting garbage tokens turn into a flood of reads.
pub struct Verifier {
    validation: Validation,
    keys: RwLock<Arc<KeyMap>>,
    source: Option<JwksStore>,
    /// Time of the last reload; held across the reload so concurrent misses wait for one read.
    last_reload: tokio::sync::Mutex<Option<Instant>>,
    reload_interval: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .field("kids", &self.current_keys().keys().collect::<Vec<_>>())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Loads the JWKS from the configured source (a Secrets Manager source uses `sdk`, the
    /// function's one SDK configuration). An empty JWKS is allowed (keys may be generated after
    /// deploy) but logged.
    #[cfg(feature = "aws")]
    pub async fn load(
        config: VerifierConfig,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, AuthError> {
        let store = JwksStore::new(config.jwks, sdk);
        let jwks = store.load().await?.unwrap_or_default();
        if jwks.keys.is_empty() {
            tracing::warn!(source = %store.location(), "JWKS is empty: every token will be refused until keys are generated");
        }
        let mut verifier = Self::from_jwks(&config.issuer, &config.audience, &jwks)?;
        verifier.source = Some(store);
        Ok(verifier)
    }

    /// A verifier over a fixed JWKS (tests, self-test). It never reloads.
    pub fn from_jwks(issuer: &str, audience: &str, jwks: &Jwks) -> Result<Self, AuthError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        Ok(Self {
            validation,
            keys: RwLock::new(Arc::new(jwks.decoding_keys()?)),
            source: None,
            last_reload: tokio::sync::Mutex::new(None),
            reload_interval: Duration::from_secs(JWKS_RELOAD_INTERVAL_SECONDS),
        })
    }

    /// Replaces the minimum interval between unknown-`kid` reloads (tests).
    #[must_use]
    pub fn with_reload_interval(mut self, interval: Duration) -> Self {
        self.reload_interval = interval;
        self
    }

    /// The `kid`s currently trusted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.current_keys().keys().cloned().collect();
        kids.sort();
        kids
    }

    /// Verifies the bearer token of a request. Only the `Authorization` header is consulted:
    /// a token in the query string or body is ignored.
    pub async fn verify(&self, headers: &HeaderMap) -> Result<AccessClaims, ApiError> {
        let token = bearer_token(headers)?;
        self.verify_token(token).await
    }

    /// Verifies a compact JWS access token.
    pub async fn verify_token(&self, token: &str) -> Result<AccessClaims, ApiError> {
        let result = self.check(token).await;
        if let Err(reason) = &result {
            tracing::debug!(reason = reason.detail(), "access token refused");
        }
        result.map_err(Rejection::into_api_error)
    }

    /// [`Self::verify_token`] without any reload (synchronous; the self-test uses it).
    pub fn verify_token_with_loaded_keys(&self, token: &str) -> Result<AccessClaims, ApiError> {
        let header = precheck(token).map_err(Rejection::into_api_error)?;
        let keys = self.current_keys();
        let key = keys
            .get(&header.kid)
            .ok_or(Rejection::UnknownKey)
            .map_err(Rejection::into_api_error)?;
        self.decode(token, key).map_err(Rejection::into_api_error)
    }

    async fn check(&self, token: &str) -> Result<AccessClaims, Rejection> {
        let header = precheck(token)?;
        let keys = match self.current_keys() {
            keys if keys.contains_key(&header.kid) => keys,
            _ => self
                .reload_for(&header.kid)
                .await
                .ok_or(Rejection::UnknownKey)?,
        };
        let key = keys.get(&header.kid).ok_or(Rejection::UnknownKey)?;
        self.decode(token, key)
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<AccessClaims, Rejection> {
        let data = jsonwebtoken::decode::<TokenClaims>(token, key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => Rejection::Expired,
                ErrorKind::ImmatureSignature => Rejection::NotYetValid,
                ErrorKind::InvalidIssuer => Rejection::WrongIssuer,
                ErrorKind::InvalidAudience => Rejection::WrongAudience,
                ErrorKind::InvalidSignature => Rejection::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Rejection::Algorithm,
                ErrorKind::MissingRequiredClaim(_)
                | ErrorKind::InvalidClaimFormat(_)
                | ErrorKind::Json(_) => Rejection::Claims,
                _ => Rejection::Malformed,
            },
        )?;
        let claims = data.claims;
        if claims.sub != claims.client_id {
            return Err(Rejection::Claims);
        }
        Ok(AccessClaims {
            scopes: claims
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            sub: claims.sub,
            client_id: claims.client_id,
            tier: claims.tier,
            jti: claims.jti,
            exp: claims.exp,
        })
    }

    fn current_keys(&self) -> Arc<KeyMap> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc: the value is intact.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the JWKS if the last reload is old enough; returns the key map if it now has `kid`.
    async fn reload_for(&self, kid: &str) -> Option<Arc<KeyMap>> {
        let source = self.source.as_ref()?;
        let mut last = self.last_reload.lock().await;
        // Another request may have reloaded while this one waited for the lock.
        let keys = self.current_keys();
        if keys.contains_key(kid) {
            return Some(keys);
        }
        if last.is_some_and(|at| at.elapsed() < self.reload_interval) {
            return None;
        }
        *last = Some(Instant::now());
        match source
            .load()
            .await
            .and_then(|jwks| jwks.unwrap_or_default().decoding_keys())
        {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                tracing::info!(source = %source.location(), keys = fresh.len(), "JWKS reloaded after an unknown kid");
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
                fresh.contains_key(kid).then_some(fresh)
            }
            Err(e) => {
                tracing::warn!(source = %source.location(), error = %e, "JWKS reload failed; keeping the loaded keys");
                None
            }
        }
    }
}

/// Extracts the token from the single `Authorization: Bearer <token>` header.
///
/// No header, an empty one, or another scheme (`Basic …`) is [`ApiError::MissingToken`]: the
/// client sent no bearer credentials, and RFC 6750 §3.1 says to answer without an error code.
/// The scheme is matched case-insensitively (RFC 9110 §11.1).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::MissingToken);
    };
    if values.next().is_some() {
        return Err(Rejection::HeaderShape.into_api_error());
    }
    let value = value
        .to_str()
        .map_err(|_| Rejection::HeaderShape.into_api_error())?
        .trim();
    if value.is_empty() {
        return Err(ApiError::MissingToken);
    }
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(ApiError::MissingToken);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(Rejection::HeaderShape.into_api_error());
    }
    Ok(token)
}

/// The JOSE header members we read. Anything that would make us fetch or trust another key is
/// captured so its mere presence can be refused.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    jku: Option<serde_json::Value>,
    jwk: Option<serde_json::Value>,
    x5u: Option<serde_json::Value>,
    x5c: Option<serde_json::Value>,
    x5t: Option<serde_json::Value>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

struct CheckedHeader {
    kid: String,
}

/// Size, shape and header checks: everything that needs no key.
fn precheck(token: &str) -> Result<CheckedHeader, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TooLarge);
    }
    let well_formed = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && token.bytes().filter(|&b| b == b'.').count() == 2;
    if !well_formed {
        return Err(Rejection::Malformed);
    }
    let encoded_header = token.split('.').next().unwrap_or_default();
    let header_json = URL_SAFE_NO_PAD
        .decode(encoded_header)
        .map_err(|_| Rejection::Malformed)?;
    let header: RawHeader =
        serde_json::from_slice(&header_json).map_err(|_| Rejection::Malformed)?;

    // RFC 7515 §4.1.1: `alg` is case-sensitive; only the value our keys are for is acceptable.
    if header.alg != "EdDSA" {
        return Err(Rejection::Algorithm);
    }
    // RFC 9068 §2.1 / RFC 7515 §4.1.9: a media type, case-insensitive, "application/" optional.
    let typ_ok = header.typ.as_deref().is_some_and(|typ| {
        let typ = typ.strip_prefix("application/").unwrap_or(typ);
        typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP)
    });
    if !typ_ok {
        return Err(Rejection::Type);
    }
    let foreign_key_reference = header.jku.is_some()
        || header.jwk.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some()
        || header.x5t.is_some()
        || header.x5t_s256.is_some()
        || header.crit.is_some();
    if foreign_key_reference {
        return Err(Rejection::HeaderParameter);
    }
    match header.kid {
        Some(kid) if !kid.is_empty() => Ok(CheckedHeader { kid }),
        _ => Err(Rejection::MissingKid),
    }
}

/// Why a token was refused. The detail strings are the only thing a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejection {
    HeaderShape,
    TooLarge,
    Malformed,
    Algorithm,
    Type,
    HeaderParameter,
    MissingKid,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    Claims,
}

impl Rejection {
    fn detail(self) -> &'static str {
        match self {
            Self::HeaderShape => "malformed authorization header",
            Self::TooLarge => "token too large",
            Self::Malformed => "malformed token",
            Self::Algorithm => "unsupported algorithm",
            Self::Type => "not an access token",
            Self::HeaderParameter => "unsupported header parameter",
            Self::MissingKid => "missing key id",
            Self::UnknownKey => "unknown signing key",
            Self::BadSignature => "invalid signature",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid",
            Self::WrongIssuer => "wrong issuer",
            Self::WrongAudience => "wrong audience",
            Self::Claims => "missing or malformed claims",
        }
    }

    fn into_api_error(self) -> ApiError {
        ApiError::InvalidToken {
            detail: self.detail().to_owned(),
        }
    }
}
