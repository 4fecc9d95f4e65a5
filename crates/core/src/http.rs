//! Request bodies: content types and size limits, shared by both functions.
//!
//! Everything here is pure and synchronous, so the handlers' pre-flight checks are cheap
//! and testable without a runtime.

use http::header::CONTENT_TYPE;
use lambda_http::{Body, Request};

use crate::problem::ApiError;

/// True when the `Content-Type` header names `media_type` (parameters such as `charset`
/// are allowed; comparison is case-insensitive as RFC 9110 §8.3.1 requires).
pub fn has_media_type(request: &Request, media_type: &str) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(media_type))
}

/// The raw body bytes, or 413 when larger than `limit`.
///
/// API Gateway base64-encodes binary bodies; `lambda_http` has already decoded them into
/// [`Body::Binary`] by the time a handler runs, so both encodings arrive here as bytes.
pub fn body_bytes(request: &Request, limit: usize) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        // `Body` is non-exhaustive upstream; anything unknown is treated as empty.
        #[allow(unreachable_patterns)]
        _ => &[],
    };
    if bytes.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(bytes)
}

/// A JSON body of at most `limit` bytes sent as `application/json`.
pub fn json_body(request: &Request, limit: usize) -> Result<&[u8], ApiError> {
    // Size first: a client sending a huge body with the wrong type learns the real problem.
    let bytes = body_bytes(request, limit)?;
    if !has_media_type(request, "application/json") {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson {
            detail: "the body is empty".into(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, content_type: Option<&str>, body: Body) -> Request {
        let mut builder = http::Request::builder().method("POST").uri(path);
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        builder.body(body).unwrap()
    }

    #[test]
    fn media_type_ignores_case_and_parameters() {
        let r = request("/", Some("Application/JSON; charset=utf-8"), Body::Empty);
        assert!(has_media_type(&r, "application/json"));
        let r = request("/", Some("application/jsonx"), Body::Empty);
        assert!(!has_media_type(&r, "application/json"));
        let r = request("/", None, Body::Empty);
        assert!(!has_media_type(&r, "application/json"));
    }

    #[test]
    fn oversized_body_is_refused_before_the_content_type_is_read() {
        let r = request("/", Some("text/plain"), Body::Binary(vec![b'x'; 17]));
        assert_eq!(
            json_body(&r, 16),
            Err(ApiError::PayloadTooLarge { limit: 16 })
        );
    }

    #[test]
    fn whitespace_only_body_is_malformed() {
        let r = request("/", Some("application/json"), Body::Text("  \n".into()));
        assert!(matches!(
            json_body(&r, 16),
            Err(ApiError::MalformedJson { .. })
        ));
    }
}
