//! The served model: the decoded ensemble, its manifest (the model card), the request contract
//! the manifest implies, and the response shape of a prediction.
//!
//! The prediction function embeds the artifact and manifest at build time and calls
//! [`ServedModel::load`] once at init; decoding, the sha256 check, the request contract and the
//! model card's JSON are all paid there, never per request. Nothing here knows which model it
//! serves: a classifier answers with a class index, its label and (on request) its class
//! probabilities; a regressor with a number.

use serde::Serialize;
use serde::ser::SerializeMap;
use tree_model::{
    Aggregate, Batch, Ensemble, Manifest, ModelError, NodeSpec, Outcome, PostTransform, Scoring,
    Task,
};

use crate::predict::{RequestSchema, Rows, number};

/// Why the embedded model could not be loaded. Init stops with this message.
#[derive(Debug, thiserror::Error)]
#[error("the embedded model cannot be served: {0}")]
pub struct ModelLoadError(#[from] ModelError);

/// What a row was predicted to be.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// A classifier's class index into the manifest's `labels`.
    Class(usize),
    /// A regressor's value.
    Value(f64),
}

/// One prediction as returned to clients:
/// `{"prediction", "label"?, "model_version", "warnings", "probabilities"?}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionView<'a> {
    pub prediction: Answer,
    /// The class's label (classifiers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<&'a str>,
    pub model_version: &'a str,
    pub warnings: Vec<String>,
    /// Per-class scores; only for classifiers, and only for clients holding `predict:proba`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Probabilities<'a>>,
}

/// A classifier's score per label, serialized as an object in the manifest's label order.
#[derive(Debug, Clone, PartialEq)]
pub struct Probabilities<'a> {
    labels: &'a [String],
    scores: Vec<f64>,
}

impl Probabilities<'_> {
    /// `(label, score)` in the manifest's label order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.labels
            .iter()
            .map(String::as_str)
            .zip(self.scores.iter().copied())
    }
}

impl Serialize for Probabilities<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.labels.len()))?;
        for (label, score) in self.iter() {
            map.serialize_entry(label, &score)?;
        }
        map.end()
    }
}

/// The model as the prediction function serves it.
#[derive(Debug)]
pub struct ServedModel {
    ensemble: Ensemble,
    manifest: Manifest,
    request: RequestSchema,
    card_json: String,
}

impl ServedModel {
    /// Checks the manifest, verifies the artifact against its sha256, decodes it, checks that
    /// both describe the same model, and prepares the request contract and the card.
    pub fn load(artifact: &[u8], manifest_json: &str) -> Result<Self, ModelLoadError> {
        let (ensemble, manifest) = tree_model::load_verified(artifact, manifest_json.as_bytes())?;
        let request = RequestSchema::new(manifest.features());
        // The card is the manifest as published; serialising it cannot fail for a type that
        // was just deserialised, but an empty object is a safe answer if it ever did.
        let card_json = serde_json::to_string(&manifest).unwrap_or_else(|_| String::from("{}"));
        Ok(Self {
            ensemble,
            manifest,
            request,
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

    /// Whether a classifier's scores are probabilities: each in [0, 1] whatever the row (a
    /// softmax or logistic transform, or the average of leaf weights that are shares). The
    /// OpenAPI document bounds `probabilities` only then.
    pub fn scores_are_probabilities(&self) -> bool {
        let spec = self.ensemble.spec();
        let shares = || {
            spec.aggregate == Aggregate::Average
                && spec.base_values.is_empty()
                && spec.trees.iter().flatten().all(|node| match node {
                    NodeSpec::Leaf { weights } => {
                        weights.iter().all(|(_, w)| *w >= 0.0)
                            && weights.iter().map(|(_, w)| w).sum::<f64>() <= 1.0
                    }
                    NodeSpec::Branch { .. } => true,
                })
        };
        match (spec.task, spec.post_transform) {
            (Task::Regression, _) => false,
            (Task::Classification { scoring, .. }, transform) => match (scoring, transform) {
                (Scoring::PerClass, PostTransform::Softmax | PostTransform::SoftmaxZero)
                | (Scoring::PerClass | Scoring::BinaryMargin, PostTransform::Logistic) => true,
                (Scoring::PerClass | Scoring::BinaryProbability, PostTransform::None) => shares(),
                _ => false,
            },
        }
    }

    /// What a request must look like for this model.
    pub fn request(&self) -> &RequestSchema {
        &self.request
    }

    /// Predicts one row (one value per feature, in manifest order: what
    /// [`RequestSchema::parse_single`] returns).
    pub fn predict(&self, row: &[f64], with_probabilities: bool) -> PredictionView<'_> {
        let mut scratch = self.ensemble.scratch();
        let outcome = self.ensemble.predict_into(row, &mut scratch);
        self.view(row, outcome, with_probabilities)
    }

    /// Predicts a batch through the ensemble's batch path.
    pub fn predict_batch(&self, rows: &Rows, with_probabilities: bool) -> Vec<PredictionView<'_>> {
        let mut batch = Batch::new();
        self.ensemble.predict_batch_into(rows.as_flat(), &mut batch);
        batch
            .iter()
            .zip(rows.iter())
            .map(|(outcome, row)| self.view(row, outcome, with_probabilities))
            .collect()
    }

    fn view(
        &self,
        row: &[f64],
        outcome: Outcome<'_>,
        with_probabilities: bool,
    ) -> PredictionView<'_> {
        let (prediction, label, probabilities) = match outcome {
            Outcome::Class { class, scores } => {
                let labels = self.manifest.labels();
                let probabilities = with_probabilities.then(|| Probabilities {
                    labels,
                    scores: scores.to_vec(),
                });
                let label = labels.get(class).map(String::as_str);
                (Answer::Class(class), label, probabilities)
            }
            Outcome::Value(value) => (Answer::Value(value), None, None),
        };
        PredictionView {
            prediction,
            label,
            model_version: self.version(),
            warnings: self.range_warnings(row),
            probabilities,
        }
    }

    /// Names every feature outside the range seen in training: the model still answers, but
    /// no tree has seen such a value, so the answer is an extrapolation.
    fn range_warnings(&self, row: &[f64]) -> Vec<String> {
        self.manifest
            .features()
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
                    "{} = {}{unit} is outside the training range [{}, {}]",
                    f.name,
                    number(*x),
                    number(min),
                    number(max)
                ))
            })
            .collect()
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod fixtures {
    //! Small models made up for tests, as `(model.bin, manifest.json)`: a regressor and a
    //! classifier that are not the committed default, so tests can show that what is served
    //! follows the manifest.

    use tree_model::{
        ARTIFACT_FILE, ARTIFACT_FORMAT, Aggregate, Ensemble, EnsembleSpec, Feature, Manifest, Mode,
        NodeSpec, PostTransform, Precision, Scoring, Source, Task, TaskKind, sha256_hex,
    };

    fn leaf(weights: &[(u32, f64)]) -> NodeSpec {
        NodeSpec::Leaf {
            weights: weights.to_vec(),
        }
    }

    /// `x[feature] <= threshold` → node 1, else node 2.
    fn split(feature: u32, threshold: f64) -> NodeSpec {
        NodeSpec::Branch {
            feature,
            mode: Mode::Leq,
            threshold,
            missing_tracks_true: false,
            true_child: 1,
            false_child: 2,
        }
    }

    fn artifacts(
        spec: EnsembleSpec,
        task: TaskKind,
        features: Vec<Feature>,
        labels: &[&str],
    ) -> (Vec<u8>, String) {
        let model = Ensemble::new(spec)
            .expect("a valid fixture ensemble")
            .to_bytes();
        let manifest = Manifest {
            name: format!("fixture-{task:?}").to_lowercase(),
            version: "0.3.1".to_owned(),
            file: ARTIFACT_FILE.to_owned(),
            sha256: sha256_hex(&model),
            format: ARTIFACT_FORMAT.to_owned(),
            task,
            algorithm: "a stump".to_owned(),
            hyperparameters: None,
            smartcore_version: None,
            features,
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            metrics: None,
            trained_at: None,
            training_data: None,
            source: Some(Source {
                kind: "onnx".to_owned(),
                file: "fixture.onnx".to_owned(),
                sha256: sha256_hex(b"fixture"),
                producer_name: "fixtures".to_owned(),
                producer_version: "1".to_owned(),
                op: "TreeEnsembleRegressor".to_owned(),
                opset: 3,
            }),
            imported_at: Some("2026-01-01T00:00:00Z".to_owned()),
        };
        manifest.check().expect("a valid fixture manifest");
        (model, manifest.to_json())
    }

    /// A regressor on `age` (years, at least 0, trained on 18 to 90) and `bmi` (no unit, no
    /// bound, trained on 15 to 45): `bmi <= 30` → 100.5, else 200.25.
    pub fn regressor() -> (Vec<u8>, String) {
        let spec = EnsembleSpec {
            n_features: 2,
            task: Task::Regression,
            precision: Precision::F64,
            aggregate: Aggregate::Sum,
            post_transform: PostTransform::None,
            base_values: Vec::new(),
            trees: vec![vec![
                split(1, 30.0),
                leaf(&[(0, 100.5)]),
                leaf(&[(0, 200.25)]),
            ]],
        };
        let features = vec![
            Feature {
                unit: Some("years".to_owned()),
                minimum: Some(0.0),
                training_min: Some(18.0),
                training_max: Some(90.0),
                ..Feature::named("age")
            },
            Feature {
                training_min: Some(15.0),
                training_max: Some(45.0),
                ..Feature::named("bmi")
            },
        ];
        artifacts(spec, TaskKind::Regression, features, &[])
    }

    /// A classifier on `x` and `y/z` (no bounds, no ranges), labels `no` and `yes`:
    /// `x <= 0.5` → scores (0.75, 0.25), else (0.125, 0.875).
    pub fn classifier() -> (Vec<u8>, String) {
        let spec = EnsembleSpec {
            n_features: 2,
            task: Task::Classification {
                n_classes: 2,
                scoring: Scoring::PerClass,
            },
            precision: Precision::F64,
            aggregate: Aggregate::Sum,
            post_transform: PostTransform::None,
            base_values: Vec::new(),
            trees: vec![vec![
                split(0, 0.5),
                leaf(&[(0, 0.75), (1, 0.25)]),
                leaf(&[(0, 0.125), (1, 0.875)]),
            ]],
        };
        let features = vec![Feature::named("x"), Feature::named("y/z")];
        artifacts(spec, TaskKind::Classification, features, &["no", "yes"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served((artifact, manifest): (Vec<u8>, String)) -> ServedModel {
        ServedModel::load(&artifact, &manifest).unwrap()
    }

    #[test]
    fn a_regressor_answers_with_a_number_and_no_label_or_probabilities() {
        let model = served(fixtures::regressor());
        let view = model.predict(&[40.0, 35.0], true);
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            r#"{"prediction":200.25,"model_version":"0.3.1","warnings":[]}"#
        );
    }

    #[test]
    fn a_classifier_answers_with_its_class_label_and_scores_in_label_order() {
        let model = served(fixtures::classifier());
        let view = model.predict(&[1.0, 0.0], true);
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            r#"{"prediction":1,"label":"yes","model_version":"0.3.1","warnings":[],"probabilities":{"no":0.125,"yes":0.875}}"#
        );
        let without = model.predict(&[0.0, 0.0], false);
        assert_eq!(
            serde_json::to_string(&without).unwrap(),
            r#"{"prediction":0,"label":"no","model_version":"0.3.1","warnings":[]}"#
        );
    }

    #[test]
    fn warnings_name_the_feature_and_its_unit_when_it_has_one() {
        let model = served(fixtures::regressor());
        let view = model.predict(&[5.0, 50.0], false);
        assert_eq!(
            view.warnings,
            [
                "age = 5 years is outside the training range [18, 90]",
                "bmi = 50 is outside the training range [15, 45]"
            ]
        );
    }

    #[test]
    fn a_batch_equals_its_rows_one_by_one() {
        let model = served(fixtures::regressor());
        let rows = model
            .request()
            .parse_batch(br#"{"instances": [[40, 20], {"bmi": 31, "age": 50}, [95, 30]]}"#)
            .unwrap();
        let batch = model.predict_batch(&rows, false);
        let one_by_one: Vec<_> = rows.iter().map(|row| model.predict(row, false)).collect();
        assert_eq!(batch, one_by_one);
        assert_eq!(batch[1].prediction, Answer::Value(200.25));
    }

    #[test]
    fn the_request_contract_comes_from_the_manifest() {
        let model = served(fixtures::regressor());
        assert_eq!(model.request().width(), 2);
        assert!(
            model
                .request()
                .parse_single(br#"{"data": [-1, 20]}"#)
                .is_err()
        );
        assert!(
            model
                .request()
                .parse_single(br#"{"data": [1, -1e9]}"#)
                .is_ok()
        );
    }

    #[test]
    fn a_manifest_that_does_not_match_its_artifact_stops_init_with_a_sentence() {
        let (artifact, manifest) = fixtures::regressor();
        let (other, _) = fixtures::classifier();
        let error = ServedModel::load(&other, &manifest)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("the embedded model cannot be served: "),
            "{error}"
        );
        assert!(error.contains("sha256"), "{error}");
        let edited = manifest.replace("\"bmi\"", "\"bmi\", \"unit\": 1");
        assert!(ServedModel::load(&artifact, &edited).is_err());
    }
}
