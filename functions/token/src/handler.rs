//! `POST /token` (OAuth 2.0 client credentials, RFC 6749 §4.4) and `GET /.well-known/jwks.json`.
//!
//! Token-endpoint errors are RFC 6749 §5.2 JSON (`{"error", "error_description"}`), not problem
//! details: OAuth client libraries parse exactly that shape. Unknown routes and wrong methods
//! are problem+json like the rest of the API.
//!
//! Decisions where the RFCs leave room:
//! - A `Basic` header that is not valid base64 / `id:secret` is `invalid_client` (401), the same
//!   response as a wrong secret: it is a failed client authentication (RFC 6749 §5.2), and a
//!   distinct answer would only tell a prober which of its guesses parsed.
//! - Any repeated parameter is `invalid_request` (RFC 6749 §3.1); an empty value counts as absent.
//! - A body over [`MAX_BODY_BYTES`] is 413 with an `invalid_request` body: the status is the
//!   precise HTTP answer, and the body keeps the OAuth shape clients parse.
//! - Requested scopes are checked only after the client has authenticated, so an anonymous caller
//!   learns nothing about any client's scopes.

use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use secure_ml_core::auth::client_auth::{Form, basic_credentials};
use secure_ml_core::auth::token::unix_now;
use secure_ml_core::auth::{ClientRegistry, KNOWN_SCOPES, SigningKeys};
use std::time::Instant;

use secure_ml_core::http::route_path;
use secure_ml_core::problem::{ApiError, REALM, json_response};
use secure_ml_core::ratelimit::{Group, RateLimiter, client_key};
use secure_ml_core::telemetry::RequestMetrics;
use serde::Serialize;

/// Largest accepted `POST /token` body. A legitimate one is under 200 bytes.
pub const MAX_BODY_BYTES: usize = 4096;
const TOKEN_PATH: &str = "/token";
const JWKS_PATH: &str = "/.well-known/jwks.json";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Everything the handler needs, built once in `main`.
#[derive(Debug)]
pub struct Deps {
    pub registry: ClientRegistry,
    pub keys: SigningKeys,
    pub limiter: RateLimiter,
}

/// Routes one request. Never fails: every outcome is a response.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    let started = Instant::now();
    let path = route_path(&req);
    let (route, response) = match (path, req.method()) {
        (TOKEN_PATH, &Method::POST) => (TOKEN_PATH, token(deps, &req).await),
        (TOKEN_PATH, _) => (
            TOKEN_PATH,
            ApiError::MethodNotAllowed { allow: "POST" }.into_response(),
        ),
        (JWKS_PATH, &Method::GET) => (JWKS_PATH, jwks(deps).await),
        (JWKS_PATH, _) => (
            JWKS_PATH,
            ApiError::MethodNotAllowed { allow: "GET" }.into_response(),
        ),
        _ => ("unknown", ApiError::NotFound.into_response()),
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    let decision = response.extensions().get::<DecisionLabel>().map(|d| d.0);
    tracing::info!(
        route,
        method = %req.method(),
        status = response.status().as_u16(),
        latency_ms,
        decision,
        "request"
    );
    RequestMetrics {
        service: "token",
        route,
        status: response.status().as_u16(),
        latency_ms,
        decision,
        labels: Vec::new(),
    }
    .emit();
    response
}

/// The rate-limit decision of a token request, carried on the response to the access log.
#[derive(Debug, Clone, Copy)]
struct DecisionLabel(&'static str);

async fn jwks(deps: &Deps) -> Response<Body> {
    let mut response = json_response(StatusCode::OK, &deps.keys.jwks_now().await);
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    scope: &'a str,
}

async fn token(deps: &Deps, req: &Request) -> Response<Body> {
    // The caller's source-IP limit is checked before the body is parsed or any credential is
    // looked at, so the endpoint cannot be used to brute-force client secrets: every guess,
    // right or wrong, spends quota, and a refused guess is never checked.
    let key = match client_key(req) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let decision = deps.limiter.check(Group::Token, &key, 1).await;
    let label = DecisionLabel(decision.as_str());
    // Headers first: `into_error` consumes the decision.
    let headers = decision.headers();
    let mut response = match decision.into_error() {
        Some(error) => error.into_response(),
        None => match grant(deps, req).await {
            Ok(response) => response,
            Err(error) => {
                tracing::info!(outcome = error.code(), "token request refused");
                error.into_response()
            }
        },
    };
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    response.extensions_mut().insert(label);
    response
}

async fn grant(deps: &Deps, req: &Request) -> Result<Response<Body>, OAuthError> {
    let body: &[u8] = req.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(OAuthError::TooLarge);
    }
    if !is_form(req.headers()) {
        return Err(OAuthError::InvalidRequest(
            "the request body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Form::parse(body).map_err(|e| OAuthError::InvalidRequest(e.description()))?;
    match form.get("grant_type") {
        None => return Err(OAuthError::InvalidRequest("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
    }
    let (client_id, secret) = client_credentials(req.headers(), &form)?;

    let client = match deps.registry.authenticate(&client_id, &secret).await {
        Ok(Some(client)) => client,
        Ok(None) => {
            // The presented id is logged only if it has our shape: a secret pasted into the
            // client_id field must not end up in the logs.
            let presented = if looks_like_client_id(&client_id) {
                client_id.as_str()
            } else {
                "unrecognised"
            };
            tracing::info!(client_id = presented, "client authentication failed");
            return Err(OAuthError::InvalidClient);
        }
        Err(e) => {
            tracing::error!(error = %e, "client registry read failed");
            return Err(OAuthError::Unavailable);
        }
    };

    // No scope (or only spaces) means every scope the client holds (SPEC §2).
    let requested: Vec<&str> = form
        .get("scope")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    let granted = if requested.is_empty() {
        client.scopes.clone()
    } else {
        if requested
            .iter()
            .any(|s| !client.scopes.iter().any(|c| c == s))
        {
            tracing::info!(client_id = %client.client_id, "requested scope exceeds the client's scopes");
            return Err(OAuthError::InvalidScope);
        }
        KNOWN_SCOPES
            .iter()
            .filter(|k| requested.contains(k))
            .map(|s| (*s).to_owned())
            .collect()
    };

    let issuer = deps.keys.issuer().await;
    let issued = issuer
        .issue(&client.client_id, &granted, client.tier, unix_now())
        .map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            OAuthError::Unavailable
        })?;
    tracing::info!(client_id = %client.client_id, kid = %issued.kid, jti = %issued.jti, scope = %issued.scope, "token issued");

    let mut response = json_response(
        StatusCode::OK,
        &TokenResponse {
            access_token: &issued.access_token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: &issued.scope,
        },
    );
    no_store(response.headers_mut());
    Ok(response)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE))
}

fn looks_like_client_id(id: &str) -> bool {
    id.strip_prefix("cl_").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The client id and secret, from HTTP Basic (RFC 6749 §2.3.1) or the form body; never both.
fn client_credentials(headers: &HeaderMap, form: &Form) -> Result<(String, String), OAuthError> {
    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    let header = authorization.next();
    if authorization.next().is_some() {
        return Err(OAuthError::InvalidRequest(
            "the Authorization header is repeated",
        ));
    }
    let in_form = (form.get("client_id"), form.get("client_secret"));
    match header {
        Some(_) if in_form.0.is_some() || in_form.1.is_some() => Err(OAuthError::InvalidRequest(
            "use exactly one client authentication method",
        )),
        Some(value) => basic_credentials(value).ok_or(OAuthError::InvalidClient),
        None => match in_form {
            (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
            _ => Err(OAuthError::InvalidClient),
        },
    }
}

/// RFC 6749 §5.2 errors of the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OAuthError {
    InvalidRequest(&'static str),
    TooLarge,
    /// Unknown client, wrong secret, disabled client, unusable credentials: one response.
    InvalidClient,
    UnsupportedGrantType,
    InvalidScope,
    Unavailable,
}

#[derive(Serialize)]
struct OAuthErrorBody {
    error: &'static str,
    error_description: &'static str,
}

impl OAuthError {
    fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::TooLarge => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::Unavailable => "temporarily_unavailable",
        }
    }

    fn into_response(self) -> Response<Body> {
        let (status, description) = match self {
            Self::InvalidRequest(description) => (StatusCode::BAD_REQUEST, description),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body exceeds 4096 bytes",
            ),
            Self::InvalidClient => (StatusCode::UNAUTHORIZED, "client authentication failed"),
            Self::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "only the client_credentials grant is supported",
            ),
            Self::InvalidScope => (
                StatusCode::BAD_REQUEST,
                "the requested scope exceeds the client's scopes",
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the service is temporarily unavailable; retry later",
            ),
        };
        let mut response = json_response(
            status,
            &OAuthErrorBody {
                error: self.code(),
                error_description: description,
            },
        );
        let headers = response.headers_mut();
        no_store(headers);
        match self {
            Self::InvalidClient => {
                let challenge = format!("Basic realm=\"{REALM}\"");
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Basic")),
                );
            }
            Self::Unavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// RFC 6749 §5.1: token responses (and, by extension, their errors) must not be cached.
fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;
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
            let mut req = event("jwks-get.json");
            *req.uri_mut() = "https://abc123.execute-api.us-east-1.amazonaws.com/token/extra"
                .parse()
                .unwrap();
            let response = handle(&deps, req).await;
            assert_eq!(response.status(), 404);
            assert_eq!(
                header(&response, "content-type"),
                "application/problem+json"
            );
            assert_eq!(body_json(&response)["type"], "/problems/not-found");
        }

        #[tokio::test]
        async fn cargo_lambda_watch_prefixed_paths_route_like_api_gateway_paths() {
            let (deps, _) = deps(active_demo());
            let mut req = event("token-valid-basic.json");
            *req.uri_mut() = "http://localhost:9000/lambda-url/token/token"
                .parse()
                .unwrap();
            assert_eq!(handle(&deps, req).await.status(), 200);
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
            let deps = deps_with_keys(registry_returning(active_demo()).0, &set);

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

            let logs = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
            assert!(
                logs.contains("token issued") && logs.contains("client authentication failed"),
                "{logs}"
            );
            assert!(logs.contains(DEMO_ID), "client ids are logged");

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
