//! The Iris model: a bagged forest of smartcore decision trees, stored in a compact artifact
//! of our own and evaluated without allocating.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | `forest` | [`Forest`] and [`Prediction`]: flat trees, voting, the artifact encoding and its validation |
//! | `manifest` | [`Manifest`] (the model card), [`sha256_hex`], [`verify`], [`load_verified`] |
//! | `dataset` | the Iris CSV parser (feature `training`) |
//! | [`training`] | bagging smartcore trees, converting them, hold-out and cross-validation (feature `training`) |
//! | `src/bin/train.rs` | the training command that writes `model-artifacts/` |
//!
//! The `training` feature is on by default so the training command runs without flags; the
//! workspace declares this crate with `default-features = false`, so the Lambda functions
//! compile inference only: no smartcore, clap or ChaCha.
//!
//! # Why a forest type of our own
//!
//! - **Vote shares.** `POST /predict` returns per-class probabilities and smartcore 0.7's
//!   `RandomForestClassifier` has no `predict_proba` and keeps its trees private.
//! - **Speed.** All trees live in one `Vec` of 16-byte nodes and a prediction walks them
//!   with no allocation and no trait-object or matrix indirection.
//! - **A safe, portable artifact.** Decoding a pickle runs code. Ours is plain data that is
//!   validated on load (every index in range, every walk provably finite), so even a corrupt
//!   or hostile file cannot make a prediction panic or loop. It also does not depend on
//!   smartcore's private serde layout at serving time. That layout is read once, at training
//!   time, where the pinned version makes it stable.
//!
//! Trees are trained by smartcore itself. Each of the `n_trees` trees is a public
//! `DecisionTreeClassifier` fitted on a bootstrap sample of the rows (and on a random subset
//! of the columns when `max_features < 4`; see [`training`] for why it is per tree rather than
//! per split). Then it is converted to our nodes. A test checks that every converted tree
//! predicts exactly what smartcore's `tree.predict` does: on the data, on thousands of random
//! points and on points lying exactly on split thresholds (smartcore sends `x <= threshold`
//! left, and so do we).
//!
//! # Voting and the tie-break
//!
//! Each tree votes for one class. `shares[k]` is the fraction of trees voting for class `k`
//! (the shares sum to 1), and `class` is the class with the most votes. **On a tie, the lowest
//! class index wins** (setosa < versicolor < virginica), so `class` is always the first argmax of
//! `shares`. The argmax is taken on the integer vote counts, so no rounding is involved.
//!
//! # The artifact
//!
//! `model-artifacts/model.bin` is the [postcard] encoding of `{ magic: "IRRF", format_version:
//! 1, n_features: 4, n_classes: 3, trees: [[Node]] }`. A node is `Split { feature: u8,
//! threshold: f64, left: u32 }` or `Leaf { class: u8 }`, and a split's children sit at `left`
//! and `left + 1` within its tree. postcard is a maintained, stable (1.x wire format), compact
//! serde format. It writes floats as their exact bits, has no maps and so no ordering
//! questions, and is about a third of the size of the same data as JSON. The encoding is
//! deterministic, so the same seed gives the same bytes.
//!
//! `model-artifacts/manifest.json` ([`Manifest`]) records the artifact's sha256, the
//! hyper-parameters and seed, feature ranges, labels, metrics and the training date.
//! [`load_verified`] checks the sha256 before decoding. The Iris data (`iris.csv`) holds
//! Fisher's published values, as in R's `iris` and scikit-learn's `load_iris`. These differ
//! from the UCI file in two setosa rows, 35 and 38, which UCI's own notes list as
//! transcription errors.
//!
//! # Retraining
//!
//! ```text
//! cargo run -p iris-model --bin train --release -- --seed 42 --out-dir model-artifacts
//! ```
//!
//! Run it from the workspace root. It reads `iris.csv`, computes a stratified 30% hold-out
//! accuracy and 5-fold stratified cross-validated accuracy, trains the final forest on all 150
//! rows and writes `model.bin` and `manifest.json`. `trained_at` comes from `--trained-at`,
//! else `SOURCE_DATE_EPOCH`, else today at 00:00 UTC, so a rerun gives identical files. A
//! test retrains with the manifest's hyper-parameters and date and requires both committed
//! files to come out identical, so a changed artifact always comes with its regenerated
//! manifest.

mod error;
mod forest;
mod manifest;

#[cfg(feature = "training")]
mod dataset;
#[cfg(feature = "training")]
pub mod training;

pub use error::ModelError;
pub use forest::{Forest, Prediction};
pub use manifest::{
    Criterion, Feature, Hyperparameters, Manifest, Metrics, TrainingData, load_verified,
    sha256_hex, verify,
};

#[cfg(feature = "training")]
pub use dataset::{CSV_HEADER, Dataset};

/// Number of input features.
pub const N_FEATURES: usize = 4;
/// Number of classes.
pub const N_CLASSES: usize = 3;
/// Feature names in input order (`[sepal_length, sepal_width, petal_length, petal_width]`, cm).
pub const FEATURE_NAMES: [&str; N_FEATURES] =
    ["sepal_length", "sepal_width", "petal_length", "petal_width"];
/// Class labels; [`Prediction::class`] indexes this array.
pub const LABELS: [&str; N_CLASSES] = ["setosa", "versicolor", "virginica"];

/// The artifact's file name in `model-artifacts/`.
pub const ARTIFACT_FILE: &str = "model.bin";
/// The manifest's file name in `model-artifacts/`.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The training data's file name in `model-artifacts/`.
pub const DATA_FILE: &str = "iris.csv";
