//! Sizes: the arm64 `bootstrap.zip` of each function, the artifact Lambda loads.

use std::path::Path;

use super::format::{NONE, code, mb};
use super::summary::{Row, Verdict};
use super::{Inputs, Section};

/// A size limit and how the report states it.
struct Target {
    bytes: u64,
    text: &'static str,
}

/// The target for each zipped function.
const ZIP_TARGET: Target = Target {
    bytes: 4_000_000,
    text: "≤ 4 MB",
};
/// The target for the predict zip with the Iris model embedded: serving any model must not
/// grow the default's package. bench.sh builds the zips from `model-artifacts/` as committed,
/// the Iris forest (its requests are Iris rows).
const IRIS_ZIP_TARGET: Target = Target {
    bytes: 4 * 1024 * 1024,
    text: "≤ 4 MiB",
};

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    let command = code(&inputs.args.command("zip"));
    let rows = [
        ("predict", "predict", &ZIP_TARGET),
        ("token", "token", &ZIP_TARGET),
        ("predict", "predict with the Iris model", &IRIS_ZIP_TARGET),
    ]
    .into_iter()
    .filter_map(|(f, label, target)| row(inputs, f, label, target, &command))
    .collect();
    Section {
        rows,
        details: String::new(),
    }
}

fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// The row of function `f` against `target`; `None` when there is no zip (`BENCH_SKIP_ZIP=1`,
/// a failed build).
fn row(inputs: &Inputs<'_>, f: &str, label: &str, target: &Target, command: &str) -> Option<Row> {
    let args = inputs.args;
    let zip = file_size(&args.lambda_dir.join(f).join("bootstrap.zip"))?;
    let bootstrap = file_size(&args.lambda_dir.join(f).join("bootstrap"));
    let x86 = file_size(&args.release_dir.join(f));
    Some(Row {
        stage: format!("size · {label} · arm64 `bootstrap.zip`"),
        measured: format!(
            "{} zipped ({zip} bytes){}",
            mb(zip),
            bootstrap.map_or(String::new(), |b| format!(", {} unzipped", mb(b)))
        ),
        floor: x86.map_or(NONE.into(), |x| {
            format!("x86_64 release binary (unzipped, for reference): {}", mb(x))
        }),
        ratio: None,
        ranked: false,
        excess_ms: None,
        target: target.text.to_owned(),
        verdict: Verdict::of(zip <= target.bytes),
        command: command.to_owned(),
    })
}
