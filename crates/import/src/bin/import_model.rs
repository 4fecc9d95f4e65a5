//! Imports an ONNX-ML tree ensemble into `model-artifacts/` (see the crate docs).
//!
//! ```text
//! cargo run -p model-import --bin import-model --release -- --onnx model.onnx \
//!     [--name NAME] [--model-version X.Y.Z] [--features reference.csv] [--out-dir model-artifacts]
//! ```
//!
//! Exit status 0 on success; on any refusal one line on stderr and `--out-dir` untouched.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use model_import::{ImportOptions, import};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, Time};

#[derive(Debug, Parser)]
#[command(about = "Convert an ONNX-ML tree ensemble into model.bin and manifest.json")]
struct Args {
    /// The ONNX file (TreeEnsembleClassifier, TreeEnsembleRegressor or TreeEnsemble).
    #[arg(long)]
    onnx: PathBuf,
    /// Model name (default: the ONNX file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Model version recorded in the manifest.
    #[arg(long, default_value = "1.0.0")]
    model_version: String,
    /// Reference CSV: feature names in the header, training ranges from the rows.
    #[arg(long)]
    features: Option<PathBuf>,
    /// Directory that receives model.bin and manifest.json.
    #[arg(long, default_value = "model-artifacts")]
    out_dir: PathBuf,
    /// Import date, RFC 3339 (default: SOURCE_DATE_EPOCH, else today at 00:00 UTC).
    #[arg(long)]
    imported_at: Option<String>,
    /// Reproducible-builds timestamp (seconds since the epoch).
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: Option<i64>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("import-model: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<String, String> {
    let bytes = std::fs::read(&args.onnx)
        .map_err(|err| format!("cannot read {}: {err}", args.onnx.display()))?;
    let features_csv = args
        .features
        .as_ref()
        .map(|path| {
            std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
        })
        .transpose()?;
    let imported_at = match (&args.imported_at, args.source_date_epoch) {
        (Some(text), _) => OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| format!("--imported-at `{text}` is not an RFC 3339 date-time"))?,
        (None, Some(seconds)) => OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|err| format!("SOURCE_DATE_EPOCH {seconds} is out of range: {err}"))?,
        (None, None) => OffsetDateTime::now_utc()
            .date()
            .with_time(Time::MIDNIGHT)
            .assume_utc(),
    }
    .format(&Rfc3339)
    .map_err(|err| format!("cannot format the import date: {err}"))?;
    let options = ImportOptions {
        file_name: args
            .onnx
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        name: args.name.clone(),
        version: args.model_version.clone(),
        imported_at,
        features_csv,
    };
    let imported = import(&bytes, &options).map_err(|err| err.to_string())?;

    let (model_path, manifest_path) =
        tree_model::write_artifacts(&args.out_dir, &imported.model, &imported.manifest)
            .map_err(|err| format!("cannot write into {}: {err}", args.out_dir.display()))?;
    let manifest = &imported.manifest;
    Ok(format!(
        "imported {} ({:?}, {} trees, {} nodes, {} features) from {}: wrote {} ({} bytes, sha256 {}) and {}",
        manifest.name,
        manifest.task,
        imported.ensemble.n_trees(),
        imported.ensemble.n_nodes(),
        imported.ensemble.n_features(),
        args.onnx.display(),
        model_path.display(),
        imported.model.len(),
        manifest.sha256,
        manifest_path.display()
    ))
}
