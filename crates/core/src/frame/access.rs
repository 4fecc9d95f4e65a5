//! The one line a request leaves: the access log and its CloudWatch metrics in one JSON object.
//!
//! ```text
//! {"level":"INFO","message":"request","requestId":"8f5a…","route":"/predict","status":200,
//!  "latency_ms":0.412,"client_id":"cl_…","decision":"admit","label":"setosa",
//!  "_aws":{"Timestamp":…,"CloudWatchMetrics":[
//!    {"Namespace":"SecureMlApi","Dimensions":[["route"]],"Metrics":[{"Name":"latency_ms","Unit":"Milliseconds"}]},
//!    {"Namespace":"SecureMlApi","Dimensions":[["label"]],"Metrics":[{"Name":"Predictions"}]}]},
//!  "Predictions":1}
//! ```
//!
//! The `_aws` member makes the line an Embedded Metric Format record: CloudWatch Logs extracts
//! the metrics from it, with no API call and no permission. The metrics reference the access
//! fields themselves (`latency_ms` per `route`, whose sample count is the request count), so
//! nothing is written twice. Counters that only some requests have — `Predictions` per
//! `label`, and the service-wide `RateLimitRefusals`, `RateLimitShadowRefusals`,
//! `DynamoDbErrors`, `AuthFailures`, `ServerErrors`, `PenaltyRefusals` — appear only on those
//! lines.
//!
//! Every dimension value comes from a fixed set: `route` is a route template of the function
//! or `unmatched` (never the requested path), `label` is one of the model's labels. So nothing
//! a caller sends can create a new metric. The line's size is bounded too: every field is a
//! constant, a number, a label, a request id, or a client id of our own shape (a presented
//! client id that does not look like one of ours is never logged).
//!
//! A batch whose rows got different labels adds one short line per further label (at most
//! the model's label count): one label value per line is what EMF allows.

use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::ratelimit::Outcome;
use crate::telemetry::METRICS_NAMESPACE;

/// What decided a request's fate besides its route: the rate limiter, or this instance's
/// penalty for a source that keeps being rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Limiter(Outcome),
    Penalty,
}

impl Decision {
    /// The access log's `decision`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Limiter(outcome) => outcome.as_str(),
            Self::Penalty => "penalty",
        }
    }

    /// The service-wide counter this decision adds to, if any.
    fn counter(self) -> Option<&'static str> {
        match self {
            Self::Limiter(Outcome::Refused) => Some("RateLimitRefusals"),
            Self::Limiter(Outcome::ShadowRefused) => Some("RateLimitShadowRefusals"),
            Self::Limiter(Outcome::FailedOpen | Outcome::Unavailable) => Some("DynamoDbErrors"),
            Self::Limiter(Outcome::Admitted) => None,
            Self::Penalty => Some("PenaltyRefusals"),
        }
    }
}

/// Everything the access line says about one request.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    pub request_id: Option<&'a str>,
    /// A route template, or [`super::route::UNMATCHED`].
    pub route: &'static str,
    /// Only for requests that matched no route or the wrong method (405): the method sent,
    /// when it is a standard one.
    pub method: Option<&'static str>,
    pub status: u16,
    pub latency_ms: f64,
    pub client_id: Option<&'a str>,
    pub decision: Option<Decision>,
    /// Rows predicted per label.
    pub predictions: &'a [(String, u32)],
}

/// Where access lines go: stdout (Lambda ships it to CloudWatch Logs), or memory (tests).
#[derive(Debug, Clone)]
pub enum Sink {
    Stdout,
    Memory(Arc<Mutex<Vec<u8>>>),
    /// Nowhere (`RUST_LOG` above `info`).
    Off,
    /// Formatted, then dropped: what a line costs without the write (benchmarks).
    Discard,
}

impl Sink {
    /// A sink that keeps what is written, and a handle to read it.
    pub fn memory() -> (Self, Arc<Mutex<Vec<u8>>>) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        (Self::Memory(buffer.clone()), buffer)
    }

    /// Writes the record's lines at `timestamp_ms` (epoch).
    pub fn write(&self, record: &AccessRecord<'_>, timestamp_ms: u128) {
        if matches!(self, Self::Off) {
            return;
        }
        let mut out = Vec::with_capacity(512);
        record.render(timestamp_ms, &mut out);
        match self {
            Self::Stdout => {
                // One write of whole lines: concurrent invocations never interleave within one.
                let _ = std::io::stdout().lock().write_all(&out);
            }
            Self::Memory(buffer) => buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(&out),
            Self::Off | Self::Discard => {}
        }
    }
}

#[derive(Serialize)]
struct MetricDef {
    #[serde(rename = "Name")]
    name: &'static str,
    #[serde(rename = "Unit", skip_serializing_if = "Option::is_none")]
    unit: Option<&'static str>,
}

#[derive(Serialize)]
struct Directive {
    #[serde(rename = "Namespace")]
    namespace: &'static str,
    #[serde(rename = "Dimensions")]
    dimensions: &'static [&'static [&'static str]],
    #[serde(rename = "Metrics")]
    metrics: Vec<MetricDef>,
}

#[derive(Serialize)]
struct Emf {
    #[serde(rename = "Timestamp")]
    timestamp: u128,
    #[serde(rename = "CloudWatchMetrics")]
    directives: Vec<Directive>,
}

#[derive(Serialize)]
struct Line<'a> {
    level: &'static str,
    message: &'static str,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    route: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'a str>,
    #[serde(rename = "_aws")]
    emf: Emf,
    #[serde(flatten)]
    counters: Counters,
}

/// Metric values as top-level members (`"Predictions": 3`).
struct Counters(Vec<(&'static str, u32)>);

impl Serialize for Counters {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

const BY_ROUTE: &[&[&str]] = &[&["route"]];
const BY_LABEL: &[&[&str]] = &[&["label"]];
const SERVICE_WIDE: &[&[&str]] = &[&[]];

fn directive(dimensions: &'static [&'static [&'static str]], metrics: Vec<MetricDef>) -> Directive {
    Directive {
        namespace: METRICS_NAMESPACE,
        dimensions,
        metrics,
    }
}

fn counter(name: &'static str) -> MetricDef {
    MetricDef { name, unit: None }
}

impl AccessRecord<'_> {
    /// The service-wide counters this request adds to.
    fn counters(&self) -> Vec<&'static str> {
        let mut counters: Vec<&'static str> = self
            .decision
            .and_then(Decision::counter)
            .into_iter()
            .collect();
        if matches!(self.status, 401 | 403) {
            counters.push("AuthFailures");
        }
        if self.status >= 500 {
            counters.push("ServerErrors");
        }
        counters
    }

    /// The access line, and one line per further label of a mixed batch.
    fn render(&self, timestamp_ms: u128, out: &mut Vec<u8>) {
        let service_wide = self.counters();
        let mut directives = vec![directive(
            BY_ROUTE,
            vec![MetricDef {
                name: "latency_ms",
                unit: Some("Milliseconds"),
            }],
        )];
        if !service_wide.is_empty() {
            directives.push(directive(
                SERVICE_WIDE,
                service_wide.iter().map(|c| counter(c)).collect(),
            ));
        }
        let mut counters: Vec<(&'static str, u32)> = service_wide.iter().map(|c| (*c, 1)).collect();
        let mut labels = self.predictions.iter();
        let first = labels.next();
        if let Some((_, rows)) = first {
            directives.push(directive(BY_LABEL, vec![counter("Predictions")]));
            counters.push(("Predictions", *rows));
        }
        write_line(
            out,
            &Line {
                level: "INFO",
                message: "request",
                request_id: self.request_id,
                route: self.route,
                method: self.method,
                status: Some(self.status),
                latency_ms: Some((self.latency_ms * 1e3).round() / 1e3),
                client_id: self.client_id,
                decision: self.decision.map(Decision::as_str),
                label: first.map(|(label, _)| label.as_str()),
                emf: Emf {
                    timestamp: timestamp_ms,
                    directives,
                },
                counters: Counters(counters),
            },
        );
        for (label, rows) in labels {
            write_line(
                out,
                &Line {
                    level: "INFO",
                    message: "predictions",
                    request_id: self.request_id,
                    route: self.route,
                    method: None,
                    status: None,
                    latency_ms: None,
                    client_id: None,
                    decision: None,
                    label: Some(label),
                    emf: Emf {
                        timestamp: timestamp_ms,
                        directives: vec![directive(BY_LABEL, vec![counter("Predictions")])],
                    },
                    counters: Counters(vec![("Predictions", *rows)]),
                },
            );
        }
    }
}

fn write_line(out: &mut Vec<u8>, line: &Line<'_>) {
    // Serialising plain strings and numbers cannot fail; a failure would only lose the line.
    if serde_json::to_writer(&mut *out, line).is_ok() {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn lines(record: &AccessRecord<'_>) -> Vec<Value> {
        let mut out = Vec::new();
        record.render(1_795_444_200_000, &mut out);
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn prediction<'a>(predictions: &'a [(String, u32)]) -> AccessRecord<'a> {
        AccessRecord {
            request_id: Some("8f5a9c1e-0000-4000-8000-000000000001"),
            route: "/predict",
            method: None,
            status: 200,
            latency_ms: 0.4123,
            client_id: Some("cl_00112233445566778899aabbccddeeff"),
            decision: Some(Decision::Limiter(Outcome::Admitted)),
            predictions,
        }
    }

    /// Every metric a directive names is a top-level number, every dimension a string.
    fn assert_valid_emf(line: &Value) {
        for directive in line["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            assert_eq!(directive["Namespace"], "SecureMlApi");
            for set in directive["Dimensions"].as_array().unwrap() {
                for name in set.as_array().unwrap() {
                    assert!(line[name.as_str().unwrap()].is_string(), "{line}");
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                assert!(line[metric["Name"].as_str().unwrap()].is_number(), "{line}");
            }
        }
    }

    #[test]
    fn a_prediction_is_one_line_with_its_access_fields_and_metrics() {
        let predictions = [("setosa".to_owned(), 1)];
        let lines = lines(&prediction(&predictions));
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_valid_emf(line);
        assert_eq!(line["message"], "request");
        assert_eq!(line["requestId"], "8f5a9c1e-0000-4000-8000-000000000001");
        assert_eq!(line["route"], "/predict");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 0.412);
        assert_eq!(line["decision"], "admit");
        assert_eq!(line["label"], "setosa");
        assert_eq!(line["Predictions"], 1);
        assert!(line.get("AuthFailures").is_none());
    }

    #[test]
    fn a_mixed_batch_adds_one_line_per_further_label() {
        let predictions = [("setosa".to_owned(), 2), ("virginica".to_owned(), 1)];
        let mut record = prediction(&predictions);
        record.route = "/predict/batch";
        let lines = lines(&record);
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert_valid_emf(line);
        }
        assert_eq!(
            (lines[0]["label"].as_str(), lines[0]["Predictions"].as_u64()),
            (Some("setosa"), Some(2))
        );
        assert_eq!(
            (lines[1]["label"].as_str(), lines[1]["Predictions"].as_u64()),
            (Some("virginica"), Some(1))
        );
        assert_eq!(lines[1]["message"], "predictions");
    }

    #[test]
    fn refusals_faults_and_auth_failures_are_service_wide_counters() {
        let cases = [
            (
                429,
                Some(Decision::Limiter(Outcome::Refused)),
                "RateLimitRefusals",
            ),
            (
                200,
                Some(Decision::Limiter(Outcome::ShadowRefused)),
                "RateLimitShadowRefusals",
            ),
            (
                503,
                Some(Decision::Limiter(Outcome::Unavailable)),
                "DynamoDbErrors",
            ),
            (
                200,
                Some(Decision::Limiter(Outcome::FailedOpen)),
                "DynamoDbErrors",
            ),
            (429, Some(Decision::Penalty), "PenaltyRefusals"),
            (401, None, "AuthFailures"),
            (403, None, "AuthFailures"),
            (503, None, "ServerErrors"),
        ];
        for (status, decision, counter) in cases {
            let record = AccessRecord {
                status,
                decision,
                ..prediction(&[])
            };
            let line = &lines(&record)[0];
            assert_valid_emf(line);
            assert_eq!(line[counter], 1, "{line}");
            let service_wide = line["_aws"]["CloudWatchMetrics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["Dimensions"] == serde_json::json!([[]]))
                .expect("a directive without dimensions");
            assert!(service_wide["Metrics"].to_string().contains(counter));
        }
    }
}
