//! Ed25519 signing keys: the private [`KeySet`] and its public [`Jwks`] (RFC 7517, RFC 8037 OKP).
//!
//! A key set is a list of keys, each with a creation time and, once superseded, a retirement
//! time and a `not_after` time: the end of its retention (see [`super::key_retention_seconds`]),
//! when every token it may have signed has expired. The active key — the one that signs — is the
//! newest key that is not retired. A retired key stays in the public JWKS, with its `not_after`
//! as the JWK member `exp`, so that tokens it signed keep verifying until they expire; a verifier
//! ignores a key past its `exp`, and [`KeySet::rotate`] prunes it. [`KeySet::revoke`] removes a
//! key at once (a compromised key must not wait out its retention).
//!
//! The `kid` is the key's RFC 7638 JWK thumbprint: unique, derived from the key, checkable by anyone.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuthError;

/// The private signing keys. Serialized as `{"keys": [{kid, private_key, created_at, retired_at?}]}`.
/// `Debug` never prints key material.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct KeySet {
    pub keys: Vec<KeyEntry>,
}

/// One signing key. `private_key` is a PKCS#8 PEM (what we write) or a base64 32-byte seed.
/// Times are Unix seconds, rendered as RFC 3339 in JSON.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    pub kid: String,
    pub private_key: String,
    #[serde(with = "rfc3339")]
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    pub retired_at: Option<u64>,
    /// The end of a retired key's retention: no token it signed is valid after this. Set when
    /// it is retired; sets written before this field existed get `retired_at` + retention.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339_opt")]
    pub not_after: Option<u64>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet").field("keys", &self.keys).finish()
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("private_key", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl KeyEntry {
    /// A fresh random key created at `now`.
    pub fn generate(now: u64) -> Result<Self, AuthError> {
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = signing
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| {
                AuthError::InvalidKeySet(format!("cannot encode a new key as PKCS#8: {e}"))
            })?;
        Ok(Self {
            kid: thumbprint(&signing.verifying_key()),
            private_key: pem.to_string(),
            created_at: now,
            retired_at: None,
            not_after: None,
        })
    }

    /// Parses the private key (PKCS#8 PEM, or a base64/base64url 32-byte seed).
    pub fn signing_key(&self) -> Result<SigningKey, AuthError> {
        let raw = self.private_key.trim();
        if raw.starts_with("-----BEGIN") {
            return SigningKey::from_pkcs8_pem(raw).map_err(|_| {
                AuthError::InvalidKeySet(format!(
                    "key {} is not a valid Ed25519 PKCS#8 PEM",
                    self.kid
                ))
            });
        }
        let seed = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(raw).ok())
            .ok_or_else(|| {
                AuthError::InvalidKeySet(format!(
                    "key {} is neither PKCS#8 PEM nor a base64 seed",
                    self.kid
                ))
            })?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| {
            AuthError::InvalidKeySet(format!(
                "key {}: a base64 seed must decode to 32 bytes",
                self.kid
            ))
        })?;
        Ok(SigningKey::from_bytes(&seed))
    }

    /// The jsonwebtoken signing key (PKCS#8 DER, as its EdDSA backend expects).
    pub fn encoding_key(&self) -> Result<EncodingKey, AuthError> {
        let der = self.signing_key()?.to_pkcs8_der().map_err(|e| {
            AuthError::InvalidKeySet(format!("cannot encode key {}: {e}", self.kid))
        })?;
        Ok(EncodingKey::from_ed_der(der.as_bytes()))
    }

    /// The public half as a JWK, with the key's expiry (`exp`) once it is retired.
    pub fn public_jwk(&self, retention: u64) -> Result<PublicJwk, AuthError> {
        let mut jwk = PublicJwk::ed25519(self.kid.clone(), &self.signing_key()?.verifying_key());
        jwk.exp = self.expires_at(retention);
        Ok(jwk)
    }

    /// When this key stops verifying: its `not_after`, or for a key retired before that field
    /// existed, its retirement plus `retention`. `None` while it is active.
    pub fn expires_at(&self, retention: u64) -> Option<u64> {
        self.not_after
            .or_else(|| self.retired_at.map(|r| r.saturating_add(retention)))
    }

    fn is_verifiable_at(&self, now: u64, retention: u64) -> bool {
        self.expires_at(retention).is_none_or(|end| now < end)
    }
}

impl KeySet {
    /// A new set with one active key.
    pub fn generate(now: u64) -> Result<Self, AuthError> {
        Ok(Self {
            keys: vec![KeyEntry::generate(now)?],
        })
    }

    /// Parses and validates a key set from JSON.
    pub fn from_json(json: &str) -> Result<Self, AuthError> {
        // Only the position: serde_json's message can quote the offending value, and in a
        // private key set that value could be key material.
        let set: Self = serde_json::from_str(json).map_err(|e| {
            AuthError::InvalidKeySet(format!(
                "not a key set document (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        set.validate()?;
        Ok(set)
    }

    /// Pretty JSON, for the secret or the 0600 file.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| String::from("{\"keys\":[]}"))
    }

    /// Every key parses and every `kid` is unique.
    pub fn validate(&self) -> Result<(), AuthError> {
        let mut seen = std::collections::HashSet::new();
        for key in &self.keys {
            if key.kid.is_empty() {
                return Err(AuthError::InvalidKeySet("a key has an empty kid".into()));
            }
            if !seen.insert(key.kid.as_str()) {
                return Err(AuthError::InvalidKeySet(format!(
                    "kid {} appears twice",
                    key.kid
                )));
            }
            key.signing_key()?;
        }
        Ok(())
    }

    /// The key that signs: the newest one not retired (later entries win ties).
    pub fn active(&self) -> Option<&KeyEntry> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.retired_at.is_none())
            .max_by_key(|(i, k)| (k.created_at, *i))
            .map(|(_, k)| k)
    }

    /// Adds a new active key, retires every other one at `now` (each verifying for `retention`
    /// seconds more), and prunes keys past their `not_after`. Returns the new key's `kid`.
    pub fn rotate(&mut self, now: u64, retention: u64) -> Result<String, AuthError> {
        let new_key = KeyEntry::generate(now)?;
        let kid = new_key.kid.clone();
        for key in &mut self.keys {
            if key.retired_at.is_none() {
                key.retired_at = Some(now);
                key.not_after = Some(now.saturating_add(retention));
            }
        }
        self.keys.push(new_key);
        self.prune(now, retention);
        Ok(kid)
    }

    /// Removes `kid` at once, whatever its retention (a compromised key). A fresh active key
    /// replaces the old ones first, so the set always has one, and a verifier that sees the
    /// first token it signs reloads the JWKS — which no longer lists `kid`. Returns the new
    /// active key's `kid`.
    pub fn revoke(&mut self, kid: &str, now: u64, retention: u64) -> Result<String, AuthError> {
        if !self.keys.iter().any(|k| k.kid == kid) {
            return Err(AuthError::InvalidKeySet(format!(
                "there is no key {kid:?} in the set"
            )));
        }
        let active = self.rotate(now, retention)?;
        self.keys.retain(|k| k.kid != kid);
        Ok(active)
    }

    /// Drops keys whose tokens have all expired.
    pub fn prune(&mut self, now: u64, retention: u64) {
        self.keys.retain(|k| k.is_verifiable_at(now, retention));
    }

    /// Keys newest first (later entries first among keys created in the same second).
    pub fn newest_first(&self) -> Vec<&KeyEntry> {
        let mut keys: Vec<(usize, &KeyEntry)> = self.keys.iter().enumerate().collect();
        keys.sort_by_key(|(i, k)| std::cmp::Reverse((k.created_at, *i)));
        keys.into_iter().map(|(_, k)| k).collect()
    }

    /// The public JWKS: every key that may still have valid tokens outstanding, newest first.
    pub fn public_jwks(&self, now: u64, retention: u64) -> Jwks {
        Jwks {
            keys: self
                .newest_first()
                .into_iter()
                .filter(|k| k.is_verifiable_at(now, retention))
                .filter_map(|k| k.public_jwk(retention).ok())
                .collect(),
        }
    }
}

/// A JWK Set (RFC 7517 §5) of Ed25519 public keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

/// An Ed25519 public key as an OKP JWK (RFC 8037 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// When the key stops verifying (Unix seconds): set once it is retired. Not a registered
    /// JWK parameter; RFC 7517 §4 lets a JWK carry others, and clients ignore what they do not
    /// know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

impl PublicJwk {
    fn ed25519(kid: String, key: &VerifyingKey) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
            kid,
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
            exp: None,
        }
    }

    /// Checks that this is an Ed25519 signing key and returns its verification key.
    /// The algorithm is fixed by the key (EdDSA), never taken from a token.
    pub fn decoding_key(&self) -> Result<DecodingKey, AuthError> {
        let bad = |why: &str| AuthError::InvalidJwks(format!("key {:?}: {why}", self.kid));
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(bad("only OKP Ed25519 keys are accepted"));
        }
        if self.alg.as_deref().is_some_and(|a| a != "EdDSA") {
            return Err(bad("alg must be EdDSA"));
        }
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(bad("use must be sig"));
        }
        if self.kid.is_empty() {
            return Err(bad("kid is empty"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(&self.x)
            .map_err(|_| bad("x is not base64url"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad("x must be 32 bytes"))?;
        // Rejects encodings that are not points on the curve, before jsonwebtoken sees them.
        VerifyingKey::from_bytes(&bytes).map_err(|_| bad("x is not an Ed25519 public key"))?;
        // Built from the checked bytes, so jsonwebtoken's EdDSA verifier always gets 32 bytes.
        Ok(DecodingKey::from_ed_der(&bytes))
    }
}

impl Jwks {
    /// Parses and validates a JWKS document.
    pub fn from_json(json: &str) -> Result<Self, AuthError> {
        let jwks: Self = serde_json::from_str(json)
            .map_err(|e| AuthError::InvalidJwks(format!("not a JWKS document ({e})")))?;
        jwks.decoding_keys()?;
        Ok(jwks)
    }

    /// Compact JSON (the HTTP body, the SSM parameter value).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"keys\":[]}"))
    }

    /// `kid` → verification key and its expiry. Fails on the first invalid key or duplicate
    /// `kid`.
    pub fn decoding_keys(&self) -> Result<HashMap<String, (DecodingKey, Option<u64>)>, AuthError> {
        let mut map = HashMap::with_capacity(self.keys.len());
        for jwk in &self.keys {
            if map
                .insert(jwk.kid.clone(), (jwk.decoding_key()?, jwk.exp))
                .is_some()
            {
                return Err(AuthError::InvalidJwks(format!(
                    "kid {:?} appears twice",
                    jwk.kid
                )));
            }
        }
        Ok(map)
    }
}

/// RFC 7638 thumbprint of an Ed25519 key: base64url(SHA-256 of the canonical JWK members).
pub fn thumbprint(key: &VerifyingKey) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(key.as_bytes())
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

mod rfc3339 {
    use aws_smithy_types::DateTime;
    use aws_smithy_types::date_time::Format;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::Error as _};

    pub(super) fn format(secs: u64) -> Result<String, String> {
        let secs = i64::try_from(secs).map_err(|e| e.to_string())?;
        DateTime::from_secs(secs)
            .fmt(Format::DateTime)
            .map_err(|e| e.to_string())
    }

    pub(super) fn parse(raw: &str) -> Result<u64, String> {
        let parsed = DateTime::from_str(raw, Format::DateTime).map_err(|e| e.to_string())?;
        u64::try_from(parsed.secs()).map_err(|_| format!("{raw:?} is before 1970"))
    }

    pub(super) fn serialize<S: Serializer>(secs: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*secs).map_err(S::Error::custom)?)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::Error as _};

    pub(super) fn serialize<S: Serializer>(secs: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match secs {
            Some(secs) => {
                s.serialize_str(&super::rfc3339::format(*secs).map_err(S::Error::custom)?)
            }
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|raw| super::rfc3339::parse(&raw).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION: u64 = 1230;

    #[test]
    fn generated_set_has_one_active_key_whose_kid_is_its_thumbprint() {
        let set = KeySet::generate(1_000).unwrap();
        let active = set.active().unwrap();
        assert_eq!(
            active.kid,
            thumbprint(&active.signing_key().unwrap().verifying_key())
        );
        assert_eq!(active.kid.len(), 43);
    }

    #[test]
    fn key_set_round_trips_through_json_with_rfc3339_times() {
        let mut set = KeySet::generate(1_700_000_000).unwrap();
        set.rotate(1_700_000_100, RETENTION).unwrap();
        let json = set.to_json();
        assert!(
            json.contains("\"created_at\": \"2023-11-14T22:13:20Z\""),
            "{json}"
        );
        assert!(json.contains("BEGIN PRIVATE KEY"));
        let back = KeySet::from_json(&json).unwrap();
        assert_eq!(back.keys.len(), 2);
        assert_eq!(back.keys[0].retired_at, Some(1_700_000_100));
        assert_eq!(back.active().unwrap().kid, set.active().unwrap().kid);
    }

    #[test]
    fn a_retired_key_carries_its_end_into_the_jwks_and_is_pruned_after_it() {
        let mut set = KeySet::generate(1_000).unwrap();
        let old = set.keys[0].kid.clone();
        set.rotate(2_000, RETENTION).unwrap();
        assert_eq!(set.keys[0].not_after, Some(2_000 + RETENTION));
        let jwks = set.public_jwks(2_000, RETENTION);
        let published = jwks.keys.iter().find(|k| k.kid == old).unwrap();
        assert_eq!(published.exp, Some(2_000 + RETENTION));
        assert_eq!(jwks.keys.iter().filter(|k| k.exp.is_none()).count(), 1);
        set.rotate(2_000 + RETENTION, RETENTION).unwrap();
        assert!(set.keys.iter().all(|k| k.kid != old));
    }

    #[test]
    fn a_revoked_key_is_gone_at_once_and_a_fresh_key_is_active() {
        let mut set = KeySet::generate(1_000).unwrap();
        let first = set.keys[0].kid.clone();
        let second = set.rotate(2_000, RETENTION).unwrap();
        let third = set.revoke(&first, 2_001, RETENTION).unwrap();
        assert_ne!(third, second);
        assert_eq!(set.active().unwrap().kid, third);
        let kids: Vec<&str> = set.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [second.as_str(), third.as_str()]);
        assert!(
            set.public_jwks(2_001, RETENTION)
                .keys
                .iter()
                .all(|k| k.kid != first)
        );
        assert!(set.revoke("no-such-kid", 2_002, RETENTION).is_err());
    }

    #[test]
    fn debug_output_never_contains_the_private_key() {
        let set = KeySet::generate(0).unwrap();
        let debug = format!("{set:?}");
        assert!(!debug.contains("PRIVATE KEY"));
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn base64_seed_is_accepted_as_a_private_key() {
        let entry = KeyEntry {
            kid: "seeded".into(),
            private_key: STANDARD.encode([7u8; 32]),
            created_at: 0,
            retired_at: None,
            not_after: None,
        };
        let expected = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        assert_eq!(entry.signing_key().unwrap().verifying_key(), expected);
    }

    #[test]
    fn malformed_private_key_is_refused_without_echoing_it() {
        let entry = KeyEntry {
            kid: "k".into(),
            private_key: "not-a-key!!".into(),
            created_at: 0,
            retired_at: None,
            not_after: None,
        };
        let err = entry.signing_key().unwrap_err().to_string();
        assert!(!err.contains("not-a-key"), "{err}");
    }

    #[test]
    fn key_set_parse_errors_never_quote_the_document() {
        let err =
            KeySet::from_json(r#"{"keys":[{"kid":"k","private_key":1234567,"created_at":"x"}]}"#)
                .unwrap_err()
                .to_string();
        assert!(!err.contains("1234567"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn duplicate_kids_are_refused() {
        let mut set = KeySet::generate(0).unwrap();
        set.keys.push(set.keys[0].clone());
        assert!(set.validate().is_err());
    }

    #[test]
    fn public_jwks_is_an_rfc8037_okp_set() {
        let set = KeySet::generate(0).unwrap();
        let jwks: serde_json::Value =
            serde_json::from_str(&set.public_jwks(0, RETENTION).to_json()).unwrap();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], set.keys[0].kid.as_str());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(key["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert!(
            key.get("d").is_none(),
            "the private scalar must never be published"
        );
    }

    #[test]
    fn jwks_refuses_keys_that_are_not_ed25519_signing_keys() {
        let good = KeySet::generate(0).unwrap().public_jwks(0, RETENTION).keys[0].clone();
        let cases = [
            PublicJwk {
                kty: "oct".into(),
                ..good.clone()
            },
            PublicJwk {
                crv: "X25519".into(),
                ..good.clone()
            },
            PublicJwk {
                alg: Some("HS256".into()),
                ..good.clone()
            },
            PublicJwk {
                use_: Some("enc".into()),
                ..good.clone()
            },
            PublicJwk {
                x: URL_SAFE_NO_PAD.encode([1u8; 16]),
                ..good.clone()
            },
            PublicJwk {
                kid: String::new(),
                ..good.clone()
            },
        ];
        for bad in cases {
            assert!(bad.decoding_key().is_err(), "{bad:?} should be refused");
        }
        assert!(good.decoding_key().is_ok());
    }
}
