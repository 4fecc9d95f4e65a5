//! Lambda events in, Lambda responses out: the conversion `lambda_http` would do, made total.
//!
//! `lambda_http` builds the request URI from fields a client controls (the `Host` and
//! `X-Forwarded-Proto` headers, `rawPath`, `rawQueryString`) and decodes base64 bodies with
//! `unwrap`/`expect`: an event with `host: a b`, `x-forwarded-proto: a b`, a raw `"` or space
//! in the query string (what `curl 'https://…/health?a="'` sends), or a body flagged base64
//! that is not, panics inside the runtime. The function then never answers (API Gateway turns
//! the runtime's error into a bare 500) and logs no access line. So every event passes
//! [`decode`] first, which makes those fields safe before `lambda_http` sees them:
//!
//! - `Host`, `X-Forwarded-Proto` and `requestContext.domainName` are dropped: nothing here
//!   reads them, and without them the URI is built from the path alone;
//! - `rawPath` and `rawQueryString` keep every byte a URI allows and percent-encode the rest,
//!   each capped at [`MAX_RAW_LEN`] bytes (a route is matched on the exact raw path, so an
//!   encoded or truncated path can only miss, never alias one);
//! - the stage name keeps only the characters API Gateway allows in one;
//! - a body flagged base64 that does not decode is dropped, and the request is marked
//!   [`Malformed`] for the frame to answer 400.
//!
//! An event that is not an API Gateway event at all becomes an unroutable request marked
//! [`Malformed`] too, so it still gets an answer and an access line.
//!
//! HTTP API (payload 2.0) events, every event in production, take a short path: only the
//! fields a request is made of (method, raw path and query, headers and cookies, body, source
//! IP, request id, stage) are read, borrowed from the payload where JSON escapes allow, and
//! the request is built from them directly, with the extensions `lambda_http` would set for
//! them. That takes about half the time of the full event types plus `lambda_http`'s
//! conversion, which builds and parses a URL from the parts (`cargo bench -p
//! predict-function --bench handler -- decode`). An event the short path does not take as it
//! is (a header given as a list, a header the `http` crate refuses, a method that is not a
//! token, no `requestContext.http`) goes the full way and becomes what it became before; REST
//! API events (payload 1.0) go that way into `lambda_http`'s own detection. The fields the
//! short path skips are not checked: an event with, say, a `timeEpoch` that is not a number is
//! served, where the full way would call it not an API Gateway event. API Gateway sends no
//! such event, and nothing reads those fields.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayV2httpRequest, ApiGatewayV2httpRequestContext,
    ApiGatewayV2httpResponse,
};
use lambda_http::aws_lambda_events::encodings::Body as EventBody;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Body, Request, RequestExt, Response};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Deserialize;

/// Longest `rawPath` or `rawQueryString` kept; longer ones are cut after encoding. API Gateway
/// refuses request lines near this size anyway, and no route is anywhere near it.
pub const MAX_RAW_LEN: usize = 4096;

/// Marks a request whose event could not be read as sent (not an API Gateway event, or a body
/// that is not the base64 it claims to be). The frame answers it with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// How the response must be shaped for the service that sent the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// API Gateway HTTP API, payload 2.0 (also `cargo lambda watch` and the local tests).
    HttpApi,
    /// API Gateway REST API, payload 1.0.
    RestApi,
}

/// The answer to one invocation, in the shape its origin expects.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum LambdaResponse {
    HttpApi(ApiGatewayV2httpResponse),
    RestApi(ApiGatewayProxyResponse),
}

// Characters kept as they are: RFC 3986 unreserved and sub-delims, ':' and '@' (pchar), '/'
// and '%' (existing escapes stay escapes). Everything else is percent-encoded.
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');
// A query may also hold '?' as data.
const QUERY_ESCAPES: &AsciiSet = &PATH_ESCAPES.remove(b'?');

/// Reads one event (the invocation payload as received) into a request, with the Lambda
/// context attached. Never fails and never panics; see the module docs.
pub fn decode(payload: &str, context: lambda_http::Context) -> (Request, Origin) {
    let (request, origin) = match serde_json::from_str::<HttpApiEvent<'_>>(payload) {
        Ok(event) => (event.into_request(), Origin::HttpApi),
        Err(_) => decode_full(payload),
    };
    (request.with_lambda_context(context), origin)
}

/// The full way: the event types of `aws_lambda_events`, then `lambda_http`'s conversion.
fn decode_full(payload: &str) -> (Request, Origin) {
    match serde_json::from_str::<ApiGatewayV2httpRequest>(payload) {
        Ok(event) => (http_api_request(event), Origin::HttpApi),
        Err(_) => match serde_json::from_str::<LambdaRequest>(payload) {
            Ok(LambdaRequest::ApiGatewayV1(event)) => (rest_api_request(event), Origin::RestApi),
            _ => (
                unroutable("the event is not an API Gateway request"),
                Origin::HttpApi,
            ),
        },
    }
}

/// What a request is made of in an HTTP API (payload 2.0) event.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpApiEvent<'a> {
    #[serde(default, borrow, alias = "path")]
    raw_path: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    raw_query_string: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    cookies: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    headers: Headers,
    #[serde(borrow)]
    request_context: HttpApiContext<'a>,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(default)]
    is_base64_encoded: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpApiContext<'a> {
    #[serde(default, borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stage: Option<Cow<'a, str>>,
    #[serde(borrow)]
    http: HttpDescription<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpDescription<'a> {
    #[serde(deserialize_with = "http_method")]
    method: Method,
    #[serde(default, borrow)]
    source_ip: Option<Cow<'a, str>>,
}

/// An HTTP API event's `headers`: one string per name (API Gateway joins repeated headers
/// with commas), or `null`. Anything else is an error, and the event goes the full way.
#[derive(Default)]
struct Headers(HeaderMap);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_option(HeadersVisitor)
    }
}

struct HeadersVisitor;

impl<'de> serde::de::Visitor<'de> for HeadersVisitor {
    type Value = Headers;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map of header names to strings, or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Headers, E> {
        Ok(Headers::default())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Headers, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Headers, M::Error> {
        use serde::de::Error as _;
        let mut headers = HeaderMap::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((name, value)) = map.next_entry::<Cow<'_, str>, Cow<'_, str>>()? {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| M::Error::custom("invalid header name"))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| M::Error::custom("invalid header value"))?;
            headers.insert(name, value);
        }
        Ok(Headers(headers))
    }
}

impl HttpApiEvent<'_> {
    /// The request, made safe as the module docs say and shaped as `lambda_http`'s conversion
    /// shapes it: the method, the URI from the safe raw path and query (no host, no stage
    /// prefix), the headers with the cookies joined into `Cookie`, the body decoded, and the
    /// raw path and request context as extensions. The request context keeps the method,
    /// source IP, request id and stage; nothing here reads more of it.
    fn into_request(self) -> Request {
        let raw_path = safe_path(self.raw_path.as_deref().unwrap_or("/"));
        let query = self.raw_query_string.as_deref().map(safe_query);
        let method = self.request_context.http.method;

        let mut headers = self.headers.0;
        strip_host(&mut headers);
        if let Some(cookies) = self.cookies
            && let Ok(value) = HeaderValue::from_str(&cookies.join("; "))
        {
            headers.insert(http::header::COOKIE, value);
        }

        let (body, malformed) = match (self.body, self.is_base64_encoded) {
            (None, _) => (Body::Empty, None),
            (Some(text), false) => (Body::Text(text.into_owned()), None),
            (Some(encoded), true) => match STANDARD.decode(encoded.as_bytes()) {
                Ok(bytes) => (Body::Binary(bytes), None),
                Err(_) => (Body::Empty, Some(base64_malformed())),
            },
        };

        let mut context = ApiGatewayV2httpRequestContext::default();
        context.http.method = method.clone();
        context.http.source_ip = self.request_context.http.source_ip.map(Cow::into_owned);
        context.request_id = self.request_context.request_id.map(Cow::into_owned);
        context.stage = self
            .request_context
            .stage
            .map(|stage| stage_name(stage.into_owned()));

        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = relative_uri(&raw_path, query.as_deref());
        *request.headers_mut() = headers;
        let request = request
            .with_raw_http_path(raw_path)
            .with_request_context(RequestContext::ApiGatewayV2(context));
        mark(request, malformed)
    }
}

/// A method as `lambda_http`'s event types read it: empty is `GET`; one that is not an HTTP
/// token is an error (and the event goes the full way).
fn http_method<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Method, D::Error> {
    let method = Cow::<'de, str>::deserialize(deserializer)?;
    if method.is_empty() {
        return Ok(Method::GET);
    }
    Method::from_bytes(method.as_bytes()).map_err(serde::de::Error::custom)
}

/// `path?query` as a relative URI. Both parts hold only characters a URI allows (see
/// [`safe_path`] and [`safe_query`]), so the fallback to `/` is never taken.
fn relative_uri(path: &str, query: Option<&str>) -> http::Uri {
    let uri = match query {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    };
    uri.parse().unwrap_or_else(|_| http::Uri::from_static("/"))
}

/// An HTTP API event made safe for `lambda_http`'s conversion, then converted.
fn http_api_request(mut event: ApiGatewayV2httpRequest) -> Request {
    strip_host(&mut event.headers);
    event.request_context.domain_name = None;
    event.request_context.stage = event.request_context.stage.map(stage_name);
    event.raw_path = Some(safe_path(event.raw_path.as_deref().unwrap_or("/")));
    event.raw_query_string = event.raw_query_string.as_deref().map(safe_query);
    let malformed = unreadable_body(&mut event.body, event.is_base64_encoded);
    let request: Request = LambdaRequest::ApiGatewayV2(event).into();
    mark(request, malformed)
}

fn rest_api_request(
    mut event: lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequest,
) -> Request {
    strip_host(&mut event.headers);
    strip_host(&mut event.multi_value_headers);
    event.request_context.domain_name = None;
    event.request_context.stage = event.request_context.stage.map(stage_name);
    event.path = Some(safe_path(event.path.as_deref().unwrap_or("/")));
    let malformed = unreadable_body(&mut event.body, event.is_base64_encoded);
    let request: Request = LambdaRequest::ApiGatewayV1(event).into();
    mark(request, malformed)
}

fn strip_host(headers: &mut HeaderMap) {
    headers.remove(http::header::HOST);
    headers.remove("x-forwarded-proto");
}

fn mark(mut request: Request, malformed: Option<Malformed>) -> Request {
    if let Some(malformed) = malformed {
        request.extensions_mut().insert(malformed);
    }
    request
}

/// A request that matches no route, marked [`Malformed`].
fn unroutable(why: &'static str) -> Request {
    let mut request = Request::new(Body::Empty);
    request.extensions_mut().insert(Malformed(why));
    request
}

/// Drops a body flagged base64 that does not decode (`lambda_http` would panic on it).
fn unreadable_body(body: &mut Option<String>, base64: bool) -> Option<Malformed> {
    if base64 && body.as_deref().is_some_and(|b| STANDARD.decode(b).is_err()) {
        *body = None;
        return Some(base64_malformed());
    }
    None
}

fn base64_malformed() -> Malformed {
    Malformed("the body is flagged as base64 but is not valid base64")
}

/// A raw path that starts with `/`, holds only characters a URI path allows, and is at most
/// [`MAX_RAW_LEN`] bytes. A path API Gateway could have sent is returned unchanged.
pub fn safe_path(raw: &str) -> String {
    let mut path = String::with_capacity(raw.len() + 1);
    if !raw.starts_with('/') {
        path.push('/');
    }
    path.extend(utf8_percent_encode(raw, PATH_ESCAPES));
    truncate(path)
}

/// A raw query string holding only characters a URI query allows, at most [`MAX_RAW_LEN`]
/// bytes.
pub fn safe_query(raw: &str) -> String {
    truncate(utf8_percent_encode(raw, QUERY_ESCAPES).collect())
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_RAW_LEN {
        // Everything is ASCII after encoding, so any byte index is a char boundary.
        text.truncate(MAX_RAW_LEN);
    }
    text
}

/// API Gateway stage names are letters, digits, `-`, `_` (and `$default`); anything else would
/// end up in the URI `lambda_http` builds.
fn stage_name(stage: String) -> String {
    if stage
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'$'))
    {
        stage
    } else {
        "$default".to_owned()
    }
}

/// The response in the shape `origin` expects. Binary bodies are base64-encoded by the event
/// types' serializers; headers with several values are joined as API Gateway requires.
pub fn encode(origin: Origin, response: Response<Body>) -> LambdaResponse {
    let (parts, body) = response.into_parts();
    let (is_base64_encoded, body) = match body {
        Body::Empty => (false, None),
        Body::Text(text) => (false, Some(EventBody::Text(text))),
        Body::Binary(bytes) => (true, Some(EventBody::Binary(bytes))),
        // `Body` is non-exhaustive upstream; nothing here produces another variant.
        #[allow(unreachable_patterns)]
        _ => (false, None),
    };
    let status_code = i64::from(parts.status.as_u16());
    match origin {
        Origin::HttpApi => {
            let mut response = ApiGatewayV2httpResponse::default();
            response.status_code = status_code;
            response.headers = parts.headers;
            response.body = body;
            response.is_base64_encoded = is_base64_encoded;
            LambdaResponse::HttpApi(response)
        }
        Origin::RestApi => {
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = status_code;
            // REST APIs merge `headers` and `multiValueHeaders`: one of them only.
            response.multi_value_headers = parts.headers;
            response.body = body;
            response.is_base64_encoded = is_base64_encoded;
            LambdaResponse::RestApi(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/health",
            "rawQueryString": "",
            "headers": {"host": "api.example.com", "x-forwarded-proto": "https"},
            "requestContext": {
                "http": {"method": "GET", "path": "/health", "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.7", "userAgent": "curl"},
                "domainName": "api.example.com", "stage": "$default", "requestId": "r"
            },
            "isBase64Encoded": false
        });
        edit(&mut event);
        event.to_string()
    }

    fn decoded(edit: impl FnOnce(&mut serde_json::Value)) -> Request {
        decode(&event(edit), lambda_http::Context::default()).0
    }

    #[test]
    fn a_normal_event_keeps_its_path_method_and_source() {
        let request = decoded(|_| {});
        assert_eq!(request.raw_http_path(), "/health");
        assert_eq!(request.method(), http::Method::GET);
        assert!(request.extensions().get::<Malformed>().is_none());
    }

    /// Values a client controls that `lambda_http`'s conversion panics on, by JSON pointer.
    fn hostile() -> [(&'static str, serde_json::Value); 8] {
        [
            ("/headers/host", "a b".into()),
            ("/headers/host", "h:99999".into()),
            ("/headers/x-forwarded-proto", "a b".into()),
            ("/rawQueryString", "a=\"<>".into()),
            ("/rawQueryString", "a=b c#d".into()),
            ("/rawPath", ":99999".into()),
            ("/rawPath", "/a b/\\..\\|^{}".into()),
            ("/requestContext/stage", "a b/#".into()),
        ]
    }

    #[test]
    fn client_controlled_uri_parts_cannot_panic_the_conversion() {
        for (pointer, value) in hostile() {
            let request = decoded(|e| *e.pointer_mut(pointer).unwrap() = value.clone());
            assert!(
                request.raw_http_path().starts_with('/'),
                "{pointer} = {value}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_the_base64_it_claims_is_marked_malformed() {
        let request = decoded(|e| {
            e["isBase64Encoded"] = true.into();
            e["body"] = "not base64!".into();
        });
        assert!(request.extensions().get::<Malformed>().is_some());
    }

    #[test]
    fn a_non_api_gateway_event_is_marked_malformed() {
        let (request, origin) = decode("{\"Records\": []}", lambda_http::Context::default());
        assert_eq!(origin, Origin::HttpApi);
        assert!(request.extensions().get::<Malformed>().is_some());
    }

    /// What a route, the limiter and the access line can see of a request.
    fn seen(request: &Request) -> String {
        let context = match request.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(c)) => {
                format!("{:?} {:?} {:?}", c.http.source_ip, c.request_id, c.stage)
            }
            other => format!("{other:?}"),
        };
        format!(
            "{} {} {:?} {:?} {:?} {:?} {}",
            request.method(),
            request.raw_http_path(),
            request.uri().query(),
            request.headers(),
            request.body().as_ref(),
            request.extensions().get::<Malformed>(),
            context,
        )
    }

    #[test]
    fn the_short_path_builds_what_the_full_way_builds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");
        let mut events: Vec<String> = std::fs::read_dir(dir)
            .expect("events/")
            .map(|entry| std::fs::read_to_string(entry.expect("entry").path()).expect("event"))
            .collect();
        let edits = hostile().into_iter().chain([
            ("/requestContext/stage", "prod".into()),
            ("/cookies", serde_json::json!(["a=1", "b=2"])),
            ("/headers", serde_json::Value::Null),
            ("/body", "aGVsbG8=".into()),
            ("/isBase64Encoded", true.into()),
            ("/requestContext/http/method", "".into()),
        ]);
        for (pointer, value) in edits {
            events.push(event(|e| match e.pointer_mut(pointer) {
                Some(slot) => *slot = value,
                None => e[pointer.trim_start_matches('/')] = value,
            }));
        }
        // `path` is what `lambda_http`'s event types also accept for `rawPath`.
        events.push(event(|e| {
            let raw_path = e.as_object_mut().and_then(|o| o.remove("rawPath"));
            e["path"] = raw_path.expect("rawPath");
        }));
        let mut short = 0;
        for payload in &events {
            if serde_json::from_str::<HttpApiEvent<'_>>(payload).is_ok() {
                short += 1;
            }
            let (request, origin) = decode(payload, lambda_http::Context::default());
            let (full, full_origin) = decode_full(payload);
            assert_eq!(origin, full_origin, "{payload}");
            assert_eq!(seen(&request), seen(&full), "{payload}");
        }
        // Every event of events/ and every edit above took the short path.
        assert_eq!(short, events.len());
    }

    #[test]
    fn what_the_short_path_does_not_take_goes_the_full_way() {
        for (pointer, value) in [
            ("/headers/x-list", serde_json::json!(["a", "b"])),
            ("/headers/x-bad", "a\u{1}b".into()),
            ("/requestContext/http/method", "GE T".into()),
            ("/requestContext/http", serde_json::Value::Null),
        ] {
            let payload = event(|e| {
                let (parent, key) = pointer.rsplit_once('/').expect("pointer");
                e.pointer_mut(parent).expect("parent")[key] = value.clone();
            });
            assert!(
                serde_json::from_str::<HttpApiEvent<'_>>(&payload).is_err(),
                "{payload}"
            );
            let (request, _) = decode(&payload, lambda_http::Context::default());
            assert_eq!(seen(&request), seen(&decode_full(&payload).0), "{payload}");
        }
    }

    #[test]
    fn paths_and_queries_api_gateway_sends_pass_unchanged() {
        for path in [
            "/predict",
            "/.well-known/jwks.json",
            "/a%20b",
            "/x/../y",
            "/~a!$&'()*+,;=:@",
        ] {
            assert_eq!(safe_path(path), path);
        }
        assert_eq!(safe_query("a=1&b=%22?c"), "a=1&b=%22?c");
        assert_eq!(safe_query("a=\" b"), "a=%22%20b");
        assert_eq!(safe_path("predict"), "/predict");
        assert_eq!(safe_path("/a?b#c"), "/a%3Fb%23c");
        assert_eq!(safe_path(&"x".repeat(10_000)).len(), MAX_RAW_LEN);
    }
}
