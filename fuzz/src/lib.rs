//! Properties shared by the fuzz targets in `fuzz_targets/`. Run them with `scripts/fuzz.sh`.
//!
//! Each target asserts what must hold for *every* input, not only that nothing panics: a
//! property violation is an assertion failure, which libFuzzer reports like any other crash.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use secure_ml_core::predict::{MAX_BATCH_ROWS, MAX_FEATURE_CM, Row};
use secure_ml_core::predict::{parse_batch, parse_single};
use secure_ml_core::problem::ApiError;
use serde_json::Value;

/// Whether `pointer` is a JSON Pointer (RFC 6901 §3): empty, or `/`-prefixed reference tokens
/// in which `~` only appears as `~0` or `~1`.
pub fn is_json_pointer(pointer: &str) -> bool {
    if pointer.is_empty() {
        return true;
    }
    let Some(tokens) = pointer.strip_prefix('/') else {
        return false;
    };
    let bytes = tokens.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'~')
        .all(|(i, _)| matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

/// Runs `parse_single` and `parse_batch` on `body` and checks every property of the prediction
/// request contract (see `fuzz_targets/predict_request.rs`).
pub fn check_predict_body(body: &[u8]) {
    // What a plain JSON parser makes of the body: the reference for the checks below.
    let reference = serde_json::from_slice::<Value>(body).ok();
    match parse_single(body) {
        Ok(row) => {
            check_row(&row);
            let data = accepted_field(reference.as_ref(), "data");
            assert_eq!(
                row_of(data),
                Some(row),
                "accepted row differs from the JSON"
            );
        }
        Err(error) => check_rejection(&error, reference.as_ref(), body.len()),
    }
    match parse_batch(body) {
        Ok(rows) => {
            assert!(
                (1..=MAX_BATCH_ROWS).contains(&rows.len()),
                "accepted a batch of {} rows",
                rows.len()
            );
            rows.iter().for_each(check_row);
            let instances = accepted_field(reference.as_ref(), "instances");
            let from_json: Option<Vec<Row>> = instances
                .as_array()
                .and_then(|items| items.iter().map(row_of).collect());
            assert_eq!(from_json, Some(rows), "accepted rows differ from the JSON");
        }
        Err(error) => check_rejection(&error, reference.as_ref(), body.len()),
    }
}

fn check_row(row: &Row) {
    for &x in row {
        assert!(
            x.is_finite() && x > 0.0 && x <= MAX_FEATURE_CM,
            "accepted value {x} out of range"
        );
    }
}

/// An accepted body is a JSON object whose only member is `field`: returns its value.
fn accepted_field<'a>(reference: Option<&'a Value>, field: &str) -> &'a Value {
    let object = reference
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("accepted a body that is not a JSON object"));
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        [field],
        "accepted a body with other members"
    );
    &object[field]
}

fn row_of(value: &Value) -> Option<Row> {
    let items = value.as_array()?;
    let values: Option<Vec<f64>> = items.iter().map(Value::as_f64).collect();
    values?.try_into().ok()
}

/// The largest answer a refusal of a `request_len`-byte request may have: twice the request,
/// or 4 KiB, whichever is larger. Nothing a caller sends may be amplified beyond that.
pub fn max_error_body(request_len: usize) -> usize {
    (2 * request_len).max(4096)
}

/// A refused body is either malformed JSON (400, no pointer: there is no document to point
/// into) or a well-formed document with bad values (422), each named by a JSON Pointer; its
/// answer is at most [`max_error_body`].
fn check_rejection(error: &ApiError, reference: Option<&Value>, request_len: usize) {
    match error {
        ApiError::MalformedJson { .. } => {
            assert!(reference.is_none(), "valid JSON reported as malformed");
        }
        ApiError::Validation { errors, .. } => {
            assert!(!errors.is_empty(), "a validation error without a pointer");
            for error in errors {
                assert!(
                    is_json_pointer(&error.pointer),
                    "not an RFC 6901 pointer: {:?}",
                    error.pointer
                );
                assert!(
                    !error.detail.is_empty(),
                    "empty detail at {}",
                    error.pointer
                );
                if let Some(document) = reference {
                    // The pointer names a member of the document, or a missing member of an
                    // object in it ("is required"): its parent always exists.
                    let parent = error
                        .pointer
                        .rsplit_once('/')
                        .map_or("", |(parent, _)| parent);
                    assert!(
                        document.pointer(parent).is_some(),
                        "the parent of {:?} is not in the document",
                        error.pointer
                    );
                }
            }
        }
        other => panic!("unexpected rejection from the body parser: {other:?}"),
    }
    let response = error.clone().into_response();
    let status = response.status().as_u16();
    assert!(matches!(status, 400 | 422), "status {status} for {error:?}");
    let answer = match response.body() {
        lambda_http::Body::Text(text) => text.len(),
        other => panic!("a problem body that is not text: {other:?}"),
    };
    assert!(
        answer <= max_error_body(request_len),
        "a {request_len}-byte body got a {answer}-byte answer"
    );
}

/// Polls a future that must complete without waiting (no I/O, no timer) and returns its value.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the future waited for I/O"),
    }
}
