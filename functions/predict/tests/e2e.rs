//! End-to-end tests: both functions served by `cargo lambda watch`, DynamoDB Local behind them,
//! real clients in the clients table, real tokens from `POST /token`.
//!
//! `make test` starts the stack and exports its coordinates; these tests are `#[ignore]`d so a
//! plain `cargo test` runs without it. Requests go through either
//! - the deployed API's paths at the stack's one base URL (`SMLA_WATCH_URL/token`, `/predict`,
//!   …; watch routes them as `template.yaml` does), exactly as a user's curl would, or
//! - the Lambda invoke API with hand-built API Gateway events, because watch stamps every HTTP
//!   request with source IP 127.0.0.1 and rate-limit tests need addresses of their own.
//!
//! The stack runs with the predict policy at 6/min (one unit per 10 s) and burst 20, so a
//! flood that finishes within a few seconds must admit exactly the burst.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use bytes::Bytes;
use secure_ml_core::auth::ClientRegistry;
use secure_ml_core::auth::Tier;
use secure_ml_core::auth::token::unix_now;
use serde_json::{Value, json};

const NEEDS_STACK: &str = "needs the local stack: run `make test`";

/// Clients of the exactness flood, all in flight at once, from one address. The stack runs
/// several instances of each function (`--concurrency`, `SMLA_WATCH_INSTANCES`), which race
/// every admission against each other in DynamoDB, as instances do on AWS; the rest wait in
/// `cargo lambda watch`'s queue, and one watch cannot hold them all: see [`WATCH_QUEUE`]. So
/// `make test` serves the functions from two watch front-ends of the same build, with the same
/// environment, tables and instance count (`SMLA_WATCH_URLS`), and the flood sends half of its
/// clients through each: 2 × `SMLA_WATCH_INSTANCES` instances race for the same items.
const CONCURRENT_CLIENTS: usize = 200;

/// The most invocations of one function that one `cargo lambda watch` can have waiting. In
/// cargo-lambda 1.9.2 its queue holds 100, and one more blocks the lock every instance needs to
/// fetch its next event, so watch stops answering for good, for every function
/// (`RequestCache::upsert` awaits the full channel while holding the cache's write lock).
/// 100 requests at one front-end never queue more than that, even before an instance takes
/// one; the one request another test may have in flight there at the same moment makes 101,
/// but not 101 waiting: the front-end's instances are already waiting for events when the
/// flood starts, and take the first ones at once.
const WATCH_QUEUE: usize = 100;

/// A plain HTTP/1.1 client over hyper (already in the build through the AWS SDK, with the
/// same features, so these tests add no second build of it) that gives up after a minute
/// instead of hanging the test run.
#[derive(Clone)]
struct Http(Client<HttpConnector, Full<Bytes>>);

fn http_client() -> Http {
    Http(Client::builder(TokioExecutor::new()).build_http())
}

impl Http {
    /// Sends one request and returns status, lower-case headers and the body as JSON (`Null`
    /// when it is not JSON).
    async fn send(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap();
        let response = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            let response = self.0.request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        })
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no answer within 60 s"));
        let (parts, body) = response;
        Reply {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", url, headers, "").await
    }

    async fn post(&self, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        self.send("POST", url, headers, body).await
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {NEEDS_STACK}"))
}

fn watch_url() -> String {
    env("SMLA_WATCH_URL")
}

/// Every front-end of the stack, `SMLA_WATCH_URL` first (`SMLA_WATCH_URLS`, space-separated):
/// each a `cargo lambda watch` of the same build against the same tables.
fn watch_urls() -> Vec<String> {
    let urls: Vec<String> = env("SMLA_WATCH_URLS")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        urls.first(),
        Some(&watch_url()),
        "SMLA_WATCH_URLS starts with SMLA_WATCH_URL"
    );
    urls
}

/// A documentation-range address unique to this test process and call (RFC 5737 / RFC 3849).
fn fresh_ip() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::SeqCst) + (std::process::id() % 200) * 256;
    format!("2001:db8:{:x}:{:x}::1", std::process::id() % 0xffff, n)
}

async fn registry() -> ClientRegistry {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    ClientRegistry::new(aws_sdk_dynamodb::Client::new(&sdk), env("CLIENTS_TABLE"))
}

/// Creates a client in the clients table, as `admin client create` does.
async fn create_client(scopes: &[&str], tier: Tier) -> (String, String) {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let (info, secret) = registry()
        .await
        .create("e2e", tier, &scopes, unix_now())
        .await
        .unwrap();
    (info.client_id, secret.expose().to_owned())
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// An API Gateway HTTP API (payload 2.0) event.
fn api_event(method: &str, path: &str, ip: &str, headers: Value, body: Option<&str>) -> Value {
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "localhost", "domainPrefix": "localhost",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": ip, "userAgent": "e2e" },
            "requestId": uuid_like(), "routeKey": format!("{method} {path}"), "stage": "$default",
            "time": "23/Nov/2026:14:30:00 +0000", "timeEpoch": 1_795_444_200_000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

fn uuid_like() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "e2e-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Invokes `function` with `event` through the Lambda invoke API and decodes the HTTP response.
async fn invoke(http: &Http, function: &str, event: &Value) -> Reply {
    invoke_at(http, &watch_url(), function, event).await
}

/// [`invoke`] through the front-end at `base`, one of [`watch_urls`].
async fn invoke_at(http: &Http, base: &str, function: &str, event: &Value) -> Reply {
    let url = format!("{base}/2015-03-31/functions/{function}/invocations");
    let reply = http
        .post(
            &url,
            &[("content-type", "application/json")],
            &event.to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "invoke API: {reply:?}");
    let raw = reply.body;
    let headers = raw["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let body = raw["body"]
        .as_str()
        .map(|b| serde_json::from_str(b).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    Reply {
        status: raw["statusCode"].as_u64().unwrap() as u16,
        headers,
        body,
    }
}

/// `POST /token` with HTTP Basic credentials from `ip`, through the invoke API.
async fn token_from(http: &Http, ip: &str, id: &str, secret: &str) -> Reply {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let headers = json!({
        "authorization": format!("Basic {basic}"),
        "content-type": "application/x-www-form-urlencoded",
    });
    invoke(
        http,
        "token",
        &api_event(
            "POST",
            "/token",
            ip,
            headers,
            Some("grant_type=client_credentials"),
        ),
    )
    .await
}

async fn predict_from(http: &Http, ip: &str, token: &str, extra: Value) -> Reply {
    predict_at(http, &watch_url(), ip, token, extra).await
}

/// `POST /predict` from `ip` with the bearer `token` and the `extra` headers, through the
/// front-end at `base`.
async fn predict_at(http: &Http, base: &str, ip: &str, token: &str, extra: Value) -> Reply {
    let mut headers =
        json!({ "authorization": format!("Bearer {token}"), "content-type": "application/json" });
    if let (Some(h), Some(extra)) = (headers.as_object_mut(), extra.as_object()) {
        h.extend(extra.clone());
    }
    invoke_at(
        http,
        base,
        "predict",
        &api_event(
            "POST",
            "/predict",
            ip,
            headers,
            Some(r#"{"data": [5.1, 3.5, 1.4, 0.2]}"#),
        ),
    )
    .await
}

async fn access_token(http: &Http, scopes: &[&str], tier: Tier) -> String {
    let (id, secret) = create_client(scopes, tier).await;
    let reply = token_from(http, &fresh_ip(), &id, &secret).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["access_token"].as_str().unwrap().to_owned()
}

mod client_flow {
    use super::*;

    #[tokio::test]
    #[ignore = "needs the local stack: run make test"]
    async fn curl_session_from_the_readme_works_at_the_deployed_paths() {
        let http = http_client();
        let base = watch_url();
        let (id, secret) = create_client(&["predict", "predict:proba"], Tier::Free).await;

        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        let token = http
            .post(
                &format!("{base}/token"),
                &[
                    ("authorization", &format!("Basic {basic}")),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                "grant_type=client_credentials",
            )
            .await;
        assert_eq!(token.status, 200, "{token:?}");
        assert_eq!(token.header("cache-control"), Some("no-store"));
        let token = token.body;
        assert_eq!(token["token_type"], "Bearer");
        assert_eq!(token["scope"], "predict predict:proba");
        let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());

        let prediction = http
            .post(
                &format!("{base}/predict"),
                &[
                    ("authorization", &bearer),
                    ("content-type", "application/json"),
                ],
                r#"{"data": [5.1, 3.5, 1.4, 0.2]}"#,
            )
            .await;
        assert_eq!(prediction.status, 200, "{prediction:?}");
        assert!(prediction.header("ratelimit-policy").is_some());
        assert!(prediction.header("ratelimit").is_some());
        let prediction = prediction.body;
        assert_eq!(prediction["label"], "setosa");
        assert!(prediction["probabilities"]["setosa"].as_f64().unwrap() > 0.5);

        let card = http
            .get(&format!("{base}/model"), &[("authorization", &bearer)])
            .await
            .body;
        assert_eq!(card["version"], prediction["model_version"]);

        let health = http.get(&format!("{base}/health"), &[]).await.body;
        assert_eq!(health["status"], "ok");

        let jwks = http
            .get(&format!("{base}/.well-known/jwks.json"), &[])
            .await;
        assert_eq!(jwks.header("cache-control"), Some("public, max-age=300"));
        let jwks = jwks.body;
        assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "the JWKS must never carry private key material"
        );
    }

    /// What API Gateway does with the template's routes, through the local stack's router:
    /// a function's path reaches it whatever the method (its 405 names the allowed one), and
    /// every unknown path reaches the predict function (`$default`: a 404 problem, not API
    /// Gateway's bare `{"message":"Not Found"}`).
    #[tokio::test]
    #[ignore = "needs the local stack: run make test"]
    async fn unknown_paths_and_wrong_methods_are_answered_by_the_functions() {
        let http = http_client();
        let base = watch_url();
        for path in ["/no/such/path", "/", "/predict/", "/Token", "/.well-known/"] {
            let reply = http.get(&format!("{base}{path}"), &[]).await;
            assert_eq!(reply.status, 404, "GET {path}: {reply:?}");
            assert_eq!(
                reply.header("content-type"),
                Some("application/problem+json"),
                "GET {path}"
            );
            assert_eq!(reply.body["type"], "/problems/not-found", "GET {path}");
        }
        for (method, path, allow) in [
            ("GET", "/predict", "POST"),
            ("DELETE", "/predict/batch", "POST"),
            ("POST", "/model", "GET"),
            ("PUT", "/health", "GET"),
            ("GET", "/token", "POST"),
            ("POST", "/.well-known/jwks.json", "GET"),
        ] {
            let reply = http.send(method, &format!("{base}{path}"), &[], "").await;
            assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
            assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
            assert_eq!(reply.body["type"], "/problems/method-not-allowed");
        }
    }

    #[tokio::test]
    #[ignore = "needs the local stack: run make test"]
    async fn disabled_client_and_wrong_secret_get_the_same_answer() {
        let http = http_client();
        let (id, secret) = create_client(&["predict"], Tier::Free).await;
        let wrong = token_from(&http, &fresh_ip(), &id, "not-the-secret").await;
        registry()
            .await
            .set_status(
                &id,
                secure_ml_core::auth::ClientStatus::Disabled,
                unix_now(),
            )
            .await
            .unwrap();
        let disabled = token_from(&http, &fresh_ip(), &id, &secret).await;
        let unknown = token_from(
            &http,
            &fresh_ip(),
            "cl_00000000000000000000000000000000",
            &secret,
        )
        .await;
        for reply in [&wrong, &disabled, &unknown] {
            assert_eq!(reply.status, 401);
            assert_eq!(reply.body["error"], "invalid_client");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Basic realm=\"secure-ml-api\"")
            );
        }
        assert_eq!(wrong.body, disabled.body);
        assert_eq!(wrong.body, unknown.body);
    }
}

mod rate_limits {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Requests sent and not yet answered, and the most there were at once.
    #[derive(Default)]
    struct InFlight {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl InFlight {
        async fn track(&self, request: impl Future<Output = Reply>) -> Reply {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let reply = request.await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            reply
        }

        fn most(&self) -> usize {
            self.most.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    #[ignore = "needs the local stack: run make test"]
    async fn concurrent_flood_from_one_address_admits_exactly_the_burst() {
        let http = http_client();
        let token = access_token(&http, &["predict"], Tier::Free).await;
        let ip = fresh_ip();
        let fronts = watch_urls();
        let per_front = CONCURRENT_CLIENTS.div_ceil(fronts.len());
        assert!(
            per_front <= WATCH_QUEUE,
            "{CONCURRENT_CLIENTS} clients through {} front-end(s) would queue {per_front} \
             invocations in one watch, which stops answering beyond {WATCH_QUEUE}: \
             SMLA_WATCH_URLS needs {} front-ends",
            fronts.len(),
            CONCURRENT_CLIENTS.div_ceil(WATCH_QUEUE)
        );
        let in_flight = InFlight::default();
        let started = std::time::Instant::now();
        // Each request claims to be forwarded for a different client: it must change nothing.
        let replies: Vec<Reply> = futures::future::join_all((0..CONCURRENT_CLIENTS).map(|i| {
            in_flight.track(predict_at(
                &http,
                &fronts[i % fronts.len()],
                &ip,
                &token,
                json!({"x-forwarded-for": format!("198.51.100.{}", i % 250)}),
            ))
        }))
        .await;
        let admitted = replies.iter().filter(|r| r.status == 200).count();
        let refused = replies.iter().filter(|r| r.status == 429).count();
        eprintln!(
            "flood: {CONCURRENT_CLIENTS} requests from one address through {} front-ends, at most \
             {} in flight at once: {admitted} admitted, {refused} refused in {:?}",
            fronts.len(),
            in_flight.most(),
            started.elapsed()
        );
        // Every request was out before the first answer came back: no client waited for
        // another, so the flood cannot quietly turn into a queue.
        assert_eq!(
            in_flight.most(),
            CONCURRENT_CLIENTS,
            "requests in flight at once"
        );
        assert_eq!(
            (admitted, refused),
            (20, CONCURRENT_CLIENTS - 20),
            "statuses: {:?}",
            replies.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        for reply in replies.iter().filter(|r| r.status == 429) {
            assert_eq!(reply.body["type"], "/problems/quota-exceeded");
            let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
            assert!(retry_after >= 1);
            assert!(reply.header("ratelimit").unwrap().contains(";r=0;"));
        }

        // Another address still has its whole budget.
        let other = predict_from(&http, &fresh_ip(), &token, json!({})).await;
        assert_eq!(other.status, 200);
        assert!(
            other.header("ratelimit").unwrap().contains(";r=19;"),
            "{other:?}"
        );
    }

    #[tokio::test]
    #[ignore = "needs the local stack: run make test"]
    async fn token_endpoint_limit_applies_before_credentials_are_checked() {
        let http = http_client();
        let (id, secret) = create_client(&["predict"], Tier::Free).await;
        let ip = fresh_ip();
        // Wrong secrets spend the same quota as right ones: guessing is capped at the burst.
        let replies: Vec<Reply> =
            futures::stream::iter((0..30).map(|_| token_from(&http, &ip, &id, "guess")))
                .buffer_unordered(CONCURRENT_CLIENTS)
                .collect()
                .await;
        let unauthorized = replies.iter().filter(|r| r.status == 401).count();
        let refused = replies.iter().filter(|r| r.status == 429).count();
        assert_eq!((unauthorized, refused), (5, 25));
        // Now even the right secret is refused from this address, without being checked.
        let right = token_from(&http, &ip, &id, &secret).await;
        assert_eq!(right.status, 429);
        assert!(right.header("retry-after").is_some());
    }

    #[tokio::test]
    #[ignore = "needs the local stack: run make test"]
    async fn addresses_in_one_ipv6_slash_64_share_a_budget() {
        let http = http_client();
        let token = access_token(&http, &["predict"], Tier::Free).await;
        let prefix = fresh_ip().trim_end_matches("::1").to_owned();
        let first = predict_from(&http, &format!("{prefix}::1"), &token, json!({})).await;
        let second = predict_from(
            &http,
            &format!("{prefix}:ffff:ffff:ffff:fffe"),
            &token,
            json!({}),
        )
        .await;
        assert!(
            first.header("ratelimit").unwrap().contains(";r=19;"),
            "{first:?}"
        );
        assert!(
            second.header("ratelimit").unwrap().contains(";r=18;"),
            "{second:?}"
        );
    }
}

mod rejected_requests {
    //! A source whose requests keep being rejected is answered 429 from the instance's memory;
    //! other sources are not. Each instance counts on its own, as on AWS.
    use super::*;

    async fn bad_token(http: &Http, ip: &str) -> Reply {
        predict_from(http, ip, "not.a.token", json!({})).await
    }

    #[tokio::test]
    #[ignore = "needs the local stack: run make test"]
    async fn a_source_sending_bad_tokens_gets_429_after_the_limit_and_another_source_does_not() {
        let http = http_client();
        let limit: usize = env("REJECTION_LIMIT").parse().unwrap();
        // Once more than `instances × limit` requests have been rejected, some instance has
        // rejected `limit` of them, however watch spread them.
        let instances: usize = env("SMLA_WATCH_INSTANCES").parse().unwrap();
        let sent = (instances + 1) * limit;
        let (flooder, bystander) = (fresh_ip(), fresh_ip());
        let mut statuses = Vec::with_capacity(sent);
        let mut retry_after = None;
        for _ in 0..sent {
            let reply = bad_token(&http, &flooder).await;
            if reply.status == 429 && retry_after.is_none() {
                assert_eq!(reply.body["type"], "/problems/quota-exceeded", "{reply:?}");
                retry_after = reply.header("retry-after").map(str::to_owned);
            }
            statuses.push(reply.status);
        }
        assert!(statuses[..limit].iter().all(|s| *s == 401), "{statuses:?}");
        let refused = statuses.iter().filter(|s| **s == 429).count();
        assert!(
            refused > 0 && statuses.iter().all(|s| matches!(s, 401 | 429)),
            "{statuses:?}"
        );
        let retry_after: u64 = retry_after.unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        // Another address is judged on its own requests.
        assert_eq!(bad_token(&http, &bystander).await.status, 401);
        let token = access_token(&http, &["predict"], Tier::Free).await;
        assert_eq!(
            predict_from(&http, &bystander, &token, json!({}))
                .await
                .status,
            200
        );
    }
}

mod key_revocation {
    //! `admin keys rotate`, then `admin keys revoke` of the old key, against the running stack:
    //! a token the old key signed verifies after the rotation and not after the revocation.
    //! Run alone by make test (it changes the stack's keys).
    use super::*;
    use secure_ml_core::auth::{KeySet, TokenIssuer, TokenSettings};

    fn admin(args: &[&str]) {
        let output = std::process::Command::new(env("SMLA_ADMIN"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "admin {args:?}: {output:?}");
    }

    fn key_set() -> KeySet {
        KeySet::from_json(&std::fs::read_to_string(env("SIGNING_KEYS_FILE")).unwrap()).unwrap()
    }

    /// A token signed by the active key of `set`, as the token function would sign it.
    fn token_of(set: &KeySet) -> String {
        let settings = TokenSettings {
            issuer: env("TOKEN_ISSUER"),
            audience: env("TOKEN_AUDIENCE"),
            lifetime_seconds: 900,
        };
        TokenIssuer::new(set, settings)
            .unwrap()
            .issue(
                "cl_00112233445566778899aabbccddeeff",
                &["predict".to_owned()],
                Tier::Free,
                unix_now(),
            )
            .unwrap()
            .access_token
    }

    #[tokio::test]
    #[ignore = "run alone by make test's key stage: it rotates and revokes the stack's keys"]
    async fn a_revoked_keys_tokens_are_refused_at_predict() {
        let http = http_client();
        let before = key_set();
        let old_kid = before.active().unwrap().kid.clone();
        let old_token = token_of(&before);
        assert_eq!(
            predict_from(&http, &fresh_ip(), &old_token, json!({}))
                .await
                .status,
            200
        );

        admin(&["keys", "rotate"]);
        assert_eq!(
            predict_from(&http, &fresh_ip(), &old_token, json!({}))
                .await
                .status,
            200,
            "a retired key verifies until its tokens have expired"
        );

        admin(&["keys", "revoke", &old_kid]);
        let fresh_token = token_of(&key_set());
        // Every instance reloads the JWKS at the first token it sees of the key that revocation
        // made active (an instance that reloaded within the last minute waits its turn), and
        // from then on refuses the revoked key's tokens. Watch hands each request to a free
        // instance, taking turns: a burst of one fresh token per instance reaches each idle
        // one, and as many old tokens in a row ask each of them.
        let instances: usize = env("SMLA_WATCH_INSTANCES").parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let ips: Vec<String> = (0..instances).map(|_| fresh_ip()).collect();
            let fresh: Vec<u16> = futures::future::join_all(
                ips.iter()
                    .map(|ip| predict_from(&http, ip, &fresh_token, json!({}))),
            )
            .await
            .iter()
            .map(|r| r.status)
            .collect();
            let mut old = Vec::with_capacity(instances);
            for _ in 0..instances {
                old.push(predict_from(&http, &fresh_ip(), &old_token, json!({})).await);
            }
            if fresh.iter().all(|s| *s == 200) && old.iter().all(|r| r.status == 401) {
                for refused in &old {
                    assert_eq!(
                        refused.body["detail"],
                        "the access token is invalid: unknown signing key"
                    );
                }
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "new key: {fresh:?}; revoked key: {:?}",
                old.iter().map(|r| r.status).collect::<Vec<_>>()
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// DynamoDB Local frozen mid-run (SIGSTOP: it accepts connections and never answers, the worst
/// case for latency) and resumed. Run alone by `make test`'s fault stage, never beside other
/// tests: every request to the stack fails while DynamoDB is stopped.
mod fault_injection {
    use super::*;
    use std::time::{Duration, Instant};

    /// Resumes DynamoDB Local when dropped, so a failing assertion cannot leave it stopped.
    struct Stopped(String);

    impl Stopped {
        fn new(pid: &str) -> Self {
            signal("STOP", pid);
            Self(pid.to_owned())
        }
    }

    impl Drop for Stopped {
        fn drop(&mut self) {
            signal("CONT", &self.0);
        }
    }

    fn signal(name: &str, pid: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    fn init_count() -> usize {
        std::fs::read_to_string(env("SMLA_WATCH_LOG"))
            .unwrap()
            .lines()
            .filter(|line| line.contains("\"init complete\""))
            .count()
    }

    fn millis(name: &str, default: u64) -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    #[tokio::test]
    #[ignore = "run alone by make test's fault stage: it stops DynamoDB Local"]
    async fn dynamodb_stopped_mid_run_then_resumed() {
        let http = http_client();
        let token = access_token(&http, &["predict"], Tier::Free).await;
        let warm = predict_from(&http, &fresh_ip(), &token, json!({})).await;
        assert_eq!(warm.status, 200, "{warm:?}");
        let inits = init_count();
        assert!(inits >= 1, "the watch log shows no init");

        // The configured bound: the SDK's operation timeout (retries included), plus what the
        // local invoke path itself costs.
        let bound = Duration::from_millis(millis("DYNAMODB_OPERATION_TIMEOUT_MS", 800) + 1_000);
        let fail_open = std::env::var("RATE_LIMIT_FAIL_POLICY").is_ok_and(|p| p == "open");

        let mut slowest = (Duration::ZERO, Duration::ZERO);
        {
            let _stopped = Stopped::new(&env("SMLA_DYNAMODB_PID"));
            for round in 0..4 {
                let started = Instant::now();
                let reply = predict_from(&http, &fresh_ip(), &token, json!({})).await;
                let took = started.elapsed();
                slowest.0 = slowest.0.max(took);
                assert!(took <= bound, "round {round}: {took:?} > {bound:?}");
                if fail_open {
                    assert_eq!(reply.status, 200, "fail-open admits: {reply:?}");
                } else {
                    assert_eq!(reply.status, 503, "fail-closed refuses: {reply:?}");
                    assert_eq!(
                        reply.body["type"], "/problems/service-unavailable",
                        "{reply:?}"
                    );
                    assert!(reply.header("retry-after").is_some(), "{reply:?}");
                }

                // The token endpoint checks its limit first: the same policy applies there.
                let started = Instant::now();
                let reply = token_from(
                    &http,
                    &fresh_ip(),
                    "cl_00000000000000000000000000000000",
                    "x",
                )
                .await;
                let took = started.elapsed();
                slowest.1 = slowest.1.max(took);
                assert!(took <= bound * 2, "token round {round}: {took:?}");
                assert!(
                    [503, 401].contains(&reply.status),
                    "token during the outage: {reply:?}"
                );
                if !fail_open {
                    // Refused by the limiter before any credential is read: a problem, like
                    // every rate-limit answer (the OAuth error format is for credentials).
                    assert_eq!(reply.status, 503, "{reply:?}");
                    assert_eq!(reply.body["type"], "/problems/service-unavailable");
                }
            }

            // /health never touches DynamoDB.
            let base = watch_url();
            let health = http.get(&format!("{base}/health"), &[]).await;
            assert_eq!(health.status, 200, "{health:?}");
        }

        eprintln!(
            "DynamoDB stopped: slowest predict answer {:?}, slowest token answer {:?} (bound {bound:?})",
            slowest.0, slowest.1
        );

        // Resumed: the same instances recover on their own, no new init.
        let started = Instant::now();
        loop {
            let reply = predict_from(&http, &fresh_ip(), &token, json!({})).await;
            if reply.status == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "no recovery 15 s after DynamoDB resumed: {reply:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("recovered {:?} after DynamoDB resumed", started.elapsed());
        let token_again = access_token(&http, &["predict"], Tier::Free).await;
        assert!(!token_again.is_empty());
        assert_eq!(init_count(), inits, "recovery must not need a cold start");
    }
}

/// The whole client flow with recognisable secrets: none of them may come back in a response
/// (other than the token response that hands the token out) — and none may reach a log line:
/// every value is appended to `SMLA_CANARY_FILE`, which `make test` searches the function and
/// DynamoDB logs for at the end of the run, after every test has had its say.
mod secrets_never_leak {
    use super::*;
    use std::io::Write as _;

    /// Remembers `value` for the log scan (one per line) and returns it.
    fn canary(value: &str) -> String {
        if let Ok(path) = std::env::var("SMLA_CANARY_FILE") {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            writeln!(file, "{value}").unwrap();
        }
        value.to_owned()
    }

    fn assert_clean(what: &str, reply: &Reply, secrets: &[String]) {
        let text = format!("{:?} {}", reply.headers, reply.body);
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what}: the response carries a secret ({} chars)",
                secret.len()
            );
        }
    }

    #[tokio::test]
    #[ignore = "needs the local stack: run make test"]
    async fn full_flow_with_recognisable_secrets() {
        let http = http_client();
        let (id, secret) = create_client(&["predict", "predict:proba"], Tier::Free).await;
        let secret = canary(&secret);
        let wrong_secret = canary(&format!("canary-wrong-secret-{}", std::process::id()));

        let issued = token_from(&http, &fresh_ip(), &id, &secret).await;
        assert_eq!(issued.status, 200, "{issued:?}");
        let token = canary(issued.body["access_token"].as_str().unwrap());
        let signature = canary(token.rsplit('.').next().unwrap());
        let mut secrets = vec![secret.clone(), wrong_secret.clone()];
        // Only the token response itself may carry the token.
        assert_clean("token response", &issued, &secrets);
        secrets.push(token.clone());
        secrets.push(signature.clone());

        // A forged token: a real header and claims under a recognisable signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_signature = canary(
            "Y2FuYXJ5LWZvcmdlZC1zaWduYXR1cmUtb2YtNjQtYnl0ZXMtcGFkZGluZy1wYWRkaW5nLXBhZGRpbmc",
        );
        parts[2] = &forged_signature;
        let forged = canary(&parts.join("."));
        secrets.extend([forged_signature.clone(), forged.clone()]);

        let ip = fresh_ip();
        let replies = vec![
            (
                "wrong secret",
                token_from(&http, &ip, &id, &wrong_secret).await,
            ),
            (
                "secret of another client",
                token_from(
                    &http,
                    &fresh_ip(),
                    "cl_00000000000000000000000000000000",
                    &secret,
                )
                .await,
            ),
            (
                "good prediction",
                predict_from(&http, &fresh_ip(), &token, json!({})).await,
            ),
            (
                "forged token",
                predict_from(&http, &fresh_ip(), &forged, json!({})).await,
            ),
            (
                "token as Basic credentials",
                predict_from(
                    &http,
                    &fresh_ip(),
                    &token,
                    json!({"authorization": format!("Basic {token}")}),
                )
                .await,
            ),
            (
                "token with a bad scheme",
                predict_from(
                    &http,
                    &fresh_ip(),
                    &token,
                    json!({"authorization": format!("Token {token}")}),
                )
                .await,
            ),
        ];
        assert_eq!(replies[0].1.status, 401, "{:?}", replies[0].1);
        assert_eq!(replies[2].1.status, 200, "{:?}", replies[2].1);
        assert_eq!(replies[3].1.status, 401, "{:?}", replies[3].1);
        for (what, reply) in &replies {
            assert_clean(what, reply, &secrets);
        }

        // The secret in the form body instead of Basic, and both at once (a 400).
        let form =
            format!("grant_type=client_credentials&client_id={id}&client_secret={wrong_secret}");
        let event = api_event(
            "POST",
            "/token",
            &fresh_ip(),
            json!({"content-type": "application/x-www-form-urlencoded"}),
            Some(&form),
        );
        let reply = invoke(&http, "token", &event).await;
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_clean("form credentials", &reply, &secrets);
    }
}
