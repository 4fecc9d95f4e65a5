//! The token endpoint's client authentication input: the form body and HTTP Basic credentials
//! (`secure_ml_core::auth::client_auth`).
//!
//! The first byte picks what the rest of the input is:
//! - `0`: a form body. `Form::parse` refuses exactly the bodies with a repeated name; what it
//!   accepts has unique names and no empty value, and survives a round trip through a form
//!   serializer unchanged.
//! - `1`: an `Authorization` header value. Credentials that Basic decodes are non-empty and
//!   round-trip: encoded again and decoded, they come back identical.
//! - `2`: an id and a secret (structured). Encoded as a client would, they decode to themselves
//!   when both are non-empty and to nothing otherwise.
//! - anything else: one form-encoded component. `form_decode` equals a byte-by-byte reference
//!   decoder, and agrees with the form body parser wherever it accepts.

#![no_main]

use std::collections::HashSet;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use secure_ml_core::auth::client_auth::{Form, FormError, basic_credentials, form_decode};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => check_form(rest),
        1 => check_header(rest),
        2 => {
            if let Ok(credentials) = Credentials::arbitrary_take_rest(Unstructured::new(rest)) {
                check_encoded(&credentials);
            }
        }
        _ => {
            if let Ok(raw) = std::str::from_utf8(rest) {
                check_component(raw);
            }
        }
    }
});

fn check_form(body: &[u8]) {
    let names: Vec<String> = form_urlencoded::parse(body)
        .map(|(name, _)| name.into_owned())
        .collect();
    let mut seen = HashSet::new();
    let repeated = !names.iter().all(|name| seen.insert(name.as_str()));
    match Form::parse(body) {
        Err(FormError::RepeatedParameter) => assert!(repeated, "no name is repeated"),
        Err(FormError::Malformed) => panic!("form decoding is total, yet {body:?} was refused"),
        Ok(form) => {
            assert!(!repeated, "a repeated name was accepted");
            let pairs = form.pairs();
            let mut seen = HashSet::new();
            for (name, value) in pairs {
                assert!(seen.insert(name.as_str()), "{name:?} appears twice");
                assert!(!value.is_empty(), "{name:?} has an empty value");
                assert_eq!(form.get(name), Some(value.as_str()));
            }
            let again = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            assert_eq!(
                Form::parse(again.as_bytes()).as_ref().map(Form::pairs),
                Ok(pairs),
                "the form does not survive re-encoding as {again:?}"
            );
        }
    }
}

fn check_header(value: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return;
    };
    if let Some((id, secret)) = basic_credentials(&value) {
        assert!(!id.is_empty() && !secret.is_empty(), "empty credentials");
        let again = basic_credentials(&encode(&id, &secret));
        assert_eq!(again, Some((id, secret)), "credentials do not round-trip");
    }
}

/// What a client sends, with the variations RFC 9110 allows it.
#[derive(Arbitrary, Debug)]
struct Credentials {
    id: String,
    secret: String,
    /// `Basic`, `basic`, `BASIC`, ...
    scheme_case: u8,
    /// Spaces before the scheme and after the credentials.
    padding: (u8, u8),
}

fn check_encoded(credentials: &Credentials) {
    let Credentials { id, secret, .. } = credentials;
    let scheme: String = "Basic"
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if (credentials.scheme_case >> (i % 8)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let value = format!(
        "{}{scheme} {}{}",
        " ".repeat(usize::from(credentials.padding.0 % 4)),
        STANDARD.encode(format!("{}:{}", component(id), component(secret))),
        " ".repeat(usize::from(credentials.padding.1 % 4)),
    );
    let Ok(value) = HeaderValue::from_str(&value) else {
        panic!("a Basic header is visible ASCII: {value:?}");
    };
    let expected = (!id.is_empty() && !secret.is_empty()).then(|| (id.clone(), secret.clone()));
    assert_eq!(basic_credentials(&value), expected);
}

fn check_component(raw: &str) {
    let decoded = form_decode(raw);
    assert_eq!(decoded, reference_decode(raw), "differs from the reference");
    if let Some(decoded) = decoded {
        assert_eq!(form_decode(&component(&decoded)).as_ref(), Some(&decoded));
        // The body parser is lenient, but where the strict decoder accepts, both agree.
        if !raw.contains('&') {
            let body = format!("v={raw}");
            let value = form_urlencoded::parse(body.as_bytes())
                .next()
                .map(|(_, v)| v);
            assert_eq!(value.as_deref(), Some(decoded.as_str()));
        }
    }
}

/// RFC 6749 Appendix B: each part is form-encoded before the two are joined with `:`.
fn component(raw: &str) -> String {
    form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

fn encode(id: &str, secret: &str) -> HeaderValue {
    let value = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", component(id), component(secret)))
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| panic!("not a header value: {value:?}"))
}

/// Strict form decoding written out byte by byte: `+` is a space, `%` must start two hex
/// digits, and the result must be UTF-8.
fn reference_decode(raw: &str) -> Option<String> {
    fn hex(digit: u8) -> Option<u8> {
        char::from(digit)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let high = hex(bytes.next()?)?;
                let low = hex(bytes.next()?)?;
                out.push((high << 4) | low);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}
