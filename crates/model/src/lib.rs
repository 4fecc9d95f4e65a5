//! Tree-ensemble models: a compact, validated artifact of our own, allocation-free inference,
//! the model card (`manifest.json`), and training with smartcore.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `ensemble` | [`Ensemble`]: the artifact encoding ([`EnsembleSpec`]), its validation, and inference (row and batch) |
//! | `manifest` | [`Manifest`] (the model card), [`sha256_hex`], [`verify`], [`load_verified`] |
//! | [`dataset`] | CSV training data, classification or regression (feature `training`) |
//! | [`training`] | bagging smartcore trees, converting them, hold-out and cross-validation (feature `training`) |
//! | `src/bin/train.rs` | the training command that writes `model-artifacts/` |
//!
//! Models trained elsewhere (scikit-learn, XGBoost, LightGBM through ONNX) are converted into
//! the same artifact at build time by the `model-import` crate; this crate never reads ONNX.
//! The `training` feature is on by default so the training command runs without flags; the
//! workspace declares this crate with `default-features = false`, so the Lambda functions
//! compile inference only: no smartcore, clap or ChaCha.
//!
//! # Why an ensemble type of our own
//!
//! - **One runtime for every model.** The ONNX-ML tree-ensemble semantics (every branch mode,
//!   missing values, float32 comparisons, sum/average/min/max, base values, softmax/logistic/
//!   probit, single-score binary classifiers) cover what smartcore, scikit-learn, XGBoost and
//!   LightGBM produce, so the API serves any of them the same way.
//! - **Speed.** All trees live in one vector of 16-byte nodes laid out breadth-first; a
//!   prediction walks them with no allocation, and a batch is evaluated tree by tree.
//! - **A safe, portable artifact.** Decoding a pickle runs code, and an ONNX runtime is a large
//!   native dependency. Ours is plain data that is validated on load (every index in range,
//!   every walk provably finite, sizes capped), so even a corrupt or hostile file cannot make a
//!   prediction panic or loop.
//!
//! # The artifact
//!
//! `model-artifacts/model.bin` is the [postcard] encoding of `{ magic: "SMTE", format_version:
//! 1, spec: EnsembleSpec }`. postcard is a maintained, stable (1.x wire format), compact serde
//! format. It writes floats as their exact bits and has no maps, so the encoding is
//! deterministic: the same seed gives the same bytes.
//!
//! `model-artifacts/manifest.json` ([`Manifest`]) records the artifact's sha256, the task,
//! features (names, units, training and allowed ranges), labels, and where the model came from.
//! [`load_verified`] checks the sha256 before decoding and the manifest against the artifact.
//!
//! # The default model
//!
//! The default is a random forest trained on Fisher's Iris data (`model-artifacts/iris.csv`,
//! Fisher's published values as in R's `iris` and scikit-learn's `load_iris`; these differ from
//! the UCI file in two setosa rows, 35 and 38, which UCI's own notes list as transcription
//! errors). Its class scores are vote shares, bit for bit what the forest returned before this
//! crate served other models.
//!
//! # Retraining
//!
//! ```text
//! make train                                  # the Iris default
//! make train DATA=path.csv TARGET=column      # any numeric CSV
//! ```
//!
//! Run from the workspace root. The command computes a (stratified) 30% hold-out metric and
//! 5-fold cross-validation, trains the final forest on all rows and writes `model.bin` and
//! `manifest.json`. `trained_at` comes from `--trained-at`, else `SOURCE_DATE_EPOCH`, else today
//! at 00:00 UTC, so a rerun gives identical files. A test retrains the committed model with the
//! manifest's settings and requires both committed files to come out identical.

pub mod ensemble;
mod error;
mod manifest;

#[cfg(feature = "training")]
pub mod dataset;
#[cfg(feature = "training")]
pub mod training;

pub use ensemble::{
    Aggregate, Batch, Ensemble, EnsembleSpec, Mode, NodeSpec, Outcome, PostTransform, Precision,
    Prediction, Scoring, Scratch, Task,
};
pub use error::ModelError;
pub use manifest::{
    AllowedRange, Criterion, Feature, Hyperparameters, Manifest, Metrics, Source, TaskKind,
    TrainingData, check_agreement, load_verified, sha256_hex, verify,
};

/// `format` in the manifest: how `model.bin` is encoded (magic and version of [`ensemble`]).
pub const ARTIFACT_FORMAT: &str = "postcard (SMTE tree-ensemble format v1)";
/// The artifact's file name in `model-artifacts/`.
pub const ARTIFACT_FILE: &str = "model.bin";
/// The manifest's file name in `model-artifacts/`.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Writes `model.bin` and `manifest.json` into `dir` and returns their paths. Both files are
/// written next to their final names and renamed only once both exist, so a failed run never
/// leaves a model without its manifest (or the other way round).
///
/// # Errors
/// The first I/O error; the temporary files are removed then.
pub fn write_artifacts(
    dir: &std::path::Path,
    model: &[u8],
    manifest: &Manifest,
) -> std::io::Result<(std::path::PathBuf, std::path::PathBuf)> {
    fn temp_path(path: &std::path::Path) -> std::path::PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}", std::process::id()));
        path.with_file_name(name)
    }
    let model_path = dir.join(ARTIFACT_FILE);
    let manifest_path = dir.join(MANIFEST_FILE);
    let model_tmp = temp_path(&model_path);
    let manifest_tmp = temp_path(&manifest_path);
    let written = std::fs::write(&model_tmp, model)
        .and_then(|()| std::fs::write(&manifest_tmp, manifest.to_json()))
        .and_then(|()| std::fs::rename(&model_tmp, &model_path))
        .and_then(|()| std::fs::rename(&manifest_tmp, &manifest_path));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&model_tmp);
        let _ = std::fs::remove_file(&manifest_tmp);
        return Err(err);
    }
    Ok((model_path, manifest_path))
}
