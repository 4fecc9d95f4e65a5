//! Logging: JSON lines on stdout, which Lambda ships to CloudWatch Logs.
//!
//! Every log line is a JSON object; request handlers add `route`, `status`, `latency_ms`,
//! `client_id` and the rate-limit `decision` as fields. Nothing logs the `Authorization`
//! header, a token, a secret or a key: the handlers never pass them to a log macro.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the JSON log subscriber. `filter` is an `EnvFilter` directive such as `info`
/// (read from `RUST_LOG` by `main`, which owns the environment).
pub fn init(filter: Option<&str>) {
    let filter =
        EnvFilter::try_new(filter.unwrap_or("info")).unwrap_or_else(|_| EnvFilter::new("info"));
    // `try_init` fails only when a subscriber is already installed (tests): that one wins.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_span_events(FmtSpan::NONE)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}
