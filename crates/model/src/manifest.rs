//! `manifest.json`: the model card served by `GET /model`, and the artifact's checksum.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Forest, ModelError};

/// Everything recorded about one trained artifact. Written by the training command next to
/// the artifact; unknown fields are rejected so a typo in a hand edit cannot go unnoticed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name, e.g. `iris-random-forest`.
    pub name: String,
    /// Model version (semver), served as `model_version`.
    pub version: String,
    /// Artifact file name inside `model-artifacts/`.
    pub file: String,
    /// Lowercase hex sha256 of the artifact file.
    pub sha256: String,
    /// How the artifact is encoded.
    pub format: String,
    /// The exact smartcore version the trees were trained with.
    pub smartcore_version: String,
    /// Human-readable algorithm name.
    pub algorithm: String,
    /// Everything needed, with the training data, to retrain the identical artifact.
    pub hyperparameters: Hyperparameters,
    /// Input features in request order.
    pub features: Vec<Feature>,
    /// Class labels; a prediction's class indexes this list.
    pub labels: Vec<String>,
    /// Accuracy figures computed by the training command.
    pub metrics: Metrics,
    /// RFC 3339 date-time of training (pinned for reproducible manifests).
    pub trained_at: String,
    /// The file the final model was trained on.
    pub training_data: TrainingData,
}

/// Forest hyper-parameters, named as in scikit-learn where the meaning is the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    /// Number of trees voting.
    pub n_trees: usize,
    /// Maximum tree depth (root = depth 1, smartcore's convention); `None`: unlimited.
    pub max_depth: Option<u16>,
    /// A node with fewer samples is not split.
    pub min_samples_split: usize,
    /// A split leaving fewer samples on either side is not made.
    pub min_samples_leaf: usize,
    /// Features each tree may use, drawn at random per tree (random subspace); 4 = all.
    pub max_features: usize,
    /// Whether each tree is trained on a bootstrap sample (n rows drawn with replacement).
    pub bootstrap: bool,
    /// Split quality measure.
    pub criterion: Criterion,
    /// Seed for every random choice in training and evaluation.
    pub seed: u64,
}

/// Split quality measure of the trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Criterion {
    /// Gini impurity.
    Gini,
    /// Shannon entropy.
    Entropy,
}

/// One input feature and the range the training data covered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// Feature name, e.g. `petal_length`.
    pub name: String,
    /// Unit of the values (`cm`).
    pub unit: String,
    /// Smallest value in the training data.
    pub training_min: f64,
    /// Largest value in the training data.
    pub training_max: f64,
}

/// Accuracy figures, computed by the training command, never typed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Accuracy on a stratified hold-out set of a model trained on the rest (4 decimals).
    pub holdout_accuracy: f64,
    /// Fraction of each class held out.
    pub holdout_fraction: f64,
    /// Number of stratified cross-validation folds.
    pub cv_folds: usize,
    /// Mean accuracy over the folds (4 decimals).
    pub cv_accuracy_mean: f64,
    /// Population standard deviation (ddof = 0, as numpy's default) of the fold accuracies
    /// (4 decimals).
    pub cv_accuracy_std: f64,
    /// Rows the final (served) model was trained on.
    pub n_train_rows: usize,
}

/// The training data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingData {
    /// File name inside `model-artifacts/`.
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// Number of data rows (header excluded).
    pub rows: usize,
}

impl Manifest {
    /// Parses `manifest.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ModelError> {
        serde_json::from_slice(bytes).map_err(ModelError::Manifest)
    }

    /// Pretty JSON with a trailing newline, byte-identical for equal manifests.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers to a String cannot fail: serde_json
        // only errors on non-string map keys or a failing writer, neither possible here.
        let mut json =
            serde_json::to_string_pretty(self).expect("a manifest always serializes to JSON");
        json.push('\n');
        json
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Checks that `artifact` is the file the manifest describes.
pub fn verify(artifact: &[u8], manifest: &Manifest) -> Result<(), ModelError> {
    let actual = sha256_hex(artifact);
    if actual.eq_ignore_ascii_case(&manifest.sha256) {
        Ok(())
    } else {
        Err(ModelError::ChecksumMismatch {
            expected: manifest.sha256.clone(),
            actual,
        })
    }
}

/// What a service does once at init: parse the manifest, check the artifact's sha256 against
/// it, decode the forest, and check it has the manifest's number of trees.
pub fn load_verified(
    artifact: &[u8],
    manifest_json: &[u8],
) -> Result<(Forest, Manifest), ModelError> {
    let manifest = Manifest::from_json(manifest_json)?;
    verify(artifact, &manifest)?;
    let forest = Forest::from_bytes(artifact)?;
    if forest.n_trees() != manifest.hyperparameters.n_trees {
        return Err(ModelError::InvalidModel(format!(
            "the artifact has {} trees, the manifest says {}",
            forest.n_trees(),
            manifest.hyperparameters.n_trees
        )));
    }
    Ok((forest, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_the_published_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
