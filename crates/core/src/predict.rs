//! The prediction request contract: parsing and validation, with a JSON Pointer for every
//! rejected value.
//!
//! The body shape is the tutorial's (`{"data": [sepal_length, sepal_width, petal_length,
//! petal_width]}`), so its clients work unchanged; what changes is that every value is
//! checked. Parsing happens in two steps on purpose:
//!
//! 1. The envelope is read key by key, so an unknown key and a repeated key are both rejected
//!    with a pointer to the key (`serde_json::Value` would silently keep the last copy of a
//!    repeated key — a classic parser differential).
//! 2. The feature values arrive as raw [`Value`]s and are checked one by one, so a response can
//!    point at *every* bad value (`/instances/3/1`), not just the first one serde tripped over.
//!
//! Syntax errors (including numbers too large for an `f64`, such as `1e400`, which the JSON
//! lexer itself refuses) are `400 Bad Request`; a well-formed body with wrong values is
//! `422 Unprocessable Content`.

use serde_json::Value;

use crate::problem::{ApiError, FieldError, FieldErrors};

/// Number of features the model takes.
pub const N_FEATURES: usize = 4;
/// Largest accepted body, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most rows in one batch.
pub const MAX_BATCH_ROWS: usize = 100;
/// Accepted values are in `(0, MAX_FEATURE_CM]` centimetres.
pub const MAX_FEATURE_CM: f64 = 100.0;

/// One validated feature row, in centimetres.
pub type Row = [f64; N_FEATURES];

/// The request envelope: a JSON object with exactly one known field.
///
/// Hand-written rather than derived so that an unknown or repeated key is reported with a
/// pointer to that key (`/debug`), like every other validation error, and so that every
/// offending key is listed, not only the first.
struct Envelope {
    field: Option<Value>,
    errors: FieldErrors,
}

struct EnvelopeVisitor(&'static str);

impl<'de> serde::de::Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an object with the field `{}`", self.0)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut envelope = Envelope {
            field: None,
            errors: FieldErrors::new(),
        };
        while let Some(key) = map.next_key::<String>()? {
            let pointer = format!("/{}", escape_pointer(&key));
            if key == self.0 {
                let value: Value = map.next_value()?;
                if envelope.field.is_some() {
                    // `serde_json::Value` would keep the last copy: a parser differential.
                    envelope
                        .errors
                        .push(FieldError::new(pointer, "appears more than once"));
                } else {
                    envelope.field = Some(value);
                }
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
                envelope
                    .errors
                    .push(FieldError::new(pointer, "is not a known field"));
            }
        }
        Ok(envelope)
    }
}

/// Escapes a key for use in a JSON Pointer (RFC 6901 §3).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Parses and validates a `POST /predict` body.
pub fn parse_single(body: &[u8]) -> Result<Row, ApiError> {
    let Envelope { field, mut errors } = parse_envelope(body, "data")?;
    let row = match field {
        None => {
            errors.push(FieldError::new("/data", "is required"));
            None
        }
        Some(value) => check_row(&value, "/data", &mut errors),
    };
    match row {
        Some(row) if errors.is_empty() => Ok(row),
        _ => Err(errors.into_error()),
    }
}

/// Parses and validates a `POST /predict/batch` body: 1 to [`MAX_BATCH_ROWS`] rows. Any
/// invalid row rejects the whole request, with a pointer to every bad value.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Row>, ApiError> {
    let Envelope { field, mut errors } = parse_envelope(body, "instances")?;
    let instances = match field {
        Some(Value::Array(rows)) if errors.is_empty() => rows,
        Some(Value::Array(_)) => return Err(errors.into_error()),
        None => {
            errors.push(FieldError::new("/instances", "is required"));
            return Err(errors.into_error());
        }
        Some(_) => {
            errors.push(FieldError::new("/instances", "must be an array of rows"));
            return Err(errors.into_error());
        }
    };
    if instances.is_empty() {
        return Err(invalid("/instances", "must contain at least 1 row"));
    }
    if instances.len() > MAX_BATCH_ROWS {
        return Err(invalid(
            "/instances",
            format!(
                "must contain at most {MAX_BATCH_ROWS} rows, got {}",
                instances.len()
            ),
        ));
    }
    let rows: Vec<Option<Row>> = instances
        .iter()
        .enumerate()
        .map(|(i, value)| check_row(value, &format!("/instances/{i}"), &mut errors))
        .collect();
    if !errors.is_empty() {
        return Err(errors.into_error());
    }
    // No errors means every row was accepted.
    Ok(rows.into_iter().flatten().collect())
}

fn invalid(pointer: &str, detail: impl Into<String>) -> ApiError {
    let mut errors = FieldErrors::new();
    errors.push(FieldError::new(pointer, detail));
    errors.into_error()
}

fn parse_envelope(body: &[u8], field: &'static str) -> Result<Envelope, ApiError> {
    use serde::Deserializer as _;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let envelope = deserializer
        .deserialize_map(EnvelopeVisitor(field))
        .and_then(|envelope| deserializer.end().map(|()| envelope));
    envelope.map_err(|error| {
        if error.is_data() {
            // Well-formed JSON of the wrong shape: `null`, an array, a number.
            invalid(
                "",
                format!("the body must be a JSON object with the field `{field}`"),
            )
        } else {
            ApiError::MalformedJson {
                detail: error.to_string(),
            }
        }
    })
}

/// Checks one row at `pointer`, pushing every problem found. Returns the row when it is valid.
fn check_row(value: &Value, pointer: &str, errors: &mut FieldErrors) -> Option<Row> {
    let Value::Array(items) = value else {
        errors.push(FieldError::new(
            pointer,
            format!("must be an array of {N_FEATURES} numbers"),
        ));
        return None;
    };
    let before = errors.len();
    if items.len() != N_FEATURES {
        errors.push(FieldError::new(
            pointer,
            format!(
                "must contain exactly {N_FEATURES} numbers, got {}",
                items.len()
            ),
        ));
    }
    let mut row = [0.0; N_FEATURES];
    for (i, item) in items.iter().enumerate() {
        let item_pointer = || format!("{pointer}/{i}");
        match item.as_f64() {
            None => errors.push_with(|| FieldError::new(item_pointer(), "must be a number")),
            Some(x) if !x.is_finite() => {
                errors.push_with(|| FieldError::new(item_pointer(), "must be a finite number"))
            }
            Some(x) if x <= 0.0 || x > MAX_FEATURE_CM => errors.push_with(|| {
                FieldError::new(
                    item_pointer(),
                    format!(
                        "must be greater than 0 and at most {MAX_FEATURE_CM} (centimetres), got {}",
                        number(x)
                    ),
                )
            }),
            Some(x) => {
                if let Some(slot) = row.get_mut(i) {
                    *slot = x;
                }
            }
        }
    }
    (errors.len() == before).then_some(row)
}

/// A client's number as messages quote it: plain decimals for ordinary magnitudes, exponent
/// notation otherwise, so no value can make a message long (`{}` writes 5e-324 out as 326
/// characters: a 100-row batch of them would grow a 3 KB request into a 170 KB answer).
pub fn number(x: f64) -> String {
    if x == 0.0 || (1e-4..1e9).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_numbers_stay_short_whatever_the_value() {
        assert_eq!(number(5e-324), "5e-324");
        assert_eq!(number(-5e-324), "-5e-324");
        assert_eq!(number(1e300), "1e300");
        assert_eq!(number(150.0), "150");
        assert_eq!(number(-1.5), "-1.5");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(0.0), "0");
        for x in [
            f64::MIN_POSITIVE,
            f64::MAX,
            -f64::MAX,
            1.0 / 3.0,
            123_456_789.123,
            1e-5,
        ] {
            assert!(number(x).len() <= 24, "{x}: {}", number(x));
        }
    }

    #[test]
    fn a_batch_of_tiny_values_gets_a_short_answer() {
        let row = "[-5e-324, -5e-324, -5e-324, -5e-324]";
        let body = format!("{{\"instances\": [{}]}}", vec![row; 100].join(","));
        let problem = format!("{:?}", parse_batch(body.as_bytes()).unwrap_err());
        // One error per value (400 at most) with the value quoted briefly: bounded by the row
        // and feature limits, not by how the client spells its numbers.
        assert!(problem.contains("got -5e-324"), "{problem:.300}");
        assert!(problem.len() < 64 * 1024, "{} bytes", problem.len());
    }

    fn errors_of(result: Result<impl std::fmt::Debug, ApiError>) -> Vec<FieldError> {
        match result {
            Err(ApiError::Validation { errors, .. }) => errors,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn pointers(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.pointer.as_str()).collect()
    }

    #[test]
    fn accepts_the_tutorial_request_shape() {
        assert_eq!(
            parse_single(br#"{"data": [5.1, 3.5, 1.4, 0.2]}"#).unwrap(),
            [5.1, 3.5, 1.4, 0.2]
        );
    }

    #[test]
    fn accepts_integers_and_the_upper_bound() {
        assert_eq!(
            parse_single(br#"{"data": [5, 3, 1, 100]}"#).unwrap(),
            [5.0, 3.0, 1.0, 100.0]
        );
    }

    #[test]
    fn rejects_wrong_counts_with_a_pointer_to_data() {
        for body in [
            &br#"{"data": [1, 2, 3]}"#[..],
            br#"{"data": [1, 2, 3, 4, 5]}"#,
            br#"{"data": []}"#,
        ] {
            let errors = errors_of(parse_single(body));
            assert_eq!(pointers(&errors), ["/data"]);
            assert!(errors[0].detail.contains("exactly 4"));
        }
    }

    #[test]
    fn points_at_every_non_numeric_value() {
        let errors = errors_of(parse_single(
            br#"{"data": ["5.1", 3.5, "NaN", "Infinity"]}"#,
        ));
        assert_eq!(pointers(&errors), ["/data/0", "/data/2", "/data/3"]);
    }

    #[test]
    fn rejects_zero_negative_and_too_large_values() {
        let errors = errors_of(parse_single(br#"{"data": [0, -1.5, 100.01, 2]}"#));
        assert_eq!(pointers(&errors), ["/data/0", "/data/1", "/data/2"]);
    }

    #[test]
    fn rejects_nested_arrays_and_nulls() {
        let errors = errors_of(parse_single(br#"{"data": [[1], 2, null, {"a": 1}]}"#));
        assert_eq!(pointers(&errors), ["/data/0", "/data/2", "/data/3"]);
        let errors = errors_of(parse_single(br#"{"data": null}"#));
        assert_eq!(pointers(&errors), ["/data"]);
        let errors = errors_of(parse_single(br#"{"data": "5.1,3.5,1.4,0.2"}"#));
        assert_eq!(pointers(&errors), ["/data"]);
    }

    #[test]
    fn rejects_missing_unknown_and_duplicate_fields() {
        assert_eq!(pointers(&errors_of(parse_single(br#"{}"#))), ["/data"]);
        let errors = errors_of(parse_single(
            br#"{"data": [1, 2, 3, 4], "debug": true, "a/b": 1}"#,
        ));
        assert_eq!(pointers(&errors), ["/debug", "/a~1b"]);
        let errors = errors_of(parse_single(
            br#"{"data": [1, 2, 3, 4], "data": [5, 6, 7, 8]}"#,
        ));
        assert_eq!(pointers(&errors), ["/data"]);
        assert!(errors[0].detail.contains("more than once"), "{errors:?}");
        let errors = errors_of(parse_batch(
            br#"{"instances": [[1, 2, 3, 4]], "instances": []}"#,
        ));
        assert_eq!(pointers(&errors), ["/instances"]);
    }

    #[test]
    fn rejects_non_object_bodies_as_unprocessable() {
        for body in [&b"null"[..], b"[5.1, 3.5, 1.4, 0.2]", b"42", b"\"data\""] {
            assert_eq!(pointers(&errors_of(parse_single(body))), [""]);
        }
    }

    #[test]
    fn rejects_syntax_errors_and_overflowing_numbers_as_malformed() {
        for body in [
            &b"{"[..],
            b"not json",
            br#"{"data": [1e400, 1, 1, 1]}"#,
            br#"{"data": [NaN, 1, 1, 1]}"#,
        ] {
            assert!(
                matches!(parse_single(body), Err(ApiError::MalformedJson { .. })),
                "{body:?}"
            );
        }
    }

    #[test]
    fn batch_accepts_one_to_one_hundred_rows() {
        let one = parse_batch(br#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#).unwrap();
        assert_eq!(one.len(), 1);
        let rows = vec!["[6.3, 3.3, 6.0, 2.5]"; MAX_BATCH_ROWS].join(",");
        let hundred = parse_batch(format!(r#"{{"instances": [{rows}]}}"#).as_bytes()).unwrap();
        assert_eq!(hundred.len(), MAX_BATCH_ROWS);
    }

    #[test]
    fn batch_rejects_empty_and_oversized_batches() {
        assert_eq!(
            pointers(&errors_of(parse_batch(br#"{"instances": []}"#))),
            ["/instances"]
        );
        let rows = vec!["[1, 1, 1, 1]"; MAX_BATCH_ROWS + 1].join(",");
        let errors = errors_of(parse_batch(
            format!(r#"{{"instances": [{rows}]}}"#).as_bytes(),
        ));
        assert_eq!(pointers(&errors), ["/instances"]);
        assert!(errors[0].detail.contains("at most 100"));
    }

    #[test]
    fn batch_points_at_every_bad_value_in_every_row() {
        let body =
            br#"{"instances": [[5.1, 3.5, 1.4, 0.2], [1, "x", 1, 1], [1, 1, 1], [0, 1, 1, -1]]}"#;
        let errors = errors_of(parse_batch(body));
        assert_eq!(
            pointers(&errors),
            [
                "/instances/1/1",
                "/instances/2",
                "/instances/3/0",
                "/instances/3/3"
            ]
        );
    }

    #[test]
    fn batch_rejects_a_row_that_is_not_an_array() {
        let errors = errors_of(parse_batch(br#"{"instances": [5.1, 3.5, 1.4, 0.2]}"#));
        assert_eq!(
            pointers(&errors),
            [
                "/instances/0",
                "/instances/1",
                "/instances/2",
                "/instances/3"
            ]
        );
        let errors = errors_of(parse_batch(br#"{"instances": {"0": [1, 1, 1, 1]}}"#));
        assert_eq!(pointers(&errors), ["/instances"]);
    }
}
