//! Trains a random forest on a CSV and writes `model.bin` and `manifest.json` (see the crate
//! docs; `make train` passes the Iris default's arguments).
//!
//! ```text
//! cargo run -p tree-model --bin train --release -- --data PATH.csv --target COLUMN \
//!     [--name NAME] [--model-version X.Y.Z] [--unit cm] [--exclusive-minimum 0 --maximum 100] \
//!     [--seed N] [--out-dir model-artifacts]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};
use tree_model::Criterion;
use tree_model::dataset::TaskChoice;
use tree_model::training::{FeatureTemplate, TrainConfig, train_artifacts};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TaskArg {
    /// Classification for labels or a few distinct integers, regression otherwise.
    Auto,
    Classification,
    Regression,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CriterionArg {
    Gini,
    Entropy,
}

#[derive(Debug, Parser)]
#[command(about = "Train a random forest on a CSV and write its artifact and manifest")]
struct Args {
    /// Training data: a CSV with a header row; every column but the target is a numeric feature.
    #[arg(long)]
    data: PathBuf,
    /// Name of the target column.
    #[arg(long)]
    target: String,
    /// How to read the target column.
    #[arg(long, value_enum, default_value_t = TaskArg::Auto)]
    task: TaskArg,
    /// Model name (default: the data file's stem followed by `-random-forest`).
    #[arg(long)]
    name: Option<String>,
    /// Model version recorded in the manifest.
    #[arg(long, default_value = "1.0.0")]
    model_version: String,
    /// Directory that receives model.bin and manifest.json.
    #[arg(long, default_value = "model-artifacts")]
    out_dir: PathBuf,
    /// Seed for bootstrap samples, feature subsets, hold-out split and folds.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of trees.
    #[arg(long, default_value_t = 50)]
    n_trees: usize,
    /// Maximum tree depth (default: unlimited).
    #[arg(long)]
    max_depth: Option<u16>,
    /// Features drawn per tree (default: all).
    #[arg(long)]
    max_features: Option<usize>,
    /// Split criterion of classification trees.
    #[arg(long, value_enum, default_value_t = CriterionArg::Gini)]
    criterion: CriterionArg,
    /// Unit of every feature, recorded in the manifest (e.g. `cm`).
    #[arg(long)]
    unit: Option<String>,
    /// Smallest value a request may send for any feature.
    #[arg(long, allow_negative_numbers = true)]
    minimum: Option<f64>,
    /// A request's values must be greater than this.
    #[arg(long, allow_negative_numbers = true)]
    exclusive_minimum: Option<f64>,
    /// Largest value a request may send for any feature.
    #[arg(long, allow_negative_numbers = true)]
    maximum: Option<f64>,
    /// A request's values must be less than this.
    #[arg(long, allow_negative_numbers = true)]
    exclusive_maximum: Option<f64>,
    /// Training date, RFC 3339 (`2026-01-31T00:00:00Z`) or a plain date (`2026-01-31`).
    #[arg(long)]
    trained_at: Option<String>,
    /// Reproducible-builds timestamp (seconds since the epoch), used when --trained-at is absent.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: Option<i64>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let trained_at = trained_at(&args)?;
    let config = TrainConfig {
        task: match args.task {
            TaskArg::Auto => TaskChoice::Auto,
            TaskArg::Classification => TaskChoice::Classification,
            TaskArg::Regression => TaskChoice::Regression,
        },
        name: args.name.clone(),
        model_version: args.model_version.clone(),
        n_trees: args.n_trees,
        max_depth: args.max_depth,
        max_features: args.max_features,
        criterion: match args.criterion {
            CriterionArg::Gini => Criterion::Gini,
            CriterionArg::Entropy => Criterion::Entropy,
        },
        seed: args.seed,
        features: FeatureTemplate {
            unit: args.unit.clone(),
            minimum: args.minimum,
            exclusive_minimum: args.exclusive_minimum,
            maximum: args.maximum,
            exclusive_maximum: args.exclusive_maximum,
        },
        ..TrainConfig::new(args.target.clone())
    };
    let csv = std::fs::read(&args.data).map_err(|err| {
        format!(
            "cannot read {}: {err} (paths are relative to the workspace root)",
            args.data.display()
        )
    })?;
    let data_file = args
        .data
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.data.display().to_string());

    let started = Instant::now();
    let artifacts =
        train_artifacts(&csv, &data_file, &config, &trained_at).map_err(|err| err.to_string())?;
    let elapsed = started.elapsed();

    let (model_path, manifest_path) =
        tree_model::write_artifacts(&args.out_dir, &artifacts.model, &artifacts.manifest)
            .map_err(|err| format!("cannot write into {}: {err}", args.out_dir.display()))?;

    let manifest = &artifacts.manifest;
    println!(
        "trained {} trees on {} rows ({:?}) in {:.2?} (evaluation included)",
        artifacts.ensemble.n_trees(),
        manifest.training_data.as_ref().map_or(0, |d| d.rows),
        manifest.task,
        elapsed
    );
    if let Some(m) = &manifest.metrics {
        if let (Some(holdout), Some(mean), Some(std)) =
            (m.holdout_accuracy, m.cv_accuracy_mean, m.cv_accuracy_std)
        {
            println!(
                "hold-out accuracy {holdout:.4} ({:.0}% held out), {}-fold CV accuracy {mean:.4} ± {std:.4}",
                m.holdout_fraction * 100.0,
                m.cv_folds
            );
        }
        if let (Some(r2), Some(rmse), Some(mean), Some(std)) =
            (m.holdout_r2, m.holdout_rmse, m.cv_r2_mean, m.cv_r2_std)
        {
            println!(
                "hold-out R² {r2:.4}, RMSE {rmse} ({:.0}% held out), {}-fold CV R² {mean:.4} ± {std:.4}",
                m.holdout_fraction * 100.0,
                m.cv_folds
            );
        }
    }
    println!(
        "wrote {} ({} bytes, sha256 {}) and {}",
        model_path.display(),
        artifacts.model.len(),
        manifest.sha256,
        manifest_path.display()
    );
    Ok(())
}

/// `--trained-at`, else `SOURCE_DATE_EPOCH`, else today at midnight UTC: never the current
/// time of day, so two runs on the same day write the same manifest.
fn trained_at(args: &Args) -> Result<String, String> {
    let moment = if let Some(text) = &args.trained_at {
        match OffsetDateTime::parse(text, &Rfc3339) {
            Ok(moment) => moment,
            Err(_) => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                let date = Date::parse(text, &format).map_err(|_| {
                    format!("--trained-at `{text}` is neither an RFC 3339 date-time nor YYYY-MM-DD")
                })?;
                date.with_time(Time::MIDNIGHT).assume_utc()
            }
        }
    } else if let Some(seconds) = args.source_date_epoch {
        OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|err| format!("SOURCE_DATE_EPOCH {seconds} is out of range: {err}"))?
    } else {
        OffsetDateTime::now_utc()
            .date()
            .with_time(Time::MIDNIGHT)
            .assume_utc()
    };
    moment
        .format(&Rfc3339)
        .map_err(|err| format!("cannot format the training date: {err}"))
}
