//! Errors as HTTP responses: one [`ApiError`] enum, mapped to status, headers and an
//! RFC 9457 problem body in exactly one place ([`ApiError::into_response`]).
//!
//! Expected failures are values, not `Err`s out of the handler: an `Err` leaving a Lambda
//! handler becomes a bare 502 at API Gateway, which is neither documented nor helpful.
//! No message here ever carries a `Debug` dump of an internal error, a key or a token.

use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

/// Base of every problem `type` URI. Relative, so it resolves against the API's own origin.
pub const PROBLEM_TYPE_BASE: &str = "/problems/";

/// Realm used in `WWW-Authenticate` challenges.
pub const REALM: &str = "secure-ml-api";

/// One invalid value in a request body, located by a JSON Pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

/// The most field errors one problem lists. A body can hold thousands of bad values (a 16 KiB
/// row of zeros holds 8,000); listing each would answer a small request with a huge one, free
/// of quota. The rest are counted in `detail`.
pub const MAX_LISTED_ERRORS: usize = 20;

/// The most bytes of pointers and details one problem lists. Twenty errors of the usual size
/// (`/instances/99/3` and a sentence naming the feature) fit; long feature names from a
/// manifest, or long member names a client chose, end the list sooner, so the bound on an
/// error answer does not depend on the model served or on what a client sends.
pub const MAX_LISTED_BYTES: usize = 2560;

/// Field errors as a validator finds them: the first [`MAX_LISTED_ERRORS`] kept (fewer if their
/// text passes [`MAX_LISTED_BYTES`]; the first is always kept), the rest only counted (and
/// never even formatted, with [`FieldErrors::push_with`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors {
    listed: Vec<FieldError>,
    listed_bytes: usize,
    omitted: usize,
}

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an error.
    pub fn push(&mut self, error: FieldError) {
        self.push_with(|| error);
    }

    /// Adds the error `make` builds, calling it only if the error will be listed.
    pub fn push_with(&mut self, make: impl FnOnce() -> FieldError) {
        if self.listed.len() >= MAX_LISTED_ERRORS || self.listed_bytes >= MAX_LISTED_BYTES {
            self.omitted += 1;
            return;
        }
        let error = make();
        let size = error.pointer.len() + error.detail.len();
        if self.listed.is_empty() || self.listed_bytes + size <= MAX_LISTED_BYTES {
            self.listed_bytes += size;
            self.listed.push(error);
        } else {
            // The list ends here, in order: a later, shorter error is counted too.
            self.listed_bytes = MAX_LISTED_BYTES;
            self.omitted += 1;
        }
    }

    /// Errors found so far, listed or not.
    pub fn len(&self) -> usize {
        self.listed.len() + self.omitted
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The 422 problem for these errors.
    pub fn into_error(self) -> ApiError {
        ApiError::Validation {
            errors: self.listed,
            omitted: self.omitted,
        }
    }
}

/// Every way a request to a problem+json route can fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("no route matches this path")]
    NotFound,
    #[error("the request cannot be read: {detail}")]
    MalformedRequest { detail: &'static str },
    #[error("this route does not accept the request's method")]
    MethodNotAllowed { allow: &'static str },
    #[error("the request body must be sent as {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body is not valid JSON: {detail}")]
    MalformedJson { detail: String },
    #[error("the request body has invalid values{}", omitted_note(errors.len(), *.omitted))]
    Validation {
        errors: Vec<FieldError>,
        /// Errors beyond [`MAX_LISTED_ERRORS`] or [`MAX_LISTED_BYTES`], counted but not listed.
        omitted: usize,
    },
    #[error("the request carries no bearer token")]
    MissingToken,
    #[error("the access token is invalid: {detail}")]
    InvalidToken { detail: String },
    #[error("the access token lacks the scope {scope:?}")]
    InsufficientScope { scope: &'static str },
    #[error("the request has no source IP address to rate-limit")]
    NoSourceIp,
    #[error("{detail}")]
    QuotaExceeded { retry_after: u64, detail: String },
    #[error(
        "this request has {rows} rows, but this client's rate limit admits at most {max} in one request; send at most {max} rows per request"
    )]
    TooManyRows { rows: u32, max: u32 },
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable { retry_after: u64 },
}

fn omitted_note(listed: usize, omitted: usize) -> String {
    match omitted {
        0 => String::new(),
        n => format!("; the first {listed} are listed, {n} more are not"),
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MalformedRequest { .. } => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MalformedJson { .. } => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MissingToken | Self::InvalidToken { .. } => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope { .. } | Self::NoSourceIp => StatusCode::FORBIDDEN,
            Self::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyRows { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Short, stable slug naming the problem type (also used as a metric dimension).
    pub fn slug(&self) -> &'static str {
        match self {
            Self::NotFound => "not-found",
            Self::MalformedRequest { .. } => "malformed-request",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::UnsupportedMediaType { .. } => "unsupported-media-type",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::MalformedJson { .. } => "malformed-json",
            Self::Validation { .. } => "validation-failed",
            Self::MissingToken | Self::InvalidToken { .. } => "invalid-token",
            Self::InsufficientScope { .. } => "insufficient-scope",
            Self::NoSourceIp => "no-source-ip",
            Self::QuotaExceeded { .. } => "quota-exceeded",
            Self::TooManyRows { .. } => "too-many-rows",
            Self::Unavailable { .. } => "service-unavailable",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::NotFound => "Not Found",
            Self::MalformedRequest { .. } => "Malformed Request",
            Self::MethodNotAllowed { .. } => "Method Not Allowed",
            Self::UnsupportedMediaType { .. } => "Unsupported Media Type",
            Self::PayloadTooLarge { .. } => "Payload Too Large",
            Self::MalformedJson { .. } => "Malformed JSON",
            Self::Validation { .. } => "Validation Failed",
            Self::MissingToken | Self::InvalidToken { .. } => "Invalid Token",
            Self::InsufficientScope { .. } => "Insufficient Scope",
            Self::NoSourceIp => "No Source IP",
            Self::QuotaExceeded { .. } => "Quota Exceeded",
            Self::TooManyRows { .. } => "Too Many Rows",
            Self::Unavailable { .. } => "Service Unavailable",
        }
    }

    /// Renders the problem+json response, with the headers this error requires
    /// (`Allow`, `WWW-Authenticate`, `Retry-After`).
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let errors = match &self {
            Self::Validation { errors, .. } => Some(errors.as_slice()),
            _ => None,
        };
        let problem = Problem {
            kind: format!("{PROBLEM_TYPE_BASE}{}", self.slug()),
            title: self.title(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        };
        let body = serde_json::to_string(&problem).unwrap_or_else(|_| String::from("{}"));
        let mut response = Response::new(Body::Text(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            Self::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            Self::MissingToken => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    header_value(format!("Bearer realm=\"{REALM}\"")),
                );
            }
            Self::InvalidToken { .. } => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    header_value(format!(
                        "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"The access token is invalid or expired\""
                    )),
                );
            }
            Self::InsufficientScope { scope } => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    header_value(format!(
                        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""
                    )),
                );
            }
            Self::QuotaExceeded { retry_after, .. } | Self::Unavailable { retry_after } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}

fn header_value(value: String) -> HeaderValue {
    // Every value built here is ASCII from constants; an invalid one would be a bug, and an
    // empty header is a safer outcome than a panic.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A JSON response with the given status.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"));
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(response: &Response<Body>) -> serde_json::Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).expect("problem body is JSON"),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn validation_problem_lists_every_pointer() {
        let response = ApiError::Validation {
            errors: vec![FieldError::new("/data/2", "must be a number")],
            omitted: 0,
        }
        .into_response();
        assert_eq!(response.status(), 422);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        let body = body_json(&response);
        assert_eq!(body["type"], "/problems/validation-failed");
        assert_eq!(body["status"], 422);
        assert_eq!(body["errors"][0]["pointer"], "/data/2");
    }

    #[test]
    fn a_validation_problem_lists_twenty_errors_and_counts_the_rest() {
        let mut errors = FieldErrors::new();
        for i in 0..8_183 {
            errors.push_with(|| FieldError::new(format!("/instances/0/{i}"), "must be positive"));
        }
        assert_eq!(errors.len(), 8_183);
        let response = errors.into_error().into_response();
        let body = body_json(&response);
        assert_eq!(body["errors"].as_array().unwrap().len(), MAX_LISTED_ERRORS);
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .ends_with("8163 more are not"),
            "{body}"
        );
        assert!(body.to_string().len() < 4_096);
    }

    #[test]
    fn long_errors_end_the_list_sooner_and_are_counted() {
        let mut errors = FieldErrors::new();
        let long = "x".repeat(1_000);
        for i in 0..10 {
            errors.push(FieldError::new(format!("/data/{i}"), long.clone()));
        }
        errors.push(FieldError::new(
            "/data/10",
            "short, but after the list ended",
        ));
        let response = errors.into_error().into_response();
        let body = body_json(&response);
        assert_eq!(body["errors"].as_array().unwrap().len(), 2);
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .ends_with("the first 2 are listed, 9 more are not"),
            "{body}"
        );
        assert!(body.to_string().len() < 4_096);
    }

    #[test]
    fn the_first_error_is_listed_however_long() {
        let mut errors = FieldErrors::new();
        errors.push(FieldError::new("/data", "y".repeat(5_000)));
        assert!(matches!(
            errors.into_error(),
            ApiError::Validation { errors, omitted: 0 } if errors.len() == 1
        ));
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let response = ApiError::MethodNotAllowed { allow: "POST" }.into_response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[ALLOW], "POST");
    }

    #[test]
    fn quota_exceeded_carries_retry_after() {
        let response = ApiError::QuotaExceeded {
            retry_after: 3,
            detail: "slow down".into(),
        }
        .into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        assert_eq!(body_json(&response)["type"], "/problems/quota-exceeded");
    }

    #[test]
    fn invalid_token_challenges_with_rfc6750_error() {
        let response = ApiError::InvalidToken {
            detail: "expired".into(),
        }
        .into_response();
        assert_eq!(response.status(), 401);
        let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer "));
        assert!(challenge.contains("error=\"invalid_token\""));
    }
}
