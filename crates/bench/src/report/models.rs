//! Large models: a 300-tree depth-8 gradient-boosted model and a 100-tree random forest on 30
//! features (`scripts/model_bench.sh`), per row alone and within a 100-row batch next to
//! onnxruntime on the same models and rows, with their artifact sizes and init-time decode; and
//! the cold start of the predict function with the gradient-boosted model embedded, next to the
//! Iris build in one series whose runs alternate.
//!
//! onnxruntime is timed from Python, so each of its figures holds the cost of a `run()` call
//! from Python; model_bench.sh times that call alone (an Identity graph), and the verdicts
//! compare with onnxruntime's figures less that cost, its better thread setting of the two:
//! onnxruntime's own work, as near as Python lets one measure it.

use std::fmt::Write as _;

use super::format::{NONE, code, mb, mib, ms, ratio, spread_ms, us};
use super::summary::{Row, Verdict};
use super::{Inputs, Section};
use crate::results::{ColdStart, ModelBench, ModelBenchModel, OrtPools, OrtTimes, OursTimes};

/// How much longer the cold start (init + first invocation, p50) of the build with the
/// gradient-boosted model may take than the Iris build's.
const COLD_DELTA_TARGET_MS: f64 = 2.0;
/// The label bench.sh gives the predict build with the gradient-boosted model embedded.
const GBM_VARIANT: &str = "predict-gbm";
/// The model of model_bench.sh's document that build embeds.
const GBM_MODEL: &str = "gbm";

/// One way of calling a model.
#[derive(Debug, Clone, Copy)]
enum Case {
    /// One row per call.
    Row,
    /// 100 rows per call, timed per row.
    Batch100,
}

impl Case {
    const ALL: [Case; 2] = [Case::Row, Case::Batch100];

    fn name(self) -> &'static str {
        match self {
            Case::Row => "one row",
            Case::Batch100 => "per row in a 100-row batch",
        }
    }

    /// Rows per call: what one call's fixed cost is shared by.
    fn rows(self) -> f64 {
        match self {
            Case::Row => 1.0,
            Case::Batch100 => 100.0,
        }
    }

    fn ours(self, t: &OursTimes) -> f64 {
        match self {
            Case::Row => t.row_ns,
            Case::Batch100 => t.batch_100_per_row_ns,
        }
    }

    fn ort(self, t: &OrtTimes) -> f64 {
        match self {
            Case::Row => t.row_ns,
            Case::Batch100 => t.batch_100_per_row_ns,
        }
    }
}

/// onnxruntime's time per row with one thread setting, ns.
#[derive(Debug, Clone, Copy)]
struct Ort {
    /// As timed from Python.
    measured: f64,
    /// Less the cost of the `run()` call itself, shared by the call's rows.
    less_call: f64,
}

impl Ort {
    fn of(bench: &ModelBench, model: &ModelBenchModel, case: Case) -> OrtPools<Ort> {
        let one = |t: &OrtTimes, call: f64| Ort {
            measured: case.ort(t),
            less_call: case.ort(t) - call / case.rows(),
        };
        let call = &bench.onnxruntime_call_overhead_ns;
        OrtPools {
            threads_1: one(&model.onnxruntime.threads_1, call.threads_1),
            threads_default: one(&model.onnxruntime.threads_default, call.threads_default),
        }
    }
}

/// The faster of onnxruntime's two thread settings (its own work compared), and its name.
fn best(pools: &OrtPools<Ort>) -> (&'static str, Ort) {
    if pools.threads_default.less_call < pools.threads_1.less_call {
        ("default pool", pools.threads_default)
    } else {
        ("1 thread", pools.threads_1)
    }
}

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    let command = code(&inputs.args.command("model-bench"));
    let bench = inputs.model_bench.as_ref();
    let cold = inputs
        .cold_predict
        .as_ref()
        .zip(inputs.coldstarts.get(GBM_VARIANT));
    let mut rows = Vec::new();
    if let Some(b) = bench {
        for m in b.models.values() {
            rows.extend(Case::ALL.map(|case| inference_row(b, m, case, &command)));
            rows.push(decode_row(m, &command));
        }
    }
    rows.extend(cold.map(|(iris, gbm)| cold_row(iris, gbm)));
    if rows.is_empty() {
        return Section::default();
    }
    let mut details = String::new();
    let _ = writeln!(details, "\n## Large models\n");
    if let Some(b) = bench {
        inference_details(&mut details, b, &command);
    }
    if let Some((iris, gbm)) = cold {
        let decode_us = bench
            .and_then(|b| b.models.get(GBM_MODEL))
            .map(|m| m.ours.decode_us);
        cold_details(&mut details, (iris, gbm), decode_us, inputs);
    }
    Section { rows, details }
}

fn inference_row(b: &ModelBench, m: &ModelBenchModel, case: Case, command: &str) -> Row {
    let ours = case.ours(&m.ours);
    let (pool, ort) = best(&Ort::of(b, m, case));
    Row {
        stage: format!("large model · {} · {}", m.model, case.name()),
        measured: format!("{} per row (criterion median)", us(ours)),
        floor: format!(
            "onnxruntime, {pool}, less its Python call: {} ({} as timed)",
            us(ort.less_call),
            us(ort.measured)
        ),
        ratio: ratio(ours, ort.less_call),
        // onnxruntime is a rival, not a floor: the ratio is no slowdown of ours.
        ranked: false,
        excess_ms: None,
        target: "faster than onnxruntime per row".to_owned(),
        verdict: Verdict::of(ours < ort.less_call),
        command: command.to_owned(),
    }
}

fn decode_row(m: &ModelBenchModel, command: &str) -> Row {
    let session = m.onnxruntime.threads_1.session_create_ms;
    Row {
        stage: format!("large model · {} · decode at init", m.model),
        measured: format!(
            "{} (artifact {})",
            us(m.ours.decode_us * 1e3),
            mb(m.artifact_bytes)
        ),
        floor: format!(
            "onnxruntime session creation, 1 thread: {} (ONNX file {})",
            ms(session),
            mb(m.onnx_bytes)
        ),
        ratio: ratio(m.ours.decode_us / 1e3, session),
        ranked: false,
        excess_ms: None,
        target: "none set; see the cold start with it embedded".to_owned(),
        verdict: Verdict::NoTarget,
        command: command.to_owned(),
    }
}

fn cold_row(iris: &ColdStart, gbm: &ColdStart) -> Row {
    let delta = gbm.cold_total_ms.p50 - iris.cold_total_ms.p50;
    Row {
        stage: "cold start · predict with the large GBM embedded · init + first invocation"
            .to_owned(),
        measured: format!(
            "{}; {delta:+.2} ms at p50 and {:+.2} ms at p90 against the Iris build",
            spread_ms(&gbm.cold_total_ms),
            gbm.cold_total_ms.p90 - iris.cold_total_ms.p90
        ),
        floor: format!(
            "the Iris build, runs alternating: {}",
            ms(iris.cold_total_ms.p50)
        ),
        ratio: ratio(gbm.cold_total_ms.p50, iris.cold_total_ms.p50),
        ranked: true,
        excess_ms: Some(delta),
        target: "within 2 ms of the Iris build (p50)".to_owned(),
        verdict: Verdict::of(
            delta <= COLD_DELTA_TARGET_MS && gbm.failures.is_empty() && iris.failures.is_empty(),
        ),
        command: code(&gbm.command),
    }
}

fn inference_details(out: &mut String, b: &ModelBench, command: &str) {
    let call = &b.onnxruntime_call_overhead_ns;
    let _ = writeln!(
        out,
        "Models trained on 30 generated features, exported to ONNX and imported into this \
         project's artifact by {command}: {}. Ours: criterion medians of \
         `Ensemble::predict_into` (one row), `predict_batch_into` (100 rows, per row) and \
         `Ensemble::from_bytes` (the decode and validation at init). onnxruntime {}: the same \
         ONNX files and the same probe rows, medians of timed blocks of \
         `InferenceSession.run` from Python with `intra_op_num_threads=1` and with its default \
         pool, one row or 100 rows per call. A `run()` of an Identity graph times the call from \
         Python alone ({} with 1 thread, {} with the default pool); the columns \"less its call\" \
         take it off (shared by the call's rows). The tree ensemble's call returns two outputs \
         to the Identity graph's one, so those columns may still hold some of its call.\n",
        b.models
            .iter()
            .map(|(name, m)| format!("`{name}`, {}", m.model))
            .collect::<Vec<_>>()
            .join("; "),
        b.onnxruntime_version,
        us(call.threads_1),
        us(call.threads_default),
    );
    let _ = writeln!(
        out,
        "| model | case | ours | onnxruntime, 1 thread (less its call) | onnxruntime, default pool (less its call) | speedup, as timed | speedup, less its call |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (name, m) in &b.models {
        for case in Case::ALL {
            let ours = case.ours(&m.ours);
            let pools = Ort::of(b, m, case);
            let fastest_measured = pools.threads_1.measured.min(pools.threads_default.measured);
            let cell = |o: Ort| format!("{} ({})", us(o.measured), us(o.less_call));
            let speedup = |x: f64| ratio(x, ours).map_or(NONE.into(), |r| format!("{r:.1}×"));
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                case.name(),
                us(ours),
                cell(pools.threads_1),
                cell(pools.threads_default),
                speedup(fastest_measured),
                speedup(best(&pools).1.less_call),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nSpeedups are onnxruntime's faster thread setting over ours. Sizes and init:\n"
    );
    let _ = writeln!(
        out,
        "| model | our artifact | ONNX file | our decode at init | onnxruntime session creation, 1 thread / default pool |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (name, m) in &b.models {
        let _ = writeln!(
            out,
            "| {name} | {} ({} bytes) | {} | {} | {} / {} |",
            mb(m.artifact_bytes),
            m.artifact_bytes,
            mb(m.onnx_bytes),
            us(m.ours.decode_us * 1e3),
            ms(m.onnxruntime.threads_1.session_create_ms),
            ms(m.onnxruntime.threads_default.session_create_ms),
        );
    }
}

fn cold_details(
    out: &mut String,
    (iris, gbm): (&ColdStart, &ColdStart),
    decode_us: Option<f64>,
    inputs: &Inputs<'_>,
) {
    let _ = writeln!(out, "\n### Cold start with the large model embedded\n");
    let _ = writeln!(
        out,
        "The predict function built twice from the same source: with the Iris forest of \
         `model-artifacts/` ({}) and with the `{GBM_MODEL}` model above embedded instead \
         ({}), measured in one series whose runs alternate ({}). Each request to the \
         `{GBM_MODEL}` build carries one of its probe rows, each to the Iris build the Iris \
         row.\n",
        code(&inputs.args.command("build")),
        code(&inputs.args.command("gbm-build")),
        if gbm.conditions.is_empty() {
            code(&gbm.command)
        } else {
            format!("{}; {}", gbm.conditions, code(&gbm.command))
        }
    );
    let _ = writeln!(
        out,
        "| build | runs | failures | init | first invocation | init + first | peak RSS p50 | x86_64 release binary |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (name, c) in [("Iris", iris), (GBM_MODEL, gbm)] {
        let _ = writeln!(
            out,
            "| {name} (`{}`) | {} | {} | {} | {} | {} | {} | {} |",
            c.function,
            c.runs,
            c.failures.len(),
            spread_ms(&c.init_ms),
            spread_ms(&c.first_ms),
            spread_ms(&c.cold_total_ms),
            mib(c.peak_rss_kib.p50),
            mb(c.binary_bytes)
        );
    }
    let delta = |f: fn(&ColdStart) -> f64| format!("{:+.2} ms", f(gbm) - f(iris));
    let _ = writeln!(
        out,
        "\n`{GBM_MODEL}` against Iris: init {} at p50, first invocation {}, init + first {} at \
         p50 and {} at p90; release binary {:+.2} MB{}.",
        delta(|c| c.init_ms.p50),
        delta(|c| c.first_ms.p50),
        delta(|c| c.cold_total_ms.p50),
        delta(|c| c.cold_total_ms.p90),
        (gbm.binary_bytes as f64 - iris.binary_bytes as f64) / 1e6,
        decode_us.map_or(String::new(), |d| format!(
            "; the model's decode alone (criterion, above) takes {}",
            us(d * 1e3)
        ))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    /// onnxruntime at 10 µs per single row and 2 µs per row in a batch with either pool, its
    /// Python call costing `call` ns; ours at `ours` ns in both cases.
    fn bench(call: f64, ours: f64) -> (ModelBench, ModelBenchModel) {
        let ort = OrtTimes {
            session_create_ms: 5.0,
            row_ns: 10_000.0,
            batch_100_per_row_ns: 2_000.0,
        };
        let model = ModelBenchModel {
            model: "m".to_owned(),
            artifact_bytes: 1,
            onnx_bytes: 1,
            ours: OursTimes {
                decode_us: 1.0,
                row_ns: ours,
                batch_100_per_row_ns: ours,
            },
            onnxruntime: OrtPools {
                threads_1: ort.clone(),
                threads_default: ort,
            },
        };
        let bench = ModelBench {
            onnxruntime_version: "v".to_owned(),
            onnxruntime_call_overhead_ns: OrtPools {
                threads_1: call,
                threads_default: call,
            },
            models: [("m".to_owned(), model.clone())].into(),
        };
        (bench, model)
    }

    #[test]
    fn onnxruntime_is_judged_without_its_python_call() {
        let (b, m) = bench(4_000.0, 7_000.0);
        let row = inference_row(&b, &m, Case::Row, "c");
        assert_eq!(
            row.verdict,
            Verdict::Missed,
            "7 µs is not faster than 10 - 4 µs"
        );
        let (b, m) = bench(2_000.0, 7_000.0);
        let row = inference_row(&b, &m, Case::Row, "c");
        assert_eq!(row.verdict, Verdict::Met, "7 µs is faster than 10 - 2 µs");
    }

    #[test]
    fn a_batch_shares_the_call_among_its_rows() {
        let (b, m) = bench(4_000.0, 1_000.0);
        let pools = Ort::of(&b, &m, Case::Batch100);
        assert!((pools.threads_1.less_call - 1_960.0).abs() < 1e-9);
        assert_eq!(
            inference_row(&b, &m, Case::Batch100, "c").verdict,
            Verdict::Met
        );
    }

    #[test]
    fn the_faster_pool_is_the_one_compared() {
        let (mut b, mut m) = bench(0.0, 1.0);
        m.onnxruntime.threads_default.row_ns = 3_000.0;
        b.onnxruntime_call_overhead_ns.threads_default = 500.0;
        let (pool, ort) = best(&Ort::of(&b, &m, Case::Row));
        assert_eq!(pool, "default pool");
        assert!((ort.less_call - 2_500.0).abs() < 1e-9);
    }

    fn cold(total_ms: &[f64]) -> ColdStart {
        let s = Summary::of(total_ms).unwrap();
        ColdStart {
            function: "predict".to_owned(),
            binary: "b".to_owned(),
            binary_bytes: 1,
            runs: total_ms.len(),
            init_ms: s,
            first_ms: s,
            second_ms: s,
            cold_total_ms: s,
            peak_rss_kib: s,
            billed_cold_ms_mean: 0.0,
            failures: Vec::new(),
            conditions: String::new(),
            trust_check: None,
            command: "c".to_owned(),
        }
    }

    #[test]
    fn the_cold_start_with_the_large_model_may_take_two_ms_more_at_p50() {
        let iris = cold(&[10.0, 11.0, 30.0]);
        assert_eq!(
            cold_row(&iris, &cold(&[12.0, 13.0, 40.0])).verdict,
            Verdict::Met
        );
        assert_eq!(
            cold_row(&iris, &cold(&[12.0, 13.1, 14.0])).verdict,
            Verdict::Missed
        );
        let mut failed = cold(&[10.0, 11.0, 12.0]);
        failed.failures.push("422".to_owned());
        assert_eq!(cold_row(&iris, &failed).verdict, Verdict::Missed);
    }
}
