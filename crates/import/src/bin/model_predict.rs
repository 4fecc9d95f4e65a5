//! Predicts rows with an artifact: CSV rows (no header, one value per feature, `nan` for a
//! missing value) on stdin, one answer per line on stdout.
//!
//! ```text
//! model-predict --artifact model-artifacts/model.bin [--manifest model-artifacts/manifest.json] < rows.csv
//! ```
//!
//! A classifier's line is `class,score_0,...,score_k`, a regressor's the value; numbers are
//! printed in their shortest form that reads back to the same `f64`. Every row is predicted
//! twice, through the batch path and the single-row path, and the command fails if the two
//! ever differ. With `--manifest` the artifact is checked against it first, as at init.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tree_model::{Batch, Ensemble, Outcome, load_verified};

#[derive(Debug, Parser)]
#[command(about = "Predict CSV rows from stdin with a model artifact")]
struct Args {
    /// The artifact (model.bin).
    #[arg(long)]
    artifact: PathBuf,
    /// Its manifest: when given, the sha256 and shape are verified as the API does at init.
    #[arg(long)]
    manifest: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("model-predict: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let artifact = std::fs::read(&args.artifact)
        .map_err(|err| format!("cannot read {}: {err}", args.artifact.display()))?;
    let ensemble = match &args.manifest {
        Some(path) => {
            let manifest = std::fs::read(path)
                .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
            load_verified(&artifact, &manifest)
                .map_err(|e| e.to_string())?
                .0
        }
        None => Ensemble::from_bytes(&artifact).map_err(|e| e.to_string())?,
    };
    let n = ensemble.n_features();
    let mut rows = Vec::new();
    for (number, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|err| format!("cannot read stdin: {err}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let before = rows.len();
        for field in line.split(',') {
            let value: f64 = field
                .trim()
                .parse()
                .map_err(|_| format!("line {}: `{field}` is not a number", number + 1))?;
            rows.push(value);
        }
        if rows.len() - before != n {
            return Err(format!(
                "line {} has {} values, the model takes {n}",
                number + 1,
                rows.len() - before
            ));
        }
    }
    let mut batch = Batch::new();
    ensemble.predict_batch_into(&rows, &mut batch);
    let mut scratch = ensemble.scratch();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (index, row) in rows.chunks_exact(n).enumerate() {
        let outcome = batch.get(index);
        if ensemble.predict_into(row, &mut scratch) != outcome {
            return Err(format!(
                "row {}: the batch and row paths disagree",
                index + 1
            ));
        }
        let line = match outcome {
            Outcome::Class { class, scores } => {
                let scores: Vec<String> = scores.iter().map(|s| format!("{s:?}")).collect();
                format!("{class},{}", scores.join(","))
            }
            Outcome::Value(value) => format!("{value:?}"),
        };
        writeln!(out, "{line}").map_err(|err| format!("cannot write stdout: {err}"))?;
    }
    out.flush()
        .map_err(|err| format!("cannot write stdout: {err}"))
}
