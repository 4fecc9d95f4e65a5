//! The one line a request leaves: its access log, from which CloudWatch derives its metrics.
//!
//! ```text
//! {"level":"INFO","message":"request","requestId":"8f5a…","ip":"203.0.113.7","route":"/predict",
//!  "status":200,"latency_ms":0.412,"client_id":"cl_…","decision":"admit","label":"setosa","predictions":1}
//! ```
//!
//! About 260 bytes for a prediction. The metrics — `Latency` per `route` (its sample count is
//! the request count), `Predictions` per `label`, and the service-wide `RateLimitRefusals`,
//! `RateLimitShadowRefusals`, `DynamoDbErrors`, `AuthFailures`, `ServerErrors`,
//! `PenaltyRefusals` — are extracted from these fields by the metric filters `template.yaml`
//! puts on each function's log group (a test in `crates/core/tests/metric_filters.rs` runs
//! those filters over lines written here). Why not an Embedded Metric Format block on each
//! line: its directive alone is ~140 bytes, and log ingestion is the only part of a request's
//! price this code decides; with it a prediction's logs cost more than the rest of the target
//! of $2.00 per million predictions leaves (`make bench`'s cost table has the arithmetic).
//!
//! Every metric dimension comes from a fixed set: `route` is a route template of the function
//! or `unmatched` (never the requested path), `label` is one of the model's labels. So nothing
//! a caller sends can create a new metric. The line's size is bounded too: every field is a
//! constant, a number, a label, the request id, the caller's address (its rate-limit key), or a
//! client id of our own shape (a presented client id that does not look like one of ours is
//! never logged).
//!
//! A batch whose rows got different labels adds one short line per further label (at most the
//! model's label count), since a metric filter reads one label per line.

use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::ratelimit::{ClientKey, Outcome};

/// What decided a request's fate besides its route: the rate limiter, or this instance's
/// penalty for a source that keeps being rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Limiter(Outcome),
    Penalty,
}

impl Decision {
    /// The access log's `decision`; the template's metric filters count some of them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Limiter(outcome) => outcome.as_str(),
            Self::Penalty => "penalty",
        }
    }
}

/// Everything the access line says about one request.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    pub request_id: Option<&'a str>,
    /// The caller's rate-limit key (an IPv4 address or an IPv6 /64), when it has one.
    pub ip: Option<ClientKey>,
    /// A route template, or [`super::route::UNMATCHED`].
    pub route: &'static str,
    /// Only for requests that matched no route or the wrong method (405): the method sent,
    /// when it is a standard one, else `other`.
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

    /// Writes the record's lines.
    pub fn write(&self, record: &AccessRecord<'_>) {
        if matches!(self, Self::Off) {
            return;
        }
        let mut out = Vec::with_capacity(320);
        record.render(&mut out);
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
struct Line<'a> {
    level: &'static str,
    message: &'static str,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    predictions: Option<u32>,
}

impl AccessRecord<'_> {
    /// The access line, and one line per further label of a mixed batch.
    fn render(&self, out: &mut Vec<u8>) {
        let mut labels = self.predictions.iter();
        let first = labels.next();
        write_line(
            out,
            &Line {
                level: "INFO",
                message: "request",
                request_id: self.request_id,
                ip: self.ip.map(|key| key.to_string()),
                route: self.route,
                method: self.method,
                status: Some(self.status),
                latency_ms: Some((self.latency_ms * 1e3).round() / 1e3),
                client_id: self.client_id,
                decision: self.decision.map(Decision::as_str),
                label: first.map(|(label, _)| label.as_str()),
                predictions: first.map(|(_, rows)| *rows),
            },
        );
        for (label, rows) in labels {
            write_line(
                out,
                &Line {
                    level: "INFO",
                    message: "predictions",
                    request_id: self.request_id,
                    ip: None,
                    route: self.route,
                    method: None,
                    status: None,
                    latency_ms: None,
                    client_id: None,
                    decision: None,
                    label: Some(label),
                    predictions: Some(*rows),
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

/// The lines a record renders (tests of what the metric filters see).
pub fn rendered(record: &AccessRecord<'_>) -> String {
    let mut out = Vec::new();
    record.render(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn lines(record: &AccessRecord<'_>) -> Vec<Value> {
        rendered(record)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn prediction<'a>(predictions: &'a [(String, u32)]) -> AccessRecord<'a> {
        AccessRecord {
            request_id: Some("8f5a9c1e-0000-4000-8000-000000000001"),
            ip: Some("203.0.113.7".parse().unwrap()),
            route: "/predict",
            method: None,
            status: 200,
            latency_ms: 0.4123,
            client_id: Some("cl_00112233445566778899aabbccddeeff"),
            decision: Some(Decision::Limiter(Outcome::Admitted)),
            predictions,
        }
    }

    #[test]
    fn a_prediction_is_one_short_line_with_its_access_fields() {
        let predictions = [("versicolor".to_owned(), 1)];
        let text = rendered(&prediction(&predictions));
        assert_eq!(text.lines().count(), 1);
        assert!(text.len() <= 280, "{} bytes: {text}", text.len());
        let line = &lines(&prediction(&predictions))[0];
        assert_eq!(line["message"], "request");
        assert_eq!(line["requestId"], "8f5a9c1e-0000-4000-8000-000000000001");
        assert_eq!(line["ip"], "203.0.113.7");
        assert_eq!(line["route"], "/predict");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 0.412);
        assert_eq!(line["decision"], "admit");
        assert_eq!(line["label"], "versicolor");
        assert_eq!(line["predictions"], 1);
        assert!(line.get("method").is_none());
    }

    #[test]
    fn an_ipv6_caller_is_logged_as_its_64() {
        let mut record = prediction(&[]);
        record.ip = Some("2001:db8:1:2:3:4:5:6".parse().unwrap());
        assert_eq!(lines(&record)[0]["ip"], "2001:db8:1:2::/64");
    }

    #[test]
    fn a_mixed_batch_adds_one_line_per_further_label() {
        let predictions = [("setosa".to_owned(), 2), ("virginica".to_owned(), 1)];
        let mut record = prediction(&predictions);
        record.route = "/predict/batch";
        let lines = lines(&record);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0]["label"].as_str(), lines[0]["predictions"].as_u64()),
            (Some("setosa"), Some(2))
        );
        assert_eq!(
            (lines[1]["label"].as_str(), lines[1]["predictions"].as_u64()),
            (Some("virginica"), Some(1))
        );
        assert_eq!(lines[1]["message"], "predictions");
        assert_eq!(lines[1]["route"], "/predict/batch");
    }

    #[test]
    fn decisions_have_stable_labels() {
        let labels: Vec<&str> = [
            Decision::Limiter(Outcome::Admitted),
            Decision::Limiter(Outcome::Refused),
            Decision::Limiter(Outcome::ShadowRefused),
            Decision::Limiter(Outcome::FailedOpen),
            Decision::Limiter(Outcome::Unavailable),
            Decision::Penalty,
        ]
        .map(Decision::as_str)
        .into();
        assert_eq!(
            labels,
            [
                "admit",
                "refuse",
                "shadow-refuse",
                "fail-open",
                "unavailable",
                "penalty"
            ]
        );
    }
}
