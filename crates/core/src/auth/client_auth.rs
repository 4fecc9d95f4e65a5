//! Client authentication input of the token endpoint: the `application/x-www-form-urlencoded`
//! body and the HTTP Basic credentials of RFC 6749 §2.3.1.
//!
//! Pure parsing, no I/O: the token function decides what a parse result means (which OAuth
//! error, which client), and the parsers can be tested and fuzzed on their own.
//!
//! The two decoders differ. The body is decoded as form libraries and browsers decode it (WHATWG
//! URL §5.1: a malformed `%` escape stays as it is, invalid UTF-8 becomes U+FFFD). The Basic
//! credentials are decoded strictly: a malformed escape or bytes that are not UTF-8 make them
//! unusable ([`None`], which the token endpoint answers with `invalid_client`). Real credentials
//! decode the same either way: client ids and secrets are ASCII (`cl_` + hex, base64url).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use http::HeaderValue;
use percent_encoding::percent_decode_str;

/// Why a form body was refused. Both are `invalid_request` at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("{}", self.description())]
    Malformed,
    /// RFC 6749 §3.1: request parameters must not be included more than once.
    #[error("{}", self.description())]
    RepeatedParameter,
}

impl FormError {
    /// The sentence a client sees (`error_description`).
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "the request body is not valid form encoding",
            Self::RepeatedParameter => "a parameter is repeated",
        }
    }
}

/// Decoded form parameters; empty values are dropped (RFC 6749 §3.1: "as if omitted").
///
/// `Debug` shows the parameter names only: the values include `client_secret`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses a form body. Any repeated name is refused, even when one of its values is empty.
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|_| FormError::Malformed)?;
        let mut seen = HashSet::new();
        if pairs.iter().any(|(name, _)| !seen.insert(name.as_str())) {
            return Err(FormError::RepeatedParameter);
        }
        Ok(Self(
            pairs
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .collect(),
        ))
    }

    /// The value of `name`, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter, in body order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Form")
            .field("names", &self.0.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`; `None` for anything else, including an
/// empty id or secret.
pub fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    use base64::Engine;
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let (id, secret) = (form_decode(id)?, form_decode(secret)?);
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// Strict `application/x-www-form-urlencoded` decoding of one component: `+` is a space, `%XX`
/// a byte. `None` when a `%` is not followed by two hex digits or the result is not UTF-8.
pub fn form_decode(raw: &str) -> Option<String> {
    // `percent_decode` passes a malformed escape through unchanged; here it is an error.
    let bytes = raw.as_bytes();
    let escapes_well_formed =
        bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'%')
            .all(|(i, _)| {
                bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            });
    if !escapes_well_formed {
        return None;
    }
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    fn basic(credentials: &str) -> Option<(String, String)> {
        let value = format!("Basic {}", STANDARD.encode(credentials));
        basic_credentials(&HeaderValue::from_str(&value).unwrap())
    }

    fn pair(id: &str, secret: &str) -> Option<(String, String)> {
        Some((id.to_owned(), secret.to_owned()))
    }

    mod form {
        use super::*;

        #[test]
        fn decodes_plus_and_percent_escapes() {
            let form = Form::parse(b"grant_type=client_credentials&scope=predict+predict%3Aproba")
                .unwrap();
            assert_eq!(form.get("grant_type"), Some("client_credentials"));
            assert_eq!(form.get("scope"), Some("predict predict:proba"));
            assert_eq!(form.get("client_id"), None);
        }

        #[test]
        fn drops_empty_values_as_if_omitted() {
            let form = Form::parse(b"grant_type=&scope=predict&client_id").unwrap();
            assert_eq!(form.get("grant_type"), None);
            assert_eq!(form.get("client_id"), None);
            assert_eq!(form.pairs(), [("scope".to_owned(), "predict".to_owned())]);
        }

        #[test]
        fn refuses_a_repeated_name_even_with_an_empty_value() {
            for body in [
                &b"scope=predict&scope=predict"[..],
                b"a=&a=1",
                b"a%3D=1&a%3d=2",
            ] {
                assert_eq!(
                    Form::parse(body),
                    Err(FormError::RepeatedParameter),
                    "{body:?}"
                );
            }
        }

        #[test]
        fn is_lenient_with_malformed_escapes_and_invalid_utf8() {
            let form = Form::parse(b"a=%zz%&b=%FF").unwrap();
            assert_eq!(form.get("a"), Some("%zz%"));
            assert_eq!(form.get("b"), Some("\u{FFFD}"));
        }

        #[test]
        fn debug_shows_names_but_never_values() {
            let form = Form::parse(b"client_id=cl_x&client_secret=hunter2").unwrap();
            let debug = format!("{form:?}");
            assert!(debug.contains("client_secret"), "{debug}");
            assert!(!debug.contains("hunter2"), "{debug}");
        }

        #[test]
        fn error_descriptions_are_the_token_endpoint_sentences() {
            assert_eq!(
                FormError::RepeatedParameter.to_string(),
                "a parameter is repeated"
            );
            assert_eq!(
                FormError::Malformed.description(),
                "the request body is not valid form encoding"
            );
        }
    }

    mod decoding {
        use super::*;

        #[test]
        fn plus_is_a_space_and_escapes_are_bytes() {
            assert_eq!(form_decode("a+b%2Bc%3a%25").as_deref(), Some("a b+c:%"));
            assert_eq!(form_decode("%C3%A9t%C3%A9").as_deref(), Some("été"));
            assert_eq!(form_decode("été").as_deref(), Some("été"));
            assert_eq!(form_decode("").as_deref(), Some(""));
        }

        #[test]
        fn refuses_malformed_percent_escapes() {
            for raw in [
                "%", "%4", "abc%", "%zz", "%4g", "%g4", "% 4", "%%41", "%-1", "%é",
            ] {
                assert_eq!(form_decode(raw), None, "{raw:?}");
            }
        }

        #[test]
        fn refuses_a_sign_in_place_of_a_hex_digit() {
            // `u8::from_str_radix("+F", 16)` is 15: a hex parser is not a hex-digit check.
            for raw in ["%+F", "%+0", "id%+9"] {
                assert_eq!(form_decode(raw), None, "{raw:?}");
            }
        }

        #[test]
        fn refuses_escapes_that_are_not_utf8() {
            for raw in [
                "%FF",
                "%C3",
                "%C3%28",
                "%ED%A0%80",
                "%80",
                "%F8%88%80%80%80",
            ] {
                assert_eq!(form_decode(raw), None, "{raw:?}");
            }
        }
    }

    mod basic_auth {
        use super::*;

        #[test]
        fn decodes_form_encoded_id_and_secret() {
            assert_eq!(
                basic("cl_abc:s3cr3t+with%2Bplus%3Acolon%25"),
                pair("cl_abc", "s3cr3t with+plus:colon%")
            );
        }

        #[test]
        fn splits_at_the_first_colon() {
            assert_eq!(basic("id:a:b"), pair("id", "a:b"));
        }

        #[test]
        fn the_scheme_is_case_insensitive_and_whitespace_is_trimmed() {
            let encoded = STANDARD.encode("id:secret");
            for value in [
                format!("basic {encoded}"),
                format!("BASIC  {encoded} "),
                format!(" Basic {encoded}"),
            ] {
                let value = HeaderValue::from_str(&value).unwrap();
                assert_eq!(basic_credentials(&value), pair("id", "secret"), "{value:?}");
            }
        }

        #[test]
        fn refuses_other_schemes_and_shapes() {
            for value in [
                "Bearer abc.def.ghi",
                "Basic",
                "Basic ",
                "Basic !!!not-base64!!!",
                "BasicaWQ6c2VjcmV0",
                "Digest aWQ6c2VjcmV0",
            ] {
                let value = HeaderValue::from_static(value);
                assert_eq!(basic_credentials(&value), None, "{value:?}");
            }
        }

        #[test]
        fn refuses_an_empty_id_or_secret_or_no_colon() {
            for credentials in [":secret", "id:", ":", "idsecret", "+:"] {
                assert_eq!(basic(credentials), None, "{credentials:?}");
            }
        }

        #[test]
        fn a_space_is_a_value_not_an_empty_component() {
            assert_eq!(basic("id:%20"), pair("id", " "));
        }

        #[test]
        fn refuses_malformed_escapes_and_invalid_utf8() {
            assert_eq!(basic("id:%zz"), None);
            assert_eq!(basic("id:%+F"), None);
            assert_eq!(basic("%FF:secret"), None);
            let value = format!("Basic {}", STANDARD.encode(b"id:\xff"));
            assert_eq!(
                basic_credentials(&HeaderValue::from_str(&value).unwrap()),
                None
            );
        }

        #[test]
        fn refuses_a_header_that_is_not_visible_ascii() {
            let value = HeaderValue::from_bytes(b"Basic \xe9").unwrap();
            assert_eq!(basic_credentials(&value), None);
        }
    }
}
