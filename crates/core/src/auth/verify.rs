//! Access-token verification (RFC 8725, RFC 9068, RFC 6750).
//!
//! Order of checks, cheapest and least trusting first:
//!
//! 1. `Authorization` header: exactly one, scheme `Bearer` (any case), a token after it.
//! 2. Size cap ([`MAX_TOKEN_BYTES`]) and JWS compact shape, before any decoding.
//! 3. Header, parsed by us: `alg` must be exactly `EdDSA`; `typ` must be `at+jwt`; `kid` must be
//!    present; `jku`, `jwk`, `x5u`, `x5c`, `x5t`, `crit` are refused (our issuer never sets them,
//!    and we never fetch or trust keys a token points at).
//! 4. The verified-token cache: a token this instance verified before is accepted again without
//!    the signature check, its `exp` and `nbf` and its key's expiry checked anew (see below).
//! 5. Key lookup by `kid` in the in-memory JWKS; a key past its `exp` (retired, retention over)
//!    is no key; an unknown `kid` may trigger one bounded reload.
//! 6. jsonwebtoken: signature with the key's algorithm (EdDSA only), then `exp`, `nbf`, `iss`,
//!    `aud`, `sub` required and checked with [`LEEWAY_SECONDS`]; numeric dates only.
//! 7. Our claims: `sub == client_id`, a known `tier`.
//!
//! Every refusal is [`ApiError::InvalidToken`] with a short generic `detail`; the token itself is
//! never echoed or logged.
//!
//! # Keeping the keys current
//!
//! The JWKS is read at init, re-read when it is older than [`JWKS_MAX_AGE_SECONDS`] (so a
//! revoked key is gone from every warm instance within that time), and re-read when a token
//! names a `kid` this instance does not know — the first token of a rotated-in key. That last
//! read is what an attacker can trigger, so it is bounded: only a `kid` of our shape (an RFC 7638
//! thumbprint, 43 base64url characters) can cause it, a `kid` that a reload has already failed
//! to find cannot cause another for [`UNKNOWN_KID_MEMORY_SECONDS`], and reloads are at least
//! [`JWKS_RELOAD_INTERVAL_SECONDS`] apart, counting the read at init.
//!
//! # The verified-token cache
//!
//! Clients reuse a token for its whole lifetime, and the Ed25519 check is most of a request's
//! CPU. So, as Envoy's `jwt_authn` does, each instance keeps the claims of tokens it verified,
//! keyed by the whole token (a token is at most [`MAX_TOKEN_BYTES`]; comparing it whole leaves no
//! room for a collision), in a bounded LRU map of [`TOKEN_CACHE_ENTRIES`]. A hit still checks
//! `exp` and `nbf` (with the same leeway) and the signing key's own expiry; failures are never
//! cached; a token over the size cap never gets that far; and the whole cache is dropped whenever
//! the key set changes, so a revoked key's tokens stop verifying with its removal.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use lru::LruCache;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::store::{JwksSource, JwksStore};
use super::token::TokenClaims;
use super::token::unix_now;
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

/// Verifier configuration: `TOKEN_ISSUER`, `TOKEN_AUDIENCE`, and where the JWKS is (the `jwks`
/// item of `RATE_LIMIT_TABLE`).
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

/// A JWKS read older than this is read again before the next token is checked.
pub const JWKS_MAX_AGE_SECONDS: u64 = 300;
/// How long a `kid` that a reload did not find cannot trigger another reload.
pub const UNKNOWN_KID_MEMORY_SECONDS: u64 = 300;
/// Tokens the verified-token cache holds (each at most [`MAX_TOKEN_BYTES`], ours ~600 bytes).
pub const TOKEN_CACHE_ENTRIES: usize = 1024;
/// Unknown `kid`s remembered at once.
const UNKNOWN_KIDS: usize = 256;

/// `kid` → verification key and the key's expiry (Unix seconds), if retired.
type KeyMap = HashMap<String, (DecodingKey, Option<u64>)>;

/// A verified token's claims, and when its signing key stops verifying.
#[derive(Debug, Clone)]
struct Verified {
    claims: AccessClaims,
    nbf: u64,
    key_expires: Option<u64>,
}

/// When the JWKS was last read, and the `kid`s a reload did not find.
#[derive(Debug)]
struct Reloads {
    last: Option<Instant>,
    unknown: LruCache<String, Instant>,
}

/// Verifies bearer tokens against an in-memory JWKS. Built once at init; `Send + Sync`.
///
/// The hot path makes no network call; see the module docs for when the JWKS is read again.
pub struct Verifier {
    validation: Validation,
    keys: RwLock<Arc<KeyMap>>,
    source: Option<JwksStore>,
    /// Held across a read, so concurrent callers wait for one read instead of making their own.
    reloads: tokio::sync::Mutex<Reloads>,
    reload_interval: Duration,
    cache: Mutex<LruCache<String, Verified>>,
    /// Unix seconds (the cache's clock; jsonwebtoken reads the system clock itself).
    clock: fn() -> u64,
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
    /// Loads the JWKS from the configured source (a table's item with `dynamodb`, the
    /// function's one DynamoDB client). An empty JWKS is allowed (keys may be generated after
    /// deploy) but logged.
    #[cfg(feature = "aws")]
    pub async fn load(
        config: VerifierConfig,
        dynamodb: &aws_sdk_dynamodb::Client,
    ) -> Result<Self, AuthError> {
        let store = JwksStore::new(config.jwks, dynamodb);
        let jwks = store.load().await?.unwrap_or_default();
        if jwks.keys.is_empty() {
            tracing::warn!(source = %store.location(), "JWKS is empty: every token will be refused until keys are generated");
        }
        let mut verifier = Self::from_jwks(&config.issuer, &config.audience, &jwks)?;
        verifier.source = Some(store);
        // The read at init counts as a reload: the first unknown kid after it waits its turn.
        verifier.reloads.get_mut().last = Some(Instant::now());
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
            reloads: tokio::sync::Mutex::new(Reloads {
                last: None,
                unknown: LruCache::new(NonZeroUsize::MIN.saturating_add(UNKNOWN_KIDS - 1)),
            }),
            reload_interval: Duration::from_secs(JWKS_RELOAD_INTERVAL_SECONDS),
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::MIN.saturating_add(TOKEN_CACHE_ENTRIES - 1),
            )),
            clock: unix_now,
        })
    }

    /// Replaces the minimum interval between unknown-`kid` reloads (tests).
    #[must_use]
    pub fn with_reload_interval(mut self, interval: Duration) -> Self {
        self.reload_interval = interval;
        self
    }

    /// Replaces the clock the verified-token cache checks `exp` and `nbf` against (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// The `kid`s currently trusted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.current_keys().keys().cloned().collect();
        kids.sort();
        kids
    }

    /// Tokens in the verified-token cache (tests, benchmarks).
    pub fn cached_tokens(&self) -> usize {
        self.cache_lock().len()
    }

    /// Verifies the bearer token of a request. Only the `Authorization` header is consulted:
    /// a token in the query string or body is ignored.
    pub async fn verify(&self, headers: &HeaderMap) -> Result<AccessClaims, ApiError> {
        let token = bearer_token(headers)?;
        self.verify_token(token).await
    }

    /// Verifies a compact JWS access token.
    pub async fn verify_token(&self, token: &str) -> Result<AccessClaims, ApiError> {
        self.refresh_if_stale().await;
        let result = match self.cached(token) {
            Some(result) => result,
            None => self.check(token).await,
        };
        if let Err(reason) = &result {
            tracing::debug!(reason = reason.detail(), "access token refused");
        }
        result.map_err(Rejection::into_api_error)
    }

    /// [`Self::verify_token`] without any reload or cache (synchronous; the self-test uses it).
    pub fn verify_token_with_loaded_keys(&self, token: &str) -> Result<AccessClaims, ApiError> {
        let header = precheck(token).map_err(Rejection::into_api_error)?;
        let keys = self.current_keys();
        let key = self
            .usable_key(&keys, &header.kid)
            .ok_or(Rejection::UnknownKey)
            .map_err(Rejection::into_api_error)?;
        self.decode(token, &key.0)
            .map_err(Rejection::into_api_error)
    }

    /// The cached verdict for `token`, if this instance verified it before: its claims while
    /// `exp`, `nbf` and the key's expiry still allow, else the refusal (the entry is dropped).
    fn cached(&self, token: &str) -> Option<Result<AccessClaims, Rejection>> {
        let now = (self.clock)();
        let mut cache = self.cache_lock();
        let entry = cache.get(token)?;
        let verdict = if entry.claims.exp.saturating_add(LEEWAY_SECONDS) <= now {
            Err(Rejection::Expired)
        } else if entry.nbf > now.saturating_add(LEEWAY_SECONDS) {
            Err(Rejection::NotYetValid)
        } else if entry.key_expires.is_some_and(|end| end <= now) {
            Err(Rejection::UnknownKey)
        } else {
            return Some(Ok(entry.claims.clone()));
        };
        cache.pop(token);
        Some(verdict)
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
        let (key, key_expires) = self
            .usable_key(&keys, &header.kid)
            .ok_or(Rejection::UnknownKey)?;
        let (claims, nbf) = self.decode_with_nbf(token, key)?;
        self.cache_lock().put(
            token.to_owned(),
            Verified {
                claims: claims.clone(),
                nbf,
                key_expires: *key_expires,
            },
        );
        Ok(claims)
    }

    /// The key named `kid`, unless it is past its expiry.
    fn usable_key<'k>(
        &self,
        keys: &'k KeyMap,
        kid: &str,
    ) -> Option<&'k (DecodingKey, Option<u64>)> {
        let now = (self.clock)();
        keys.get(kid)
            .filter(|(_, expires)| expires.is_none_or(|end| now < end))
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<AccessClaims, Rejection> {
        self.decode_with_nbf(token, key).map(|(claims, _)| claims)
    }

    fn decode_with_nbf(
        &self,
        token: &str,
        key: &DecodingKey,
    ) -> Result<(AccessClaims, u64), Rejection> {
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
        let nbf = claims.nbf;
        Ok((
            AccessClaims {
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
            },
            nbf,
        ))
    }

    fn current_keys(&self) -> Arc<KeyMap> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc: the value is intact.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Verified>> {
        // A panic while holding the lock cannot leave the map inconsistent for later readers:
        // every entry is checked again on use.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Swaps in a new key set and drops every cached token: a removed key's tokens must stop
    /// verifying with it.
    fn install(&self, fresh: KeyMap) -> Arc<KeyMap> {
        let fresh = Arc::new(fresh);
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
        self.cache_lock().clear();
        fresh
    }

    /// Reads the JWKS again if the last read is older than [`JWKS_MAX_AGE_SECONDS`]. One caller
    /// reads; the others go on with the keys they have.
    async fn refresh_if_stale(&self) {
        let Some(source) = &self.source else {
            return;
        };
        let Ok(mut reloads) = self.reloads.try_lock() else {
            return;
        };
        let max_age = Duration::from_secs(JWKS_MAX_AGE_SECONDS);
        if reloads.last.is_some_and(|at| at.elapsed() < max_age) {
            return;
        }
        reloads.last = Some(Instant::now());
        if let Some(fresh) = read_keys(source, "JWKS re-read (older than its maximum age)").await {
            self.install(fresh);
        }
    }

    /// Re-reads the JWKS for an unknown `kid`, within the bounds the module docs give; returns
    /// the key map if it now has `kid`.
    async fn reload_for(&self, kid: &str) -> Option<Arc<KeyMap>> {
        let source = self.source.as_ref()?;
        if !looks_like_thumbprint(kid) {
            return None;
        }
        let mut reloads = self.reloads.lock().await;
        // Another request may have reloaded while this one waited for the lock.
        let keys = self.current_keys();
        if keys.contains_key(kid) {
            return Some(keys);
        }
        let memory = Duration::from_secs(UNKNOWN_KID_MEMORY_SECONDS);
        if reloads
            .unknown
            .get(kid)
            .is_some_and(|at| at.elapsed() < memory)
            || reloads
                .last
                .is_some_and(|at| at.elapsed() < self.reload_interval)
        {
            return None;
        }
        reloads.last = Some(Instant::now());
        let fresh = self.install(read_keys(source, "JWKS reloaded after an unknown kid").await?);
        if fresh.contains_key(kid) {
            return Some(fresh);
        }
        reloads.unknown.put(kid.to_owned(), Instant::now());
        None
    }
}

/// The key map read from `source`, or `None` (logged) when the read fails: the loaded keys stay.
async fn read_keys(source: &JwksStore, why: &'static str) -> Option<KeyMap> {
    match source
        .load()
        .await
        .and_then(|jwks| jwks.unwrap_or_default().decoding_keys())
    {
        Ok(fresh) => {
            tracing::info!(source = %source.location(), keys = fresh.len(), "{why}");
            Some(fresh)
        }
        Err(e) => {
            tracing::warn!(source = %source.location(), error = %e, "JWKS read failed; keeping the loaded keys");
            None
        }
    }
}

/// Whether `kid` has the shape of our key ids: an RFC 7638 SHA-256 thumbprint, base64url
/// without padding (43 characters).
fn looks_like_thumbprint(kid: &str) -> bool {
    kid.len() == 43
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
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
