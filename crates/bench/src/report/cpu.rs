//! CPU path (criterion): the parts of a request measured alone (the token check on a cache hit
//! and at first sight, body validation, inference, the rate-limit decision against a mocked
//! SDK) and the whole handler, each next to its floor. Floors are criterion benches too: the
//! bare primitive under each part, and for the whole handler the mocked SDK call alone, which
//! is most of it.
//!
//! The handler benches answer `UpdateItem` with `aws-smithy-mocks`, which answers inside the
//! SDK's orchestrator: serialization, signing, endpoint resolution and retry bookkeeping still
//! run, as they do for every real call, so the mocked call is a fair floor for the SDK's share.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::format::{NONE, code, num, ratio, times, us};
use super::summary::{Row, Verdict};
use super::{Inputs, Section};
use crate::stats::Summary;

/// The target of our own code's share of the whole path, per request.
const PATH_TARGET_NS: f64 = 25_000.0;
/// The target of inference, per row.
const ROW_TARGET_NS: f64 = 1_000.0;
/// The target of a token check answered by the verified-token cache.
const CACHE_HIT_TARGET_NS: f64 = 2_000.0;
/// The target of token check + body validation + inference for a repeated token.
const CACHED_PATH_TARGET_NS: f64 = 5_000.0;

/// A criterion benchmark: median estimate with its 95 % confidence interval, and the spread of
/// its samples' per-iteration means.
struct Crit {
    median_ns: f64,
    median_lo_ns: f64,
    median_hi_ns: f64,
    min_ns: f64,
    max_ns: f64,
    samples: usize,
}

impl Crit {
    /// `<dir>/<group>/<id>/new/`, as criterion leaves it; `None` when the bench did not run.
    fn read(dir: Option<&Path>, group: &str, id: &str) -> Option<Crit> {
        let base = dir?.join(group).join(id).join("new");
        let estimates: Value =
            serde_json::from_str(&std::fs::read_to_string(base.join("estimates.json")).ok()?)
                .ok()?;
        let sample: Value =
            serde_json::from_str(&std::fs::read_to_string(base.join("sample.json")).ok()?).ok()?;
        let per_iter: Vec<f64> = sample["iters"]
            .as_array()?
            .iter()
            .zip(sample["times"].as_array()?)
            .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?))
            .collect();
        let s = Summary::of(&per_iter)?;
        let median = &estimates["median"];
        Some(Crit {
            median_ns: median["point_estimate"].as_f64()?,
            median_lo_ns: median["confidence_interval"]["lower_bound"].as_f64()?,
            median_hi_ns: median["confidence_interval"]["upper_bound"].as_f64()?,
            min_ns: s.min,
            max_ns: s.max,
            samples: s.n,
        })
    }
}

/// One benchmark as a summary row.
struct Bench {
    stage: &'static str,
    measured: Option<Crit>,
    /// Items per iteration (rows of a batch): figures are reported per item.
    per: f64,
    /// What the figure is compared with, and its time per item in ns.
    floor: Option<(&'static str, f64)>,
    target: &'static str,
    limit_ns: Option<f64>,
}

impl Bench {
    fn row(self, command: &str) -> Option<Row> {
        let m = self.measured?;
        let per_item = m.median_ns / self.per;
        Some(Row {
            stage: self.stage.to_owned(),
            measured: format!(
                "median {} (samples {}–{}; n={})",
                us(per_item),
                num(m.min_ns / self.per / 1e3),
                num(m.max_ns / self.per / 1e3),
                m.samples
            ),
            floor: self
                .floor
                .map_or(NONE.into(), |(d, ns)| format!("{d}: {}", us(ns))),
            ratio: self.floor.and_then(|(_, ns)| ratio(per_item, ns)),
            ranked: true,
            excess_ms: self.floor.map(|(_, ns)| (per_item - ns) / 1e6),
            target: self.target.to_owned(),
            verdict: self
                .limit_ns
                .map_or(Verdict::NoTarget, |l| Verdict::of(per_item <= l)),
            command: command.to_owned(),
        })
    }
}

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    let dir = inputs.criterion();
    let core = code(&inputs.args.command("criterion-core"));
    let handler = code(&inputs.args.command("criterion-handler"));
    let sdk = Crit::read(dir, "handler", "sdk_update_item_mocked");
    let mut rows: Vec<Row> = core_benches(dir)
        .into_iter()
        .filter_map(|b| b.row(&core))
        .collect();
    let sdk_floor = sdk.as_ref().map(|s| s.median_ns);
    rows.extend(
        handler_benches(dir, sdk_floor)
            .into_iter()
            .filter_map(|b| b.row(&handler)),
    );
    rows.extend(own_share_row(dir, sdk.as_ref(), &handler));
    let details = if rows.is_empty() {
        String::new()
    } else {
        details(&rows, &core, &handler)
    };
    Section { rows, details }
}

/// `cargo bench -p secure-ml-core --bench cpu_path`: the parts.
fn core_benches(dir: Option<&Path>) -> [Bench; 7] {
    let median = |id| Crit::read(dir, "cpu", id).map(|c: Crit| c.median_ns);
    let floor =
        |desc, id, per: f64| Crit::read(dir, "cpu", id).map(|c: Crit| (desc, c.median_ns / per));
    let parse_and_infer = match (median("parse_single"), median("predict_row")) {
        (Some(p), Some(i)) => Some(("parse + inference alone", p + i)),
        _ => None,
    };
    [
        Bench {
            stage: "CPU · token check, cache hit (`Verifier::verify` of a repeated token)",
            measured: Crit::read(dir, "cpu", "token_cache_hit"),
            per: 1.0,
            floor: None,
            target: "≤ 2 µs",
            limit_ns: Some(CACHE_HIT_TARGET_NS),
        },
        Bench {
            stage: "CPU · verify + validate + infer, repeated token",
            measured: Crit::read(dir, "cpu", "verify_parse_infer_cached"),
            per: 1.0,
            floor: parse_and_infer,
            target: "≤ 5 µs",
            limit_ns: Some(CACHED_PATH_TARGET_NS),
        },
        Bench {
            stage: "CPU · JWT verify, first sight of a token (EdDSA, claims, typ; no cache)",
            measured: Crit::read(dir, "cpu", "jwt_verify"),
            per: 1.0,
            floor: floor("bare Ed25519 signature check", "ed25519_verify_floor", 1.0),
            target: "none set (once per token and instance)",
            limit_ns: None,
        },
        Bench {
            stage: "CPU · parse + validate `/predict` body",
            measured: Crit::read(dir, "cpu", "parse_single"),
            per: 1.0,
            floor: floor(
                "serde derive into [f64; 4]",
                "parse_single_serde_floor",
                1.0,
            ),
            target: "none set (inside the 5 µs path)",
            limit_ns: None,
        },
        Bench {
            stage: "CPU · parse + validate 100-row batch (per row)",
            measured: Crit::read(dir, "cpu", "parse_batch_100"),
            per: 100.0,
            floor: None,
            target: "none set",
            limit_ns: None,
        },
        Bench {
            stage: "CPU · inference, 1 row (with response view)",
            measured: Crit::read(dir, "cpu", "predict_row"),
            per: 1.0,
            floor: floor("bare forest walk", "forest_row_floor", 1.0),
            target: "≤ 1 µs per row",
            limit_ns: Some(ROW_TARGET_NS),
        },
        Bench {
            stage: "CPU · inference, 100-row batch (per row)",
            measured: Crit::read(dir, "cpu", "predict_batch_100"),
            per: 100.0,
            floor: floor("bare forest walk, per row", "forest_batch_100_floor", 100.0),
            target: "≤ 1 µs per row",
            limit_ns: Some(ROW_TARGET_NS),
        },
    ]
}

/// `cargo bench -p predict-function --bench handler`: the limiter and the whole handler,
/// each next to the mocked SDK call alone.
fn handler_benches(dir: Option<&Path>, sdk: Option<f64>) -> [Bench; 5] {
    let sdk_floor = sdk.map(|ns| ("the mocked SDK call alone", ns));
    let whole = |stage, id| Bench {
        stage,
        measured: Crit::read(dir, "handler", id),
        per: 1.0,
        floor: sdk_floor,
        target: "reported next to the SDK call",
        limit_ns: None,
    };
    [
        Bench {
            stage: "CPU · rate-limit decision, `UpdateItem` answered by aws-smithy-mocks",
            measured: Crit::read(dir, "handler", "limiter_check_mocked"),
            per: 1.0,
            floor: sdk_floor,
            target: "none set",
            limit_ns: None,
        },
        whole(
            "CPU · whole handler, request → response (repeated token, mocked SDK call)",
            "request_to_response",
        ),
        whole(
            "CPU · event JSON → handler → response JSON (what the runtime does)",
            "event_to_response",
        ),
        whole(
            "CPU · same, with the JSON log lines formatted",
            "event_to_response_json_logs",
        ),
        Bench {
            stage: "CPU · `GET /health` event JSON → response JSON (the frame alone)",
            measured: Crit::read(dir, "handler", "health_event_to_response"),
            per: 1.0,
            floor: None,
            target: "none set (see the per-request overhead)",
            limit_ns: None,
        },
    ]
}

/// The whole handler's CPU besides the SDK's own pipeline: what our code spends per request.
///
/// It is the difference of two separate benches' medians, a few µs out of about 50, so it can
/// come out below zero. The row gives the point estimate with the interval the two medians' 95 %
/// confidence intervals allow for the difference, and judges the target by its upper end.
fn own_share_row(dir: Option<&Path>, sdk: Option<&Crit>, command: &str) -> Option<Row> {
    let whole = Crit::read(dir, "handler", "request_to_response")?;
    let sdk = sdk?;
    let own = whole.median_ns - sdk.median_ns;
    let (lo, hi) = (
        whole.median_lo_ns - sdk.median_hi_ns,
        whole.median_hi_ns - sdk.median_lo_ns,
    );
    let interval = format!(
        "the two medians' 95 % intervals allow {} to {}",
        us(lo),
        us(hi)
    );
    let measured = if own < 0.0 {
        format!(
            "at most {}: the point estimate, {}, is below the resolution of two separate \
             benches ({interval})",
            us(hi.max(0.0)),
            us(own)
        )
    } else {
        format!("{} ({interval})", us(own))
    };
    Some(Row {
        stage: "CPU · whole handler minus the mocked SDK call (our code per request)".to_owned(),
        measured,
        floor: NONE.into(),
        ratio: None,
        ranked: false,
        excess_ms: None,
        target: "≤ 25 µs (upper end of the interval)".to_owned(),
        verdict: Verdict::of(hi <= PATH_TARGET_NS),
        command: command.to_owned(),
    })
}

fn details(rows: &[Row], core: &str, handler: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## CPU path (criterion)\n");
    let _ = writeln!(
        out,
        "criterion ({core}; {handler}); medians with the range of the samples' per-iteration \
         means. The handler benches run the predict function's `handler::handle` with the \
         template's default policy, its `UpdateItem` answered by `aws-smithy-mocks` inside the \
         SDK (serialization, signing, endpoint resolution and retry bookkeeping still run), and \
         no log subscriber unless stated. The same token is sent again and again, as a client \
         does for the token's lifetime, so its check is a hit of the verified-token cache after \
         the first iteration; each whole-handler figure sits next to the mocked SDK call alone.\n"
    );
    let _ = writeln!(
        out,
        "| stage | measured | floor | ratio | target | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.stage,
            r.measured,
            r.floor,
            times(r.ratio),
            r.target,
            r.verdict
        );
    }
    out
}
