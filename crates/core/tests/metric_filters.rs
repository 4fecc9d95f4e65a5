//! `template.yaml`'s metric filters run over the access lines the functions write: each metric
//! counts what it says, and every dimension value comes from a fixed set.
//!
//! The filter patterns are evaluated here by a small reading of CloudWatch's JSON pattern
//! syntax — `{ $.field OP value }` terms joined by `&&` or `||` (`&&` binding tighter), with
//! `=`, `!=`, `>`, `>=`, `<`, `<=` against a quoted string or a number. A pattern outside that
//! subset fails the test, so the filters cannot grow past what is checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use secure_ml_core::frame::access::{AccessRecord, Decision, rendered};
use secure_ml_core::ratelimit::Outcome;
use serde_json::Value;
use serde_yaml::Value as Yaml;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

struct Filter {
    log_group: String,
    pattern: String,
    metric: String,
    value: String,
    dimensions: Vec<(String, String)>,
}

fn filters() -> Vec<Filter> {
    let text = std::fs::read_to_string(format!("{ROOT}/template.yaml")).unwrap();
    let template: Yaml = serde_yaml::from_str(&text).unwrap();
    let mut filters = Vec::new();
    for (_, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"] != "AWS::Logs::MetricFilter" {
            continue;
        }
        let properties = &resource["Properties"];
        let log_group = match &properties["LogGroupName"] {
            Yaml::Tagged(tagged) if tagged.tag == "!Ref" => {
                tagged.value.as_str().unwrap().to_owned()
            }
            other => panic!("LogGroupName {other:?}"),
        };
        for transformation in properties["MetricTransformations"].as_sequence().unwrap() {
            assert_eq!(transformation["MetricNamespace"], "SecureMlApi");
            let dimensions = transformation["Dimensions"]
                .as_sequence()
                .map(|dims| {
                    dims.iter()
                        .map(|d| {
                            let key = d["Key"].as_str().unwrap().to_owned();
                            (key, d["Value"].as_str().unwrap().to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            filters.push(Filter {
                log_group: log_group.clone(),
                pattern: properties["FilterPattern"].as_str().unwrap().to_owned(),
                metric: transformation["MetricName"].as_str().unwrap().to_owned(),
                value: transformation["MetricValue"].as_str().unwrap().to_owned(),
                dimensions,
            });
        }
    }
    filters
}

/// The value a `$.field` selector reads from `line`.
fn select<'a>(line: &'a Value, selector: &str) -> Option<&'a Value> {
    let field = selector
        .strip_prefix("$.")
        .unwrap_or_else(|| panic!("unsupported selector {selector:?}"));
    assert!(
        field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "unsupported selector {selector:?}"
    );
    line.get(field)
}

fn term_matches(line: &Value, term: &str) -> bool {
    let term = term.trim();
    let (selector, op, literal) = ["!=", ">=", "<=", "=", ">", "<"]
        .iter()
        .find_map(|op| term.split_once(op).map(|(l, r)| (l.trim(), *op, r.trim())))
        .unwrap_or_else(|| panic!("unsupported term {term:?}"));
    let Some(value) = select(line, selector) else {
        return false;
    };
    if let Some(text) = literal.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        let equal = value.as_str() == Some(text);
        return match op {
            "=" => equal,
            "!=" => !equal,
            _ => panic!("{op} on a string in {term:?}"),
        };
    }
    let number: f64 = literal
        .parse()
        .unwrap_or_else(|_| panic!("unsupported literal in {term:?}"));
    let Some(actual) = value.as_f64() else {
        return false;
    };
    match op {
        "=" => actual == number,
        "!=" => actual != number,
        ">" => actual > number,
        ">=" => actual >= number,
        "<" => actual < number,
        "<=" => actual <= number,
        _ => unreachable!(),
    }
}

fn matches(line: &Value, pattern: &str) -> bool {
    let body = pattern
        .trim()
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a JSON pattern: {pattern:?}"));
    assert!(
        !body.contains('('),
        "parentheses are not supported: {pattern:?}"
    );
    body.split("||")
        .any(|any| any.split("&&").all(|term| term_matches(line, term)))
}

/// Metric (name and dimensions) → summed value, over `lines` of `log_group`.
fn metrics(log_group: &str, lines: &[Value]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for filter in filters().iter().filter(|f| f.log_group == log_group) {
        for line in lines.iter().filter(|l| matches(l, &filter.pattern)) {
            let value = match filter.value.as_str() {
                selector if selector.starts_with("$.") => {
                    select(line, selector).and_then(Value::as_f64).unwrap()
                }
                literal => literal.parse().unwrap(),
            };
            let dims: Vec<String> = filter
                .dimensions
                .iter()
                .map(|(key, selector)| {
                    let value = select(line, selector)
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| panic!("{} needs {selector} in {line}", filter.metric));
                    format!("{key}={value}")
                })
                .collect();
            let name = if dims.is_empty() {
                filter.metric.clone()
            } else {
                format!("{}[{}]", filter.metric, dims.join(","))
            };
            *out.entry(name).or_default() += value;
        }
    }
    out
}

fn record<'a>(route: &'static str, status: u16, decision: Option<Decision>) -> AccessRecord<'a> {
    AccessRecord {
        request_id: Some("8f5a9c1e-0000-4000-8000-000000000001"),
        ip: Some("203.0.113.7".parse().unwrap()),
        route,
        method: None,
        status,
        latency_ms: 2.0,
        client_id: None,
        decision,
        predictions: &[],
    }
}

fn lines(records: &[AccessRecord<'_>]) -> Vec<Value> {
    records
        .iter()
        .flat_map(|r| {
            rendered(r)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

const ADMIT: Option<Decision> = Some(Decision::Limiter(Outcome::Admitted));

#[test]
fn the_predict_functions_metrics_count_what_they_say() {
    let single = [("setosa".to_owned(), 1)];
    let mixed = [("setosa".to_owned(), 2), ("virginica".to_owned(), 1)];
    let records = [
        AccessRecord {
            predictions: &single,
            ..record("/predict", 200, ADMIT)
        },
        AccessRecord {
            predictions: &mixed,
            ..record("/predict/batch", 200, ADMIT)
        },
        record("/predict", 429, Some(Decision::Limiter(Outcome::Refused))),
        record(
            "/predict",
            200,
            Some(Decision::Limiter(Outcome::ShadowRefused)),
        ),
        record(
            "/predict",
            503,
            Some(Decision::Limiter(Outcome::Unavailable)),
        ),
        record(
            "/predict",
            200,
            Some(Decision::Limiter(Outcome::FailedOpen)),
        ),
        record("/predict", 401, None),
        record("/model", 403, None),
        record("unmatched", 429, Some(Decision::Penalty)),
        AccessRecord {
            method: Some("GET"),
            ..record("unmatched", 404, None)
        },
        record("/health", 200, None),
    ];
    let measured = metrics("PredictLogs", &lines(&records));
    let expected: BTreeMap<String, f64> = [
        ("Latency[route=/predict]", 12.0),
        ("Latency[route=/predict/batch]", 2.0),
        ("Latency[route=/model]", 2.0),
        ("Latency[route=/health]", 2.0),
        ("Latency[route=unmatched]", 4.0),
        ("Predictions[label=setosa]", 3.0),
        ("Predictions[label=virginica]", 1.0),
        ("RateLimitRefusals", 1.0),
        ("RateLimitShadowRefusals", 1.0),
        ("DynamoDbErrors", 2.0),
        ("AuthFailures", 2.0),
        ("ServerErrors", 1.0),
        ("PenaltyRefusals", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(measured, expected);
}

#[test]
fn the_token_functions_metrics_count_what_they_say() {
    let records = [
        record("/token", 200, ADMIT),
        record("/token", 401, ADMIT),
        record("/token", 429, Some(Decision::Limiter(Outcome::Refused))),
        record("/.well-known/jwks.json", 200, None),
    ];
    let measured = metrics("TokenLogs", &lines(&records));
    let expected: BTreeMap<String, f64> = [
        ("Latency[route=/token]", 6.0),
        ("Latency[route=/.well-known/jwks.json]", 2.0),
        ("RateLimitRefusals", 1.0),
        ("AuthFailures", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(measured, expected);
}

#[test]
fn the_alarms_watch_metrics_that_a_filter_publishes() {
    let text = std::fs::read_to_string(format!("{ROOT}/template.yaml")).unwrap();
    let template: Yaml = serde_yaml::from_str(&text).unwrap();
    let published: Vec<String> = filters().into_iter().map(|f| f.metric).collect();
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"] == "AWS::CloudWatch::Alarm"
            && resource["Properties"]["Namespace"] == "SecureMlApi"
        {
            let metric = resource["Properties"]["MetricName"].as_str().unwrap();
            assert!(
                published.iter().any(|m| m == metric),
                "alarm {name:?} watches {metric}, which no metric filter publishes"
            );
        }
    }
}
