//! Logging: JSON lines on stdout, which Lambda ships to CloudWatch Logs.
//!
//! Every log line is a JSON object with Lambda's standard fields — `timestamp` (RFC 3339, UTC),
//! `level`, `message` — and, during an invocation, `span` with its `requestId` and
//! `xrayTraceId` (the span lambda_runtime opens per invocation; Logs Insights:
//! `filter span.requestId = "…"`). Request handlers add `route`, `status`, `latency_ms`,
//! `client_id` and the rate-limit `decision` as top-level fields. Nothing logs the
//! `Authorization` header, a token, a secret or a key: the handlers never pass them to a log macro.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::SubscriberBuilder;
use tracing_subscriber::fmt::format::{FmtSpan, Format, Json, JsonFields};

/// The JSON log subscriber `init` installs, writing to stdout until `with_writer` says otherwise
/// (tests, benchmarks).
pub fn subscriber(filter: EnvFilter) -> SubscriberBuilder<JsonFields, Format<Json>, EnvFilter> {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_span_events(FmtSpan::NONE)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
}

/// Installs the JSON log subscriber. `filter` is an `EnvFilter` directive such as `info`
/// (read from `RUST_LOG` by `main`, which owns the environment).
pub fn init(filter: Option<&str>) {
    let filter =
        EnvFilter::try_new(filter.unwrap_or("info")).unwrap_or_else(|_| EnvFilter::new("info"));
    // `try_init` fails only when a subscriber is already installed (tests): that one wins.
    let _ = subscriber(filter).try_init();
}

/// Ends a function's init. On success it logs `init complete` with `init_ms` (once per instance:
/// counting these lines counts cold starts) and hands back what init built. On failure it logs
/// one ERROR line naming the problem and exits with status 1: Lambda reports the failed init
/// (`Runtime.ExitError`) and retries it on the next request. Returning the error from `main`
/// instead would print it a second time, outside the JSON logs.
pub fn finish_init<D>(started: std::time::Instant, outcome: Result<D, String>) -> D {
    match outcome {
        Ok(deps) => {
            tracing::info!(
                init_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "init complete"
            );
            deps
        }
        Err(message) => {
            tracing::error!(error = %message, "init failed");
            std::process::exit(1);
        }
    }
}

/// One CloudWatch Embedded Metric Format record: a JSON log line that CloudWatch Logs turns
/// into metrics without any API call (no extra latency, no IAM permission, no SDK).
///
/// ```text
/// {"_aws":{"Timestamp":…,"CloudWatchMetrics":[{"Namespace":"SecureMlApi",
///   "Dimensions":[["Service","Route"]],"Metrics":[{"Name":"Latency","Unit":"Milliseconds"}]}]},
///  "Service":"predict","Route":"/predict","Latency":0.42}
/// ```
///
/// Each record has one dimension set; counters that alarms watch across the whole service
/// (`RateLimitRefusals`, `DynamoDbErrors`) are published with an empty dimension set so an
/// alarm needs no dimensions.
#[derive(Debug, Clone)]
pub struct MetricRecord {
    namespace: &'static str,
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<(&'static str, &'static str, f64)>,
}

/// Namespace of every metric the functions publish.
pub const METRICS_NAMESPACE: &str = "SecureMlApi";

impl MetricRecord {
    /// A record with the given dimensions (name, value).
    pub fn new(dimensions: Vec<(&'static str, String)>) -> Self {
        Self {
            namespace: METRICS_NAMESPACE,
            dimensions,
            metrics: Vec::new(),
        }
    }

    /// Adds a metric value with its CloudWatch unit (`Count`, `Milliseconds`, …).
    #[must_use]
    pub fn metric(mut self, name: &'static str, unit: &'static str, value: f64) -> Self {
        self.metrics.push((name, unit, value));
        self
    }

    /// The EMF JSON object for this record at `timestamp_ms`.
    pub fn to_json(&self, timestamp_ms: u128) -> serde_json::Value {
        let mut root = serde_json::Map::new();
        let definitions: Vec<serde_json::Value> = self
            .metrics
            .iter()
            .map(|(name, unit, _)| serde_json::json!({ "Name": name, "Unit": unit }))
            .collect();
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(name, _)| *name).collect();
        root.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimension_names],
                    "Metrics": definitions,
                }],
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert((*name).into(), serde_json::Value::String(value.clone()));
        }
        for (name, _, value) in &self.metrics {
            root.insert((*name).into(), serde_json::json!(value));
        }
        serde_json::Value::Object(root)
    }

    /// Writes the record as one line on stdout, where Lambda collects it. Records without
    /// metrics are skipped.
    pub fn emit(&self) {
        if self.metrics.is_empty() {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        println!("{}", self.to_json(now));
    }
}

/// What one request contributes to the service's metrics.
#[derive(Debug, Clone, Default)]
pub struct RequestMetrics<'a> {
    pub service: &'static str,
    pub route: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    /// The rate-limit decision label, when the limiter ran.
    pub decision: Option<&'static str>,
    /// Predicted labels, one per row served.
    pub labels: Vec<&'a str>,
}

impl RequestMetrics<'_> {
    /// The EMF records for this request: latency and count per route; predictions per label;
    /// refusals, shadow refusals, auth failures and DynamoDB faults as service-wide counters.
    pub fn records(&self) -> Vec<MetricRecord> {
        let mut records = vec![
            MetricRecord::new(vec![
                ("Service", self.service.to_owned()),
                ("Route", self.route.to_owned()),
            ])
            .metric("Requests", "Count", 1.0)
            .metric("Latency", "Milliseconds", self.latency_ms)
            .metric(
                "ServerErrors",
                "Count",
                f64::from(u8::from(self.status >= 500)),
            ),
        ];
        let mut per_label: Vec<(&str, f64)> = Vec::new();
        for label in &self.labels {
            match per_label.iter_mut().find(|(l, _)| l == label) {
                Some((_, n)) => *n += 1.0,
                None => per_label.push((label, 1.0)),
            }
        }
        for (label, count) in per_label {
            records.push(MetricRecord::new(vec![("Label", label.to_owned())]).metric(
                "Predictions",
                "Count",
                count,
            ));
        }
        let mut service_wide = MetricRecord::new(Vec::new());
        match self.decision {
            Some("refuse") => service_wide = service_wide.metric("RateLimitRefusals", "Count", 1.0),
            Some("shadow-refuse") => {
                service_wide = service_wide.metric("RateLimitShadowRefusals", "Count", 1.0)
            }
            Some("fail-open") | Some("unavailable") => {
                service_wide = service_wide.metric("DynamoDbErrors", "Count", 1.0);
            }
            _ => {}
        }
        if self.status == 401 || self.status == 403 {
            service_wide = service_wide.metric("AuthFailures", "Count", 1.0);
        }
        if !service_wide.metrics.is_empty() {
            records.push(service_wide);
        }
        records
    }

    /// Emits every record of this request.
    pub fn emit(&self) {
        for record in self.records() {
            record.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_carry_lambdas_standard_fields_the_request_id_and_flat_event_fields() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer(Arc::new(Mutex::new(Vec::new())));
        let writer = buffer.clone();
        let subscriber = subscriber(EnvFilter::new("info"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any invocation");
            // The span lambda_runtime (layers/trace.rs) opens around every invocation.
            let invocation = tracing::info_span!(
                "Lambda runtime invoke",
                requestId = "8f5a9c1e-0000-4000-8000-000000000001",
                xrayTraceId = "Root=1-67890abc-0123456789abcdef01234567"
            );
            let _entered = invocation.enter();
            tracing::info!(
                route = "/predict",
                status = 200u16,
                latency_ms = 1.25,
                decision = "admit",
                "request"
            );
            tracing::debug!("below the filter");
        });

        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line is one JSON object"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            let timestamp = line["timestamp"].as_str().expect("timestamp");
            assert!(
                timestamp.len() >= 20
                    && timestamp.as_bytes()[10] == b'T'
                    && timestamp.ends_with('Z'),
                "RFC 3339 UTC: {timestamp}"
            );
            assert_eq!(line["level"], "INFO");
            assert!(
                line.get("target").is_none() && line.get("fields").is_none(),
                "{line}"
            );
        }
        assert_eq!(lines[0]["message"], "outside any invocation");
        assert!(lines[0].get("span").is_none(), "{}", lines[0]);

        let request = &lines[1];
        assert_eq!(request["message"], "request");
        assert_eq!(request["route"], "/predict");
        assert_eq!(request["status"], 200);
        assert_eq!(request["latency_ms"], 1.25);
        assert_eq!(request["decision"], "admit");
        assert_eq!(
            request["span"]["requestId"],
            "8f5a9c1e-0000-4000-8000-000000000001"
        );
        assert_eq!(
            request["span"]["xrayTraceId"],
            "Root=1-67890abc-0123456789abcdef01234567"
        );
    }

    #[test]
    fn emf_record_declares_every_metric_and_dimension_it_carries() {
        let json = MetricRecord::new(vec![
            ("Service", "predict".into()),
            ("Route", "/predict".into()),
        ])
        .metric("Latency", "Milliseconds", 1.5)
        .metric("Requests", "Count", 1.0)
        .to_json(1_795_444_200_000);
        let directive = &json["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(json["_aws"]["Timestamp"], 1_795_444_200_000u64);
        assert_eq!(directive["Namespace"], "SecureMlApi");
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["Service", "Route"]])
        );
        assert_eq!(
            directive["Metrics"],
            serde_json::json!([{"Name": "Latency", "Unit": "Milliseconds"}, {"Name": "Requests", "Unit": "Count"}])
        );
        // Every declared name resolves to a top-level member of the right type.
        assert_eq!(json["Service"], "predict");
        assert_eq!(json["Route"], "/predict");
        assert_eq!(json["Latency"], 1.5);
        assert_eq!(json["Requests"], 1.0);
    }

    #[test]
    fn service_wide_counters_use_an_empty_dimension_set() {
        let records = RequestMetrics {
            service: "predict",
            route: "/predict",
            status: 429,
            latency_ms: 0.1,
            decision: Some("refuse"),
            labels: vec![],
        }
        .records();
        let json = records.last().unwrap().to_json(0);
        assert_eq!(
            json["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([[]])
        );
        assert_eq!(json["RateLimitRefusals"], 1.0);
    }

    #[test]
    fn predictions_are_counted_per_label() {
        let records = RequestMetrics {
            service: "predict",
            route: "/predict/batch",
            status: 200,
            latency_ms: 0.1,
            decision: Some("admit"),
            labels: vec!["setosa", "virginica", "setosa"],
        }
        .records();
        let by_label: Vec<(String, f64)> = records
            .iter()
            .map(|r| r.to_json(0))
            .filter(|j| j.get("Label").is_some())
            .map(|j| {
                (
                    j["Label"].as_str().unwrap().to_owned(),
                    j["Predictions"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            by_label,
            [("setosa".to_owned(), 2.0), ("virginica".to_owned(), 1.0)]
        );
    }

    #[test]
    fn auth_failures_and_dynamodb_faults_are_counted() {
        let json = RequestMetrics {
            service: "token",
            route: "/token",
            status: 401,
            ..Default::default()
        }
        .records()
        .last()
        .unwrap()
        .to_json(0);
        assert_eq!(json["AuthFailures"], 1.0);
        let json = RequestMetrics {
            service: "predict",
            route: "/predict",
            status: 503,
            decision: Some("unavailable"),
            ..Default::default()
        }
        .records()
        .last()
        .unwrap()
        .to_json(0);
        assert_eq!(json["DynamoDbErrors"], 1.0);
    }
}
