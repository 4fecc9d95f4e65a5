//! The worst case: the most an anonymous caller — no valid token, no client secret, any number
//! of source IPs — can make the stack spend per hour at the template's API throttle.
//!
//! Every request that gets past API Gateway's stage throttle invokes a function, so the
//! throttle (`ApiThrottleRateLimit` per second, after a burst of `ApiThrottleBurstLimit`)
//! bounds the count; what each request costs is measured by the `rejections` scenario, per
//! kind of anonymous request. With a new source IP per request, neither the per-source penalty
//! nor the limiter's memory of refused keys spares any work, and `POST /token` charges the
//! limiter (one conditional write) before it reads a credential. The caller picks the kind
//! that costs most; this section prices that one, item by item, next to the parameter that
//! bounds each item.

use std::fmt::Write as _;

use super::format::{code, ms, spread_ms};
use super::summary::{Row, Verdict};
use super::{Inputs, Section, prices, template};
use crate::rejections::{Rejection, Rejections};

/// Dollars per hour, item by item, if every request were of one kind.
struct Hourly {
    api: f64,
    invocations: f64,
    duration: f64,
    writes: f64,
    reads: f64,
    logs: f64,
}

impl Hourly {
    fn of(r: &Rejection, requests: f64, memory_gb: f64) -> Self {
        Self {
            api: requests * prices::HTTP_API_M / 1e6,
            invocations: requests * prices::LAMBDA_REQUESTS_M / 1e6,
            duration: requests * r.billed_ms_mean / 1e3 * memory_gb * prices::LAMBDA_ARM_GB_S,
            writes: requests * r.update_items_per_request * prices::DDB_WRU_M / 1e6,
            reads: requests * r.get_items_per_request * prices::DDB_RRU_M / 1e6,
            logs: requests * r.log_bytes_per_request / 1e9 * prices::CW_LOGS_GB,
        }
    }

    fn total(&self) -> f64 {
        self.api + self.invocations + self.duration + self.writes + self.reads + self.logs
    }
}

/// The throttle and the requests it lets through in an hour.
struct Throttle {
    rate: f64,
    burst: f64,
}

impl Throttle {
    fn from_template() -> Option<Self> {
        Some(Self {
            rate: template::default_number("ApiThrottleRateLimit")?,
            burst: template::default_number("ApiThrottleBurstLimit")?,
        })
    }

    fn requests_per_hour(&self) -> f64 {
        self.rate * 3600.0 + self.burst
    }
}

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    let (Some(rejections), Some(throttle)) = (&inputs.rejections, Throttle::from_template()) else {
        return Section::default();
    };
    let memory_gb = template::memory_mb().unwrap_or(128.0) / 1024.0;
    let requests = throttle.requests_per_hour();
    let Some((worst, hourly)) = rejections
        .kinds
        .iter()
        .map(|r| (r, Hourly::of(r, requests, memory_gb)))
        .max_by(|a, b| a.1.total().total_cmp(&b.1.total()))
    else {
        return Section::default();
    };
    let metrics: usize = template::metrics().values().sum();
    let metrics_hourly = metrics as f64 * prices::CW_METRIC_MONTH / prices::HOURS_PER_MONTH;
    let total = hourly.total() + metrics_hourly;
    let row = Row {
        stage: "worst case: an anonymous caller at the API throttle, per hour".to_owned(),
        measured: format!("${total:.2} per hour ({})", first_words(&worst.kind)),
        floor: format!(
            "API Gateway requests alone at the throttle: ${:.2}",
            hourly.api
        ),
        ratio: super::format::ratio(total, hourly.api),
        ranked: false,
        excess_ms: None,
        target: "stated, bounded by template parameters".to_owned(),
        verdict: Verdict::NoTarget,
        command: code(&rejections.command),
    };
    let mut details = String::new();
    let facts = Facts {
        throttle: &throttle,
        worst,
        hourly: &hourly,
        metrics,
        metrics_hourly,
        total,
    };
    write_details(&mut details, &facts, rejections, memory_gb);
    Section {
        rows: vec![row],
        details,
    }
}

/// `kind`'s first words, up to its first comma (the route), for the summary row.
fn first_words(kind: &str) -> &str {
    kind.split(',').next().unwrap_or(kind)
}

struct Facts<'a> {
    throttle: &'a Throttle,
    worst: &'a Rejection,
    hourly: &'a Hourly,
    metrics: usize,
    metrics_hourly: f64,
    total: f64,
}

fn write_details(out: &mut String, f: &Facts<'_>, all: &Rejections, memory_gb: f64) {
    let requests = f.throttle.requests_per_hour();
    let _ = writeln!(
        out,
        "\n## Worst case: an anonymous caller at the API throttle\n"
    );
    let _ = writeln!(
        out,
        "The most a caller with no valid token and no client secret, from any number of source \
         IPs, can make the stack spend in an hour: the template's stage throttle \
         (`ApiThrottleRateLimit` {} per second after a burst of `ApiThrottleBurstLimit` {}, \
         defaults read from template.yaml) lets {requests:.0} requests an hour reach a \
         function; each is of the kind that costs most, {} (status {}), from a new source IP, \
         so neither the per-source penalty nor the limiter's memory of refused keys spares any \
         work. Requests above the throttle get API Gateway's 429 without invoking anything and \
         are not priced here. Prices: {}.\n",
        f.throttle.rate,
        f.throttle.burst,
        f.worst.kind,
        statuses(f.worst),
        prices::AS_OF
    );
    let _ = writeln!(out, "| item | $ per hour | basis | bounded by |");
    let _ = writeln!(out, "|---|---|---|---|");
    let w = f.worst;
    let rows = [
        (
            "API Gateway HTTP API requests",
            f.hourly.api,
            format!(
                "{requests:.0} requests × ${} per million",
                prices::HTTP_API_M
            ),
            "`ApiThrottleRateLimit`, `ApiThrottleBurstLimit`",
        ),
        (
            "Lambda invocations",
            f.hourly.invocations,
            format!(
                "one per request × ${} per million",
                prices::LAMBDA_REQUESTS_M
            ),
            "`ApiThrottleRateLimit`",
        ),
        (
            "Lambda duration",
            f.hourly.duration,
            format!(
                "mean billed {} per request (measured; p50 {}) × {memory_gb} GB × ${} per GB-s",
                ms(w.billed_ms_mean),
                ms(w.duration_ms.p50),
                prices::LAMBDA_ARM_GB_S
            ),
            "`ApiThrottleRateLimit` × the function's duration (at most its `Timeout`); `MemorySize`",
        ),
        (
            "DynamoDB writes",
            f.hourly.writes,
            format!(
                "{:.2} `UpdateItem` per request (counted; a failed conditional write is billed too) × ${} per million WRU",
                w.update_items_per_request,
                prices::DDB_WRU_M
            ),
            "`ApiThrottleRateLimit`: with a new source IP each time, `TokenBurst`/`TokenRatePerMinute` never refuse",
        ),
        (
            "DynamoDB reads",
            f.hourly.reads,
            format!(
                "{:.2} `GetItem` per request (counted; strongly consistent, 1 RRU) × ${} per million RRU",
                w.get_items_per_request,
                prices::DDB_RRU_M
            ),
            "`ApiThrottleRateLimit`",
        ),
        (
            "CloudWatch Logs, function log lines",
            f.hourly.logs,
            format!(
                "{:.0} bytes in {:.1} lines per request (measured) × ${} per GB",
                w.log_bytes_per_request,
                w.log_lines_per_request,
                prices::CW_LOGS_GB
            ),
            "`ApiThrottleRateLimit`; one bounded line per request (`RUST_LOG`)",
        ),
        (
            "CloudWatch metrics",
            f.metrics_hourly,
            format!(
                "a fixed set: {} metrics whatever the traffic (dimension values are route templates or `unmatched`, and model labels) × ${} per metric-month ÷ {} h",
                f.metrics,
                prices::CW_METRIC_MONTH,
                prices::HOURS_PER_MONTH
            ),
            "the template's metric filters; nothing a caller sends",
        ),
    ];
    for (item, dollars, basis, bound) in rows {
        let _ = writeln!(out, "| {item} | {dollars:.4} | {basis} | {bound} |");
    }
    let _ = writeln!(out, "| **total** | **{:.2}** | | |", f.total);
    if let Some(line) = super::cost::access_log_sample() {
        let _ = writeln!(
            out,
            "| API Gateway access log, if enabled (not in the total) | {:.4} | {} bytes per line × ${} per GB, for the requests above; it also logs every request the throttle refuses, which the throttle does not bound | `ApiAccessLogs` (default `{}`) |",
            requests * line.len() as f64 / 1e9 * prices::CW_LOGS_GB,
            line.len(),
            prices::CW_LOGS_GB,
            template::default_text("ApiAccessLogs").unwrap_or_default()
        );
    }
    kinds_table(out, all, requests, memory_gb);
}

fn statuses(r: &Rejection) -> String {
    r.statuses
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join("/")
}

/// Every kind measured, and what the hour would cost if every request were of that kind.
fn kinds_table(out: &mut String, all: &Rejections, requests: f64, memory_gb: f64) {
    let _ = writeln!(
        out,
        "\nEach kind of anonymous request on a warm process, each request from a new source IP: \
         durations and log bytes measured against DynamoDB Local directly, DynamoDB calls \
         counted on a second process through the counting proxy. Command: {}.\n",
        code(&all.command)
    );
    let _ = writeln!(
        out,
        "| request | function | status | duration | billed mean | log bytes (lines) per request | UpdateItem / GetItem per request | $ per hour at the throttle |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for r in &all.kinds {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} ({:.1}) | {:.2} / {:.2} | {:.2} |",
            r.kind,
            r.function,
            statuses(r),
            spread_ms(&r.duration_ms),
            ms(r.billed_ms_mean),
            r.log_bytes_per_request,
            r.log_lines_per_request,
            r.update_items_per_request,
            r.get_items_per_request,
            Hourly::of(r, requests, memory_gb).total()
        );
    }
}
