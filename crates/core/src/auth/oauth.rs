//! The token endpoint's contract (RFC 6749 §4.4 client credentials): reading the request,
//! narrowing scopes, and its errors, which are RFC 6749 §5.2 JSON (`{"error",
//! "error_description"}`), not problem details: OAuth client libraries parse exactly that shape.
//!
//! Decisions where the RFCs leave room:
//! - A `Basic` header that is not valid base64 / `id:secret` is `invalid_client` (401), the same
//!   response as a wrong secret: it is a failed client authentication (RFC 6749 §5.2), and a
//!   distinct answer would only tell a prober which of its guesses parsed.
//! - Any repeated parameter is `invalid_request` (RFC 6749 §3.1); an empty value counts as absent.
//! - A body over [`MAX_TOKEN_BODY_BYTES`] is 413 with an `invalid_request` body: the status is the
//!   precise HTTP answer, and the body keeps the OAuth shape clients parse.
//! - Requested scopes are checked only after the client has authenticated, so an anonymous caller
//!   learns nothing about any client's scopes.

use http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::client_auth::{Form, basic_credentials};
use super::token::IssuedToken;
use super::{KNOWN_SCOPES, parse_scopes};
use crate::problem::{ApiError, REALM, json_response};

/// Largest accepted `POST /token` body. A legitimate one is under 200 bytes.
pub const MAX_TOKEN_BODY_BYTES: usize = 4096;

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// RFC 6749 §5.2 errors of the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest(&'static str),
    TooLarge,
    /// Unknown client, wrong secret, disabled client, unusable credentials: one response.
    InvalidClient,
    UnsupportedGrantType,
    InvalidScope,
    Unavailable,
}

/// A client-credentials request, read and checked up to the credentials themselves.
#[derive(Debug)]
pub struct TokenRequest {
    pub client_id: String,
    pub client_secret: String,
    /// The `scope` parameter, if any.
    pub scope: Option<String>,
}

impl TokenRequest {
    /// Reads the body (size, form type, `grant_type`) and the client credentials (HTTP Basic,
    /// or form fields; never both).
    pub fn read(request: &Request) -> Result<Self, OAuthError> {
        let body = crate::http::body_bytes(request, MAX_TOKEN_BODY_BYTES).map_err(|e| match e {
            ApiError::PayloadTooLarge { .. } => OAuthError::TooLarge,
            _ => OAuthError::InvalidRequest("the request body cannot be read"),
        })?;
        if !crate::http::has_media_type(request, FORM_CONTENT_TYPE) {
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
        let (client_id, client_secret) = client_credentials(request.headers(), &form)?;
        Ok(Self {
            client_id,
            client_secret,
            scope: form.get("scope").map(str::to_owned),
        })
    }

    /// The presented client id, if a log may show it: only if it has our shape, so a secret
    /// pasted into the `client_id` field never reaches the logs.
    pub fn loggable_client_id(&self) -> Option<&str> {
        looks_like_client_id(&self.client_id).then_some(self.client_id.as_str())
    }

    /// The scopes to grant a client holding `held`: all of them when none are requested (or
    /// only spaces), else exactly the requested ones, in canonical order — `invalid_scope` if
    /// any is unknown or not held.
    pub fn granted_scopes(&self, held: &[String]) -> Result<Vec<String>, OAuthError> {
        let requested = parse_scopes(self.scope.as_deref().unwrap_or_default())
            .map_err(|_| OAuthError::InvalidScope)?;
        if requested.is_empty() {
            return Ok(KNOWN_SCOPES
                .iter()
                .filter(|known| held.iter().any(|h| h == *known))
                .map(|s| (*s).to_owned())
                .collect());
        }
        if requested.iter().any(|s| !held.contains(s)) {
            return Err(OAuthError::InvalidScope);
        }
        Ok(requested)
    }
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

#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    scope: &'a str,
}

/// The 200 answer for an issued token (RFC 6749 §5.1), never cached.
pub fn token_response(issued: &IssuedToken) -> Response<Body> {
    let mut response = json_response(
        StatusCode::OK,
        &TokenBody {
            access_token: &issued.access_token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: &issued.scope,
        },
    );
    no_store(response.headers_mut());
    response
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    error_description: &'static str,
}

impl OAuthError {
    /// The RFC 6749 §5.2 `error` code.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::TooLarge => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::Unavailable => "temporarily_unavailable",
        }
    }

    fn status_and_description(self) -> (StatusCode, &'static str) {
        match self {
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
        }
    }

    /// The error response: JSON body, `no-store`, and the challenge or `Retry-After` it needs.
    pub fn into_response(self) -> Response<Body> {
        let (status, error_description) = self.status_and_description();
        let mut response = json_response(
            status,
            &ErrorBody {
                error: self.code(),
                error_description,
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

    fn request(scope: Option<&str>) -> TokenRequest {
        TokenRequest {
            client_id: "cl_00112233445566778899aabbccddeeff".into(),
            client_secret: "s".into(),
            scope: scope.map(str::to_owned),
        }
    }

    fn held(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn no_scope_grants_every_scope_the_client_holds() {
        for scope in [None, Some(" ")] {
            assert_eq!(
                request(scope).granted_scopes(&held(&["predict:proba", "predict"])),
                Ok(held(&["predict", "predict:proba"]))
            );
        }
    }

    #[test]
    fn a_requested_subset_is_granted_in_canonical_order() {
        assert_eq!(
            request(Some("predict:proba predict"))
                .granted_scopes(&held(&["predict", "predict:proba"])),
            Ok(held(&["predict", "predict:proba"]))
        );
        assert_eq!(
            request(Some("predict")).granted_scopes(&held(&["predict", "predict:proba"])),
            Ok(held(&["predict"]))
        );
    }

    #[test]
    fn unknown_or_unheld_scopes_are_invalid_scope() {
        for scope in ["admin", "predict:proba", "predict admin"] {
            assert_eq!(
                request(Some(scope)).granted_scopes(&held(&["predict"])),
                Err(OAuthError::InvalidScope),
                "{scope}"
            );
        }
    }

    #[test]
    fn only_client_ids_of_our_shape_are_logged() {
        assert_eq!(
            request(None).loggable_client_id(),
            Some("cl_00112233445566778899aabbccddeeff")
        );
        let mut pasted = request(None);
        pasted.client_id = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".into();
        assert_eq!(pasted.loggable_client_id(), None);
    }
}
