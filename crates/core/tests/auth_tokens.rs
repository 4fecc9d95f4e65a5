//! Access-token issuance and verification, attacked the ways RFC 8725 lists.
//!
//! Every refusal must be a 401 `invalid_token` (or a bare 401 Bearer challenge when no bearer
//! credentials were sent) whose body never echoes the token.

// Helpers outside `#[test]` functions unwrap too: any failure there is a test failure.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::Body;
use secure_ml_core::auth::token::unix_now;
use secure_ml_core::auth::{
    AccessClaims, JwksSource, KeySet, SCOPE_PREDICT, SCOPE_PROBA, Tier, TokenIssuer, TokenSettings,
    Verifier, VerifierConfig, key_retention_seconds,
};
use secure_ml_core::problem::ApiError;
use serde_json::{Value, json};
use std::time::Duration;

const ISS: &str = "https://auth.secure-ml-api.test";
const AUD: &str = "secure-ml-api";
const LIFETIME: u64 = 900;

fn settings() -> TokenSettings {
    TokenSettings {
        issuer: ISS.into(),
        audience: AUD.into(),
        lifetime_seconds: LIFETIME,
    }
}

fn retention() -> u64 {
    key_retention_seconds(LIFETIME)
}

struct Fixture {
    set: KeySet,
    verifier: Verifier,
}

impl Fixture {
    fn new() -> Self {
        let now = unix_now();
        let set = KeySet::generate(now).unwrap();
        let verifier = Verifier::from_jwks(ISS, AUD, &set.public_jwks(now, retention())).unwrap();
        Self { set, verifier }
    }

    fn kid(&self) -> String {
        self.set.active().unwrap().kid.clone()
    }

    fn signing_key(&self) -> SigningKey {
        self.set.active().unwrap().signing_key().unwrap()
    }

    fn issue(&self, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        TokenIssuer::new(&self.set, settings())
            .unwrap()
            .issue(
                "cl_0123456789abcdef0123456789abcdef",
                &scopes,
                Tier::Premium,
                unix_now(),
            )
            .unwrap()
            .access_token
    }

    fn header(&self) -> Value {
        json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": self.kid() })
    }

    /// Signs arbitrary header and claims with our real key: only the content under test is wrong.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        sign_with(&self.signing_key(), header, claims)
    }

    async fn verify(&self, token: &str) -> Result<AccessClaims, ApiError> {
        self.verifier.verify(&bearer(token)).await
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn sign_with(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = key.sign(message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn claims() -> Value {
    let now = unix_now();
    json!({
        "iss": ISS, "aud": AUD, "sub": "cl_abc", "client_id": "cl_abc",
        "iat": now, "nbf": now, "exp": now + LIFETIME,
        "jti": "0b6d3f5e-5a5e-4c1e-9d44-3c0f5d9b8a11", "scope": "predict", "tier": "free"
    })
}

fn with(mut value: Value, key: &str, replacement: Value) -> Value {
    value[key] = replacement;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

fn bearer(token: &str) -> HeaderMap {
    authorization(&format!("Bearer {token}"))
}

fn authorization(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    headers
}

/// Asserts the error is a 401 `invalid_token` with this detail, and renders it to check that
/// nothing of `token` leaks into the response.
fn assert_invalid(result: Result<AccessClaims, ApiError>, detail: &str, token: &str) {
    let err = result.expect_err("the token must be refused");
    assert_eq!(
        err,
        ApiError::InvalidToken {
            detail: detail.to_owned()
        }
    );
    let response = err.into_response();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let Body::Text(body) = response.body() else {
        panic!("problem body is text")
    };
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["status"], 401);
    assert_eq!(body["type"], "/problems/invalid-token");
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(
            !body.to_string().contains(part),
            "the problem body echoes part of the token"
        );
    }
}

fn assert_missing(result: Result<AccessClaims, ApiError>) {
    let err = result.expect_err("no bearer credentials");
    assert_eq!(err, ApiError::MissingToken);
    let response = err.into_response();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
    assert_eq!(
        challenge, "Bearer realm=\"secure-ml-api\"",
        "RFC 6750 §3.1: no error code without credentials"
    );
}

mod authorization_header {
    use super::*;

    #[tokio::test]
    async fn accepts_a_token_from_the_issuer_and_exposes_its_claims() {
        let fx = Fixture::new();
        let claims = fx
            .verify(&fx.issue(&[SCOPE_PREDICT, SCOPE_PROBA]))
            .await
            .unwrap();
        assert_eq!(claims.sub, "cl_0123456789abcdef0123456789abcdef");
        assert_eq!(claims.client_id, claims.sub);
        assert_eq!(claims.tier, Tier::Premium);
        assert!(claims.has_scope(SCOPE_PREDICT) && claims.has_scope(SCOPE_PROBA));
        assert!(!claims.has_scope("admin"));
        assert!(claims.exp > unix_now());
        assert!(uuid::Uuid::parse_str(&claims.jti).is_ok());
    }

    #[tokio::test]
    async fn accepts_the_bearer_scheme_in_any_case_per_rfc9110() {
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let headers = authorization(&format!("{scheme} {token}"));
            assert!(
                fx.verifier.verify(&headers).await.is_ok(),
                "scheme {scheme}"
            );
        }
    }

    #[tokio::test]
    async fn missing_authorization_header_is_a_bare_bearer_challenge() {
        let fx = Fixture::new();
        assert_missing(fx.verifier.verify(&HeaderMap::new()).await);
    }

    #[tokio::test]
    async fn empty_authorization_header_is_a_bare_bearer_challenge() {
        let fx = Fixture::new();
        assert_missing(fx.verifier.verify(&authorization("")).await);
        assert_missing(fx.verifier.verify(&authorization("   ")).await);
    }

    #[tokio::test]
    async fn basic_scheme_is_not_bearer_credentials() {
        let fx = Fixture::new();
        assert_missing(
            fx.verifier
                .verify(&authorization("Basic Y2xfYWJjOnNlY3JldA=="))
                .await,
        );
        // Even a valid token behind another scheme is not accepted.
        let token = fx.issue(&[SCOPE_PREDICT]);
        assert_missing(
            fx.verifier
                .verify(&authorization(&format!("Token {token}")))
                .await,
        );
    }

    #[tokio::test]
    async fn bearer_scheme_without_a_token_is_invalid() {
        let fx = Fixture::new();
        assert_invalid(
            fx.verifier.verify(&authorization("Bearer")).await,
            "malformed authorization header",
            "",
        );
        assert_invalid(
            fx.verifier.verify(&authorization("Bearer   ")).await,
            "malformed authorization header",
            "",
        );
    }

    #[tokio::test]
    async fn two_authorization_headers_are_refused() {
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        let mut headers = bearer(&token);
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        assert_invalid(
            fx.verifier.verify(&headers).await,
            "malformed authorization header",
            &token,
        );
    }

    #[tokio::test]
    async fn a_valid_token_in_the_query_string_or_body_is_ignored() {
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/predict-token-in-query.json"
        );
        let event = std::fs::read_to_string(path)
            .unwrap()
            .replace("REPLACE_WITH_ACCESS_TOKEN", &token);
        let mut request = lambda_http::request::from_str(&event).unwrap();
        *request.body_mut() = Body::Text(format!("access_token={token}"));
        assert!(request.uri().query().unwrap().contains(&token));
        assert_missing(fx.verifier.verify(request.headers()).await);
    }

    #[tokio::test]
    async fn scope_check_maps_to_403_insufficient_scope() {
        let fx = Fixture::new();
        let claims = fx.verify(&fx.issue(&[SCOPE_PREDICT])).await.unwrap();
        assert!(claims.require_scope(SCOPE_PREDICT).is_ok());
        let response = claims
            .require_scope(SCOPE_PROBA)
            .unwrap_err()
            .into_response();
        assert_eq!(response.status(), 403);
        assert!(
            response.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
    }
}

mod token_shape {
    use super::*;

    #[tokio::test]
    async fn garbage_tokens_are_refused_as_malformed() {
        let fx = Fixture::new();
        for garbage in [
            "x",
            "a.b",
            "a.b.c.d",
            "not a jwt",
            "....",
            "eyJ.eyJ.sig",
            "a.b.c",
            "%%%.%%%.%%%",
        ] {
            let result = fx.verifier.verify_token(garbage).await;
            assert_invalid(result, "malformed token", garbage);
        }
    }

    #[tokio::test]
    async fn sixteen_kib_token_is_refused_before_parsing() {
        let fx = Fixture::new();
        let padding = "A".repeat(16 * 1024);
        let token = sign_with(
            &fx.signing_key(),
            &fx.header(),
            &with(claims(), "pad", json!(padding)),
        );
        assert!(token.len() > 16 * 1024);
        assert_invalid(fx.verify(&token).await, "token too large", &token);
    }

    #[tokio::test]
    async fn tampered_payload_is_refused() {
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["scope"] = json!("predict predict:proba");
        let forged = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
        assert_invalid(fx.verify(&forged).await, "invalid signature", &forged);
    }

    #[tokio::test]
    async fn tampered_signature_is_refused() {
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        let (message, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[10] ^= 0x01;
        let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_invalid(fx.verify(&forged).await, "invalid signature", &forged);
        let truncated = format!("{message}.{}", &signature[..20]);
        assert!(fx.verify(&truncated).await.is_err());
    }
}

mod algorithm_and_key {
    use super::*;

    #[tokio::test]
    async fn alg_none_is_refused_in_every_casing() {
        let fx = Fixture::new();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = json!({ "alg": alg, "typ": "at+jwt", "kid": fx.kid() });
            let unsigned = format!("{}.{}.", b64(&header), b64(&claims()));
            assert_invalid(
                fx.verify(&unsigned).await,
                "unsupported algorithm",
                &unsigned,
            );
            // With a signature segment borrowed from a real token, too.
            let real_signature = fx
                .issue(&[SCOPE_PREDICT])
                .rsplit('.')
                .next()
                .unwrap()
                .to_owned();
            let borrowed = format!("{}.{}.{real_signature}", b64(&header), b64(&claims()));
            assert_invalid(
                fx.verify(&borrowed).await,
                "unsupported algorithm",
                &borrowed,
            );
        }
    }

    #[tokio::test]
    async fn hs256_token_keyed_with_the_public_key_bytes_is_refused() {
        let fx = Fixture::new();
        let public = fx.signing_key().verifying_key();
        let jwk = fx.set.public_jwks(unix_now(), retention()).keys[0].clone();
        for secret in [
            public.as_bytes().to_vec(),
            jwk.x.as_bytes().to_vec(),
            serde_json::to_vec(&jwk).unwrap(),
        ] {
            let mut header = Header::new(Algorithm::HS256);
            header.typ = Some("at+jwt".into());
            header.kid = Some(fx.kid());
            let token =
                jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret))
                    .unwrap();
            assert_invalid(fx.verify(&token).await, "unsupported algorithm", &token);
        }
    }

    #[tokio::test]
    async fn other_asymmetric_algorithms_and_eddsa_miscased_are_refused() {
        let fx = Fixture::new();
        for alg in ["eddsa", "EDDSA", "ES256", "RS256", "PS256", "Ed25519"] {
            let token = fx.sign(
                &json!({ "alg": alg, "typ": "at+jwt", "kid": fx.kid() }),
                &claims(),
            );
            assert_invalid(fx.verify(&token).await, "unsupported algorithm", &token);
        }
    }

    #[tokio::test]
    async fn unknown_kid_is_refused() {
        let fx = Fixture::new();
        let token = fx.sign(
            &json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": "not-a-known-kid" }),
            &claims(),
        );
        assert_invalid(fx.verify(&token).await, "unknown signing key", &token);
    }

    #[tokio::test]
    async fn missing_or_empty_kid_is_refused() {
        let fx = Fixture::new();
        for header in [
            json!({ "alg": "EdDSA", "typ": "at+jwt" }),
            json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": "" }),
        ] {
            let token = fx.sign(&header, &claims());
            assert_invalid(fx.verify(&token).await, "missing key id", &token);
        }
    }

    #[tokio::test]
    async fn valid_signature_by_another_key_under_our_kid_is_refused() {
        let fx = Fixture::new();
        let attacker = SigningKey::generate(&mut rand::rngs::OsRng);
        let token = sign_with(&attacker, &fx.header(), &claims());
        assert_invalid(fx.verify(&token).await, "invalid signature", &token);
    }

    #[tokio::test]
    async fn embedded_jwk_jku_x5u_x5c_and_crit_headers_are_refused_not_followed() {
        let fx = Fixture::new();
        let attacker = SigningKey::generate(&mut rand::rngs::OsRng);
        let attacker_jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "kid": fx.kid(),
            "x": URL_SAFE_NO_PAD.encode(attacker.verifying_key().as_bytes())
        });
        let extras = [
            ("jwk", attacker_jwk),
            ("jku", json!("https://attacker.example/jwks.json")),
            ("x5u", json!("https://attacker.example/cert.pem")),
            ("x5c", json!(["MIIB"])),
            ("crit", json!(["exp"])),
        ];
        for (name, value) in extras {
            let header = with(fx.header(), name, value);
            // Signed by the attacker (trusting the header would accept it) and by us (the mere
            // presence of the parameter is refused).
            for key in [&attacker, &fx.signing_key()] {
                let token = sign_with(key, &header, &claims());
                assert_invalid(
                    fx.verify(&token).await,
                    "unsupported header parameter",
                    &token,
                );
            }
        }
    }
}

mod typ_header {
    use super::*;

    #[tokio::test]
    async fn wrong_or_missing_typ_is_refused() {
        let fx = Fixture::new();
        for header in [
            with(fx.header(), "typ", json!("JWT")),
            with(fx.header(), "typ", json!("id+jwt")),
            without(fx.header(), "typ"),
        ] {
            let token = fx.sign(&header, &claims());
            assert_invalid(fx.verify(&token).await, "not an access token", &token);
        }
    }

    #[tokio::test]
    async fn typ_is_a_case_insensitive_media_type_with_optional_application_prefix() {
        let fx = Fixture::new();
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            let token = fx.sign(&with(fx.header(), "typ", json!(typ)), &claims());
            assert!(fx.verify(&token).await.is_ok(), "typ {typ}");
        }
    }
}

mod time_claims {
    use super::*;

    #[tokio::test]
    async fn expired_token_is_refused() {
        let fx = Fixture::new();
        let token = fx.sign(
            &fx.header(),
            &with(claims(), "exp", json!(unix_now() - 120)),
        );
        assert_invalid(fx.verify(&token).await, "token expired", &token);
    }

    #[tokio::test]
    async fn token_expired_within_the_leeway_is_still_accepted() {
        let fx = Fixture::new();
        let token = fx.sign(&fx.header(), &with(claims(), "exp", json!(unix_now() - 10)));
        assert!(fx.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn token_whose_nbf_is_in_the_future_is_refused() {
        let fx = Fixture::new();
        let token = fx.sign(
            &fx.header(),
            &with(claims(), "nbf", json!(unix_now() + 120)),
        );
        assert_invalid(fx.verify(&token).await, "token not yet valid", &token);
    }

    #[tokio::test]
    async fn string_typed_exp_or_nbf_is_refused_cve_2026_25537() {
        let fx = Fixture::new();
        let far_past = (unix_now() - 100_000).to_string();
        let far_future = (unix_now() + 100_000).to_string();
        for (claim, value) in [
            ("exp", &far_past),
            ("exp", &far_future),
            ("nbf", &far_future),
            ("nbf", &far_past),
        ] {
            let token = fx.sign(&fx.header(), &with(claims(), claim, json!(value)));
            assert_invalid(
                fx.verify(&token).await,
                "missing or malformed claims",
                &token,
            );
        }
    }

    /// Independent of our typed claims: jsonwebtoken's own validation (>= 10.3) rejects a string
    /// `exp` instead of skipping it, which is what CVE-2026-25537 was about.
    #[test]
    fn jsonwebtoken_itself_rejects_string_typed_dates() {
        let fx = Fixture::new();
        let jwk = fx.set.public_jwks(unix_now(), retention()).keys[0].clone();
        let key = jwk.decoding_key().unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        validation.validate_nbf = true;
        let expired_as_string = with(claims(), "exp", json!((unix_now() - 100_000).to_string()));
        let token = fx.sign(&fx.header(), &expired_as_string);
        let err = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                jsonwebtoken::errors::ErrorKind::InvalidClaimFormat(_)
                    | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_)
            ),
            "{err:?}"
        );
        let nbf_as_string = with(claims(), "nbf", json!((unix_now() + 100_000).to_string()));
        let token = fx.sign(&fx.header(), &nbf_as_string);
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &validation).is_err());
    }
}

mod registered_claims {
    use super::*;

    #[tokio::test]
    async fn each_required_claim_missing_is_refused() {
        let fx = Fixture::new();
        for claim in ["iss", "aud", "sub", "exp", "nbf"] {
            let token = fx.sign(&fx.header(), &without(claims(), claim));
            assert_invalid(
                fx.verify(&token).await,
                "missing or malformed claims",
                &token,
            );
        }
    }

    #[tokio::test]
    async fn wrong_issuer_is_refused() {
        let fx = Fixture::new();
        let token = fx.sign(
            &fx.header(),
            &with(claims(), "iss", json!("https://evil.example")),
        );
        assert_invalid(fx.verify(&token).await, "wrong issuer", &token);
    }

    #[tokio::test]
    async fn wrong_audience_is_refused() {
        let fx = Fixture::new();
        let token = fx.sign(&fx.header(), &with(claims(), "aud", json!("another-api")));
        assert_invalid(fx.verify(&token).await, "wrong audience", &token);
    }

    #[tokio::test]
    async fn sub_that_differs_from_client_id_is_refused() {
        let fx = Fixture::new();
        let token = fx.sign(
            &fx.header(),
            &with(claims(), "sub", json!("cl_someone_else")),
        );
        assert_invalid(
            fx.verify(&token).await,
            "missing or malformed claims",
            &token,
        );
    }

    #[tokio::test]
    async fn unknown_tier_is_refused() {
        let fx = Fixture::new();
        let token = fx.sign(&fx.header(), &with(claims(), "tier", json!("platinum")));
        assert_invalid(
            fx.verify(&token).await,
            "missing or malformed claims",
            &token,
        );
    }
}

mod rotation {
    use super::*;

    #[tokio::test]
    async fn old_tokens_verify_until_expiry_and_new_tokens_carry_the_new_kid() {
        let now = unix_now();
        let mut set = KeySet::generate(now - 10).unwrap();
        let old_kid = set.active().unwrap().kid.clone();
        let old_token = TokenIssuer::new(&set, settings())
            .unwrap()
            .issue("cl_a", &[], Tier::Free, now)
            .unwrap();

        let new_kid = set.rotate(now, retention()).unwrap();
        assert_ne!(new_kid, old_kid);
        assert_eq!(set.active().unwrap().kid, new_kid);
        let new_token = TokenIssuer::new(&set, settings())
            .unwrap()
            .issue("cl_a", &[], Tier::Free, now)
            .unwrap();
        assert_eq!(new_token.kid, new_kid);

        let jwks = set.public_jwks(now, retention());
        assert_eq!(jwks.keys.len(), 2, "the retired key stays published");
        let verifier = Verifier::from_jwks(ISS, AUD, &jwks).unwrap();
        assert!(verifier.verify_token(&old_token.access_token).await.is_ok());
        assert!(verifier.verify_token(&new_token.access_token).await.is_ok());
    }

    #[test]
    fn retired_key_leaves_the_jwks_after_the_retention_window_and_is_pruned_by_the_next_rotation() {
        let t0 = 1_800_000_000;
        let mut set = KeySet::generate(t0).unwrap();
        let k1 = set.active().unwrap().kid.clone();
        let k2 = set.rotate(t0 + 100, retention()).unwrap();

        let kids = |set: &KeySet, at: u64| -> Vec<String> {
            set.public_jwks(at, retention())
                .keys
                .into_iter()
                .map(|k| k.kid)
                .collect()
        };
        assert_eq!(
            kids(&set, t0 + 100 + retention() - 1),
            vec![k2.clone(), k1.clone()]
        );
        assert_eq!(kids(&set, t0 + 100 + retention()), vec![k2.clone()]);

        // Rotating again before K1's window ends keeps it; after, prunes it.
        let mut early = set.clone();
        early.rotate(t0 + 200, retention()).unwrap();
        assert!(early.keys.iter().any(|k| k.kid == k1));
        let k3 = set.rotate(t0 + 100 + retention(), retention()).unwrap();
        let stored: Vec<&str> = set.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(
            stored,
            vec![k2.as_str(), k3.as_str()],
            "K1 pruned, K2 retired, K3 active"
        );
        assert_eq!(set.active().unwrap().kid, k3);
    }

    /// A verifier reading the JWKS file in a directory of its own, and that directory.
    pub(super) async fn file_verifier(
        set: &KeySet,
        interval: Duration,
    ) -> (Verifier, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("auth-reload-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        publish(&dir, set);
        let config = VerifierConfig {
            issuer: ISS.into(),
            audience: AUD.into(),
            jwks: JwksSource::File(dir.join("jwks.json")),
        };
        // A file source needs no AWS client; this one is never called.
        let unused = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build(),
        );
        let verifier = Verifier::load(config, &unused)
            .await
            .unwrap()
            .with_reload_interval(interval);
        (verifier, dir)
    }

    pub(super) fn publish(dir: &std::path::Path, set: &KeySet) {
        let jwks = set.public_jwks(unix_now(), retention());
        std::fs::write(dir.join("jwks.json"), jwks.to_json()).unwrap();
    }

    pub(super) fn token_of(set: &KeySet) -> String {
        TokenIssuer::new(set, settings())
            .unwrap()
            .issue("cl_a", &[], Tier::Free, unix_now())
            .unwrap()
            .access_token
    }

    #[tokio::test]
    async fn the_read_at_init_counts_as_a_reload() {
        let mut set = KeySet::generate(unix_now()).unwrap();
        let (verifier, dir) = file_verifier(&set, Duration::from_secs(60)).await;
        set.rotate(unix_now(), retention()).unwrap();
        publish(&dir, &set);
        let token = token_of(&set);
        assert_invalid(
            verifier.verify_token(&token).await,
            "unknown signing key",
            &token,
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn an_unknown_kid_reloads_the_jwks_at_most_once_per_interval() {
        let interval = Duration::from_millis(300);
        let mut set = KeySet::generate(unix_now()).unwrap();
        let (verifier, dir) = file_verifier(&set, interval).await;
        tokio::time::sleep(interval).await;

        // Rotation 1 is published; the first unknown kid after the interval reloads.
        set.rotate(unix_now(), retention()).unwrap();
        publish(&dir, &set);
        assert!(verifier.verify_token(&token_of(&set)).await.is_ok());
        assert_eq!(verifier.kids().len(), 2);

        // Rotation 2 within the interval: not reloaded yet, so refused; then accepted.
        set.rotate(unix_now(), retention()).unwrap();
        publish(&dir, &set);
        let token = token_of(&set);
        assert_invalid(
            verifier.verify_token(&token).await,
            "unknown signing key",
            &token,
        );
        tokio::time::sleep(interval).await;
        assert!(verifier.verify_token(&token).await.is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn only_kids_of_our_shape_can_trigger_a_reload() {
        let now = unix_now();
        let set = KeySet::generate(now).unwrap();
        let (verifier, dir) = file_verifier(&set, Duration::ZERO).await;
        // A key published under a kid that is not a thumbprint: never fetched for.
        let mut odd = KeySet::generate(now).unwrap();
        odd.keys[0].kid = "not-a-thumbprint".into();
        let mut both = set.clone();
        both.keys.push(odd.keys[0].clone());
        publish(&dir, &both);
        let token = token_of(&odd);
        assert_invalid(
            verifier.verify_token(&token).await,
            "unknown signing key",
            &token,
        );
        assert_eq!(verifier.kids().len(), 1, "no reload happened");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_kid_a_reload_did_not_find_cannot_trigger_another_for_a_while() {
        let now = unix_now();
        let set = KeySet::generate(now).unwrap();
        let (verifier, dir) = file_verifier(&set, Duration::ZERO).await;
        // An attacker's kid: thumbprint-shaped, published nowhere (yet).
        let stranger = KeySet::generate(now).unwrap();
        let token = token_of(&stranger);
        assert_invalid(
            verifier.verify_token(&token).await,
            "unknown signing key",
            &token,
        );
        let mut both = set.clone();
        both.keys.push(stranger.keys[0].clone());
        publish(&dir, &both);
        assert_invalid(
            verifier.verify_token(&token).await,
            "unknown signing key",
            &token,
        );
        assert_eq!(
            verifier.kids().len(),
            1,
            "the remembered kid caused no second reload"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn rotation_then_revocation_refuses_the_old_keys_tokens() {
        let mut set = KeySet::generate(unix_now()).unwrap();
        let (verifier, dir) = file_verifier(&set, Duration::ZERO).await;
        let old_kid = set.keys[0].kid.clone();
        let old_token = token_of(&set);
        assert!(verifier.verify_token(&old_token).await.is_ok());

        set.rotate(unix_now(), retention()).unwrap();
        publish(&dir, &set);
        assert!(verifier.verify_token(&token_of(&set)).await.is_ok());
        assert!(
            verifier.verify_token(&old_token).await.is_ok(),
            "retired, not revoked"
        );

        set.revoke(&old_kid, unix_now(), retention()).unwrap();
        publish(&dir, &set);
        // The first token of the key that revocation made active reloads the JWKS.
        assert!(verifier.verify_token(&token_of(&set)).await.is_ok());
        assert_invalid(
            verifier.verify_token(&old_token).await,
            "unknown signing key",
            &old_token,
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_key_past_its_expiry_verifies_nothing() {
        let now = unix_now();
        let mut set = KeySet::generate(now - 10_000).unwrap();
        let old = TokenIssuer::new(&set, settings()).unwrap();
        let token = old
            .issue("cl_a", &[], Tier::Free, now)
            .unwrap()
            .access_token;
        // Retired long enough ago that its retention has ended, yet still listed by a JWKS
        // that was not pruned: its `exp` alone must stop it.
        set.rotate(now - 5_000, 1_000).unwrap();
        let verifier = Verifier::from_jwks(ISS, AUD, &set.public_jwks(now - 5_000, 1_000)).unwrap();
        assert_invalid(
            verifier.verify_token(&token).await,
            "unknown signing key",
            &token,
        );
    }
}

mod token_cache {
    //! The verified-token cache: what a hit re-checks, what is never cached, when it is emptied.
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn a_verified_token_is_cached_and_served_from_the_cache() {
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        let first = fx.verify(&token).await.unwrap();
        assert_eq!(fx.verifier.cached_tokens(), 1);
        let again = fx.verify(&token).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(fx.verifier.cached_tokens(), 1);
    }

    #[tokio::test]
    async fn failures_are_never_cached() {
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        // One character of the signature changed (to another one), so it no longer verifies.
        let at = token.rfind('.').unwrap() + 10;
        let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
        for _ in 0..2 {
            assert!(fx.verify(&tampered).await.is_err());
        }
        let expired = fx.sign(
            &fx.header(),
            &with(claims(), "exp", json!(unix_now() - 3600)),
        );
        assert!(fx.verify(&expired).await.is_err());
        assert_eq!(fx.verifier.cached_tokens(), 0);
    }

    #[tokio::test]
    async fn a_token_over_the_size_cap_is_never_cached() {
        let fx = Fixture::new();
        let padded = with(claims(), "pad", json!("x".repeat(5_000)));
        let token = fx.sign(&fx.header(), &padded);
        assert_invalid(fx.verify(&token).await, "token too large", &token);
        assert_eq!(fx.verifier.cached_tokens(), 0);
    }

    static LATE: AtomicU64 = AtomicU64::new(0);

    #[tokio::test]
    async fn a_hit_checks_exp_again() {
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        let exp = fx.verify(&token).await.unwrap().exp;
        LATE.store(exp + 30, Ordering::SeqCst);
        let verifier =
            Verifier::from_jwks(ISS, AUD, &fx.set.public_jwks(unix_now(), retention())).unwrap();
        verifier.verify_token(&token).await.unwrap();
        let verifier = verifier.with_clock(|| LATE.load(Ordering::SeqCst));
        assert_invalid(verifier.verify_token(&token).await, "token expired", &token);
        assert_eq!(verifier.cached_tokens(), 0, "the stale entry is dropped");
    }

    static EARLY: AtomicU64 = AtomicU64::new(0);

    #[tokio::test]
    async fn a_hit_checks_nbf_again() {
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        fx.verify(&token).await.unwrap();
        EARLY.store(unix_now() - 3_600, Ordering::SeqCst);
        let verifier =
            Verifier::from_jwks(ISS, AUD, &fx.set.public_jwks(unix_now(), retention())).unwrap();
        verifier.verify_token(&token).await.unwrap();
        let verifier = verifier.with_clock(|| EARLY.load(Ordering::SeqCst));
        assert_invalid(
            verifier.verify_token(&token).await,
            "token not yet valid",
            &token,
        );
    }

    static AFTER_KEY: AtomicU64 = AtomicU64::new(0);

    #[tokio::test]
    async fn a_hit_checks_the_signing_keys_expiry_again() {
        let now = unix_now();
        let mut set = KeySet::generate(now).unwrap();
        let token = TokenIssuer::new(&set, settings())
            .unwrap()
            .issue("cl_a", &[], Tier::Free, now)
            .unwrap()
            .access_token;
        set.rotate(now, 60).unwrap();
        let verifier = Verifier::from_jwks(ISS, AUD, &set.public_jwks(now, 60)).unwrap();
        verifier.verify_token(&token).await.unwrap();
        assert_eq!(verifier.cached_tokens(), 1);
        AFTER_KEY.store(now + 61, Ordering::SeqCst);
        let verifier = verifier.with_clock(|| AFTER_KEY.load(Ordering::SeqCst));
        assert_invalid(
            verifier.verify_token(&token).await,
            "unknown signing key",
            &token,
        );
    }

    #[tokio::test]
    async fn the_cache_is_emptied_when_the_key_set_changes() {
        let mut set = KeySet::generate(unix_now()).unwrap();
        let (verifier, dir) = super::rotation::file_verifier(&set, Duration::ZERO).await;
        verifier
            .verify_token(&super::rotation::token_of(&set))
            .await
            .unwrap();
        assert_eq!(verifier.cached_tokens(), 1);
        set.rotate(unix_now(), retention()).unwrap();
        super::rotation::publish(&dir, &set);
        let token = super::rotation::token_of(&set);
        verifier.verify_token(&token).await.unwrap();
        // The reload emptied the cache; only the token verified after it is there.
        assert_eq!(verifier.cached_tokens(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

mod release_configuration {
    use super::*;

    /// The EdDSA backend is jsonwebtoken's `rust_crypto` *cargo feature*, not anything behind
    /// `cfg(test)`, so this exact path is what ships. `cargo test --release` runs it with the
    /// release profile (LTO, opt-level 3), the configuration of the Lambda binaries.
    #[tokio::test]
    async fn sign_and_verify_round_trip_through_the_real_backend() {
        secure_ml_core::auth::self_test().unwrap();
        let fx = Fixture::new();
        let token = fx.issue(&[SCOPE_PREDICT]);
        assert_eq!(token.split('.').count(), 3);
        let claims = fx.verify(&token).await.unwrap();
        assert!(claims.has_scope(SCOPE_PREDICT));
        println!(
            "verified in {} profile",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
    }

    /// Per-token cost of the hot paths. Numbers are printed, not asserted (shared CI machines
    /// are noisy). Run for real with:
    /// `cargo test --release -p secure-ml-core --test auth_tokens -- --ignored --nocapture measures`
    #[tokio::test]
    #[ignore = "benchmark: run with --release --ignored --nocapture"]
    async fn measures_sign_and_verify_time_per_token() {
        let fx = Fixture::new();
        let issuer = TokenIssuer::new(&fx.set, settings()).unwrap();
        let scopes = vec![SCOPE_PREDICT.to_owned(), SCOPE_PROBA.to_owned()];
        let n: u32 = if cfg!(debug_assertions) { 200 } else { 5_000 };

        let started = std::time::Instant::now();
        let mut tokens = Vec::with_capacity(n as usize);
        for _ in 0..n {
            tokens.push(
                issuer
                    .issue(
                        "cl_0123456789abcdef0123456789abcdef",
                        &scopes,
                        Tier::Free,
                        unix_now(),
                    )
                    .unwrap(),
            );
        }
        let sign = started.elapsed() / n;

        let headers: Vec<HeaderMap> = tokens.iter().map(|t| bearer(&t.access_token)).collect();
        let started = std::time::Instant::now();
        for h in &headers {
            fx.verifier.verify(h).await.unwrap();
        }
        let verify = started.elapsed() / n;
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        println!(
            "{profile}: sign {sign:?}/token, verify {verify:?}/token (n={n}, token {} bytes)",
            tokens[0].access_token.len()
        );
    }
}
