//! `POST /token` (OAuth 2.0 client credentials, RFC 6749 §4.4) and `GET /.well-known/jwks.json`.
//!
//! The token endpoint's request rules and errors live in [`secure_ml_core::auth::oauth`]; this
//! file is the order of the steps. The caller's rate limit is charged before the body is parsed
//! or any credential is looked at, so the endpoint cannot be used to brute-force client
//! secrets: every guess, right or wrong, spends quota, and a refused guess is never checked.

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use secure_ml_core::auth::oauth::{OAuthError, TokenRequest, token_response};
use secure_ml_core::auth::token::unix_now;
use secure_ml_core::auth::{ClientRegistry, SigningKeys};
use secure_ml_core::frame::route::{Route as Entry, Routes};
use secure_ml_core::frame::{Call, Frame};
use secure_ml_core::problem::{ApiError, json_response};
use secure_ml_core::ratelimit::{Group, RateLimiter};

/// Everything a request needs, built once at init.
#[derive(Debug)]
pub struct Deps {
    pub frame: Frame,
    pub registry: ClientRegistry,
    pub keys: SigningKeys,
    pub limiter: RateLimiter,
}

/// The routes of this function, as `template.yaml` declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Token,
    Jwks,
}

pub static ROUTES: Routes<Route> = Routes {
    service: "token",
    routes: &[
        Entry::new("/token", Method::POST, Route::Token),
        Entry::new("/.well-known/jwks.json", Method::GET, Route::Jwks),
    ],
};

/// Handles one request. Never fails: every outcome is a response.
pub async fn handle(deps: &Deps, request: Request) -> Response<Body> {
    deps.frame
        .serve(&ROUTES, request, async |call, route| match route {
            Route::Token => token(deps, call).await,
            Route::Jwks => Ok(jwks(deps).await),
        })
        .await
}

/// `POST /token`: limit, then credentials, then a signed token.
async fn token(deps: &Deps, call: &mut Call<'_>) -> Result<Response<Body>, ApiError> {
    call.charge(&deps.limiter, Group::Token, 1).await?;
    Ok(grant(deps, call).await.unwrap_or_else(|error| {
        tracing::debug!(outcome = error.code(), "token request refused");
        error.into_response()
    }))
}

async fn grant(deps: &Deps, call: &mut Call<'_>) -> Result<Response<Body>, OAuthError> {
    let request = TokenRequest::read(call.request())?;
    let client = match deps
        .registry
        .authenticate(&request.client_id, &request.client_secret)
        .await
    {
        Ok(Some(client)) => client,
        Ok(None) => {
            // The access line names the client id that failed, if it has our shape.
            if let Some(presented) = request.loggable_client_id() {
                call.identify(presented);
            }
            return Err(OAuthError::InvalidClient);
        }
        Err(e) => {
            tracing::error!(error = %e, "client registry read failed");
            return Err(OAuthError::Unavailable);
        }
    };
    call.identify(&client.client_id);
    let scopes = request.granted_scopes(&client.scopes)?;
    let issued = deps
        .keys
        .issuer()
        .await
        .issue(&client.client_id, &scopes, client.tier, unix_now())
        .map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            OAuthError::Unavailable
        })?;
    tracing::debug!(kid = %issued.kid, jti = %issued.jti, scope = %issued.scope, "token issued");
    Ok(token_response(&issued))
}

/// `GET /.well-known/jwks.json`: every public key that may still verify a token.
async fn jwks(deps: &Deps) -> Response<Body> {
    let mut response = json_response(StatusCode::OK, &deps.keys.jwks_now().await);
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{AUTHORIZATION, CONTENT_TYPE};
    use lambda_http::RequestExt;
    use secure_ml_core::auth::oauth::MAX_TOKEN_BODY_BYTES as MAX_BODY_BYTES;

    const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use aws_sdk_dynamodb::operation::get_item::{GetItemError, GetItemOutput};
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_dynamodb::types::error::ResourceNotFoundException;
    use secure_ml_core::auth::registry::{ClientInfo, ClientStatus, item_from_record, rfc3339};
    use secure_ml_core::auth::secret::SecretHash;
    use secure_ml_core::auth::{ClientRecord, KeySet, Tier, TokenSettings, Verifier};
    use secure_ml_core::ratelimit::RateLimitConfig;
    use secure_ml_core::testing::{Rule, RuleMode, mock, mock_dynamodb};
    use serde_json::Value;

    /// The client the `events/token-*.json` files authenticate as. Test-only credentials.
    const DEMO_ID: &str = "cl_5f0c6b1a9e2d4c7f8a3b1e6d9c2f4a7b";
    const DEMO_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const ISS: &str = "https://auth.secure-ml-api.test";
    const AUD: &str = "secure-ml-api";

    type Item = HashMap<String, AttributeValue>;

    fn event(name: &str) -> Request {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let json =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        lambda_http::request::from_str(&json)
            .unwrap_or_else(|e| panic!("{name} is not an HTTP API event: {e}"))
    }

    fn demo_item(status: ClientStatus, scopes: &[&str], secret: &str) -> Item {
        item_from_record(&ClientRecord {
            info: ClientInfo {
                client_id: DEMO_ID.into(),
                name: "demo".into(),
                tier: Tier::Free,
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                status,
                created_at: rfc3339(1_795_000_000),
                updated_at: rfc3339(1_795_000_000),
            },
            secret_hash: SecretHash::of(secret).to_stored(),
        })
    }

    fn active_demo() -> Option<Item> {
        Some(demo_item(ClientStatus::Active, &["predict"], DEMO_SECRET))
    }

    /// A registry holding at most `item` (GetItem finds it by `client_id`, like DynamoDB would),
    /// and the rule that counts the reads.
    fn registry_returning(item: Option<Item>) -> (ClientRegistry, Rule) {
        let rule = mock!(aws_sdk_dynamodb::Client::get_item).then_compute_output(move |req| {
            let wanted = req.key().and_then(|key| key.get("client_id"));
            let found = item.clone().filter(|item| item.get("client_id") == wanted);
            GetItemOutput::builder().set_item(found).build()
        });
        let client = mock_dynamodb(RuleMode::MatchAny, &[&rule]);
        (ClientRegistry::new(client, "clients-test"), rule)
    }

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: ISS.into(),
            audience: AUD.into(),
            lifetime_seconds: 900,
        }
    }

    fn deps_with(registry: ClientRegistry) -> Deps {
        deps_with_keys(registry, &KeySet::generate(unix_now()).unwrap())
    }

    fn deps_with_keys(registry: ClientRegistry, set: &KeySet) -> Deps {
        Deps {
            frame: secure_ml_core::testing::frame(),
            registry,
            keys: SigningKeys::fixed(set, settings()).unwrap(),
            limiter: admitting_limiter(),
        }
    }

    /// A limiter whose every conditional write succeeds (DynamoDB admits).
    fn admitting_limiter() -> RateLimiter {
        let rule = mock!(aws_sdk_dynamodb::Client::update_item)
            .then_output(|| UpdateItemOutput::builder().build());
        let client = mock_dynamodb(RuleMode::MatchAny, &[&rule]);
        let vars = secure_ml_core::config::Vars::from_pairs([("RATE_LIMIT_TABLE", "rl-test")]);
        RateLimiter::new(client, RateLimitConfig::from_vars(&vars).unwrap())
    }

    fn deps(item: Option<Item>) -> (Deps, Rule) {
        let (registry, rule) = registry_returning(item);
        (deps_with(registry), rule)
    }

    fn body_text(response: &Response<Body>) -> String {
        match response.body() {
            Body::Text(text) => text.clone(),
            Body::Binary(bytes) => String::from_utf8(bytes.clone()).unwrap(),
            Body::Empty => String::new(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    fn body_json(response: &Response<Body>) -> Value {
        serde_json::from_str(&body_text(response)).unwrap()
    }

    fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    fn assert_oauth_error(response: &Response<Body>, status: u16, error: &str) {
        assert_eq!(response.status(), status, "body: {}", body_text(response));
        assert_eq!(header(response, "content-type"), "application/json");
        assert_eq!(header(response, "cache-control"), "no-store");
        assert_eq!(header(response, "pragma"), "no-cache");
        let body = body_json(response);
        assert_eq!(body["error"], error);
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "only error and error_description"
        );
    }

    fn with_body(mut req: Request, content_type: &str, body: &str) -> Request {
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        *req.body_mut() = Body::Text(body.to_owned());
        req
    }

    mod rate_limiting {
        use super::*;
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;

        /// A limiter whose table says this key is booked up for the next ten minutes.
        fn exhausted_limiter() -> (RateLimiter, Rule) {
            let now_ms = unix_now() * 1000;
            let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(move || {
                UpdateItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .item("tat", AttributeValue::N((now_ms + 600_000).to_string()))
                        .item(
                            "expires_at",
                            AttributeValue::N((now_ms / 1000 + 3600).to_string()),
                        )
                        .build(),
                )
            });
            let client = mock_dynamodb(RuleMode::MatchAny, &[&rule]);
            let vars = secure_ml_core::config::Vars::from_pairs([("RATE_LIMIT_TABLE", "rl-test")]);
            (
                RateLimiter::new(client, RateLimitConfig::from_vars(&vars).unwrap()),
                rule,
            )
        }

        #[tokio::test]
        async fn over_limit_caller_is_refused_before_credentials_are_looked_up() {
            let (registry, reads) = registry_returning(active_demo());
            let (limiter, writes) = exhausted_limiter();
            let deps = Deps {
                limiter,
                ..deps_with(registry)
            };

            let response = handle(&deps, event("token-valid-basic.json")).await;

            assert_eq!(response.status(), 429, "{}", body_text(&response));
            assert_eq!(
                header(&response, "content-type"),
                "application/problem+json"
            );
            assert_eq!(body_json(&response)["type"], "/problems/quota-exceeded");
            let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
            // Booked 600 s ahead, minus the burst allowance (4 × 6 s) the policy tolerates.
            assert!((575..=577).contains(&retry_after), "{retry_after}");
            assert_eq!(header(&response, "ratelimit-policy"), "\"token\";q=10;w=60");
            assert!(header(&response, "ratelimit").starts_with("\"token\";r=0;t="));
            assert_eq!(
                reads.num_calls(),
                0,
                "credentials must not be checked once over the limit"
            );
            assert_eq!(writes.num_calls(), 1);

            // The instance remembers the refusal: a second attempt costs no DynamoDB call.
            let again = handle(&deps, event("token-valid-basic.json")).await;
            assert_eq!(again.status(), 429);
            assert_eq!(writes.num_calls(), 1);
        }

        #[tokio::test]
        async fn admitted_token_response_carries_the_rate_limit_headers() {
            let (deps, _) = deps(active_demo());
            let response = handle(&deps, event("token-valid-basic.json")).await;
            assert_eq!(response.status(), 200);
            assert_eq!(header(&response, "ratelimit-policy"), "\"token\";q=10;w=60");
            assert!(header(&response, "ratelimit").starts_with("\"token\";r=4;t="));
        }
    }

    mod issuing {
        use super::*;

        #[tokio::test]
        async fn valid_basic_event_gets_a_verifiable_bearer_token_that_is_not_cached() {
            let (deps, rule) = deps(active_demo());
            let response = handle(&deps, event("token-valid-basic.json")).await;

            assert_eq!(response.status(), 200, "{}", body_text(&response));
            assert_eq!(header(&response, "content-type"), "application/json");
            assert_eq!(header(&response, "cache-control"), "no-store");
            assert_eq!(header(&response, "pragma"), "no-cache");
            let body = body_json(&response);
            assert_eq!(body["token_type"], "Bearer");
            assert_eq!(body["expires_in"], 900);
            assert_eq!(body["scope"], "predict");
            assert_eq!(rule.num_calls(), 1);

            let verifier = Verifier::from_jwks(ISS, AUD, &deps.keys.jwks_now().await).unwrap();
            let claims = verifier
                .verify_token(body["access_token"].as_str().unwrap())
                .await
                .unwrap();
            assert_eq!(claims.client_id, DEMO_ID);
            assert_eq!(claims.scopes, vec!["predict".to_owned()]);
            assert_eq!(claims.tier, Tier::Free);
        }

        #[tokio::test]
        async fn valid_form_event_with_a_base64_body_gets_all_of_the_clients_scopes() {
            let (deps, _) = deps(Some(demo_item(
                ClientStatus::Active,
                &["predict", "predict:proba"],
                DEMO_SECRET,
            )));
            let response = handle(&deps, event("token-valid-form.json")).await;
            assert_eq!(response.status(), 200, "{}", body_text(&response));
            assert_eq!(body_json(&response)["scope"], "predict predict:proba");
            assert_eq!(header(&response, "cache-control"), "no-store");
        }

        #[tokio::test]
        async fn requesting_a_subset_of_scopes_narrows_the_token() {
            let (deps, _) = deps(Some(demo_item(
                ClientStatus::Active,
                &["predict", "predict:proba"],
                DEMO_SECRET,
            )));
            let response = handle(&deps, event("token-valid-basic.json")).await;
            assert_eq!(response.status(), 200);
            assert_eq!(body_json(&response)["scope"], "predict");
        }

        #[tokio::test]
        async fn a_scope_of_only_spaces_counts_as_omitted() {
            let (deps, _) = deps(Some(demo_item(
                ClientStatus::Active,
                &["predict", "predict:proba"],
                DEMO_SECRET,
            )));
            let req = with_body(
                event("token-valid-basic.json"),
                FORM_CONTENT_TYPE,
                "grant_type=client_credentials&scope=+++",
            );
            let response = handle(&deps, req).await;
            assert_eq!(response.status(), 200);
            assert_eq!(body_json(&response)["scope"], "predict predict:proba");
        }

        #[tokio::test]
        async fn content_type_parameters_and_case_are_accepted() {
            let (deps, _) = deps(active_demo());
            let req = with_body(
                event("token-valid-basic.json"),
                "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
                "grant_type=client_credentials",
            );
            assert_eq!(handle(&deps, req).await.status(), 200);
        }
    }

    mod client_authentication {
        use super::*;

        /// Status, every header, and the body byte for byte.
        fn snapshot(response: &Response<Body>) -> (u16, Vec<(String, String)>, String) {
            let mut headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            headers.sort();
            (response.status().as_u16(), headers, body_text(response))
        }

        #[tokio::test]
        async fn unknown_client_wrong_secret_and_disabled_client_get_identical_responses() {
            let (unknown, unknown_rule) = deps(None);
            let (wrong, _) = deps(active_demo());
            let (disabled, _) = deps(Some(demo_item(
                ClientStatus::Disabled,
                &["predict"],
                DEMO_SECRET,
            )));

            let responses = [
                handle(&unknown, event("token-valid-basic.json")).await,
                handle(&wrong, event("token-wrong-secret.json")).await,
                handle(&disabled, event("token-valid-basic.json")).await,
                handle(&wrong, event("token-bad-base64.json")).await,
            ];
            assert_eq!(
                unknown_rule.num_calls(),
                1,
                "an unknown id is looked up like any other"
            );
            for response in &responses {
                assert_oauth_error(response, 401, "invalid_client");
                assert_eq!(
                    header(response, "www-authenticate"),
                    "Basic realm=\"secure-ml-api\""
                );
            }
            let first = snapshot(&responses[0]);
            for response in &responses[1..] {
                assert_eq!(snapshot(response), first);
            }
        }

        #[tokio::test]
        async fn bad_base64_event_is_invalid_client_without_a_registry_read() {
            let (deps, rule) = deps(active_demo());
            let response = handle(&deps, event("token-bad-base64.json")).await;
            assert_oauth_error(&response, 401, "invalid_client");
            assert_eq!(
                header(&response, "www-authenticate"),
                "Basic realm=\"secure-ml-api\""
            );
            assert_eq!(rule.num_calls(), 0);
        }

        #[tokio::test]
        async fn both_methods_event_is_invalid_request_without_a_registry_read() {
            let (deps, rule) = deps(active_demo());
            let response = handle(&deps, event("token-both-methods.json")).await;
            assert_oauth_error(&response, 400, "invalid_request");
            assert!(response.headers().get("www-authenticate").is_none());
            assert_eq!(rule.num_calls(), 0);
        }

        #[tokio::test]
        async fn no_credentials_or_half_of_them_is_invalid_client() {
            let (deps, rule) = deps(active_demo());
            for body in [
                "grant_type=client_credentials".to_owned(),
                format!("grant_type=client_credentials&client_id={DEMO_ID}"),
                format!("grant_type=client_credentials&client_secret={DEMO_SECRET}"),
            ] {
                let mut req = with_body(event("token-valid-basic.json"), FORM_CONTENT_TYPE, &body);
                req.headers_mut().remove(AUTHORIZATION);
                assert_oauth_error(&handle(&deps, req).await, 401, "invalid_client");
            }
            assert_eq!(rule.num_calls(), 0);
        }

        #[tokio::test]
        async fn basic_credentials_are_form_urlencoded_before_base64() {
            use base64::Engine;
            let secret = "s3cr3t with spaces+plus:colon%";
            let (deps, _) = deps(Some(demo_item(ClientStatus::Active, &["predict"], secret)));
            let encoded = format!("{DEMO_ID}:{}", "s3cr3t+with+spaces%2Bplus%3Acolon%25");
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(encoded)
            );
            let mut req = event("token-valid-basic.json");
            req.headers_mut()
                .insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
            assert_eq!(handle(&deps, req).await.status(), 200);
        }

        #[tokio::test]
        async fn a_bearer_header_on_the_token_endpoint_is_invalid_client() {
            let (deps, _) = deps(active_demo());
            let mut req = event("token-valid-basic.json");
            req.headers_mut().insert(
                AUTHORIZATION,
                HeaderValue::from_static("Bearer abc.def.ghi"),
            );
            assert_oauth_error(&handle(&deps, req).await, 401, "invalid_client");
        }

        #[tokio::test]
        async fn registry_failure_is_503_temporarily_unavailable_never_500() {
            let rule = mock!(aws_sdk_dynamodb::Client::get_item).then_error(|| {
                GetItemError::ResourceNotFoundException(
                    ResourceNotFoundException::builder()
                        .message("no table")
                        .build(),
                )
            });
            let client = mock_dynamodb(RuleMode::MatchAny, &[&rule]);
            let deps = deps_with(ClientRegistry::new(client, "clients-test"));
            let response = handle(&deps, event("token-valid-basic.json")).await;
            assert_oauth_error(&response, 503, "temporarily_unavailable");
            assert_eq!(header(&response, "retry-after"), "1");
            assert!(
                !body_text(&response).contains("no table"),
                "internal errors stay in the logs"
            );
        }
    }

    mod request_validation {
        use super::*;

        #[tokio::test]
        async fn json_body_event_is_invalid_request() {
            let (deps, rule) = deps(active_demo());
            let response = handle(&deps, event("token-json-body.json")).await;
            assert_oauth_error(&response, 400, "invalid_request");
            assert_eq!(rule.num_calls(), 0);
        }

        #[tokio::test]
        async fn missing_content_type_is_invalid_request() {
            let (deps, _) = deps(active_demo());
            let mut req = event("token-valid-basic.json");
            req.headers_mut().remove(CONTENT_TYPE);
            assert_oauth_error(&handle(&deps, req).await, 400, "invalid_request");
        }

        #[tokio::test]
        async fn missing_grant_type_event_is_invalid_request() {
            let (deps, rule) = deps(active_demo());
            assert_oauth_error(
                &handle(&deps, event("token-missing-grant-type.json")).await,
                400,
                "invalid_request",
            );
            assert_eq!(rule.num_calls(), 0);
        }

        #[tokio::test]
        async fn empty_grant_type_counts_as_missing() {
            let (deps, _) = deps(active_demo());
            let req = with_body(
                event("token-valid-basic.json"),
                FORM_CONTENT_TYPE,
                "grant_type=",
            );
            assert_oauth_error(&handle(&deps, req).await, 400, "invalid_request");
        }

        #[tokio::test]
        async fn unsupported_grant_event_is_unsupported_grant_type() {
            let (deps, rule) = deps(active_demo());
            let response = handle(&deps, event("token-unsupported-grant.json")).await;
            assert_oauth_error(&response, 400, "unsupported_grant_type");
            assert_eq!(rule.num_calls(), 0);
        }

        #[tokio::test]
        async fn repeated_params_event_is_invalid_request() {
            let (deps, rule) = deps(active_demo());
            assert_oauth_error(
                &handle(&deps, event("token-repeated-params.json")).await,
                400,
                "invalid_request",
            );
            assert_eq!(rule.num_calls(), 0);
        }

        #[tokio::test]
        async fn any_repeated_parameter_is_invalid_request() {
            let (deps, _) = deps(active_demo());
            let req = with_body(
                event("token-valid-basic.json"),
                FORM_CONTENT_TYPE,
                "grant_type=client_credentials&scope=predict&scope=predict",
            );
            assert_oauth_error(&handle(&deps, req).await, 400, "invalid_request");
        }

        #[tokio::test]
        async fn oversized_body_is_413_with_an_oauth_error_body() {
            let (deps, rule) = deps(active_demo());
            let body = format!(
                "grant_type=client_credentials&pad={}",
                "a".repeat(MAX_BODY_BYTES)
            );
            let req = with_body(event("token-valid-basic.json"), FORM_CONTENT_TYPE, &body);
            assert_oauth_error(&handle(&deps, req).await, 413, "invalid_request");
            assert_eq!(rule.num_calls(), 0);
        }

        #[tokio::test]
        async fn scope_escalation_event_is_invalid_scope() {
            let (deps, rule) = deps(active_demo());
            let response = handle(&deps, event("token-scope-escalation.json")).await;
            assert_oauth_error(&response, 400, "invalid_scope");
            assert_eq!(
                rule.num_calls(),
                1,
                "scopes are judged after authentication"
            );
        }

        #[tokio::test]
        async fn unknown_scope_name_is_invalid_scope() {
            let (deps, _) = deps(active_demo());
            let req = with_body(
                event("token-valid-basic.json"),
                FORM_CONTENT_TYPE,
                "grant_type=client_credentials&scope=admin",
            );
            assert_oauth_error(&handle(&deps, req).await, 400, "invalid_scope");
        }

        #[tokio::test]
        async fn scope_escalation_by_an_unauthenticated_caller_is_invalid_client() {
            let (deps, _) = deps(None);
            assert_oauth_error(
                &handle(&deps, event("token-scope-escalation.json")).await,
                401,
                "invalid_client",
            );
        }
    }

    mod routing {
        use super::*;

        #[tokio::test]
        async fn jwks_get_event_lists_public_keys_only_and_is_cacheable() {
            let (deps, rule) = deps(None);
            let response = handle(&deps, event("jwks-get.json")).await;
            assert_eq!(response.status(), 200);
            assert_eq!(header(&response, "content-type"), "application/json");
            assert_eq!(header(&response, "cache-control"), "public, max-age=300");
            let body = body_json(&response);
            let key = &body["keys"][0];
            assert_eq!(key["kty"], "OKP");
            assert_eq!(key["crv"], "Ed25519");
            assert_eq!(key["alg"], "EdDSA");
            assert_eq!(key["use"], "sig");
            assert_eq!(key["kid"], deps.keys.issuer().await.kid());
            assert!(key.get("d").is_none());
            assert!(!body_text(&response).contains("PRIVATE"));
            assert_eq!(rule.num_calls(), 0);
        }

        #[tokio::test]
        async fn wrong_method_event_is_405_with_allow_post() {
            let (deps, _) = deps(None);
            let response = handle(&deps, event("token-wrong-method.json")).await;
            assert_eq!(response.status(), 405);
            assert_eq!(header(&response, "allow"), "POST");
            assert_eq!(
                header(&response, "content-type"),
                "application/problem+json"
            );
            assert_eq!(body_json(&response)["status"], 405);
        }

        #[tokio::test]
        async fn posting_to_the_jwks_is_405_with_allow_get() {
            let (deps, _) = deps(None);
            let mut req = event("jwks-get.json");
            *req.method_mut() = Method::POST;
            let response = handle(&deps, req).await;
            assert_eq!(response.status(), 405);
            assert_eq!(header(&response, "allow"), "GET");
        }

        #[tokio::test]
        async fn unknown_route_is_a_404_problem() {
            let (deps, _) = deps(None);
            let req = event("jwks-get.json").with_raw_http_path("/token/extra");
            let response = handle(&deps, req).await;
            assert_eq!(response.status(), 404);
            assert_eq!(
                header(&response, "content-type"),
                "application/problem+json"
            );
            assert_eq!(body_json(&response)["type"], "/problems/not-found");
        }

        #[tokio::test]
        async fn a_cargo_lambda_watch_prefix_is_no_alias_of_a_route() {
            // On AWS, `POST /lambda-url/token/token` reaches a function through the `$default`
            // route with that raw path: it must not be read as `/token`.
            let (deps, _) = deps(active_demo());
            let req = event("token-valid-basic.json").with_raw_http_path("/lambda-url/token/token");
            let response = handle(&deps, req).await;
            assert_eq!(response.status(), 404);
            assert_eq!(body_json(&response)["type"], "/problems/not-found");
        }
    }

    mod logging {
        use super::*;

        /// Installs, once per test binary, a global TRACE subscriber writing JSON lines to a
        /// buffer, and returns the buffer. Global rather than thread-scoped: tracing caches each
        /// callsite's interest process-wide, and with a single scoped subscriber a callsite first
        /// hit on another test's thread would be cached as "never" and drop this test's events.
        /// Every test's logs land in the buffer, so the checks below cover all of them.
        fn capture() -> Arc<Mutex<Vec<u8>>> {
            static BUFFER: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
            BUFFER
                .get_or_init(|| {
                    #[derive(Clone)]
                    struct Writer(Arc<Mutex<Vec<u8>>>);
                    impl std::io::Write for Writer {
                        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                            self.0.lock().unwrap().extend_from_slice(buf);
                            Ok(buf.len())
                        }
                        fn flush(&mut self) -> std::io::Result<()> {
                            Ok(())
                        }
                    }
                    let buffer = Arc::new(Mutex::new(Vec::new()));
                    let writer = Writer(buffer.clone());
                    let subscriber = tracing_subscriber::fmt()
                        .json()
                        .with_max_level(tracing::Level::TRACE)
                        .with_writer(move || writer.clone())
                        .finish();
                    tracing::subscriber::set_global_default(subscriber)
                        .expect("no other test in this binary installs a global subscriber");
                    buffer
                })
                .clone()
        }

        #[tokio::test]
        async fn no_secret_token_or_key_reaches_the_logs_during_issuance_and_failures() {
            let buffer = capture();
            let set = KeySet::generate(unix_now()).unwrap();
            let (frame, access) = secure_ml_core::testing::frame_with_penalty(u32::MAX);
            let deps = Deps {
                frame,
                ..deps_with_keys(registry_returning(active_demo()).0, &set)
            };

            let issued = handle(&deps, event("token-valid-basic.json")).await;
            assert_eq!(issued.status(), 200);
            let token = body_json(&issued)["access_token"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(
                handle(&deps, event("token-wrong-secret.json"))
                    .await
                    .status(),
                401
            );
            // A secret pasted into the client_id field by mistake.
            let mut mistaken = with_body(
                event("token-valid-basic.json"),
                FORM_CONTENT_TYPE,
                &format!(
                    "grant_type=client_credentials&client_id={DEMO_SECRET}&client_secret={DEMO_SECRET}"
                ),
            );
            mistaken.headers_mut().remove(AUTHORIZATION);
            assert_eq!(handle(&deps, mistaken).await.status(), 401);
            assert_eq!(handle(&deps, event("jwks-get.json")).await.status(), 200);

            let access = secure_ml_core::testing::access_lines(&access);
            let clients: Vec<(u64, Option<&str>)> = access
                .iter()
                .map(|line| (line["status"].as_u64().unwrap(), line["client_id"].as_str()))
                .collect();
            // The access line names the client, also the one that failed (its id has our
            // shape), never a secret pasted as a client id.
            assert_eq!(
                clients,
                [
                    (200, Some(DEMO_ID)),
                    (401, Some(DEMO_ID)),
                    (401, None),
                    (200, None)
                ]
            );
            let logs = format!(
                "{}{}",
                String::from_utf8(buffer.lock().unwrap().clone()).unwrap(),
                serde_json::to_string(&access).unwrap()
            );
            assert!(logs.contains("token issued"), "{logs:.2000}");

            let basic = event("token-valid-basic.json").headers()[AUTHORIZATION]
                .to_str()
                .unwrap()
                .to_owned();
            let pem = &set.keys[0].private_key;
            let mut forbidden: Vec<&str> =
                vec![DEMO_SECRET, &basic, &basic[6..], &token, "PRIVATE KEY"];
            forbidden.extend(token.split('.'));
            forbidden.extend(pem.lines().filter(|line| !line.starts_with("-----")));
            for needle in forbidden {
                assert!(
                    !logs.contains(needle),
                    "the logs contain a secret, token or key fragment: {needle:.12}…"
                );
            }
        }
    }

    mod dynamodb_local {
        //! End to end against DynamoDB Local: `make test` starts it, creates the tables and sets
        //! `AWS_ENDPOINT_URL_DYNAMODB` and `CLIENTS_TABLE`.
        use super::*;
        use base64::Engine;

        async fn registry() -> ClientRegistry {
            let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
                .expect("AWS_ENDPOINT_URL_DYNAMODB must point at DynamoDB Local (run make test)");
            let table = std::env::var("CLIENTS_TABLE")
                .expect("CLIENTS_TABLE must name the local clients table");
            assert!(
                endpoint.starts_with("http://127.0.0.1")
                    || endpoint.starts_with("http://localhost")
            );
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .load()
                .await;
            ClientRegistry::new(aws_sdk_dynamodb::Client::new(&sdk), table)
        }

        fn basic_request(id: &str, secret: &str, body: &str) -> Request {
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            let mut req = with_body(event("token-valid-basic.json"), FORM_CONTENT_TYPE, body);
            req.headers_mut().insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Basic {credentials}")).unwrap(),
            );
            req
        }

        #[tokio::test]
        #[ignore = "needs DynamoDB Local: run make test"]
        async fn registry_lifecycle_through_the_token_endpoint() {
            let registry = registry().await;
            let deps = deps_with(registry.clone());
            let (client, secret) = registry
                .create("e2e", Tier::Premium, &["predict".into()], unix_now())
                .await
                .unwrap();
            let grant = "grant_type=client_credentials";

            let ok = handle(
                &deps,
                basic_request(&client.client_id, secret.expose(), grant),
            )
            .await;
            assert_eq!(ok.status(), 200, "{}", body_text(&ok));
            assert_eq!(header(&ok, "cache-control"), "no-store");

            let escalation = "grant_type=client_credentials&scope=predict%20predict%3Aproba";
            assert_oauth_error(
                &handle(
                    &deps,
                    basic_request(&client.client_id, secret.expose(), escalation),
                )
                .await,
                400,
                "invalid_scope",
            );

            // Unknown vs wrong secret vs disabled: same status, body and headers.
            let unknown = handle(
                &deps,
                basic_request(
                    "cl_00000000000000000000000000000000",
                    secret.expose(),
                    grant,
                ),
            )
            .await;
            let wrong = handle(&deps, basic_request(&client.client_id, "wrong", grant)).await;
            registry
                .set_status(&client.client_id, ClientStatus::Disabled, unix_now())
                .await
                .unwrap();
            let disabled = handle(
                &deps,
                basic_request(&client.client_id, secret.expose(), grant),
            )
            .await;
            for response in [&unknown, &wrong, &disabled] {
                assert_oauth_error(response, 401, "invalid_client");
                assert_eq!(response.headers(), unknown.headers());
                assert_eq!(body_text(response), body_text(&unknown));
            }

            registry
                .set_status(&client.client_id, ClientStatus::Active, unix_now())
                .await
                .unwrap();
            let new_secret = registry
                .rotate_secret(&client.client_id, unix_now())
                .await
                .unwrap();
            let old = handle(
                &deps,
                basic_request(&client.client_id, secret.expose(), grant),
            )
            .await;
            assert_oauth_error(&old, 401, "invalid_client");
            let new = handle(
                &deps,
                basic_request(&client.client_id, new_secret.expose(), grant),
            )
            .await;
            assert_eq!(new.status(), 200);
        }
    }
}
