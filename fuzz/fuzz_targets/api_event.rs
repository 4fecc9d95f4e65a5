//! API Gateway events through `secure_ml_core::frame::event::decode` into the request plumbing
//! both functions share: the route table's path and method checks, body and media type checks
//! (`secure_ml_core::http`), the rate limiter's client key, the bearer token extraction, and the
//! body parsers behind the routes.
//!
//! An input that starts with `{` is an event document as is (the seeds include `events/*.json`);
//! any other input is turned into an event by `EventSpec`: an HTTP API (payload 2.0) or REST API
//! envelope with the method, path, stage, query, headers (`Host` and `X-Forwarded-Proto`
//! included, any text), body, `isBase64Encoded` and `sourceIp` it picks, so that mutations stay
//! events and reach the code behind the parser.
//!
//! Properties: no panic anywhere — `lambda_http`'s own conversion panics on a hostile `Host`,
//! `X-Forwarded-Proto`, path or query and on a body flagged base64 that is not, and `decode`
//! exists to make those inputs safe, so any panic is a finding; a body that is not the base64
//! it claims is marked malformed (the frame answers 400); the route is the raw path, exactly
//! (a local `/lambda-url/<fn>` prefix makes it no route), and the route table's 404/405 agree
//! with it; size and media type checks agree with their documented order; the body a handler
//! reads is the body the event carried (decoded from base64 when flagged); a client key exists
//! exactly when the request context holds a parseable source IP, and is that address (IPv4, or
//! the IPv6 /64);
//! an accepted bearer token is the single `Authorization` header's credentials; prediction
//! bodies satisfy the `predict_request` properties.

#![no_main]

use std::net::IpAddr;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use lambda_http::request::RequestContext;
use lambda_http::{Context, Request, RequestExt};
use libfuzzer_sys::fuzz_target;
use secure_ml_core::auth::client_auth::{Form, basic_credentials};
use secure_ml_core::auth::verify::bearer_token;
use secure_ml_core::frame::event::{Malformed, decode};
use secure_ml_core::frame::route::{Resolved, Route, Routes, raw_path};
use secure_ml_core::http::{body_bytes, has_media_type, json_body};
use secure_ml_core::predict::MAX_BODY_BYTES;
use secure_ml_core::problem::ApiError;
use secure_ml_core::ratelimit::{ClientKey, client_key};
use serde_json::{Map, Value, json};

/// The token function's body limit (`functions/token`), checked here with the shared helpers.
const TOKEN_BODY_LIMIT: usize = 4096;

/// Both functions' routes in one table.
static ROUTES: Routes<u8> = Routes {
    service: "fuzz",
    routes: &[
        Route {
            path: "/predict",
            method: Method::POST,
            id: 0,
        },
        Route {
            path: "/predict/batch",
            method: Method::POST,
            id: 1,
        },
        Route {
            path: "/model",
            method: Method::GET,
            id: 2,
        },
        Route {
            path: "/health",
            method: Method::GET,
            id: 3,
        },
        Route {
            path: "/token",
            method: Method::POST,
            id: 4,
        },
        Route {
            path: "/.well-known/jwks.json",
            method: Method::GET,
            id: 5,
        },
    ],
};

fuzz_target!(|data: &[u8]| {
    let raw = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if raw {
        if let Ok(text) = std::str::from_utf8(data) {
            check_request(&decode(text, Context::default()).0);
        }
        return;
    }
    let Ok(spec) = EventSpec::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let (event, expected) = spec.render();
    let (request, _) = decode(&event.to_string(), Context::default());
    check_request(&request);
    check_expected(&request, &expected);
});

fn check_request(request: &Request) {
    // Routing: the raw path, exactly; a local `/lambda-url/<function>` prefix is no alias.
    let raw = request.raw_http_path();
    let route = raw_path(request);
    if raw.is_empty() {
        assert_eq!(route, request.uri().path());
    } else {
        assert_eq!(route, raw);
    }
    if route.starts_with("/lambda-url/") {
        assert!(matches!(
            ROUTES.resolve(request.method(), route),
            Resolved::Unmatched
        ));
    }
    match ROUTES.resolve(request.method(), route) {
        Resolved::Route(r) => assert!(r.path == route && r.method == request.method()),
        Resolved::Refused(path, ApiError::MethodNotAllowed { allow }) => {
            assert_eq!(path, route);
            assert!(
                ROUTES
                    .routes
                    .iter()
                    .any(|r| r.path == route && r.method.as_str() == allow)
            );
        }
        Resolved::Refused(_, other) => panic!("a path refused with {other:?}"),
        Resolved::Unmatched => assert!(ROUTES.routes.iter().all(|r| r.path != route)),
    }

    // Body, size and media type, in the documented order: size, then type, then emptiness.
    let Ok(body) = body_bytes(request, usize::MAX) else {
        panic!("no body is larger than usize::MAX");
    };
    if request.extensions().get::<Malformed>().is_some() {
        assert!(body.is_empty(), "a malformed event keeps its body");
    }
    let json = json_media_type(request);
    assert_eq!(has_media_type(request, "application/json"), json);
    for limit in [0, TOKEN_BODY_LIMIT, MAX_BODY_BYTES] {
        match body_bytes(request, limit) {
            Ok(bytes) => assert!(bytes == body && body.len() <= limit),
            Err(error) => {
                assert!(body.len() > limit);
                assert_eq!(error, ApiError::PayloadTooLarge { limit });
            }
        }
        let expected = if body.len() > limit {
            Err(ApiError::PayloadTooLarge { limit })
        } else if !json {
            Err(ApiError::UnsupportedMediaType {
                expected: "application/json",
            })
        } else if body.iter().all(u8::is_ascii_whitespace) {
            Err(ApiError::MalformedJson {
                detail: "the body is empty".into(),
            })
        } else {
            Ok(body)
        };
        let actual = json_body(request, limit);
        assert_eq!(actual, expected, "json_body with a limit of {limit}");
        if let Err(error) = actual {
            let status = error.into_response().status().as_u16();
            assert!(matches!(status, 400 | 413 | 415), "status {status}");
        }
    }
    if matches!(route, "/predict" | "/predict/batch")
        && let Ok(bytes) = json_body(request, MAX_BODY_BYTES)
    {
        secure_ml_fuzz::check_predict_body(bytes);
    }
    if route == "/token" {
        let _ = Form::parse(body);
        if let Some(value) = request.headers().get(AUTHORIZATION) {
            let _ = basic_credentials(value);
        }
    }

    // Who is asking: the request context only.
    let source_ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.as_deref(),
        Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.as_deref(),
        _ => None,
    };
    let address = source_ip.and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    match (client_key(request), address) {
        (Ok(key), Some(address)) => {
            assert_eq!(key, ClientKey::from_ip(address));
            check_key(key);
        }
        (Err(error), None) => {
            assert_eq!(error, ApiError::NoSourceIp);
            assert_eq!(error.into_response().status(), 403);
        }
        (key, address) => panic!("client key {key:?} for the source IP {address:?}"),
    }

    // The bearer token, from the single Authorization header.
    if let Ok(token) = bearer_token(request.headers()) {
        let mut values = request.headers().get_all(AUTHORIZATION).iter();
        let value = values.next().and_then(|v| v.to_str().ok()).map(str::trim);
        assert!(
            values.next().is_none(),
            "a token from one of several headers"
        );
        let value = value.unwrap_or_else(|| panic!("a token without a header"));
        let scheme = value.get(..7).unwrap_or_default();
        assert!(
            scheme.eq_ignore_ascii_case("bearer "),
            "scheme of {value:?}"
        );
        assert!(!token.is_empty() && !token.starts_with(' ') && value.ends_with(token));
    }
}

/// RFC 9110 §8.3.1: the media type is the part before any parameter, case-insensitive.
fn json_media_type(request: &Request) -> bool {
    let Some(value) = request.headers().get(CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.find(';').map_or(value, |end| &value[..end]);
    essence.trim().eq_ignore_ascii_case("application/json")
}

fn check_key(key: ClientKey) {
    match key {
        ClientKey::V4(v4) => {
            assert_eq!(key.to_string().parse::<ClientKey>(), Ok(key), "{v4}");
        }
        ClientKey::V6(net) => {
            assert_eq!(
                u128::from(net) & u128::from(u64::MAX),
                0,
                "host bits of {net}"
            );
            assert!(net.to_ipv4_mapped().is_none(), "{net} is an IPv4 address");
            assert!(key.to_string().ends_with("/64"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Structured events

#[derive(Arbitrary, Debug)]
struct EventSpec {
    /// A REST API (payload 1.0) event instead of an HTTP API (payload 2.0) one.
    rest_api: bool,
    method: MethodSpec,
    local_function: Option<String>,
    route: RouteSpec,
    stage: StageSpec,
    query: Option<QuerySpec>,
    content_type: Option<ContentTypeSpec>,
    authorization: Option<AuthorizationSpec>,
    headers: Vec<(HeaderSpec, String)>,
    cookies: Vec<String>,
    body: BodySpec,
    source_ip: SourceIpSpec,
}

#[derive(Arbitrary, Debug)]
enum MethodSpec {
    Get,
    Post,
    Put,
    Delete,
    Options,
    Head,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum RouteSpec {
    Predict,
    Batch,
    Model,
    Health,
    Token,
    Jwks,
    Root,
    /// Percent-encoded segments: always a valid path.
    Segments(Vec<String>),
    /// Used as is.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum StageSpec {
    Default,
    Missing,
    Named(String),
}

#[derive(Arbitrary, Debug)]
enum QuerySpec {
    /// Encoded but for its separators, as API Gateway passes a typical query on.
    Encoded(String),
    /// As typed: `"`, spaces, `<>`, `#`… (`curl 'https://…/health?a="'`).
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum ContentTypeSpec {
    Json,
    JsonCharset,
    JsonMixedCase,
    JsonSpaced,
    JsonSuffixed,
    ProblemJson,
    Form,
    Text,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum AuthorizationSpec {
    /// `Bearer <token>` with the scheme's case picked by the bits of `case`.
    Bearer {
        case: u8,
        token: String,
    },
    Basic(String),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum HeaderSpec {
    ContentType,
    Authorization,
    Host,
    ForwardedFor,
    ForwardedProto,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum BodySpec {
    None,
    Text(String),
    /// Sent base64-encoded with `isBase64Encoded: true`, as API Gateway sends binary bodies.
    Binary(Vec<u8>),
    Rows {
        batch: bool,
        rows: Vec<[Feature; 4]>,
        base64: bool,
    },
    /// Flagged `isBase64Encoded` but sent as it is: not base64 unless by chance.
    FalseBase64(String),
    /// `len` copies of `byte`: reaches the size limits with a short input.
    Filler {
        byte: u8,
        len: u16,
        base64: bool,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Feature {
    Tenths(u16),
    Any(f64),
}

#[derive(Arbitrary, Debug)]
enum SourceIpSpec {
    Missing,
    V4([u8; 4]),
    V6([u16; 8]),
    MappedV4([u8; 4]),
    Text(String),
}

/// What the generated event must turn into.
struct Expected {
    rest_api: bool,
    method: Option<Method>,
    body: Vec<u8>,
    source_ip: Option<String>,
}

impl EventSpec {
    fn render(&self) -> (Value, Expected) {
        let method = self.method();
        let (path, stage) = self.path_and_stage();
        let (headers, multi) = self.headers();
        let (event_body, is_base64, expected_body) = self.body();
        let source_ip = self.source_ip.render();
        let parts = Parts {
            method: &method,
            path: &path,
            stage,
            headers,
            multi,
            body: event_body,
            is_base64,
            source_ip: source_ip.clone(),
        };
        let event = if self.rest_api {
            parts.rest_api_event()
        } else {
            parts.http_api_event(self)
        };
        let expected = Expected {
            rest_api: self.rest_api,
            method: Method::from_bytes(method.as_bytes()).ok(),
            body: expected_body,
            source_ip,
        };
        (event, expected)
    }

    fn method(&self) -> String {
        match &self.method {
            MethodSpec::Get => "GET".to_owned(),
            MethodSpec::Post => "POST".to_owned(),
            MethodSpec::Put => "PUT".to_owned(),
            MethodSpec::Delete => "DELETE".to_owned(),
            MethodSpec::Options => "OPTIONS".to_owned(),
            MethodSpec::Head => "HEAD".to_owned(),
            MethodSpec::Other(other) => other.clone(),
        }
    }

    fn path_and_stage(&self) -> (String, Value) {
        let route = match &self.route {
            RouteSpec::Predict => "/predict".to_owned(),
            RouteSpec::Batch => "/predict/batch".to_owned(),
            RouteSpec::Model => "/model".to_owned(),
            RouteSpec::Health => "/health".to_owned(),
            RouteSpec::Token => "/token".to_owned(),
            RouteSpec::Jwks => "/.well-known/jwks.json".to_owned(),
            RouteSpec::Root => "/".to_owned(),
            RouteSpec::Segments(segments) => segments
                .iter()
                .map(|s| format!("/{}", encoded(s)))
                .collect(),
            RouteSpec::Raw(raw) => raw.clone(),
        };
        let path = match &self.local_function {
            Some(function) => format!("/lambda-url/{}{route}", encoded(function)),
            None => route,
        };
        let stage = match &self.stage {
            StageSpec::Default => Value::from("$default"),
            StageSpec::Missing => Value::Null,
            StageSpec::Named(name) => Value::from(name.as_str()),
        };
        (path, stage)
    }

    /// The single headers and the repeated ones (name → values).
    fn headers(&self) -> (Map<String, Value>, Map<String, Value>) {
        let mut headers = Map::new();
        headers.insert(
            "host".into(),
            "abc123.execute-api.us-east-1.amazonaws.com".into(),
        );
        if let Some(content_type) = &self.content_type {
            let value = match content_type {
                ContentTypeSpec::Json => "application/json",
                ContentTypeSpec::JsonCharset => "application/json; charset=utf-8",
                ContentTypeSpec::JsonMixedCase => "Application/JSON",
                ContentTypeSpec::JsonSpaced => " application/json ;charset=UTF-8",
                ContentTypeSpec::JsonSuffixed => "application/jsonx",
                ContentTypeSpec::ProblemJson => "application/problem+json",
                ContentTypeSpec::Form => "application/x-www-form-urlencoded",
                ContentTypeSpec::Text => "text/plain",
                ContentTypeSpec::Raw(raw) => raw,
            };
            headers.insert("content-type".into(), value.into());
        }
        if let Some(authorization) = &self.authorization {
            let value = match authorization {
                AuthorizationSpec::Bearer { case, token } => {
                    let scheme: String = "bearer"
                        .chars()
                        .enumerate()
                        .map(|(i, c)| {
                            if (case >> i) & 1 == 1 {
                                c.to_ascii_uppercase()
                            } else {
                                c
                            }
                        })
                        .collect();
                    format!("{scheme} {token}")
                }
                AuthorizationSpec::Basic(credentials) => {
                    format!("Basic {}", STANDARD.encode(credentials))
                }
                AuthorizationSpec::Raw(raw) => raw.clone(),
            };
            headers.insert("authorization".into(), value.into());
        }
        let mut multi = Map::new();
        for (name, value) in &self.headers {
            let name = match name {
                HeaderSpec::ContentType => "content-type",
                HeaderSpec::Authorization => "authorization",
                HeaderSpec::Host => "host",
                HeaderSpec::ForwardedFor => "x-forwarded-for",
                HeaderSpec::ForwardedProto => "x-forwarded-proto",
                HeaderSpec::Other(other) => other,
            };
            // HTTP API events join repeated headers with commas; REST API events list them.
            let entry = multi.entry(name.to_ascii_lowercase()).or_insert(json!([]));
            if let Value::Array(values) = entry {
                values.push(Value::from(value.as_str()));
            }
        }
        (headers, multi)
    }

    /// The event's body, its base64 flag, and the bytes a handler must read.
    fn body(&self) -> (Value, bool, Vec<u8>) {
        let (body, base64) = self.body.render();
        let (event_body, is_base64) = match (&body, base64, &self.body) {
            (_, _, BodySpec::FalseBase64(text)) => (Value::from(text.as_str()), true),
            (None, _, _) => (Value::Null, false),
            (Some(bytes), true, _) => (Value::from(STANDARD.encode(bytes)), true),
            (Some(bytes), false, _) => (
                Value::from(String::from_utf8_lossy(bytes).into_owned()),
                false,
            ),
        };
        let expected_body = match (&event_body, is_base64, &self.body) {
            (Value::String(text), true, BodySpec::FalseBase64(_)) => {
                STANDARD.decode(text).ok().unwrap_or_default()
            }
            (Value::String(text), false, _) => text.clone().into_bytes(),
            _ => body.unwrap_or_default(),
        };
        (event_body, is_base64, expected_body)
    }
}

/// The rendered pieces both envelopes are made of.
struct Parts<'a> {
    method: &'a str,
    path: &'a str,
    stage: Value,
    headers: Map<String, Value>,
    multi: Map<String, Value>,
    body: Value,
    is_base64: bool,
    source_ip: Option<String>,
}

impl Parts<'_> {
    fn rest_api_event(self) -> Value {
        let Self {
            method,
            path,
            stage,
            headers,
            multi,
            body: event_body,
            is_base64,
            source_ip,
        } = self;
        let mut multi_value_headers: Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.clone(), json!([value])))
            .collect();
        for (name, values) in multi {
            if let (Some(Value::Array(existing)), Value::Array(values)) =
                (multi_value_headers.get_mut(&name), &values)
            {
                existing.extend(values.iter().cloned());
            } else {
                multi_value_headers.insert(name, values);
            }
        }
        json!({
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": {},
            "multiValueHeaders": multi_value_headers,
            "queryStringParameters": null,
            "multiValueQueryStringParameters": null,
            "pathParameters": null,
            "stageVariables": null,
            "requestContext": {
                "accountId": "123456789012",
                "resourceId": "abc123",
                "stage": stage,
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "identity": { "sourceIp": source_ip },
                "resourcePath": "/{proxy+}",
                "httpMethod": method,
                "apiId": "abc123",
                "path": path,
            },
            "body": event_body,
            "isBase64Encoded": is_base64,
        })
    }

    fn http_api_event(self, spec: &EventSpec) -> Value {
        let Self {
            method,
            path,
            stage,
            mut headers,
            multi,
            body: event_body,
            is_base64,
            source_ip,
        } = self;
        for (name, values) in multi {
            let joined = values
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            headers.insert(name, Value::from(joined));
        }
        let query = match &spec.query {
            None => String::new(),
            Some(QuerySpec::Encoded(q)) => encoded(q).replace("%3D", "=").replace("%26", "&"),
            Some(QuerySpec::Raw(q)) => q.clone(),
        };
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": query,
            "cookies": spec.cookies,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc123",
                "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc123",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": "fuzz",
                },
                "requestId": "JKJaXmPLvHcESHA=",
                "routeKey": "$default",
                "stage": stage,
                "time": "23/Nov/2026:14:30:00 +0000",
                "timeEpoch": 1_795_444_200_000_u64,
            },
            "body": event_body,
            "isBase64Encoded": is_base64,
        })
    }
}

impl BodySpec {
    /// The body bytes, and whether they travel base64-encoded.
    fn render(&self) -> (Option<Vec<u8>>, bool) {
        match self {
            Self::None => (None, false),
            Self::Text(text) => (Some(text.clone().into_bytes()), false),
            Self::Binary(bytes) => (Some(bytes.clone()), true),
            Self::FalseBase64(_) => (None, true),
            Self::Rows {
                batch,
                rows,
                base64,
            } => {
                let rows: Vec<Vec<Value>> = rows
                    .iter()
                    .map(|row| row.iter().map(|f| f.value()).collect())
                    .collect();
                let body = if *batch {
                    json!({ "instances": rows })
                } else {
                    json!({ "data": rows.first() })
                };
                (Some(body.to_string().into_bytes()), *base64)
            }
            Self::Filler { byte, len, base64 } => (Some(vec![*byte; usize::from(*len)]), *base64),
        }
    }
}

impl Feature {
    fn value(self) -> Value {
        match self {
            Self::Tenths(t) => Value::from(f64::from(t) / 10.0),
            Self::Any(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
        }
    }
}

impl SourceIpSpec {
    fn render(&self) -> Option<String> {
        match self {
            Self::Missing => None,
            Self::V4(octets) => Some(IpAddr::from(*octets).to_string()),
            Self::V6(segments) => Some(IpAddr::from(*segments).to_string()),
            Self::MappedV4(octets) => {
                Some(IpAddr::from(std::net::Ipv4Addr::from(*octets).to_ipv6_mapped()).to_string())
            }
            Self::Text(text) => Some(text.clone()),
        }
    }
}

fn check_expected(request: &Request, expected: &Expected) {
    let version_matches = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(_)) => expected.rest_api,
        Some(RequestContext::ApiGatewayV2(_)) => !expected.rest_api,
        // Not an event at all (a method that is no HTTP token, a header name that is none):
        // marked for a 400, nothing else to check.
        _ => {
            assert!(request.extensions().get::<Malformed>().is_some());
            return;
        }
    };
    assert!(version_matches, "a REST API event read as HTTP API or back");
    if let Some(method) = &expected.method {
        assert_eq!(request.method(), method);
    }
    assert_eq!(
        body_bytes(request, usize::MAX).ok(),
        Some(&expected.body[..]),
        "the body differs from the event's"
    );
    let address = expected
        .source_ip
        .as_deref()
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    assert_eq!(
        client_key(request).ok(),
        address.map(ClientKey::from_ip),
        "client key for the source IP {:?}",
        expected.source_ip
    );
}

/// Percent-encodes everything but unreserved characters (a path segment or a query).
fn encoded(raw: &str) -> String {
    form_urlencoded::byte_serialize(raw.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
