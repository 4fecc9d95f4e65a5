//! Access-token issuance: RFC 9068 JWTs (`typ: at+jwt`) signed with EdDSA by the active key.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::keys::{KeySet, PublicJwk};
use super::{
    ACCESS_TOKEN_TYP, AuthError, Jwks, MAX_TOKEN_LIFETIME_SECONDS, Tier, key_retention_seconds,
};
use crate::config::{self, ConfigError, Vars};

/// Seconds since the Unix epoch (0 if the clock is before 1970, which no Lambda's is).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Issuer-side settings shared by the token function and the admin CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `iss` (`TOKEN_ISSUER`).
    pub issuer: String,
    /// `aud` (`TOKEN_AUDIENCE`).
    pub audience: String,
    /// `exp - iat` (`TOKEN_LIFETIME_SECONDS`, default 900).
    pub lifetime_seconds: u64,
}

impl TokenSettings {
    /// Reads `TOKEN_ISSUER`, `TOKEN_AUDIENCE` (both required) and `TOKEN_LIFETIME_SECONDS`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: vars.required(&config::TOKEN_ISSUER)?.to_owned(),
            audience: vars.required(&config::TOKEN_AUDIENCE)?.to_owned(),
            lifetime_seconds: lifetime_from_vars(vars)?,
        })
    }

    /// How long a retired key must remain in the JWKS.
    pub fn key_retention_seconds(&self) -> u64 {
        key_retention_seconds(self.lifetime_seconds)
    }
}

/// `TOKEN_LIFETIME_SECONDS`: 60 s to [`MAX_TOKEN_LIFETIME_SECONDS`] (the template's range).
pub fn lifetime_from_vars(vars: &Vars) -> Result<u64, ConfigError> {
    let var = &config::TOKEN_LIFETIME_SECONDS;
    let lifetime: u64 = vars.parse(var)?;
    if !(60..=MAX_TOKEN_LIFETIME_SECONDS).contains(&lifetime) {
        return Err(ConfigError::invalid(
            var,
            format!("must be between 60 and {MAX_TOKEN_LIFETIME_SECONDS} seconds (got {lifetime})"),
        ));
    }
    Ok(lifetime)
}

/// The claims of our access tokens, as on the wire. Shared by issuer and verifier, so the two
/// cannot drift apart. Timestamps are integers: a string `exp` fails deserialization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub client_id: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    pub scope: String,
    #[serde(with = "super::tier_serde")]
    pub tier: Tier,
}

/// A freshly signed token and what the token endpoint reports about it.
#[derive(Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    /// Granted scopes, space-separated.
    pub scope: String,
    pub jti: String,
    pub kid: String,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("jti", &self.jti)
            .field("kid", &self.kid)
            .finish()
    }
}

/// Signs access tokens with the active key of a [`KeySet`]; also knows the public JWKS.
pub struct TokenIssuer {
    settings: TokenSettings,
    kid: String,
    key: EncodingKey,
    /// Public keys, each with its `exp` once retired; filtered by it when the JWKS is served.
    public: Vec<PublicJwk>,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("settings", &self.settings)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Prepares the active key of `set` for signing.
    pub fn new(set: &KeySet, settings: TokenSettings) -> Result<Self, AuthError> {
        set.validate()?;
        let active = set.active().ok_or(AuthError::NoActiveKey)?;
        let retention = settings.key_retention_seconds();
        let mut public = Vec::with_capacity(set.keys.len());
        for key in set.newest_first() {
            public.push(key.public_jwk(retention)?);
        }
        Ok(Self {
            kid: active.kid.clone(),
            key: active.encoding_key()?,
            settings,
            public,
        })
    }

    /// The `kid` new tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Every public key that may still have valid tokens outstanding at `now`.
    pub fn jwks(&self, now: u64) -> Jwks {
        Jwks {
            keys: self
                .public
                .iter()
                .filter(|jwk| jwk.exp.is_none_or(|exp| now < exp))
                .cloned()
                .collect(),
        }
    }

    /// Signs a token for `client_id` with the given (already authorised) scopes.
    pub fn issue(
        &self,
        client_id: &str,
        scopes: &[String],
        tier: Tier,
        now: u64,
    ) -> Result<IssuedToken, AuthError> {
        let scope = scopes.join(" ");
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = TokenClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: client_id.to_owned(),
            client_id: client_id.to_owned(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(self.settings.lifetime_seconds),
            jti: jti.clone(),
            scope: scope.clone(),
            tier,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| AuthError::Signing(e.to_string()))?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.settings.lifetime_seconds,
            scope,
            jti,
            kid: self.kid.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: "https://issuer.test".into(),
            audience: "secure-ml-api".into(),
            lifetime_seconds: 900,
        }
    }

    fn segment(token: &str, index: usize) -> serde_json::Value {
        let part = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn issued_token_has_rfc9068_header_and_every_required_claim() {
        let set = KeySet::generate(100).unwrap();
        let issuer = TokenIssuer::new(&set, settings()).unwrap();
        let now = 1_800_000_000;
        let issued = issuer
            .issue(
                "cl_abc",
                &["predict".into(), "predict:proba".into()],
                Tier::Premium,
                now,
            )
            .unwrap();

        let header = segment(&issued.access_token, 0);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], set.keys[0].kid.as_str());

        let claims = segment(&issued.access_token, 1);
        assert_eq!(claims["iss"], "https://issuer.test");
        assert_eq!(claims["aud"], "secure-ml-api");
        assert_eq!(claims["sub"], "cl_abc");
        assert_eq!(claims["client_id"], "cl_abc");
        assert_eq!(claims["iat"], now);
        assert_eq!(claims["nbf"], now);
        assert_eq!(claims["exp"], now + 900);
        assert_eq!(claims["scope"], "predict predict:proba");
        assert_eq!(claims["tier"], "premium");
        assert!(
            uuid::Uuid::parse_str(claims["jti"].as_str().unwrap())
                .is_ok_and(|u| u.get_version_num() == 4)
        );
        assert_eq!(issued.expires_in, 900);
    }

    #[test]
    fn every_token_gets_a_fresh_jti() {
        let set = KeySet::generate(0).unwrap();
        let issuer = TokenIssuer::new(&set, settings()).unwrap();
        let a = issuer.issue("cl_a", &[], Tier::Free, 10).unwrap();
        let b = issuer.issue("cl_a", &[], Tier::Free, 10).unwrap();
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn issued_token_debug_hides_the_token() {
        let set = KeySet::generate(0).unwrap();
        let issued = TokenIssuer::new(&set, settings())
            .unwrap()
            .issue("cl_a", &[], Tier::Free, 1)
            .unwrap();
        assert!(!format!("{issued:?}").contains(&issued.access_token));
    }

    #[test]
    fn a_set_without_an_active_key_cannot_issue() {
        let mut set = KeySet::generate(0).unwrap();
        set.keys[0].retired_at = Some(1);
        assert!(matches!(
            TokenIssuer::new(&set, settings()),
            Err(AuthError::NoActiveKey)
        ));
    }

    #[test]
    fn lifetime_defaults_to_900_and_is_bounded() {
        assert_eq!(lifetime_from_vars(&Vars::default()).unwrap(), 900);
        let err =
            lifetime_from_vars(&Vars::from_pairs([("TOKEN_LIFETIME_SECONDS", "5")])).unwrap_err();
        assert!(err.to_string().contains("TOKEN_LIFETIME_SECONDS"));
    }

    #[test]
    fn settings_name_the_missing_variable() {
        let err = TokenSettings::from_vars(&Vars::from_pairs([("TOKEN_ISSUER", "x")])).unwrap_err();
        assert!(err.to_string().contains("TOKEN_AUDIENCE"));
    }
}
