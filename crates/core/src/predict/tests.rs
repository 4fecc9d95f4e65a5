//! The request contract over models made up here: what a body may look like follows the
//! features handed to [`RequestSchema::new`], never a constant.

use super::*;
use crate::problem::MAX_LISTED_ERRORS;

/// Four bounded features with a unit, as a model trained on measurements has them.
fn bounded() -> RequestSchema {
    let features: Vec<Feature> = ["length", "width", "height", "depth"]
        .into_iter()
        .map(|name| Feature {
            unit: Some("cm".to_owned()),
            exclusive_minimum: Some(0.0),
            maximum: Some(100.0),
            training_min: Some(1.0),
            training_max: Some(10.0),
            ..Feature::named(name)
        })
        .collect();
    RequestSchema::new(&features)
}

/// Three features without bounds or units, named as JSON Pointers need escaping.
fn unbounded() -> RequestSchema {
    RequestSchema::new(&[
        Feature::named("a/b"),
        Feature::named("c~d"),
        Feature::named("plain"),
    ])
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
    let problem = format!("{:?}", bounded().parse_batch(body.as_bytes()).unwrap_err());
    // One error per value (400 at most) with the value quoted briefly: bounded by the row
    // and feature limits, not by how the client spells its numbers.
    assert!(problem.contains("got -5e-324"), "{problem:.300}");
    assert!(problem.len() < 64 * 1024, "{} bytes", problem.len());
}

mod arrays {
    use super::*;

    #[test]
    fn accepts_the_features_in_order() {
        assert_eq!(
            bounded()
                .parse_single(br#"{"data": [5.1, 3.5, 1.4, 0.2]}"#)
                .unwrap(),
            [5.1, 3.5, 1.4, 0.2]
        );
    }

    #[test]
    fn accepts_integers_and_the_upper_bound() {
        assert_eq!(
            bounded()
                .parse_single(br#"{"data": [5, 3, 1, 100]}"#)
                .unwrap(),
            [5.0, 3.0, 1.0, 100.0]
        );
    }

    #[test]
    fn without_bounds_any_finite_number_is_accepted() {
        assert_eq!(
            unbounded()
                .parse_single(br#"{"data": [-1e300, 0, 1.5e300]}"#)
                .unwrap(),
            [-1e300, 0.0, 1.5e300]
        );
    }

    #[test]
    fn rejects_wrong_counts_with_a_pointer_to_data() {
        let schema = bounded();
        for body in [
            &br#"{"data": [1, 2, 3]}"#[..],
            br#"{"data": [1, 2, 3, 4, 5]}"#,
            br#"{"data": []}"#,
        ] {
            let errors = errors_of(schema.parse_single(body));
            assert_eq!(pointers(&errors), ["/data"]);
            assert!(errors[0].detail.contains("exactly 4 numbers"), "{errors:?}");
        }
        let errors = errors_of(unbounded().parse_single(br#"{"data": [1]}"#));
        assert!(errors[0].detail.contains("exactly 3 numbers"), "{errors:?}");
    }

    #[test]
    fn points_at_every_non_numeric_value_and_names_its_feature() {
        let errors =
            errors_of(bounded().parse_single(br#"{"data": ["5.1", 3.5, "NaN", "Infinity"]}"#));
        assert_eq!(pointers(&errors), ["/data/0", "/data/2", "/data/3"]);
        assert_eq!(errors[0].detail, "length must be a number, got a string");
        assert!(errors[1].detail.starts_with("height "), "{errors:?}");
    }

    #[test]
    fn range_errors_name_the_feature_its_bounds_and_unit() {
        let errors = errors_of(bounded().parse_single(br#"{"data": [0, -1.5, 100.01, 2]}"#));
        assert_eq!(pointers(&errors), ["/data/0", "/data/1", "/data/2"]);
        assert_eq!(
            errors[0].detail,
            "length must be greater than 0 and at most 100 (cm), got 0"
        );
        assert_eq!(
            errors[2].detail,
            "height must be greater than 0 and at most 100 (cm), got 100.01"
        );
    }

    #[test]
    fn one_sided_and_inclusive_bounds_read_as_such() {
        let schema = RequestSchema::new(&[
            Feature {
                minimum: Some(0.0),
                ..Feature::named("count")
            },
            Feature {
                exclusive_maximum: Some(1.0),
                unit: Some("fraction".to_owned()),
                ..Feature::named("share")
            },
        ]);
        let errors = errors_of(schema.parse_single(br#"{"data": [-1, 1]}"#));
        assert_eq!(errors[0].detail, "count must be at least 0, got -1");
        assert_eq!(
            errors[1].detail,
            "share must be less than 1 (fraction), got 1"
        );
    }

    #[test]
    fn values_past_the_last_feature_are_counted_and_pointed_at_when_not_numbers() {
        let errors = errors_of(bounded().parse_single(br#"{"data": [1, 2, 3, 4, 5, "x"]}"#));
        assert_eq!(pointers(&errors), ["/data", "/data/5"]);
    }

    #[test]
    fn rejects_nested_arrays_and_nulls() {
        let schema = bounded();
        let errors = errors_of(schema.parse_single(br#"{"data": [[1], 2, null, {"a": 1}]}"#));
        assert_eq!(pointers(&errors), ["/data/0", "/data/2", "/data/3"]);
        let errors = errors_of(schema.parse_single(br#"{"data": null}"#));
        assert_eq!(pointers(&errors), ["/data"]);
        let errors = errors_of(schema.parse_single(br#"{"data": "5.1,3.5,1.4,0.2"}"#));
        assert_eq!(pointers(&errors), ["/data"]);
        assert!(errors[0].detail.contains("got a string"), "{errors:?}");
    }
}

mod named_features {
    use super::*;

    #[test]
    fn an_object_naming_every_feature_is_a_row_in_manifest_order() {
        let row = bounded()
            .parse_single(
                br#"{"data": {"depth": 0.2, "height": 1.4, "length": 5.1, "width": 3.5}}"#,
            )
            .unwrap();
        assert_eq!(row, [5.1, 3.5, 1.4, 0.2]);
    }

    #[test]
    fn names_that_need_escaping_are_features_like_any_other() {
        let schema = unbounded();
        let row = schema
            .parse_single(br#"{"data": {"plain": 3, "c~d": 2, "a/b": 1}}"#)
            .unwrap();
        assert_eq!(row, [1.0, 2.0, 3.0]);
        let errors = errors_of(schema.parse_single(br#"{"data": {"a/b": "x", "c~d": 2}}"#));
        assert_eq!(pointers(&errors), ["/data/a~1b", "/data/plain"]);
        assert_eq!(errors[0].detail, "a/b must be a number, got a string");
    }

    #[test]
    fn unknown_missing_and_repeated_names_are_each_pointed_at() {
        let errors = errors_of(bounded().parse_single(
            br#"{"data": {"length": 1, "length": 2, "colour": 3, "width": 0, "depth": 4}}"#,
        ));
        assert_eq!(
            pointers(&errors),
            [
                "/data/length",
                "/data/colour",
                "/data/width",
                "/data/height"
            ]
        );
        assert_eq!(errors[0].detail, "appears more than once");
        assert_eq!(errors[1].detail, "is not a feature of this model");
        assert!(errors[2].detail.starts_with("width must be greater than 0"));
        assert!(errors[3].detail.starts_with("is required"), "{errors:?}");
    }

    #[test]
    fn an_empty_object_lists_every_feature_as_required() {
        let errors = errors_of(bounded().parse_single(br#"{"data": {}}"#));
        assert_eq!(
            pointers(&errors),
            ["/data/length", "/data/width", "/data/height", "/data/depth"]
        );
    }

    #[test]
    fn a_long_unknown_name_is_reported_at_its_object_not_repeated() {
        let name = "/".repeat(8_000);
        let body = format!(r#"{{"data": {{"{name}": 1}}, "{name}": 2}}"#);
        let errors = errors_of(bounded().parse_single(body.as_bytes()));
        assert_eq!(pointers(&errors)[..2], ["", "/data"]);
        assert!(
            errors[1].detail.contains("8000 bytes"),
            "{}",
            errors[1].detail
        );
        let listed: usize = errors
            .iter()
            .map(|e| e.pointer.len() + e.detail.len())
            .sum();
        assert!(listed < 1_000, "{listed} bytes listed");
    }

    #[test]
    fn batch_rows_may_mix_both_shapes() {
        let rows = bounded()
            .parse_batch(
                br#"{"instances": [[1, 2, 3, 4], {"width": 6, "length": 5, "depth": 8, "height": 7}]}"#,
            )
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.width(), 4);
        assert_eq!(
            rows.iter().collect::<Vec<_>>(),
            [&[1.0, 2.0, 3.0, 4.0][..], &[5.0, 6.0, 7.0, 8.0][..]]
        );
        assert_eq!(rows.as_flat(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn a_wide_model_with_an_empty_object_lists_twenty_and_counts_the_rest() {
        let features: Vec<Feature> = (0..300).map(|i| Feature::named(format!("f{i}"))).collect();
        let response = RequestSchema::new(&features)
            .parse_single(br#"{"data": {}}"#)
            .unwrap_err();
        match &response {
            ApiError::Validation { errors, omitted } => {
                assert_eq!(errors.len(), MAX_LISTED_ERRORS);
                assert_eq!(*omitted, 280);
            }
            other => panic!("{other:?}"),
        }
    }
}

mod envelope {
    use super::*;

    #[test]
    fn rejects_missing_unknown_and_duplicate_fields() {
        let schema = bounded();
        assert_eq!(
            pointers(&errors_of(schema.parse_single(br#"{}"#))),
            ["/data"]
        );
        let errors =
            errors_of(schema.parse_single(br#"{"data": [1, 2, 3, 4], "debug": true, "a/b": 1}"#));
        assert_eq!(pointers(&errors), ["/debug", "/a~1b"]);
        let errors =
            errors_of(schema.parse_single(br#"{"data": [1, 2, 3, 4], "data": [5, 6, 7, 8]}"#));
        assert_eq!(pointers(&errors), ["/data"]);
        assert!(errors[0].detail.contains("more than once"), "{errors:?}");
        let errors =
            errors_of(schema.parse_batch(br#"{"instances": [[1, 2, 3, 4]], "instances": []}"#));
        assert_eq!(pointers(&errors), ["/instances"]);
    }

    #[test]
    fn rejects_non_object_bodies_as_unprocessable() {
        for body in [&b"null"[..], b"[5.1, 3.5, 1.4, 0.2]", b"42", b"\"data\""] {
            assert_eq!(pointers(&errors_of(bounded().parse_single(body))), [""]);
        }
    }

    #[test]
    fn rejects_syntax_errors_and_overflowing_numbers_as_malformed() {
        let deep = format!("{{\"data\": {}1{}}}", "[".repeat(200), "]".repeat(200));
        for body in [
            &b"{"[..],
            b"not json",
            br#"{"data": [1e400, 1, 1, 1]}"#,
            br#"{"data": [NaN, 1, 1, 1]}"#,
            br#"{"data": [1, 1, 1, 1]} trailing"#,
            deep.as_bytes(),
        ] {
            assert!(
                matches!(
                    bounded().parse_single(body),
                    Err(ApiError::MalformedJson { .. })
                ),
                "{body:?}"
            );
        }
    }
}

mod batches {
    use super::*;

    #[test]
    fn accepts_one_to_one_hundred_rows() {
        let schema = bounded();
        let one = schema
            .parse_batch(br#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#)
            .unwrap();
        assert_eq!(one.len(), 1);
        let rows = vec!["[6.3, 3.3, 6.0, 2.5]"; MAX_BATCH_ROWS].join(",");
        let hundred = schema
            .parse_batch(format!(r#"{{"instances": [{rows}]}}"#).as_bytes())
            .unwrap();
        assert_eq!(hundred.len(), MAX_BATCH_ROWS);
    }

    #[test]
    fn rejects_empty_and_oversized_batches() {
        let schema = bounded();
        assert_eq!(
            pointers(&errors_of(schema.parse_batch(br#"{"instances": []}"#))),
            ["/instances"]
        );
        let rows = vec!["[1, 1, 1, 1]"; MAX_BATCH_ROWS + 1].join(",");
        let errors =
            errors_of(schema.parse_batch(format!(r#"{{"instances": [{rows}]}}"#).as_bytes()));
        assert_eq!(pointers(&errors), ["/instances"]);
        assert!(errors[0].detail.contains("at most 100"));
    }

    #[test]
    fn points_at_every_bad_value_in_every_row() {
        let body =
            br#"{"instances": [[5.1, 3.5, 1.4, 0.2], [1, "x", 1, 1], [1, 1, 1], [0, 1, 1, -1]]}"#;
        let errors = errors_of(bounded().parse_batch(body));
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
    fn rejects_a_row_that_is_neither_an_array_nor_an_object() {
        let schema = bounded();
        let errors = errors_of(schema.parse_batch(br#"{"instances": [5.1, 3.5, 1.4, 0.2]}"#));
        assert_eq!(
            pointers(&errors),
            [
                "/instances/0",
                "/instances/1",
                "/instances/2",
                "/instances/3"
            ]
        );
        let errors = errors_of(schema.parse_batch(br#"{"instances": {"0": [1, 1, 1, 1]}}"#));
        assert_eq!(pointers(&errors), ["/instances"]);
    }
}
