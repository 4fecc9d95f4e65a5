//! Trains the Iris forest and writes `model.bin` and `manifest.json` (see the crate docs).
//!
//! ```text
//! cargo run -p iris-model --bin train --release -- [--seed N] [--out-dir model-artifacts]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use iris_model::training::{TrainConfig, train_artifacts};
use iris_model::{ARTIFACT_FILE, DATA_FILE, MANIFEST_FILE};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

#[derive(Debug, Parser)]
#[command(about = "Train the Iris random forest and write its artifact and manifest")]
struct Args {
    /// Seed for bootstrap samples, feature subsets, hold-out split and folds.
    #[arg(long, default_value_t = TrainConfig::default().hyperparameters.seed)]
    seed: u64,
    /// Directory holding iris.csv; model.bin and manifest.json are written there.
    #[arg(long, default_value = "model-artifacts")]
    out_dir: PathBuf,
    /// Training data (default: iris.csv in --out-dir).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Number of trees.
    #[arg(long, default_value_t = TrainConfig::default().hyperparameters.n_trees)]
    n_trees: usize,
    /// Maximum tree depth (default: unlimited).
    #[arg(long)]
    max_depth: Option<u16>,
    /// Features drawn per tree (1-4).
    #[arg(long, default_value_t = TrainConfig::default().hyperparameters.max_features)]
    max_features: usize,
    /// Model version recorded in the manifest.
    #[arg(long, default_value_t = TrainConfig::default().model_version)]
    model_version: String,
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
    let mut config = TrainConfig::default();
    config.hyperparameters.seed = args.seed;
    config.hyperparameters.n_trees = args.n_trees;
    config.hyperparameters.max_depth = args.max_depth;
    config.hyperparameters.max_features = args.max_features;
    config.model_version = args.model_version;

    let data_path = args.data.unwrap_or_else(|| args.out_dir.join(DATA_FILE));
    let csv = std::fs::read(&data_path).map_err(|err| {
        format!(
            "cannot read {}: {err} (run from the workspace root or pass --out-dir/--data)",
            data_path.display()
        )
    })?;

    let started = Instant::now();
    let artifacts = train_artifacts(&csv, &config, &trained_at).map_err(|err| err.to_string())?;
    let elapsed = started.elapsed();

    let model_path = args.out_dir.join(ARTIFACT_FILE);
    let manifest_path = args.out_dir.join(MANIFEST_FILE);
    std::fs::write(&model_path, &artifacts.model)
        .map_err(|err| format!("cannot write {}: {err}", model_path.display()))?;
    std::fs::write(&manifest_path, artifacts.manifest.to_json())
        .map_err(|err| format!("cannot write {}: {err}", manifest_path.display()))?;

    let m = &artifacts.manifest.metrics;
    println!(
        "trained {} trees in {:.2?} (evaluation included)",
        artifacts.forest.n_trees(),
        elapsed
    );
    println!(
        "hold-out accuracy {:.4} ({:.0}% held out), {}-fold CV accuracy {:.4} ± {:.4}",
        m.holdout_accuracy,
        m.holdout_fraction * 100.0,
        m.cv_folds,
        m.cv_accuracy_mean,
        m.cv_accuracy_std
    );
    println!(
        "wrote {} ({} bytes, sha256 {}) and {}",
        model_path.display(),
        artifacts.model.len(),
        artifacts.manifest.sha256,
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
