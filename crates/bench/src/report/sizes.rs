//! Sizes: the arm64 `bootstrap.zip` of each function, the artifact Lambda loads.

use std::path::Path;

use super::format::{NONE, code, mb};
use super::summary::{Row, Verdict};
use super::{Inputs, Section};

/// The target for a zipped function.
const ZIP_TARGET_BYTES: u64 = 4_000_000;

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    let command = code(&inputs.args.command("zip"));
    let rows = ["predict", "token"]
        .into_iter()
        .filter_map(|f| row(inputs, f, &command))
        .collect();
    Section {
        rows,
        details: String::new(),
    }
}

fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// The row of function `f`; `None` when there is no zip (`BENCH_SKIP_ZIP=1`, a failed build).
fn row(inputs: &Inputs<'_>, f: &str, command: &str) -> Option<Row> {
    let args = inputs.args;
    let zip = file_size(&args.lambda_dir.join(f).join("bootstrap.zip"))?;
    let bootstrap = file_size(&args.lambda_dir.join(f).join("bootstrap"));
    let x86 = file_size(&args.release_dir.join(f));
    Some(Row {
        stage: format!("size · {f} · arm64 `bootstrap.zip`"),
        measured: format!(
            "{} zipped{}",
            mb(zip),
            bootstrap.map_or(String::new(), |b| format!(" ({} unzipped)", mb(b)))
        ),
        floor: x86.map_or(NONE.into(), |x| {
            format!("x86_64 release binary (unzipped, for reference): {}", mb(x))
        }),
        ratio: None,
        ranked: false,
        excess_ms: None,
        target: "≤ 4 MB".to_owned(),
        verdict: Verdict::of(zip <= ZIP_TARGET_BYTES),
        command: command.to_owned(),
    })
}
