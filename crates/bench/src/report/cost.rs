//! Cost per million predictions: AWS list prices applied to what the template and the code do
//! now, with this run's warm and cold-start durations and measured log bytes.
//!
//! Per prediction the stack bills: one HTTP API request, one Lambda invocation and its
//! duration, one DynamoDB write (the limiter's), the function's log bytes (one access line at
//! INFO: the metrics come from the template's metric filters, which cost nothing per request),
//! and at each cold start the predict function's JWKS read. API Gateway's own access log is
//! off unless the template's `ApiAccessLogs` is `true`, so it is priced on its own row, outside
//! the total.

use std::fmt::Write as _;

use super::format::ms;
use super::summary::{Row, Verdict};
use super::{Inputs, Section, prices, template};
use crate::results::{ColdStart, Warm};

/// The target, dollars per million predictions at 1 % cold starts.
const TARGET: f64 = 2.00;
/// Assumed share of invocations that are cold starts: AWS reports well under 1 % for steady
/// traffic, so 1 % is deliberately pessimistic.
const COLD_SHARE: f64 = 0.01;

/// The predict function's JWKS read at each cold start, and its price: a strongly consistent
/// `GetItem` on the rate-limit table (1 read request unit for an item under 4 KB). The one
/// place to change when that read moves.
const JWKS_READ_AT_COLD_START: (&str, f64) = (
    "DynamoDB `GetItem` on the rate-limit table, strongly consistent: 1 RRU",
    prices::DDB_RRU_M / 1e6,
);

/// The cost of a million predictions, item by item.
struct Cost {
    /// Item, dollars per million, how it was computed.
    lines: Vec<(String, f64, String)>,
    /// API Gateway's access log, when the template turns it on.
    access_log: Option<(f64, String)>,
    total: f64,
    /// The per-request prices alone, whatever the durations.
    fixed: f64,
}

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    // The cold-start figure closest to AWS: over TLS under 128 MB's CPU share when it ran.
    let cold = [
        ("predict-tls-cpu128", "over TLS at 128 MB's CPU share"),
        ("predict-tls", "over TLS on a whole core"),
        ("predict", "plain HTTP on a whole core"),
    ]
    .into_iter()
    .find_map(|(name, label)| Some((inputs.coldstarts.get(name)?, label)));
    let Some(cost) = model(inputs.warm_predict.as_ref(), cold) else {
        return Section::default();
    };
    Section {
        rows: vec![row(&cost)],
        details: details(&cost),
    }
}

fn row(cost: &Cost) -> Row {
    Row {
        stage: "cost per million predictions (1 % cold)".to_owned(),
        measured: format!("${:.3}", cost.total),
        floor: format!(
            "per-request prices alone (HTTP API + Lambda requests + 1 WRU): ${:.3}",
            cost.fixed
        ),
        ratio: super::format::ratio(cost.total, cost.fixed),
        ranked: false,
        excess_ms: None,
        target: format!("≤ ${TARGET:.2}"),
        verdict: Verdict::of(cost.total <= TARGET),
        command: "derived from the warm, cold-start and log figures above".to_owned(),
    }
}

/// One API Gateway access-log line in the template's format, with typical values.
pub(super) fn access_log_sample() -> Option<String> {
    let mut line = template::access_log_format()?;
    for (variable, value) in [
        ("$context.requestId", "JKJaXmPLvHcESHA="),
        ("$context.identity.sourceIp", "203.0.113.7"),
        ("$context.routeKey", "POST /predict"),
        ("$context.status", "200"),
        ("$context.responseLatency", "12"),
        ("$context.integrationErrorMessage", "-"),
        (
            "$context.awsEndpointRequestId",
            "8f5a9c1e-0000-4000-8000-000000000001",
        ),
    ] {
        line = line.replace(variable, value);
    }
    Some(line)
}

fn model(warm: Option<&Warm>, cold: Option<(&ColdStart, &str)>) -> Option<Cost> {
    let warm = warm?;
    let (cold, cold_label) = (
        cold.map(|(c, _)| c),
        cold.map_or("none measured", |(_, l)| l),
    );
    let million = 1e6;
    let memory_gb = template::memory_mb().unwrap_or(128.0) / 1024.0;
    let warm_ms = warm.billed_ms_mean;
    let cold_ms = cold.map_or(warm_ms, |c| c.billed_cold_ms_mean);
    let billed_ms = (1.0 - COLD_SHARE) * warm_ms + COLD_SHARE * cold_ms;
    let duration = million * billed_ms / 1e3 * memory_gb * prices::LAMBDA_ARM_GB_S;
    let log_gb = million * warm.log_bytes_per_request / 1e9;
    let cold_starts = million * COLD_SHARE;
    let (read, read_price) = JWKS_READ_AT_COLD_START;
    let lines = vec![
        (
            "API Gateway HTTP API requests".to_owned(),
            prices::HTTP_API_M,
            format!("${:.2} per million", prices::HTTP_API_M),
        ),
        (
            "Lambda requests".to_owned(),
            prices::LAMBDA_REQUESTS_M,
            format!("${:.2} per million", prices::LAMBDA_REQUESTS_M),
        ),
        (
            format!("Lambda duration (arm64, {:.0} MB)", memory_gb * 1024.0),
            duration,
            format!(
                "mean billed {} warm (ceil per invocation), {} cold (init + first, {}), {:.0} % cold → {} × {memory_gb} GB × ${} per GB-s",
                ms(warm_ms),
                ms(cold_ms),
                cold_label,
                COLD_SHARE * 100.0,
                ms(billed_ms),
                prices::LAMBDA_ARM_GB_S
            ),
        ),
        (
            "DynamoDB writes (on-demand)".to_owned(),
            prices::DDB_WRU_M,
            format!(
                "1 WRU per admitted request (item < 1 KB) × ${} per million WRU",
                prices::DDB_WRU_M
            ),
        ),
        (
            "CloudWatch Logs, function log lines".to_owned(),
            log_gb * prices::CW_LOGS_GB,
            format!(
                "{:.0} bytes in {:.1} lines per prediction (measured, warm run, `RUST_LOG` = the template's `info`) × ${} per GB; Lambda's platform lines off (`SystemLogLevel: WARN`); metrics from metric filters: no bytes, no API calls",
                warm.log_bytes_per_request,
                warm.log_lines_per_request,
                prices::CW_LOGS_GB
            ),
        ),
        (
            "JWKS read at each cold start".to_owned(),
            cold_starts * read_price,
            format!(
                "{cold_starts:.0} cold starts × {read} (${} per million RRU); predict's init makes no other DynamoDB call",
                prices::DDB_RRU_M
            ),
        ),
    ];
    let access_log = access_log_sample().map(|line| {
        let dollars = million * line.len() as f64 / 1e9 * prices::CW_LOGS_GB;
        let basis = format!(
            "{} bytes per line in the template's format with typical values × ${} per GB; the template's default `ApiAccessLogs` is `{}`",
            line.len(),
            prices::CW_LOGS_GB,
            template::default_text("ApiAccessLogs").unwrap_or_else(|| "?".to_owned())
        );
        (dollars, basis)
    });
    let total = lines.iter().map(|(_, c, _)| c).sum();
    Some(Cost {
        lines,
        access_log,
        total,
        fixed: prices::HTTP_API_M + prices::LAMBDA_REQUESTS_M + prices::DDB_WRU_M,
    })
}

fn details(cost: &Cost) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Cost per million predictions\n");
    let _ = writeln!(
        out,
        "Prices: {}. Assumptions: {:.0} % of invocations are cold starts; every prediction is a \
         single-row `POST /predict` that is admitted; durations are this run's x86 figures \
         against DynamoDB Local, and each extra 10 ms of mean billed duration would add ${:.4} \
         per million; token requests, data transfer, the tables' storage, log storage and the \
         alarms' fixed monthly price are not included.\n",
        prices::AS_OF,
        COLD_SHARE * 100.0,
        1e6 * 0.010 * template::memory_mb().unwrap_or(128.0) / 1024.0 * prices::LAMBDA_ARM_GB_S
    );
    let _ = writeln!(out, "| item | $ per million | basis |");
    let _ = writeln!(out, "|---|---|---|");
    for (item, dollars, basis) in &cost.lines {
        let _ = writeln!(out, "| {item} | {dollars:.4} | {basis} |");
    }
    let _ = writeln!(
        out,
        "| **total** | **{:.3}** | target ≤ ${TARGET:.2} |",
        cost.total
    );
    if let Some((dollars, basis)) = &cost.access_log {
        let _ = writeln!(
            out,
            "| API Gateway access log, if enabled (`ApiAccessLogs=true`; not in the total) | {dollars:.4} | {basis} |"
        );
    }
    out
}
