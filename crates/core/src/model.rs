//! The served model: the decoded forest, its manifest (the model card), and the response shape
//! of a prediction.
//!
//! The prediction function embeds the artifact and manifest at build time and calls
//! [`ServedModel::load`] once at init; decoding, the sha256 check and the model card's JSON
//! are all paid there, never per request.

use std::collections::BTreeMap;

use serde::Serialize;
use tree_model::{Batch, Ensemble, Manifest, Outcome};

use crate::predict::{N_FEATURES, Row};

/// Why the embedded model could not be loaded. Init stops with this message.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    #[error("the model manifest is not valid JSON: {0}")]
    Manifest(#[source] serde_json::Error),
    #[error("the model artifact does not match its manifest: {0}")]
    Artifact(#[source] tree_model::ModelError),
    #[error("the model manifest describes {found} features, the API expects {N_FEATURES}")]
    FeatureCount { found: usize },
    #[error("the model manifest lists {labels} labels but the forest predicts {classes} classes")]
    LabelCount { labels: usize, classes: usize },
    #[error("the model is a regressor; this API version serves classifiers")]
    NotAClassifier,
}

/// One prediction as returned to clients.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionView {
    pub prediction: usize,
    pub label: String,
    pub model_version: String,
    pub warnings: Vec<String>,
    /// Per-class vote shares; only present for clients holding `predict:proba`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<BTreeMap<String, f64>>,
}

/// The model as the prediction function serves it.
#[derive(Debug)]
pub struct ServedModel {
    forest: Ensemble,
    manifest: Manifest,
    card_json: String,
}

impl ServedModel {
    /// Verifies the artifact against the manifest's sha256, decodes it, and prepares the card.
    pub fn load(artifact: &[u8], manifest_json: &str) -> Result<Self, ModelLoadError> {
        let manifest: Manifest =
            serde_json::from_str(manifest_json).map_err(ModelLoadError::Manifest)?;
        manifest.check().map_err(ModelLoadError::Artifact)?;
        tree_model::verify(artifact, &manifest).map_err(ModelLoadError::Artifact)?;
        let forest = Ensemble::from_bytes(artifact).map_err(ModelLoadError::Artifact)?;
        let Some(n_classes) = forest.n_classes() else {
            return Err(ModelLoadError::NotAClassifier);
        };
        if manifest.features.len() != N_FEATURES {
            return Err(ModelLoadError::FeatureCount {
                found: manifest.features.len(),
            });
        }
        if manifest.labels.len() != n_classes {
            return Err(ModelLoadError::LabelCount {
                labels: manifest.labels.len(),
                classes: n_classes,
            });
        }
        tree_model::check_agreement(&forest, &manifest).map_err(ModelLoadError::Artifact)?;
        // The card is the manifest as published; serialising it cannot fail for a type that
        // was just deserialised, but an empty object is a safe answer if it ever did.
        let card_json = serde_json::to_string(&manifest).unwrap_or_else(|_| String::from("{}"));
        Ok(Self {
            forest,
            manifest,
            card_json,
        })
    }

    /// The model version reported in every response.
    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    /// The model card (`GET /model`), pre-rendered JSON.
    pub fn card_json(&self) -> &str {
        &self.card_json
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Predicts one row.
    pub fn predict(&self, row: &Row, with_probabilities: bool) -> PredictionView {
        let mut scratch = self.forest.scratch();
        let outcome = self.forest.predict_into(row, &mut scratch);
        self.view(row, outcome, with_probabilities)
    }

    /// Predicts a batch through the forest's tree-major batch path.
    pub fn predict_batch(&self, rows: &[Row], with_probabilities: bool) -> Vec<PredictionView> {
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let mut batch = Batch::new();
        self.forest.predict_batch_into(&flat, &mut batch);
        batch
            .iter()
            .zip(rows)
            .map(|(outcome, row)| self.view(row, outcome, with_probabilities))
            .collect()
    }

    fn view(&self, row: &Row, outcome: Outcome<'_>, with_probabilities: bool) -> PredictionView {
        // `load` refuses regressors, so every outcome here is a class.
        let (class, shares) = match outcome {
            Outcome::Class { class, scores } => (class, scores),
            Outcome::Value(_) => (0, &[][..]),
        };
        let label = self.manifest.labels.get(class).cloned().unwrap_or_default();
        let probabilities = with_probabilities.then(|| {
            self.manifest
                .labels
                .iter()
                .cloned()
                .zip(shares.iter().copied())
                .collect::<BTreeMap<_, _>>()
        });
        PredictionView {
            prediction: class,
            label,
            model_version: self.manifest.version.clone(),
            warnings: self.range_warnings(row),
            probabilities,
        }
    }

    /// Names every feature outside the range seen in training: the forest still answers, but
    /// a tree has never seen such a value, so the answer is an extrapolation.
    fn range_warnings(&self, row: &Row) -> Vec<String> {
        self.manifest
            .features
            .iter()
            .zip(row)
            .filter(|(f, x)| f.is_outside_training_range(**x))
            .filter_map(|(f, x)| {
                let (min, max) = f.training_range()?;
                let unit = f
                    .unit
                    .as_deref()
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default();
                Some(format!(
                    "{} = {}{unit} is outside the training range [{min}, {max}]",
                    f.name,
                    crate::predict::number(*x),
                ))
            })
            .collect()
    }
}
