//! Cold start: init, first and second invocation, init + first, and peak RSS of fresh
//! processes of each function, against the null function and a fresh process's DynamoDB floor.

use std::fmt::Write as _;

use super::format::{NONE, code, mb, mib, ms, ratio, spread_ms};
use super::summary::{Row, Verdict};
use super::{Inputs, Section};
use crate::results::{ColdStart, FreshProcess};

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    let null = inputs.cold_null.as_ref();
    let fresh = inputs.fresh_process.as_ref();
    let mut rows = Vec::new();
    for cold in [&inputs.cold_predict, &inputs.cold_token]
        .into_iter()
        .flatten()
    {
        rows.extend(function_rows(cold, null, fresh));
    }
    rows.extend(fresh.map(fresh_process_row));
    Section {
        rows,
        details: details(inputs),
    }
}

/// The four rows of one function.
fn function_rows(
    cold: &ColdStart,
    null: Option<&ColdStart>,
    fresh: Option<&FreshProcess>,
) -> Vec<Row> {
    let f = &cold.function;
    // The floor of init + first invocation: a process that starts, polls, builds the SDK
    // client and makes its first DynamoDB call — and nothing else.
    let cold_floor = match (null, fresh) {
        (Some(n), Some(u)) => Some(n.init_ms.p50 + u.client_build_ms.p50 + u.first_ms.p50),
        _ => None,
    };
    let init = null.map(|null| Row {
        stage: format!("cold start · {f} · init (spawn → first `/next`)"),
        measured: spread_ms(&cold.init_ms),
        floor: format!("null function: {}", ms(null.init_ms.p50)),
        ratio: ratio(cold.init_ms.p50, null.init_ms.p50),
        ranked: true,
        excess_ms: Some(cold.init_ms.p50 - null.init_ms.p50),
        target: "none set; see total".to_owned(),
        verdict: Verdict::NoTarget,
        command: code(&cold.command),
    });
    let first = Row {
        stage: format!("cold start · {f} · first invocation"),
        measured: format!(
            "{}; 2nd invocation p50 {}",
            spread_ms(&cold.first_ms),
            ms(cold.second_ms.p50)
        ),
        floor: fresh.map_or(NONE.into(), |u| {
            format!(
                "first raw DynamoDB write of a fresh process: {}",
                ms(u.first_ms.p50)
            )
        }),
        ratio: fresh.and_then(|u| ratio(cold.first_ms.p50, u.first_ms.p50)),
        ranked: true,
        excess_ms: fresh.map(|u| cold.first_ms.p50 - u.first_ms.p50),
        target: "none set; see total".to_owned(),
        verdict: Verdict::NoTarget,
        command: code(&cold.command),
    };
    let total = Row {
        stage: format!("cold start · {f} · init + first invocation"),
        measured: spread_ms(&cold.cold_total_ms),
        floor: cold_floor.map_or(NONE.into(), |f| {
            format!(
                "null function's init + SDK client build + first DynamoDB write of a fresh process: {}",
                ms(f)
            )
        }),
        ratio: cold_floor.and_then(|f| ratio(cold.cold_total_ms.p50, f)),
        ranked: true,
        excess_ms: cold_floor.map(|f| cold.cold_total_ms.p50 - f),
        // The SPEC's bar: the tutorial stack this API replaces takes 1–3 s.
        target: "< 1 s at p90".to_owned(),
        verdict: Verdict::of(cold.cold_total_ms.p90 < 1000.0 && cold.failures.is_empty()),
        command: code(&cold.command),
    };
    let rss = Row {
        stage: format!("cold start · {f} · peak RSS (VmHWM after 2 invocations)"),
        measured: format!(
            "p50 {} (max {})",
            mib(cold.peak_rss_kib.p50),
            mib(cold.peak_rss_kib.max)
        ),
        floor: null.map_or(NONE.into(), |n| {
            format!("null function: {}", mib(n.peak_rss_kib.p50))
        }),
        ratio: null.and_then(|n| ratio(cold.peak_rss_kib.p50, n.peak_rss_kib.p50)),
        ranked: true,
        excess_ms: None,
        target: "≤ 20 MB".to_owned(),
        verdict: Verdict::of(cold.peak_rss_kib.max * 1024.0 <= 20e6),
        command: code(&cold.command),
    };
    init.into_iter().chain([first, total, rss]).collect()
}

/// What the first DynamoDB call of a process costs over the second.
fn fresh_process_row(u: &FreshProcess) -> Row {
    Row {
        stage: "DynamoDB first write of a fresh process".to_owned(),
        measured: spread_ms(&u.first_ms),
        floor: format!("2nd write, same process: {}", ms(u.second_ms.p50)),
        ratio: ratio(u.first_ms.p50, u.second_ms.p50),
        ranked: true,
        excess_ms: Some(u.first_ms.p50 - u.second_ms.p50),
        target: "none set".to_owned(),
        verdict: Verdict::NoTarget,
        command: code(&u.command),
    }
}

fn details(inputs: &Inputs<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Cold start\n");
    let _ = writeln!(
        out,
        "Each run is a fresh process under a fresh Runtime API: init is spawn → first `GET /next` \
         (where Lambda's `Init Duration` ends); then two real requests from new source IPs \
         (`POST /predict` with a valid token, or `POST /token` with a valid client); peak RSS is \
         `VmHWM` read once the process is idle again, just before it is killed.\n"
    );
    let _ = writeln!(
        out,
        "| function | runs | failures | init | first invocation | second invocation | init + first | peak RSS p50 | binary |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let colds = [&inputs.cold_predict, &inputs.cold_token];
    for c in colds.into_iter().chain([&inputs.cold_null]).flatten() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.function,
            c.runs,
            c.failures.len(),
            spread_ms(&c.init_ms),
            spread_ms(&c.first_ms),
            spread_ms(&c.second_ms),
            spread_ms(&c.cold_total_ms),
            mib(c.peak_rss_kib.p50),
            mb(c.binary_bytes)
        );
    }
    let Some(u) = &inputs.fresh_process else {
        return out;
    };
    let _ = writeln!(
        out,
        "\nDynamoDB floor of a fresh process ({} runs, each a new process that builds the SDK \
         client as the functions do, with `Aws::load`, then makes two FRESH `UpdateItem` \
         writes): client build p50 {}; first write {}; second write p50 {}. Command: {}.",
        u.runs,
        ms(u.client_build_ms.p50),
        spread_ms(&u.first_ms),
        ms(u.second_ms.p50),
        code(&u.command)
    );
    if let Some(n) = &inputs.cold_null {
        for c in colds.into_iter().flatten() {
            init_breakdown(&mut out, c, n, u);
        }
    }
    out
}

/// Where a function's init goes: differences of medians, so approximate.
fn init_breakdown(out: &mut String, c: &ColdStart, null: &ColdStart, u: &FreshProcess) {
    // What each function's init does besides building the client (functions/*/src/main.rs).
    let rest = if c.function == "predict" {
        "model decode and sha256 check, JWKS read (`GetItem` of the rate-limit table's `jwks` item, which also proves the table)"
    } else {
        "crypto self-test, signing-key load, `DescribeTable` of both tables"
    };
    let _ = writeln!(
        out,
        "\n{} init p50 {}: starting a process and polling the Runtime API (the null \
         function) {}, loading the SDK configuration and building the DynamoDB client as \
         `Aws::load` does {} (fresh-process floor), everything else (tokio, telemetry, \
         configuration, {rest}) {}.",
        c.function,
        ms(c.init_ms.p50),
        ms(null.init_ms.p50),
        ms(u.client_build_ms.p50),
        ms((c.init_ms.p50 - null.init_ms.p50 - u.client_build_ms.p50).max(0.0))
    );
}
