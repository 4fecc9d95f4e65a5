//! Logging: JSON lines on stdout, which Lambda ships to CloudWatch Logs.
//!
//! Two kinds of line. The access line (`"message":"request"`, one per request, written by
//! `frame::access`) carries the request id, route, status, latency, client id and rate-limit
//! decision, and is also the request's metrics record. Everything else — init, warnings,
//! faults, and at DEBUG every rate-limit decision — goes through `tracing` with Lambda's
//! standard fields: `timestamp` (RFC 3339, UTC), `level`, `message`, and during an invocation
//! `span` with its `requestId` and `xrayTraceId` (the span lambda_runtime opens per
//! invocation). Nothing logs the `Authorization` header, a token, a secret or a key: the
//! handlers never pass them to a log macro.

use tracing_subscriber::EnvFilter;

use crate::config::{self, ConfigError, Vars};
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

/// Installs the JSON log subscriber with the `RUST_LOG` filter. A malformed filter is a
/// configuration error (init stops, naming it); the default filter is installed anyway, so that
/// error is logged like any other.
pub fn init(vars: &Vars) -> Result<(), ConfigError> {
    let (filter, error) = match log_filter(vars) {
        Ok(filter) => (filter, None),
        Err(error) => (EnvFilter::new("info"), Some(error)),
    };
    // `try_init` fails only when a subscriber is already installed (tests): that one wins.
    let _ = subscriber(filter).try_init();
    error.map_or(Ok(()), Err)
}

/// The `RUST_LOG` filter (`info` unless set).
pub fn log_filter(vars: &Vars) -> Result<EnvFilter, ConfigError> {
    let directive = vars.required(&config::RUST_LOG)?;
    EnvFilter::try_new(directive)
        .map_err(|e| ConfigError::invalid(&config::RUST_LOG, format!("{e} (got {directive:?})")))
}

/// Whether `RUST_LOG` lets the per-request access line (level INFO) through.
pub fn access_log_enabled(vars: &Vars) -> bool {
    log_filter(vars).is_ok_and(|filter| {
        filter
            .max_level_hint()
            .is_none_or(|level| level >= tracing::level_filters::LevelFilter::INFO)
    })
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

/// Namespace of every metric the template's metric filters derive from the access lines.
pub const METRICS_NAMESPACE: &str = "SecureMlApi";

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
    fn a_malformed_log_filter_names_rust_log() {
        let vars = Vars::from_pairs([("RUST_LOG", "info,[")]);
        assert!(
            log_filter(&vars)
                .unwrap_err()
                .to_string()
                .contains("RUST_LOG")
        );
        assert!(!access_log_enabled(&vars));
    }

    #[test]
    fn the_access_line_follows_the_log_level() {
        assert!(access_log_enabled(&Vars::default()));
        assert!(access_log_enabled(&Vars::from_pairs([(
            "RUST_LOG", "debug"
        )])));
        assert!(!access_log_enabled(&Vars::from_pairs([(
            "RUST_LOG", "warn"
        )])));
    }
}
