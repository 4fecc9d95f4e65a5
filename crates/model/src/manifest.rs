//! `manifest.json`: everything the API knows about the served model, and the artifact's checksum.
//!
//! One manifest shape describes every model: its name and version, the artifact file and its
//! sha256, the task (`classification` with its labels, or `regression`), the input features in
//! request order (name, unit, the range seen in training, the range a request may use), and
//! where the model came from: trained here with smartcore (algorithm, hyper-parameters,
//! metrics, training data, date) or imported from an ONNX file (its sha256, producer, operator,
//! date). [`Manifest::from_json`] checks that the pieces fit together, and [`load_verified`]
//! checks the manifest against the artifact, so the serving code can trust both.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Ensemble, ModelError};

/// Everything recorded about one artifact. Unknown fields are rejected so a typo in a hand
/// edit cannot go unnoticed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name, e.g. `iris-random-forest`.
    pub name: String,
    /// Model version, served as `model_version`.
    pub version: String,
    /// Artifact file name inside `model-artifacts/`.
    pub file: String,
    /// Lowercase hex sha256 of the artifact file.
    pub sha256: String,
    /// How the artifact is encoded.
    pub format: String,
    /// Classification or regression.
    pub task: TaskKind,
    /// Human-readable algorithm name.
    pub algorithm: String,
    /// Hyper-parameters of a model trained here (with the training data, enough to retrain it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperparameters: Option<Hyperparameters>,
    /// The exact smartcore version a model trained here was trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smartcore_version: Option<String>,
    /// Input features in request order.
    pub features: Vec<Feature>,
    /// Class labels (classification only); a prediction's class indexes this list. Integer
    /// class labels are written as decimal strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Figures computed by the training command, never typed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// RFC 3339 date-time of training (pinned for reproducible manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_at: Option<String>,
    /// The file a model trained here was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_data: Option<TrainingData>,
    /// The file an imported model came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// RFC 3339 date-time of the import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_at: Option<String>,
}

/// The task as the manifest names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// The answer is a class (with labels).
    Classification,
    /// The answer is a number.
    Regression,
}

/// Forest hyper-parameters, named as in scikit-learn where the meaning is the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    /// Number of trees.
    pub n_trees: usize,
    /// Maximum tree depth (root = depth 1, smartcore's convention); `None`: unlimited.
    pub max_depth: Option<u16>,
    /// A node with fewer samples is not split.
    pub min_samples_split: usize,
    /// A split leaving fewer samples on either side is not made.
    pub min_samples_leaf: usize,
    /// Features each tree may use, drawn at random per tree (random subspace); all = plain bagging.
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
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// Gini impurity (classification).
    Gini,
    /// Shannon entropy (classification).
    Entropy,
    /// Variance reduction (regression; smartcore's only regression criterion).
    SquaredError,
}

/// One input feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// Feature name, e.g. `petal_length`.
    pub name: String,
    /// Unit of the values, e.g. `cm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Smallest value in the training data (absent when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_min: Option<f64>,
    /// Largest value in the training data (absent when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_max: Option<f64>,
    /// Smallest value a request may send (JSON Schema `minimum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// A request's value must be greater than this (JSON Schema `exclusiveMinimum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_minimum: Option<f64>,
    /// Largest value a request may send (JSON Schema `maximum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// A request's value must be less than this (JSON Schema `exclusiveMaximum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_maximum: Option<f64>,
}

impl Feature {
    /// A feature with only a name: any finite value allowed, training range unknown.
    pub fn named(name: impl Into<String>) -> Feature {
        Feature {
            name: name.into(),
            unit: None,
            training_min: None,
            training_max: None,
            minimum: None,
            exclusive_minimum: None,
            maximum: None,
            exclusive_maximum: None,
        }
    }

    /// `(min, max)` seen in training, when known.
    pub fn training_range(&self) -> Option<(f64, f64)> {
        self.training_min.zip(self.training_max)
    }

    /// Whether `value` lies outside the training range (never, when that range is unknown).
    pub fn is_outside_training_range(&self, value: f64) -> bool {
        self.training_range()
            .is_some_and(|(min, max)| value < min || value > max)
    }

    /// The values a request may send for this feature.
    pub fn allowed(&self) -> AllowedRange {
        AllowedRange {
            minimum: self.minimum,
            exclusive_minimum: self.exclusive_minimum,
            maximum: self.maximum,
            exclusive_maximum: self.exclusive_maximum,
        }
    }
}

/// The values a request may send for a feature: finite, and within the bounds that are set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AllowedRange {
    /// Inclusive lower bound.
    pub minimum: Option<f64>,
    /// Exclusive lower bound.
    pub exclusive_minimum: Option<f64>,
    /// Inclusive upper bound.
    pub maximum: Option<f64>,
    /// Exclusive upper bound.
    pub exclusive_maximum: Option<f64>,
}

impl AllowedRange {
    /// Whether `value` is finite and within every bound that is set.
    pub fn contains(&self, value: f64) -> bool {
        value.is_finite()
            && self.minimum.is_none_or(|m| value >= m)
            && self.exclusive_minimum.is_none_or(|m| value > m)
            && self.maximum.is_none_or(|m| value <= m)
            && self.exclusive_maximum.is_none_or(|m| value < m)
    }

    /// The range in interval notation, e.g. `(0, 100]`, `[0, ∞)`, `any finite number`.
    pub fn describe(&self) -> String {
        let (open, low) = match (self.exclusive_minimum, self.minimum) {
            (Some(m), _) => ("(", m.to_string()),
            (None, Some(m)) => ("[", m.to_string()),
            (None, None) => ("(", "-∞".to_owned()),
        };
        let (close, high) = match (self.exclusive_maximum, self.maximum) {
            (Some(m), _) => (")", m.to_string()),
            (None, Some(m)) => ("]", m.to_string()),
            (None, None) => (")", "∞".to_owned()),
        };
        if low == "-∞" && high == "∞" {
            "any finite number".to_owned()
        } else {
            format!("{open}{low}, {high}{close}")
        }
    }
}

/// Figures computed by the training command. Classifiers carry accuracies, regressors R² and
/// RMSE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Accuracy on a (stratified) hold-out set of a model trained on the rest (4 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_accuracy: Option<f64>,
    /// R² on the hold-out set (regression, 4 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_r2: Option<f64>,
    /// Root mean squared error on the hold-out set (regression, 4 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_rmse: Option<f64>,
    /// Fraction of the rows (of each class) held out.
    pub holdout_fraction: f64,
    /// Number of cross-validation folds.
    pub cv_folds: usize,
    /// Mean accuracy over the folds (4 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_accuracy_mean: Option<f64>,
    /// Population standard deviation (ddof = 0) of the fold accuracies (4 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_accuracy_std: Option<f64>,
    /// Mean R² over the folds (regression, 4 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_r2_mean: Option<f64>,
    /// Population standard deviation of the fold R² (regression, 4 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_r2_std: Option<f64>,
    /// Rows the final (served) model was trained on.
    pub n_train_rows: usize,
}

/// The training data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingData {
    /// File name (inside `model-artifacts/` for the default model).
    pub file: String,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
    /// Number of data rows (header excluded).
    pub rows: usize,
}

/// Where an imported model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The file's kind: `onnx`.
    pub kind: String,
    /// The imported file's name.
    pub file: String,
    /// Lowercase hex sha256 of the imported file.
    pub sha256: String,
    /// `producer_name` recorded in the file (e.g. `skl2onnx`).
    pub producer_name: String,
    /// `producer_version` recorded in the file.
    pub producer_version: String,
    /// The tree-ensemble operator converted (e.g. `TreeEnsembleClassifier`).
    pub op: String,
    /// The `ai.onnx.ml` opset version the file imports.
    pub opset: i64,
}

impl Manifest {
    /// Parses `manifest.json` and checks that its parts fit together (see [`Manifest::check`]).
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ModelError> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(ModelError::Manifest)?;
        manifest.check()?;
        Ok(manifest)
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

    /// Classification or regression.
    pub fn task(&self) -> TaskKind {
        self.task
    }

    /// The input features, in request order.
    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// Class labels (empty for a regressor).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Checks the rules a serde derive cannot express: unique non-empty feature names, sane
    /// ranges, labels for (and only for) a classifier, and exactly one provenance: trained here
    /// (hyper-parameters, smartcore version, metrics, training data, date) or imported (source
    /// and date).
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |message: String| Err(ModelError::InvalidManifest(message));
        if self.features.is_empty() {
            return bad("`features` is empty".to_owned());
        }
        let mut names = std::collections::HashSet::new();
        for (index, feature) in self.features.iter().enumerate() {
            let name = &feature.name;
            if name.is_empty() || name.chars().any(char::is_control) {
                return bad(format!("feature {index} has an empty or unprintable name"));
            }
            if !names.insert(name.as_str()) {
                return bad(format!("feature `{name}` appears more than once"));
            }
            match (feature.training_min, feature.training_max) {
                (Some(min), Some(max)) if min.is_finite() && max.is_finite() && min <= max => {}
                (None, None) => {}
                _ => {
                    return bad(format!(
                        "feature `{name}`: training_min and training_max must both be finite with min <= max, or both absent"
                    ));
                }
            }
            let bounds = [
                feature.minimum,
                feature.exclusive_minimum,
                feature.maximum,
                feature.exclusive_maximum,
            ];
            if bounds.iter().flatten().any(|b| !b.is_finite()) {
                return bad(format!("feature `{name}`: a bound is not finite"));
            }
            if feature.minimum.is_some() && feature.exclusive_minimum.is_some()
                || feature.maximum.is_some() && feature.exclusive_maximum.is_some()
            {
                return bad(format!(
                    "feature `{name}`: give either minimum or exclusive_minimum (and maximum or exclusive_maximum), not both"
                ));
            }
            let low = feature.minimum.or(feature.exclusive_minimum);
            let high = feature.maximum.or(feature.exclusive_maximum);
            if let (Some(low), Some(high)) = (low, high)
                && low > high
            {
                return bad(format!("feature `{name}`: the allowed range is empty"));
            }
        }
        match self.task {
            TaskKind::Classification => {
                if self.labels.len() < 2 {
                    return bad("a classifier needs at least two labels".to_owned());
                }
                let unique: std::collections::HashSet<&String> = self.labels.iter().collect();
                if unique.len() != self.labels.len() {
                    return bad("`labels` has duplicates".to_owned());
                }
            }
            TaskKind::Regression => {
                if !self.labels.is_empty() {
                    return bad("a regressor has no labels".to_owned());
                }
            }
        }
        let trained = [
            self.hyperparameters.is_some(),
            self.smartcore_version.is_some(),
            self.metrics.is_some(),
            self.training_data.is_some(),
            self.trained_at.is_some(),
        ];
        let imported = [self.source.is_some(), self.imported_at.is_some()];
        let all_trained = trained.iter().all(|&b| b);
        let any_trained = trained.iter().any(|&b| b);
        let all_imported = imported.iter().all(|&b| b);
        let any_imported = imported.iter().any(|&b| b);
        let one_provenance = match (any_trained, any_imported) {
            (true, false) => all_trained,
            (false, true) => all_imported,
            _ => false,
        };
        if !one_provenance {
            return bad(
                "give either hyperparameters, smartcore_version, metrics, training_data and trained_at (a model trained here) or source and imported_at (an imported model)".to_owned(),
            );
        }
        Ok(())
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

/// Checks that a decoded ensemble is the model the manifest describes: feature count, task,
/// label count and (for a model trained here) tree count.
pub fn check_agreement(ensemble: &Ensemble, manifest: &Manifest) -> Result<(), ModelError> {
    let mismatch = |message: String| Err(ModelError::InvalidModel(message));
    if ensemble.n_features() != manifest.features.len() {
        return mismatch(format!(
            "the artifact takes {} features, the manifest lists {}",
            ensemble.n_features(),
            manifest.features.len()
        ));
    }
    match (ensemble.n_classes(), manifest.task) {
        (Some(classes), TaskKind::Classification) if classes == manifest.labels.len() => {}
        (Some(classes), TaskKind::Classification) => {
            return mismatch(format!(
                "the artifact predicts {classes} classes, the manifest lists {} labels",
                manifest.labels.len()
            ));
        }
        (None, TaskKind::Regression) => {}
        _ => {
            return mismatch(format!(
                "the artifact and the manifest disagree on the task (the manifest says {:?})",
                manifest.task
            ));
        }
    }
    if let Some(hp) = &manifest.hyperparameters
        && hp.n_trees != ensemble.n_trees()
    {
        return mismatch(format!(
            "the artifact has {} trees, the manifest says {}",
            ensemble.n_trees(),
            hp.n_trees
        ));
    }
    Ok(())
}

/// What a service does once at init: parse and check the manifest, check the artifact's sha256
/// against it, decode the ensemble and check that the two describe the same model.
pub fn load_verified(
    artifact: &[u8],
    manifest_json: &[u8],
) -> Result<(Ensemble, Manifest), ModelError> {
    let manifest = Manifest::from_json(manifest_json)?;
    verify(artifact, &manifest)?;
    let ensemble = Ensemble::from_bytes(artifact)?;
    check_agreement(&ensemble, &manifest)?;
    Ok((ensemble, manifest))
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

    #[test]
    fn allowed_ranges_follow_json_schema_bounds() {
        let mut feature = Feature::named("x");
        assert!(feature.allowed().contains(-1e300));
        assert!(!feature.allowed().contains(f64::NAN));
        assert!(!feature.allowed().contains(f64::INFINITY));
        assert_eq!(feature.allowed().describe(), "any finite number");
        feature.exclusive_minimum = Some(0.0);
        feature.maximum = Some(100.0);
        let allowed = feature.allowed();
        assert!(!allowed.contains(0.0));
        assert!(allowed.contains(f64::MIN_POSITIVE));
        assert!(allowed.contains(100.0));
        assert!(!allowed.contains(100.000_000_000_001));
        assert_eq!(allowed.describe(), "(0, 100]");
    }

    #[test]
    fn an_unknown_training_range_never_warns() {
        let feature = Feature::named("x");
        assert_eq!(feature.training_range(), None);
        assert!(!feature.is_outside_training_range(1e9));
    }
}
