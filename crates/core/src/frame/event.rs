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
//! [`Malformed`] too, so it still gets an answer and an access line. HTTP API (payload 2.0)
//! events are parsed directly; REST API events (payload 1.0) go through `lambda_http`'s own
//! detection, which tries them first.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayV2httpRequest, ApiGatewayV2httpResponse,
};
use lambda_http::aws_lambda_events::encodings::Body as EventBody;
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, RequestExt, Response};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

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
    let (request, origin) = match serde_json::from_str::<ApiGatewayV2httpRequest>(payload) {
        Ok(event) => (http_api_request(event), Origin::HttpApi),
        Err(_) => match serde_json::from_str::<LambdaRequest>(payload) {
            Ok(LambdaRequest::ApiGatewayV1(event)) => (rest_api_request(event), Origin::RestApi),
            _ => (
                unroutable("the event is not an API Gateway request"),
                Origin::HttpApi,
            ),
        },
    };
    (request.with_lambda_context(context), origin)
}

/// An HTTP API event made safe for `lambda_http`'s conversion, then converted.
pub fn http_api_request(mut event: ApiGatewayV2httpRequest) -> Request {
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
        return Some(Malformed(
            "the body is flagged as base64 but is not valid base64",
        ));
    }
    None
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

    #[test]
    fn client_controlled_uri_parts_cannot_panic_the_conversion() {
        let hostile: [(&str, serde_json::Value); 8] = [
            ("/headers/host", "a b".into()),
            ("/headers/host", "h:99999".into()),
            ("/headers/x-forwarded-proto", "a b".into()),
            ("/rawQueryString", "a=\"<>".into()),
            ("/rawQueryString", "a=b c#d".into()),
            ("/rawPath", ":99999".into()),
            ("/rawPath", "/a b/\\..\\|^{}".into()),
            ("/requestContext/stage", "a b/#".into()),
        ];
        for (pointer, value) in hostile {
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
