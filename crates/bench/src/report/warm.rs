//! Warm path: invocations of one long-lived process per function, each next to the same
//! DynamoDB work done by the harness in the same loop; for predict also the handler's own
//! latency, `GET /health` and the null function, which split the invocation into parts.

use std::fmt::Write as _;

use super::format::{NONE, code, mib, ms, num, ratio, spread_ms};
use super::summary::{Row, Verdict};
use super::{Inputs, Section};
use crate::results::{ColdStart, SchedulingSeries, Warm};
use crate::stats::Summary;

/// `GET /health` against the null function's invocation: the per-request overhead target.
const HEALTH_TARGET_RATIO: f64 = 2.0;

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    let mut rows = Vec::new();
    for warm in [&inputs.warm_predict, &inputs.warm_token]
        .into_iter()
        .flatten()
    {
        rows.extend(invocation_rows(warm));
        rows.extend(part_rows(warm));
        rows.push(rss_row(warm, inputs.cold_null.as_ref()));
    }
    let details = inputs
        .warm_predict
        .as_ref()
        .map(|predict| {
            let mut out = details(predict, inputs.warm_token.as_ref());
            overhead(&mut out, predict, inputs.criterion());
            out
        })
        .unwrap_or_default();
    Section { rows, details }
}

/// Invocation p50 and p99 against the floor's: predict's target is ≤ 1.2×.
fn invocation_rows(warm: &Warm) -> Vec<Row> {
    let predict = warm.function == "predict";
    let target = if predict {
        "≤ 1.2× the raw round trip"
    } else {
        "none set (predict's is ≤ 1.2×)"
    };
    [
        ("p50", warm.function_ms.p50, warm.floor_ms.p50),
        ("p99", warm.function_ms.p99, warm.floor_ms.p99),
    ]
    .into_iter()
    .map(|(label, f, fl)| Row {
        stage: format!("warm · {} · invocation {label}", warm.function),
        measured: format!(
            "{label} {} (n={}, non-2xx {})",
            ms(f),
            warm.invocations,
            warm.non_2xx
        ),
        floor: format!("{}: {label} {}", warm.floor_description, ms(fl)),
        ratio: ratio(f, fl),
        ranked: true,
        excess_ms: Some(f - fl),
        target: target.to_owned(),
        verdict: if predict {
            Verdict::of(f <= 1.2 * fl)
        } else {
            Verdict::NoTarget
        },
        command: code(&warm.command),
    })
    .collect()
}

/// The handler's own latency and `GET /health`, where the scenario measured them.
fn part_rows(warm: &Warm) -> Vec<Row> {
    let handler = warm.handler_ms.as_ref().map(|h| Row {
        stage: format!(
            "warm · {} · handler's own latency (its log line's `latency_ms`)",
            warm.function
        ),
        measured: spread_ms(h),
        floor: format!("{}: {}", warm.floor_description, ms(warm.floor_ms.p50)),
        ratio: ratio(h.p50, warm.floor_ms.p50),
        ranked: true,
        excess_ms: Some(h.p50 - warm.floor_ms.p50),
        target: "none set (decomposition: invocation minus runtime)".to_owned(),
        verdict: Verdict::NoTarget,
        command: code(&warm.command),
    });
    let health = match (&warm.health_ms, &warm.null_ms) {
        (Some(h), Some(n)) => Some(Row {
            stage: format!(
                "warm · {} · `GET /health` (runtime + routing, no auth, no DynamoDB)",
                warm.function
            ),
            measured: spread_ms(h),
            floor: format!("null function invocation: {}", ms(n.p50)),
            ratio: ratio(h.p50, n.p50),
            ranked: true,
            excess_ms: Some(h.p50 - n.p50),
            target: "≤ 2× the null function".to_owned(),
            verdict: Verdict::of(h.p50 <= HEALTH_TARGET_RATIO * n.p50),
            command: code(&warm.command),
        }),
        _ => None,
    };
    handler.into_iter().chain(health).collect()
}

/// Peak RSS after the whole run, against the null function's (from the same run when the
/// scenario measured it, else from the cold starts).
fn rss_row(warm: &Warm, cold_null: Option<&ColdStart>) -> Row {
    let null_kib = warm
        .null_peak_rss_kib
        .map(|k| k as f64)
        .or(cold_null.map(|n| n.peak_rss_kib.p50));
    Row {
        stage: format!(
            "warm · {} · peak RSS after {} invocations",
            warm.function,
            warm.warmup + warm.invocations
        ),
        measured: format!(
            "{} (RSS now {})",
            mib(warm.peak_rss_kib as f64),
            mib(warm.rss_kib as f64)
        ),
        floor: null_kib.map_or(NONE.into(), |k| format!("null function: {}", mib(k))),
        ratio: null_kib.and_then(|k| ratio(warm.peak_rss_kib as f64, k)),
        ranked: true,
        excess_ms: None,
        target: "≤ 20 MB".to_owned(),
        verdict: Verdict::of(warm.peak_rss_kib as f64 * 1024.0 <= 20e6),
        command: code(&warm.command),
    }
}

fn details(predict: &Warm, token: Option<&Warm>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Warm path\n");
    let _ = writeln!(
        out,
        "One long-lived process per function; every request from a new source IP, so each is \
         admitted with one FRESH write. In the same loop, next to each invocation, the harness \
         makes the same DynamoDB calls itself with a client built as the functions build theirs \
         (`Aws::load`): that is the floor. The floor calls come right after the invocation in \
         even iterations and right before it in odd ones: DynamoDB Local answers a call that \
         closely follows another faster than one that follows a pause, so a fixed order would \
         favour whichever side always came second (the paired ratio of each order is in the \
         table). The predict loop also invokes `GET /health` on the same process and the null \
         function.\n"
    );
    let _ = writeln!(out, "| series | min | p10 | p50 | p90 | p99 | max | mean |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for w in [Some(predict), token].into_iter().flatten() {
        series_rows(&mut out, w);
    }
    if let Some(h) = &predict.handler_ms {
        decomposition(&mut out, predict, h);
    }
    let _ = writeln!(
        out,
        "\nLog volume: predict {:.0} bytes in {:.1} lines per request{}.",
        predict.log_bytes_per_request,
        predict.log_lines_per_request,
        token.map_or(String::new(), |t| format!(
            "; token {:.0} bytes in {:.1} lines",
            t.log_bytes_per_request, t.log_lines_per_request
        ))
    );
    out
}

/// One function's lines of the series table.
fn series_rows(out: &mut String, w: &Warm) {
    let mut series = |name: String, s: &Summary| {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            num(s.min),
            num(s.p10),
            num(s.p50),
            num(s.p90),
            num(s.p99),
            num(s.max),
            num(s.mean)
        );
    };
    series(
        format!("{} invocation, ms (n={})", w.function, w.invocations),
        &w.function_ms,
    );
    series(
        format!("{} floor: {}, ms", w.function, w.floor_description),
        &w.floor_ms,
    );
    series(
        format!("{}: paired ratio invocation / floor", w.function),
        &w.paired_ratio,
    );
    if let Some(r) = &w.paired_ratio_floor_after {
        series(
            format!(
                "{}: the same, floor calls right after the invocation",
                w.function
            ),
            r,
        );
    }
    if let Some(r) = &w.paired_ratio_floor_before {
        series(
            format!(
                "{}: the same, floor calls right before the invocation",
                w.function
            ),
            r,
        );
    }
    if let Some(f) = &w.sdk_floor_ms {
        series(
            "the same SDK call against an endpoint that answers at once, ms".to_owned(),
            f,
        );
    }
    if let Some(h) = &w.handler_ms {
        series(format!("{} handler's own `latency_ms`, ms", w.function), h);
    }
    if let Some(h) = &w.health_ms {
        series(format!("{} `GET /health`, ms", w.function), h);
    }
    if let Some(n) = &w.null_ms {
        series("null function invocation, ms".to_owned(), n);
    }
}

/// Where the predict invocation's time goes, from differences of medians.
///
/// The parts outside the DynamoDB round trip do not grow with it: against a real table a few
/// milliseconds away instead of DynamoDB Local on loopback they are a much smaller share of
/// the invocation, which is why they are reported apart.
fn decomposition(out: &mut String, w: &Warm, handler: &Summary) {
    let (inv, floor, handler) = (w.function_ms.p50, w.floor_ms.p50, handler.p50);
    if let Some(sdk) = &w.sdk_floor_ms {
        let _ = writeln!(
            out,
            "\nThe floor itself: of the raw call's p50 of {}, the SDK and the loopback HTTP \
             exchange take {} (the same call against an endpoint that answers at once), \
             DynamoDB Local's own work the remaining {}.",
            ms(floor),
            ms(sdk.p50),
            ms((floor - sdk.p50).max(0.0))
        );
    }
    let _ = writeln!(
        out,
        "\nWhere the predict invocation's p50 of {} goes (differences of medians, so \
         approximate): the DynamoDB round trip (the floor) {}; inside the handler but \
         outside that round trip (token check, validation, inference, logging, the SDK's \
         own request pipeline) {}; outside the handler (the Runtime API exchange, the \
         frame's event decode and response encode) {}.",
        ms(inv),
        ms(floor),
        ms((handler - floor).max(0.0)),
        ms((inv - handler).max(0.0)),
    );
}

/// Where the per-request time outside our handler goes: what the scheduler saw of each
/// process per invocation (CPU time over all threads, context switches), next to the frame's
/// own CPU measured in-process by criterion.
fn overhead(out: &mut String, w: &Warm, criterion: Option<&std::path::Path>) {
    let Some(s) = &w.scheduling else {
        return;
    };
    let _ = writeln!(out, "\n### Per-request overhead: where the time goes\n");
    let _ = writeln!(
        out,
        "Per invocation, idle to idle (the process blocked on `/next` before and after, so \
         everything the invocation made it do is counted): its wall duration as Lambda bills \
         it, the CPU time of all its threads (`/proc/<pid>/task/*/schedstat`) and their context \
         switches (each one a thread going to sleep or woken). The in-process rows are \
         criterion benches of the same work with no Runtime API: event JSON to response JSON \
         through `frame::event` and the handler.\n"
    );
    let _ = writeln!(
        out,
        "| invocation | wall p50 | CPU p50 (all threads) | context switches p50 | threads |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let line = |out: &mut String, name: &str, wall: Option<&Summary>, s: &SchedulingSeries| {
        let _ = writeln!(
            out,
            "| {name} | {} | {} µs | {} | {} |",
            wall.map_or(NONE.into(), |w| ms(w.p50)),
            num(s.cpu_us.p50),
            num(s.switches.p50),
            s.threads
        );
    };
    line(
        out,
        "predict `POST /predict`",
        Some(&w.function_ms),
        &s.predict,
    );
    line(
        out,
        "predict `GET /health`",
        w.health_ms.as_ref(),
        &s.health,
    );
    if let Some(r) = &s.runtime_null {
        line(
            out,
            "runtime-null: the `/health` event through `lambda_runtime`, the functions' runtime and logging, no frame",
            w.runtime_null_ms.as_ref(),
            r,
        );
    }
    line(
        out,
        "null function (std only, blocking I/O)",
        w.null_ms.as_ref(),
        &s.null,
    );
    let crit = |id: &str| -> Option<f64> {
        let path = criterion?
            .join("handler")
            .join(id)
            .join("new")
            .join("estimates.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    let in_process: Vec<String> = [
        (
            "`GET /health` event → response JSON",
            "health_event_to_response",
        ),
        (
            "`/predict` event decode (`frame::event::decode`)",
            "decode_event",
        ),
        (
            "`/predict` handler, request → response",
            "request_to_response",
        ),
        ("`/predict` response encode + JSON", "encode_response"),
        ("`/predict` event → response JSON", "event_to_response"),
    ]
    .into_iter()
    .filter_map(|(name, id)| Some(format!("{name} {} µs", num(crit(id)? / 1e3))))
    .collect();
    if !in_process.is_empty() {
        let _ = writeln!(
            out,
            "\nIn-process (criterion medians): {}.",
            in_process.join("; ")
        );
    }
    let (Some(h), Some(n)) = (&w.health_ms, &w.null_ms) else {
        return;
    };
    let (Some(r), Some(rs)) = (&w.runtime_null_ms, &s.runtime_null) else {
        return;
    };
    let _ = writeln!(
        out,
        "\n`GET /health` p50 {} against the null function's {} ({:.2}×): the Rust runtime \
         (`lambda_runtime`'s Runtime API client over hyper, tokio, its span per invocation, the \
         same event's bytes: runtime-null minus null) adds {} of wall time and {} µs of CPU; \
         our frame (event \
         decode, route, handler, response encode, the access line's write: `/health` minus \
         runtime-null) adds {} and {} µs of CPU, of which {} is the frame's own work measured \
         in-process.",
        ms(h.p50),
        ms(n.p50),
        h.p50 / n.p50,
        ms(r.p50 - n.p50),
        num(rs.cpu_us.p50 - s.null.cpu_us.p50),
        ms(h.p50 - r.p50),
        num(s.health.cpu_us.p50 - rs.cpu_us.p50),
        crit("health_event_to_response").map_or(NONE.into(), |ns| format!("{} µs", num(ns / 1e3)))
    );
}
