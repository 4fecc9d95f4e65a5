//! Access-token verification (`secure_ml_core::auth::Verifier`) over a JWKS of one key made
//! at start-up, whose private half never leaves this process.
//!
//! An input that starts with a zero byte is a structured mutation of a token the real issuer
//! signed at start-up: header and claims members set, removed or replaced (`alg`, `typ`, `kid`,
//! `crit`, `jku`, dates of the wrong type, `iss`, `aud`, ...), segments re-encoded, the
//! signature kept, corrupted, made malleable (S + L), taken from another token or made with
//! another key. Any other input is used as is, as a token and as an `Authorization` value.
//!
//! Properties: no panic, and no I/O (the verifier never waits); both verification entry points
//! agree; a token is accepted only if it is byte-identical to one the issuer signed in this
//! process as valid now, and then yields exactly the claims it was issued with. The one
//! exception is a mutation re-signed with the real key, which stands for a bug in the issuer:
//! such a token must still satisfy the whole verification policy (header, dates, issuer,
//! audience, subject, tier) if it is accepted.

#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use secure_ml_core::auth::keys::KeyEntry;
use secure_ml_core::auth::token::unix_now;
use secure_ml_core::auth::verify::bearer_token;
use secure_ml_core::auth::{
    AccessClaims, KeySet, LEEWAY_SECONDS, SCOPE_PREDICT, SCOPE_PROBA, Tier, TokenIssuer,
    TokenSettings, Verifier,
};
use secure_ml_core::problem::ApiError;
use secure_ml_fuzz::ready;
use serde_json::{Map, Value};

const ISS: &str = "https://auth.secure-ml-api.test";
const AUD: &str = "secure-ml-api";
/// Fixed, so that seed tokens can name the trusted key; the key itself is random per process.
const KID: &str = "fuzz-key-1";
const OTHER_KID: &str = "fuzz-key-2";
const CLIENT: &str = "cl_0123456789abcdef0123456789abcdef";
/// A day: tokens issued at start-up stay valid for any run.
const LIFETIME: u64 = 86_400;

/// A token signed at start-up, and the claims it must verify to (`None`: it must be refused).
struct Signed {
    token: String,
    expect: Option<AccessClaims>,
}

struct Fixture {
    verifier: Verifier,
    signed: Vec<Signed>,
    by_token: HashMap<String, usize>,
    key: SigningKey,
    attacker: SigningKey,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(fixture);

fn key_set(kid: &str, now: u64) -> KeySet {
    let mut entry = KeyEntry::generate(now).expect("a fresh key");
    entry.kid = kid.to_owned();
    KeySet { keys: vec![entry] }
}

fn issuer(set: &KeySet, iss: &str, aud: &str) -> TokenIssuer {
    let settings = TokenSettings {
        issuer: iss.to_owned(),
        audience: aud.to_owned(),
        lifetime_seconds: LIFETIME,
    };
    TokenIssuer::new(set, settings).expect("an issuer")
}

fn fixture() -> Fixture {
    let now = unix_now();
    let set = key_set(KID, now);
    let attacker_set = key_set(KID, now);
    let real = issuer(&set, ISS, AUD);
    let verifier = Verifier::from_jwks(ISS, AUD, &real.jwks(now)).expect("a verifier");

    let mut signed = Vec::new();
    let mut sign = |issuer: &TokenIssuer, scopes: &[&str], tier: Tier, at: u64, valid: bool| {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let issued = issuer
            .issue(CLIENT, &scopes, tier, at)
            .expect("a signed token");
        let expect = valid.then(|| AccessClaims {
            sub: CLIENT.to_owned(),
            client_id: CLIENT.to_owned(),
            scopes: scopes.clone(),
            tier,
            jti: issued.jti.clone(),
            exp: at + LIFETIME,
        });
        signed.push(Signed {
            token: issued.access_token,
            expect,
        });
    };
    sign(&real, &[SCOPE_PREDICT], Tier::Free, now, true);
    sign(
        &real,
        &[SCOPE_PREDICT, SCOPE_PROBA],
        Tier::Premium,
        now,
        true,
    );
    sign(&real, &[], Tier::Free, now, true);
    sign(
        &real,
        &[SCOPE_PREDICT],
        Tier::Free,
        now - 2 * LIFETIME,
        false,
    );
    sign(&real, &[SCOPE_PREDICT], Tier::Free, now + LIFETIME, false);
    sign(
        &issuer(&set, ISS, "other-api"),
        &[SCOPE_PREDICT],
        Tier::Free,
        now,
        false,
    );
    sign(
        &issuer(&set, "https://evil.test", AUD),
        &[SCOPE_PREDICT],
        Tier::Free,
        now,
        false,
    );
    sign(
        &issuer(&attacker_set, ISS, AUD),
        &[SCOPE_PREDICT],
        Tier::Free,
        now,
        false,
    );
    sign(
        &issuer(&key_set(OTHER_KID, now), ISS, AUD),
        &[SCOPE_PREDICT],
        Tier::Free,
        now,
        false,
    );

    // The harness is only as good as its fixture: every token verifies as expected up front.
    for token in &signed {
        let result = verifier.verify_token_with_loaded_keys(&token.token);
        assert_eq!(result.ok(), token.expect, "fixture token verifies wrongly");
    }
    let by_token = signed
        .iter()
        .enumerate()
        .map(|(i, s)| (s.token.clone(), i))
        .collect();
    let signing_key = |set: &KeySet| set.keys[0].signing_key().expect("a signing key");
    Fixture {
        verifier,
        by_token,
        key: signing_key(&set),
        attacker: signing_key(&attacker_set),
        signed,
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = &*FIXTURE;
    match data.split_first() {
        Some((0, rest)) => {
            if let Ok(mutation) = Mutation::arbitrary_take_rest(Unstructured::new(rest)) {
                check_mutation(fx, &mutation);
            }
        }
        _ => check_raw(fx, data),
    }
});

fn check_raw(fx: &Fixture, data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        let result = verify(fx, token);
        check_not_forged(fx, token, &result);
    }
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        let result = ready(fx.verifier.verify(&headers));
        if result.is_ok() {
            let token = bearer_token(&headers).expect("an accepted header has a bearer token");
            check_not_forged(fx, token, &result);
        }
    }
}

/// Verifies through both entry points, which must agree.
fn verify(fx: &Fixture, token: &str) -> Result<AccessClaims, ApiError> {
    let second = unix_now();
    let result = ready(fx.verifier.verify_token(token));
    let sync = fx.verifier.verify_token_with_loaded_keys(token);
    if unix_now() == second {
        assert_eq!(
            result, sync,
            "verify_token and the synchronous path disagree"
        );
    }
    result
}

fn check_not_forged(fx: &Fixture, token: &str, result: &Result<AccessClaims, ApiError>) {
    let Ok(claims) = result else {
        return;
    };
    let Some(&index) = fx.by_token.get(token) else {
        panic!("accepted a token the issuer never signed: {token:?} -> {claims:?}");
    };
    assert_eq!(
        fx.signed[index].expect.as_ref(),
        Some(claims),
        "signed token #{index} verified to the wrong claims"
    );
}

// ---------------------------------------------------------------------------------------------
// Structured mutations

#[derive(Arbitrary, Debug)]
struct Mutation {
    /// Which start-up token to start from.
    base: u8,
    header: Vec<Edit>,
    claims: Vec<Edit>,
    /// How an edited header or claims segment is base64-encoded again.
    encoding: Encoding,
    signature: Signature,
    /// Appended to the token as is.
    tail: Option<String>,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Set(Name, Json),
    Remove(Name),
    /// The whole segment becomes these bytes, JSON or not.
    Replace(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Alg,
    Typ,
    Kid,
    Cty,
    Crit,
    Jku,
    Jwk,
    X5u,
    X5c,
    X5t,
    X5tS256,
    B64,
    Zip,
    Iss,
    Aud,
    Sub,
    ClientId,
    Exp,
    Nbf,
    Iat,
    Jti,
    Scope,
    Tier,
    Other(String),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Self::Alg => "alg",
            Self::Typ => "typ",
            Self::Kid => "kid",
            Self::Cty => "cty",
            Self::Crit => "crit",
            Self::Jku => "jku",
            Self::Jwk => "jwk",
            Self::X5u => "x5u",
            Self::X5c => "x5c",
            Self::X5t => "x5t",
            Self::X5tS256 => "x5t#S256",
            Self::B64 => "b64",
            Self::Zip => "zip",
            Self::Iss => "iss",
            Self::Aud => "aud",
            Self::Sub => "sub",
            Self::ClientId => "client_id",
            Self::Exp => "exp",
            Self::Nbf => "nbf",
            Self::Iat => "iat",
            Self::Jti => "jti",
            Self::Scope => "scope",
            Self::Tier => "tier",
            Self::Other(name) => name,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Known(Known),
    /// Now plus this many seconds, as an integer, a string or a float.
    Time(i32),
    TimeText(i32),
    TimeFloat(i32),
    List(Vec<Known>),
    Object(Vec<(Known, Known)>),
}

/// Values the verifier treats specially.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Known {
    EdDsa,
    EdDsaLower,
    None,
    NoneUpper,
    Hs256,
    Rs256,
    Es256,
    Ed25519,
    AtJwt,
    AtJwtUpper,
    ApplicationAtJwt,
    Jwt,
    Kid,
    OtherKid,
    Empty,
    Issuer,
    Audience,
    Client,
    OtherClient,
    Free,
    Premium,
    Gold,
    Predict,
    PredictAndProba,
    KeyUrl,
}

impl Known {
    fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::EdDsaLower => "eddsa",
            Self::None => "none",
            Self::NoneUpper => "NONE",
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::Ed25519 => "Ed25519",
            Self::AtJwt => "at+jwt",
            Self::AtJwtUpper => "AT+JWT",
            Self::ApplicationAtJwt => "application/at+jwt",
            Self::Jwt => "JWT",
            Self::Kid => KID,
            Self::OtherKid => OTHER_KID,
            Self::Empty => "",
            Self::Issuer => ISS,
            Self::Audience => AUD,
            Self::Client => CLIENT,
            Self::OtherClient => "cl_ffffffffffffffffffffffffffffffff",
            Self::Free => "free",
            Self::Premium => "premium",
            Self::Gold => "gold",
            Self::Predict => SCOPE_PREDICT,
            Self::PredictAndProba => "predict predict:proba",
            Self::KeyUrl => "https://evil.test/jwks.json",
        }
    }
}

impl Json {
    fn value(&self, now: i64) -> Value {
        let float = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::from(*i),
            Self::Float(x) => float(*x),
            Self::Text(s) => Value::from(s.as_str()),
            Self::Known(k) => Value::from(k.as_str()),
            Self::Time(delta) => Value::from(now + i64::from(*delta)),
            Self::TimeText(delta) => Value::from((now + i64::from(*delta)).to_string()),
            Self::TimeFloat(delta) => float((now + i64::from(*delta)) as f64 + 0.5),
            Self::List(items) => items.iter().map(|k| Value::from(k.as_str())).collect(),
            Self::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), Value::from(v.as_str())))
                    .collect(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Encoding {
    UrlNoPad,
    UrlPadded,
    Standard,
    /// Unused low bits of the last character set (non-canonical base64).
    NonCanonical,
}

#[derive(Arbitrary, Debug)]
enum Signature {
    Keep,
    /// The signature segment of another start-up token.
    FromOther(u8),
    Empty,
    /// Only two segments.
    Missing,
    FlipBit(u16),
    /// S + L: the same signature with a non-reduced scalar (malleability).
    AddGroupOrder,
    NonCanonical,
    Truncate(u8),
    Bytes(Vec<u8>),
    Text(String),
    /// A valid signature by a key that is not in the JWKS.
    Attacker,
    /// A valid signature by the real key: the policy checks alone must hold.
    Genuine,
}

/// The order of the Ed25519 group, little-endian.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn check_mutation(fx: &Fixture, mutation: &Mutation) {
    let base = &fx.signed[usize::from(mutation.base) % fx.signed.len()].token;
    let mut segments = base.split('.');
    let (Some(header), Some(claims), Some(signature)) =
        (segments.next(), segments.next(), segments.next())
    else {
        panic!("a signed token has three segments");
    };
    let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    let (header_json, header) = edit(header, &mutation.header, &mutation.encoding, now);
    let (claims_json, claims) = edit(claims, &mutation.claims, &mutation.encoding, now);
    let message = format!("{header}.{claims}");
    let signature = match &mutation.signature {
        Signature::Keep => Some(signature.to_owned()),
        Signature::FromOther(i) => {
            let other = &fx.signed[usize::from(*i) % fx.signed.len()].token;
            other.rsplit('.').next().map(str::to_owned)
        }
        Signature::Empty => Some(String::new()),
        Signature::Missing => None,
        Signature::FlipBit(bit) => Some(with_signature_bytes(signature, |bytes| {
            let bit = usize::from(*bit) % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        })),
        Signature::AddGroupOrder => Some(with_signature_bytes(signature, |bytes| {
            let mut carry = 0_u16;
            for (s, l) in bytes[32..].iter_mut().zip(GROUP_ORDER) {
                let sum = u16::from(*s) + u16::from(l) + carry;
                *s = sum.to_le_bytes()[0];
                carry = sum >> 8;
            }
        })),
        Signature::NonCanonical => Some(non_canonical(signature)),
        Signature::Truncate(n) => {
            let keep = signature.len().saturating_sub(usize::from(*n));
            Some(signature[..keep].to_owned())
        }
        Signature::Bytes(bytes) => Some(URL_SAFE_NO_PAD.encode(bytes)),
        Signature::Text(text) => Some(text.clone()),
        Signature::Attacker => Some(sign(&fx.attacker, &message)),
        Signature::Genuine => Some(sign(&fx.key, &message)),
    };
    let mut token = match signature {
        Some(signature) => format!("{message}.{signature}"),
        None => message,
    };
    if let Some(tail) = &mutation.tail {
        token.push_str(tail);
    }

    let before = unix_now();
    let result = verify(fx, &token);
    let after = unix_now();
    if matches!(mutation.signature, Signature::Genuine) {
        if let Ok(accepted) = &result {
            check_policy(&header_json, &claims_json, accepted, before, after);
        }
    } else {
        check_not_forged(fx, &token, &result);
    }
}

/// Applies the edits to one segment. Returns the segment's JSON bytes and its encoding; an
/// unedited segment keeps its original text.
fn edit(segment: &str, edits: &[Edit], encoding: &Encoding, now: i64) -> (Vec<u8>, String) {
    let mut json = URL_SAFE_NO_PAD
        .decode(segment)
        .expect("a signed token's segments are base64url");
    if edits.is_empty() {
        return (json, segment.to_owned());
    }
    for edit in edits {
        match edit {
            Edit::Replace(bytes) => json.clone_from(bytes),
            Edit::Set(name, value) => {
                if let Ok(mut object) = serde_json::from_slice::<Map<String, Value>>(&json) {
                    object.insert(name.as_str().to_owned(), value.value(now));
                    json = serde_json::to_vec(&object).expect("a JSON object serializes");
                }
            }
            Edit::Remove(name) => {
                if let Ok(mut object) = serde_json::from_slice::<Map<String, Value>>(&json) {
                    object.remove(name.as_str());
                    json = serde_json::to_vec(&object).expect("a JSON object serializes");
                }
            }
        }
    }
    let encoded = match encoding {
        Encoding::UrlNoPad => URL_SAFE_NO_PAD.encode(&json),
        Encoding::UrlPadded => URL_SAFE.encode(&json),
        Encoding::Standard => STANDARD.encode(&json),
        Encoding::NonCanonical => non_canonical(&URL_SAFE_NO_PAD.encode(&json)),
    };
    (json, encoded)
}

fn with_signature_bytes(segment: &str, change: impl FnOnce(&mut [u8])) -> String {
    let mut bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .expect("a signed token's signature is base64url");
    assert_eq!(bytes.len(), 64, "an Ed25519 signature is 64 bytes");
    change(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Sets the unused low bits of the last base64url character, if it has any: a different
/// string that careless decoders map to the same bytes.
fn non_canonical(segment: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let unused_bits = match segment.len() % 4 {
        2 => 4,
        3 => 2,
        _ => return segment.to_owned(),
    };
    let mut bytes = segment.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut()
        && let Some(index) = ALPHABET.iter().position(|c| c == last)
    {
        *last = ALPHABET[index | ((1 << unused_bits) - 1)];
    }
    String::from_utf8(bytes).expect("base64url is ASCII")
}

fn sign(key: &SigningKey, message: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.sign(message.as_bytes()).to_bytes())
}

/// What an accepted token must satisfy whatever signed it (RFC 8725, RFC 9068 and ours).
fn check_policy(header: &[u8], claims: &[u8], accepted: &AccessClaims, before: u64, after: u64) {
    let object = |json: &[u8], what: &str| {
        serde_json::from_slice::<Map<String, Value>>(json)
            .unwrap_or_else(|_| panic!("accepted a token whose {what} is not a JSON object"))
    };
    let header = object(header, "header");
    let claims = object(claims, "claims");
    let string = |object: &Map<String, Value>, name: &str| {
        object.get(name).and_then(Value::as_str).map(str::to_owned)
    };
    let number = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("accepted a token whose {name} is not a whole number"))
    };

    assert_eq!(string(&header, "alg").as_deref(), Some("EdDSA"), "alg");
    let typ = string(&header, "typ").map(|t| t.to_ascii_lowercase());
    assert!(
        matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt")),
        "typ {typ:?}"
    );
    assert_eq!(string(&header, "kid").as_deref(), Some(KID), "kid");
    for name in ["jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit"] {
        assert!(
            header.get(name).is_none_or(Value::is_null),
            "accepted a token with {name}"
        );
    }

    assert_eq!(string(&claims, "iss").as_deref(), Some(ISS), "iss");
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == AUD,
        Some(Value::Array(auds)) => auds.iter().any(|a| a == AUD),
        _ => false,
    };
    assert!(audience_ok, "aud {:?}", claims.get("aud"));
    let exp = number("exp");
    let nbf = number("nbf");
    number("iat");
    assert!(
        exp.saturating_add(LEEWAY_SECONDS) >= before,
        "accepted an expired token"
    );
    assert!(
        nbf <= after + LEEWAY_SECONDS,
        "accepted a token before its nbf"
    );
    let sub = string(&claims, "sub");
    assert!(
        sub.is_some() && sub == string(&claims, "client_id"),
        "sub and client_id differ"
    );
    let tier = string(&claims, "tier");
    assert!(
        matches!(tier.as_deref(), Some("free" | "premium")),
        "tier {tier:?}"
    );

    let scope = string(&claims, "scope").unwrap_or_else(|| panic!("accepted without a scope"));
    let expected = AccessClaims {
        sub: sub.unwrap_or_default(),
        client_id: string(&claims, "client_id").unwrap_or_default(),
        scopes: scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        tier: if tier.as_deref() == Some("premium") {
            Tier::Premium
        } else {
            Tier::Free
        },
        jti: string(&claims, "jti").unwrap_or_else(|| panic!("accepted without a jti")),
        exp,
    };
    assert_eq!(
        accepted, &expected,
        "the claims returned differ from the token's"
    );
}
