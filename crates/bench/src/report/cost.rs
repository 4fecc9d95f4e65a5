//! Cost per million predictions: AWS list prices applied to the run's warm and cold-start
//! durations and log volume.

use std::fmt::Write as _;

use super::format::{ms, ratio};
use super::summary::{Row, Verdict};
use super::{Inputs, Section};
use crate::results::{ColdStart, Warm};

// Prices (AWS list prices, us-east-1). Stated, dated, and used nowhere else.

const PRICES_AS_OF: &str = "us-east-1 on-demand list prices as published by AWS in 2024–2025 \
    (DynamoDB on-demand after the 1 November 2024 reduction), the free tier ignored; not re-checked \
    at run time";
/// Lambda arm64 duration, per GB-second (first 7.5 billion GB-s per month).
const LAMBDA_ARM_GB_S: f64 = 0.000_013_333_4;
/// Lambda requests, per million.
const LAMBDA_REQUESTS_M: f64 = 0.20;
/// API Gateway HTTP API requests, per million (first 300 million per month).
const HTTP_API_M: f64 = 1.00;
/// DynamoDB on-demand write request units, per million.
const DDB_WRU_M: f64 = 0.625;
/// CloudWatch Logs ingestion (standard class), per GB.
const CW_LOGS_GB: f64 = 0.50;
/// Secrets Manager API calls, per 10,000 (the JWKS read at each predict cold start).
const SECRETS_10K: f64 = 0.05;
/// The template's `MemorySize`.
const MEMORY_GB: f64 = 128.0 / 1024.0;
/// Assumed share of invocations that are cold starts: AWS reports well under 1 % for steady
/// traffic, so 1 % is deliberately pessimistic.
const COLD_SHARE: f64 = 0.01;
/// One API Gateway access-log line in the template's `AccessLogSettings.Format`, with
/// typical values (the log group is ours, so its ingestion is ours too).
const ACCESS_LOG_SAMPLE: &str = r#"{"requestId":"JKJaXmPLvHcESHA=","ip":"203.0.113.7","routeKey":"POST /predict","status":"200","latency":"12","integrationError":"-"}"#;

/// The cost of a million predictions, item by item.
struct Cost {
    /// Item, dollars per million, how it was computed.
    lines: Vec<(String, f64, String)>,
    total: f64,
    /// The per-request prices alone, whatever the durations.
    fixed: f64,
}

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    let Some(cost) = model(inputs.warm_predict.as_ref(), inputs.cold_predict.as_ref()) else {
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
        ratio: ratio(cost.total, cost.fixed),
        ranked: false,
        excess_ms: None,
        target: "none set".to_owned(),
        verdict: Verdict::NoTarget,
        command: "derived from the warm, cold-start and log figures above".to_owned(),
    }
}

fn model(warm: Option<&Warm>, cold: Option<&ColdStart>) -> Option<Cost> {
    let warm = warm?;
    let million = 1e6;
    let warm_ms = warm.billed_ms_mean;
    let cold_ms = cold.map_or(warm_ms, |c| c.billed_cold_ms_mean);
    let billed_ms = (1.0 - COLD_SHARE) * warm_ms + COLD_SHARE * cold_ms;
    let duration = million * billed_ms / 1e3 * MEMORY_GB * LAMBDA_ARM_GB_S;
    let log_gb = million * warm.log_bytes_per_request / 1e9;
    let access_gb = million * ACCESS_LOG_SAMPLE.len() as f64 / 1e9;
    let lines = vec![
        (
            "API Gateway HTTP API requests".to_owned(),
            HTTP_API_M,
            format!("${HTTP_API_M:.2} per million"),
        ),
        (
            "Lambda requests".to_owned(),
            LAMBDA_REQUESTS_M,
            format!("${LAMBDA_REQUESTS_M:.2} per million"),
        ),
        (
            "Lambda duration (arm64, 128 MB)".to_owned(),
            duration,
            format!(
                "mean billed {} warm (ceil per invocation), {} cold (init + first), {:.0} % cold → {} × 0.125 GB × ${LAMBDA_ARM_GB_S} per GB-s",
                ms(warm_ms),
                ms(cold_ms),
                COLD_SHARE * 100.0,
                ms(billed_ms)
            ),
        ),
        (
            "DynamoDB writes (on-demand)".to_owned(),
            DDB_WRU_M,
            format!("1 WRU per admitted request (item < 1 KB) × ${DDB_WRU_M} per million WRU"),
        ),
        (
            "CloudWatch Logs, function log lines".to_owned(),
            log_gb * CW_LOGS_GB,
            format!(
                "{:.0} bytes in {:.1} lines per request (measured) × ${CW_LOGS_GB} per GB; platform lines off (SystemLogLevel WARN)",
                warm.log_bytes_per_request, warm.log_lines_per_request
            ),
        ),
        (
            "CloudWatch Logs, API access log".to_owned(),
            access_gb * CW_LOGS_GB,
            format!(
                "{} bytes per line in the template's format (estimated) × ${CW_LOGS_GB} per GB",
                ACCESS_LOG_SAMPLE.len()
            ),
        ),
        (
            "Secrets Manager (JWKS read per cold start)".to_owned(),
            million * COLD_SHARE / 10_000.0 * SECRETS_10K,
            format!(
                "{:.0} cold starts × ${SECRETS_10K} per 10,000 calls",
                million * COLD_SHARE
            ),
        ),
    ];
    let total = lines.iter().map(|(_, c, _)| c).sum();
    Some(Cost {
        lines,
        total,
        fixed: HTTP_API_M + LAMBDA_REQUESTS_M + DDB_WRU_M,
    })
}

fn details(cost: &Cost) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Cost per million predictions\n");
    let _ = writeln!(
        out,
        "Prices: {PRICES_AS_OF}. Assumptions: {:.0} % of invocations are cold starts; every \
         prediction is a single-row `POST /predict` that is admitted; durations are this run's \
         x86 figures against DynamoDB Local, and each extra 10 ms of mean billed duration would \
         add ${:.4} per million; token requests, data transfer and the tables' storage are not \
         included.\n",
        COLD_SHARE * 100.0,
        1e6 * 0.010 * MEMORY_GB * LAMBDA_ARM_GB_S
    );
    let _ = writeln!(out, "| item | $ per million | basis |");
    let _ = writeln!(out, "|---|---|---|");
    for (item, dollars, basis) in &cost.lines {
        let _ = writeln!(out, "| {item} | {dollars:.4} | {basis} |");
    }
    let _ = writeln!(out, "| **total** | **{:.3}** | |", cost.total);
    out
}
