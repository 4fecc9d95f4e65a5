//! Properties shared by the fuzz targets in `fuzz_targets/`. Run them with `scripts/fuzz.sh`.
//!
//! Each target asserts what must hold for *every* input, not only that nothing panics: a
//! property violation is an assertion failure, which libFuzzer reports like any other crash.

use std::future::Future;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use secure_ml_core::predict::{MAX_BATCH_ROWS, RequestSchema};
use secure_ml_core::problem::ApiError;
use serde_json::Value;
use tree_model::{Feature, Manifest};

/// The manifest committed in `model-artifacts/`: the contract the default build serves.
static COMMITTED: &str = include_str!("../../model-artifacts/manifest.json");

/// The models every body is checked against: the committed one, and one made up here whose
/// feature names need escaping in pointers and whose bounds are one-sided or absent.
static MODELS: LazyLock<Vec<(Vec<Feature>, RequestSchema)>> = LazyLock::new(|| {
    let committed = Manifest::from_json(COMMITTED.as_bytes())
        .expect("the committed manifest is valid")
        .features;
    let made_up = vec![
        Feature {
            exclusive_minimum: Some(0.0),
            ..Feature::named("a/b")
        },
        Feature {
            maximum: Some(1.0),
            unit: Some("m".to_owned()),
            ..Feature::named("c~d")
        },
        Feature::named("e"),
    ];
    [committed, made_up]
        .into_iter()
        .map(|features| {
            let schema = RequestSchema::new(&features);
            (features, schema)
        })
        .collect()
});

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

/// Runs `parse_single` and `parse_batch` of every model in [`MODELS`] on `body` and checks every
/// property of the prediction request contract (see `fuzz_targets/predict_request.rs`).
pub fn check_predict_body(body: &[u8]) {
    // What a plain JSON parser makes of the body: the reference for the checks below.
    let reference = serde_json::from_slice::<Value>(body).ok();
    for (features, schema) in MODELS.iter() {
        check_with(features, schema, body, reference.as_ref());
    }
}

fn check_with(features: &[Feature], schema: &RequestSchema, body: &[u8], reference: Option<&Value>) {
    match schema.parse_single(body) {
        Ok(row) => {
            check_row(features, &row);
            let data = accepted_field(reference, "data");
            assert_eq!(
                row_of(features, data),
                Some(row),
                "accepted row differs from the JSON"
            );
        }
        Err(error) => check_rejection(&error, reference, body.len()),
    }
    match schema.parse_batch(body) {
        Ok(rows) => {
            assert!(
                (1..=MAX_BATCH_ROWS).contains(&rows.len()),
                "accepted a batch of {} rows",
                rows.len()
            );
            assert_eq!(rows.width(), features.len(), "rows of another width");
            rows.iter().for_each(|row| check_row(features, row));
            let instances = accepted_field(reference, "instances");
            let from_json: Option<Vec<Vec<f64>>> = instances
                .as_array()
                .and_then(|items| items.iter().map(|row| row_of(features, row)).collect());
            let accepted: Vec<Vec<f64>> = rows.iter().map(<[f64]>::to_vec).collect();
            assert_eq!(from_json, Some(accepted), "accepted rows differ from the JSON");
        }
        Err(error) => check_rejection(&error, reference, body.len()),
    }
}

fn check_row(features: &[Feature], row: &[f64]) {
    assert_eq!(row.len(), features.len(), "accepted a row of another width");
    for (feature, &x) in features.iter().zip(row) {
        assert!(
            feature.allowed().contains(x),
            "accepted {} = {x}, outside {}",
            feature.name,
            feature.allowed().describe()
        );
    }
}

/// The row a plain JSON parser reads: an array of one number per feature, or an object with
/// exactly the features' names.
fn row_of(features: &[Feature], value: &Value) -> Option<Vec<f64>> {
    match value {
        Value::Array(items) if items.len() == features.len() => {
            items.iter().map(Value::as_f64).collect()
        }
        Value::Object(members) if members.len() == features.len() => features
            .iter()
            .map(|f| members.get(&f.name).and_then(Value::as_f64))
            .collect(),
        _ => None,
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
