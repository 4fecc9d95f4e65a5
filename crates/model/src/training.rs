//! Training: bagged smartcore trees, their conversion to ensemble nodes, and evaluation.
//!
//! Any numeric CSV trains the same way ([`crate::dataset`] reads it and decides between
//! classification and regression): `n_trees` smartcore CART trees, each fitted on a bootstrap
//! sample of the rows, combined by averaging. A classification tree's leaf puts weight 1 on its
//! class, so the averaged scores are vote shares; a regression tree's leaf holds the mean target
//! of its training rows, so the forest predicts the mean of the trees.
//!
//! # Randomness
//!
//! Every random choice comes from ChaCha8 keyed with the seed (little-endian in the first
//! eight key bytes, the rest zero) on a fixed stream per purpose (final forest, hold-out split,
//! hold-out forest, fold assignment, one stream per fold's forest), so changing how one of
//! them draws never shifts another. Indices are drawn by the widening-multiply method
//! (`(u64 × n) >> 64`), not by `rand`'s distributions: the draws then depend only on the
//! ChaCha8 specification, never on a `rand` release. Its bias, below n / 2⁶⁴, is irrelevant.
//!
//! # Why bagging and a random subspace *per tree*
//!
//! smartcore 0.7 keeps the per-split feature sampling (`mtry`) of its own random forest
//! `pub(crate)`, and that forest exposes neither its trees nor vote shares. So each tree here
//! is a public `DecisionTreeClassifier` (or `DecisionTreeRegressor`) fitted on a bootstrap
//! sample of the rows and, when `max_features` is below the number of features, on a random
//! subset of the columns drawn once for the whole tree (Ho's random subspace method), whose
//! indices are mapped back when the tree is flattened.
//!
//! # Reading smartcore's trees
//!
//! smartcore's tree nodes are private but serde-serializable. `flatten` reads the serde form
//! through mirror structs that deny unknown fields, so a change of that form is a loud
//! training error, never a silently different model; smartcore is pinned exactly anyway. The
//! walk mirrors smartcore's `predict`: a node is a split iff it has a `true_child`, rows with
//! `x <= split_value` go to `true_child` (so NaN goes to `false_child`), and a leaf predicts
//! `classes[output]` (classifier) or `output` (regressor).

use std::collections::VecDeque;

use ndarray::{Array1, Array2};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::Deserialize;
use serde::de::IgnoredAny;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters, SplitCriterion,
};
use smartcore::tree::decision_tree_regressor::{
    DecisionTreeRegressor, DecisionTreeRegressorParameters,
};

use crate::dataset::{Dataset, Target, TaskChoice};
use crate::ensemble::{
    Aggregate, EnsembleSpec, Mode, NodeSpec, PostTransform, Precision, Scoring, Task,
};
use crate::manifest::{
    Criterion, Feature, Hyperparameters, Manifest, Metrics, TaskKind, TrainingData, sha256_hex,
};
use crate::{ARTIFACT_FILE, ARTIFACT_FORMAT, Ensemble, ModelError, Outcome};

/// The smartcore version the trees come from; must equal the exact pin in the root Cargo.toml
/// (a test checks it).
pub const SMARTCORE_VERSION: &str = "0.7.0";

const STREAM_FINAL_FOREST: u64 = 0;
const STREAM_HOLDOUT_SPLIT: u64 = 1;
const STREAM_HOLDOUT_FOREST: u64 = 2;
const STREAM_FOLD_ASSIGNMENT: u64 = 3;
const STREAM_FIRST_FOLD_FOREST: u64 = 16;

type SmartClassifier = DecisionTreeClassifier<f64, u32, Array2<f64>, Array1<u32>>;
// The regressor's serde derive asks its matrix types to be serializable, which smartcore's own
// DenseMatrix and Vec are (ndarray is only with a feature the API build does not need).
type SmartRegressor = DecisionTreeRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// What the manifest says about each feature besides its name and training range: the same
/// unit and allowed range for every column of the CSV.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureTemplate {
    /// Unit of every feature.
    pub unit: Option<String>,
    /// Inclusive lower bound of every feature.
    pub minimum: Option<f64>,
    /// Exclusive lower bound of every feature.
    pub exclusive_minimum: Option<f64>,
    /// Inclusive upper bound of every feature.
    pub maximum: Option<f64>,
    /// Exclusive upper bound of every feature.
    pub exclusive_maximum: Option<f64>,
}

/// What to train and how to evaluate it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The target column's name.
    pub target: String,
    /// How to read the target column.
    pub task: TaskChoice,
    /// Model name in the manifest; `None`: the data file's stem followed by `-random-forest`.
    pub name: Option<String>,
    /// Model version, served as `model_version`.
    pub model_version: String,
    /// Number of trees.
    pub n_trees: usize,
    /// Maximum depth (root = 1); `None`: unlimited.
    pub max_depth: Option<u16>,
    /// A node with fewer samples is not split.
    pub min_samples_split: usize,
    /// A split leaving fewer samples on either side is not made.
    pub min_samples_leaf: usize,
    /// Features drawn per tree; `None`: all of them (plain bagging).
    pub max_features: Option<usize>,
    /// Split criterion of classification trees (regression trees always use squared error).
    pub criterion: Criterion,
    /// Seed of every random choice.
    pub seed: u64,
    /// Fraction of the rows (of each class) held out for the hold-out metric.
    pub holdout_fraction: f64,
    /// Number of cross-validation folds.
    pub cv_folds: usize,
    /// Unit and allowed range written for every feature.
    pub features: FeatureTemplate,
}

impl TrainConfig {
    /// The defaults for `target`.
    ///
    /// Chosen by measurement on Iris (10 seeds, release build): 25, 50 and 100 trees and 3 or 4
    /// features per tree all land at 0.94-0.95 mean CV accuracy, within one row of each other.
    /// Prediction time grows linearly with the number of trees, so 50 trees: half the time of
    /// 100, and vote shares still in steps of 0.02. All features per tree (plain bagging) by
    /// default. Depth, split and leaf limits are CART's defaults: bagging is what keeps the
    /// trees from over-fitting.
    pub fn new(target: impl Into<String>) -> TrainConfig {
        TrainConfig {
            target: target.into(),
            task: TaskChoice::Auto,
            name: None,
            model_version: "1.0.0".to_owned(),
            n_trees: 50,
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: None,
            criterion: Criterion::Gini,
            seed: 42,
            holdout_fraction: 0.3,
            cv_folds: 5,
            features: FeatureTemplate::default(),
        }
    }

    /// The configuration that produced `manifest` (a model trained here), for retraining it.
    /// `None` for an imported model's manifest.
    pub fn from_manifest(manifest: &Manifest, target: impl Into<String>) -> Option<TrainConfig> {
        let hp = manifest.hyperparameters.as_ref()?;
        let metrics = manifest.metrics.as_ref()?;
        let first = manifest.features.first()?;
        Some(TrainConfig {
            task: match manifest.task {
                TaskKind::Classification => TaskChoice::Classification,
                TaskKind::Regression => TaskChoice::Regression,
            },
            name: Some(manifest.name.clone()),
            model_version: manifest.version.clone(),
            n_trees: hp.n_trees,
            max_depth: hp.max_depth,
            min_samples_split: hp.min_samples_split,
            min_samples_leaf: hp.min_samples_leaf,
            max_features: Some(hp.max_features),
            criterion: hp.criterion,
            seed: hp.seed,
            holdout_fraction: metrics.holdout_fraction,
            cv_folds: metrics.cv_folds,
            features: FeatureTemplate {
                unit: first.unit.clone(),
                minimum: first.minimum,
                exclusive_minimum: first.exclusive_minimum,
                maximum: first.maximum,
                exclusive_maximum: first.exclusive_maximum,
            },
            ..TrainConfig::new(target)
        })
    }

    /// The hyper-parameters recorded for `data`.
    fn hyperparameters(&self, data: &Dataset) -> Hyperparameters {
        Hyperparameters {
            n_trees: self.n_trees,
            max_depth: self.max_depth,
            min_samples_split: self.min_samples_split,
            min_samples_leaf: self.min_samples_leaf,
            max_features: self.max_features.unwrap_or(data.n_features()),
            bootstrap: true,
            criterion: match data.target {
                Target::Classes { .. } => self.criterion,
                Target::Values(_) => Criterion::SquaredError,
            },
            seed: self.seed,
        }
    }
}

/// A trained model: the ensemble, its encoded artifact and its manifest.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The final forest, trained on every row.
    pub ensemble: Ensemble,
    /// `ensemble.to_bytes()`, the content of [`ARTIFACT_FILE`].
    pub model: Vec<u8>,
    /// The content of `manifest.json`.
    pub manifest: Manifest,
}

/// Evaluates the configuration, trains the final forest on all rows and describes it.
///
/// Deterministic: equal inputs give byte-identical artifacts and equal manifests.
/// `data_file` (the CSV's file name) and `trained_at` are copied into the manifest as given.
pub fn train_artifacts(
    csv: &[u8],
    data_file: &str,
    config: &TrainConfig,
    trained_at: &str,
) -> Result<Artifacts, ModelError> {
    let data = Dataset::from_csv(csv, &config.target, config.task)?;
    let hp = config.hyperparameters(&data);
    let metrics = evaluate(&data, config)?;
    let ensemble = fit_forest(&data, &hp, &mut rng(hp.seed, STREAM_FINAL_FOREST))?;
    let model = ensemble.to_bytes();

    let template = &config.features;
    let features = data
        .feature_names
        .iter()
        .zip(data.feature_ranges())
        .map(|(name, (min, max))| Feature {
            name: name.clone(),
            unit: template.unit.clone(),
            training_min: Some(min),
            training_max: Some(max),
            minimum: template.minimum,
            exclusive_minimum: template.exclusive_minimum,
            maximum: template.maximum,
            exclusive_maximum: template.exclusive_maximum,
        })
        .collect();
    let (task, labels, algorithm) = match &data.target {
        Target::Classes { labels, .. } => (
            TaskKind::Classification,
            labels.clone(),
            "bagged CART decision trees (random forest)",
        ),
        Target::Values(_) => (
            TaskKind::Regression,
            Vec::new(),
            "bagged CART regression trees (random forest)",
        ),
    };
    let stem = data_file
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(data_file)
        .trim_end_matches(".csv");
    let manifest = Manifest {
        name: config
            .name
            .clone()
            .unwrap_or_else(|| format!("{stem}-random-forest")),
        version: config.model_version.clone(),
        file: ARTIFACT_FILE.to_owned(),
        sha256: sha256_hex(&model),
        format: ARTIFACT_FORMAT.to_owned(),
        task,
        algorithm: algorithm.to_owned(),
        hyperparameters: Some(hp),
        smartcore_version: Some(SMARTCORE_VERSION.to_owned()),
        features,
        labels,
        metrics: Some(metrics),
        trained_at: Some(trained_at.to_owned()),
        training_data: Some(TrainingData {
            file: data_file.to_owned(),
            sha256: sha256_hex(csv),
            rows: data.len(),
        }),
        source: None,
        imported_at: None,
    };
    manifest.check()?;
    Ok(Artifacts {
        ensemble,
        model,
        manifest,
    })
}

/// Hold-out and k-fold cross-validated accuracy (classification, stratified) or R² and RMSE
/// (regression).
pub fn evaluate(data: &Dataset, config: &TrainConfig) -> Result<Metrics, ModelError> {
    let hp = config.hyperparameters(data);
    validate(data, config, &hp)?;
    let groups = groups(data);

    let (train, test) = holdout_split(
        &groups,
        config.holdout_fraction,
        &mut rng(hp.seed, STREAM_HOLDOUT_SPLIT),
    );
    let forest = fit_forest(
        &data.select(&train),
        &hp,
        &mut rng(hp.seed, STREAM_HOLDOUT_FOREST),
    )?;
    let holdout = score(&forest, &data.select(&test));

    let folds = folds(
        &groups,
        config.cv_folds,
        &mut rng(hp.seed, STREAM_FOLD_ASSIGNMENT),
    );
    let mut fold_scores = Vec::with_capacity(folds.len());
    for (fold, test) in (0u64..).zip(&folds) {
        let train: Vec<usize> = (0..data.len()).filter(|i| !test.contains(i)).collect();
        let forest = fit_forest(
            &data.select(&train),
            &hp,
            &mut rng(hp.seed, STREAM_FIRST_FOLD_FOREST + fold),
        )?;
        fold_scores.push(score(&forest, &data.select(test)).0);
    }
    let k = fold_scores.len() as f64;
    let mean = fold_scores.iter().sum::<f64>() / k;
    let std = (fold_scores.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / k).sqrt();

    let classification = matches!(data.target, Target::Classes { .. });
    let pick = |value: f64, wanted: bool| wanted.then_some(round_4(value));
    Ok(Metrics {
        holdout_accuracy: pick(holdout.0, classification),
        holdout_r2: pick(holdout.0, !classification),
        holdout_rmse: pick(holdout.1, !classification),
        holdout_fraction: config.holdout_fraction,
        cv_folds: config.cv_folds,
        cv_accuracy_mean: pick(mean, classification),
        cv_accuracy_std: pick(std, classification),
        cv_r2_mean: pick(mean, !classification),
        cv_r2_std: pick(std, !classification),
        n_train_rows: data.len(),
    })
}

/// Four decimals, as a model card shows them. This also makes the manifest round-trip exactly:
/// serde_json's default float parser (no `float_roundtrip`) can read a 17-digit value like
/// 44/45 back one ulp off, but a short decimal like 0.9778 is parsed exactly.
fn round_4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// Row indices per class (classification) or all rows as one group (regression), in data order.
fn groups(data: &Dataset) -> Vec<Vec<usize>> {
    match &data.target {
        Target::Classes { labels, classes } => (0..labels.len())
            .map(|class| {
                (0..classes.len())
                    .filter(|&i| classes[i] == class)
                    .collect()
            })
            .collect(),
        Target::Values(values) => vec![(0..values.len()).collect()],
    }
}

fn validate(data: &Dataset, config: &TrainConfig, hp: &Hyperparameters) -> Result<(), ModelError> {
    let smallest_group = groups(data).iter().map(Vec::len).min().unwrap_or(0);
    let features_message = format!("max_features must be between 1 and {}", data.n_features());
    let problems = [
        (hp.n_trees == 0, "n_trees must be at least 1"),
        (
            hp.max_features == 0 || hp.max_features > data.n_features(),
            features_message.as_str(),
        ),
        (
            hp.min_samples_leaf == 0,
            "min_samples_leaf must be at least 1",
        ),
        (
            hp.min_samples_split < 2,
            "min_samples_split must be at least 2",
        ),
        (hp.max_depth == Some(0), "max_depth must be at least 1"),
        (
            !(config.holdout_fraction > 0.0 && config.holdout_fraction < 1.0),
            "holdout_fraction must be strictly between 0 and 1",
        ),
        (
            config.cv_folds < 2 || config.cv_folds > smallest_group,
            "cv_folds must be at least 2 and at most the number of rows of the smallest class",
        ),
    ];
    match problems.iter().find(|(bad, _)| *bad) {
        Some((_, message)) => Err(ModelError::Training((*message).to_owned())),
        None => Ok(()),
    }
}

/// Accuracy (and 0) for a classifier; R² and RMSE for a regressor.
fn score(forest: &Ensemble, data: &Dataset) -> (f64, f64) {
    let mut scratch = forest.scratch();
    let outcomes = data
        .rows
        .iter()
        .map(|row| match forest.predict_into(row, &mut scratch) {
            Outcome::Class { class, .. } => class as f64,
            Outcome::Value(value) => value,
        });
    match &data.target {
        Target::Classes { classes, .. } => {
            let correct = outcomes
                .zip(classes)
                .filter(|(predicted, class)| *predicted == **class as f64)
                .count();
            (correct as f64 / data.len() as f64, 0.0)
        }
        Target::Values(values) => {
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let residual: f64 = outcomes.zip(values).map(|(p, y)| (y - p).powi(2)).sum();
            let total: f64 = values.iter().map(|y| (y - mean).powi(2)).sum();
            let r2 = if total > 0.0 {
                1.0 - residual / total
            } else {
                0.0
            };
            (r2, (residual / n).sqrt())
        }
    }
}

/// ChaCha8 keyed with `seed`, on `stream` (see the module docs).
fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

/// A uniform index in `0..n`.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// Fisher–Yates.
fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, below(rng, i + 1));
    }
}

/// `(train, test)` row indices, both ascending; `fraction` of each group (rounded) is test.
fn holdout_split(
    groups: &[Vec<usize>],
    fraction: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<usize>) {
    let mut train = Vec::new();
    let mut test = Vec::new();
    for members in groups {
        let mut members = members.clone();
        shuffle(rng, &mut members);
        let n_test = (fraction * members.len() as f64).round() as usize;
        test.extend_from_slice(&members[..n_test]);
        train.extend_from_slice(&members[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Test row indices of each fold, ascending: each group is shuffled and dealt round-robin.
fn folds(groups: &[Vec<usize>], k: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let mut folds = vec![Vec::new(); k];
    for members in groups {
        let mut members = members.clone();
        shuffle(rng, &mut members);
        for (position, index) in members.into_iter().enumerate() {
            folds[position % k].push(index);
        }
    }
    for fold in &mut folds {
        fold.sort_unstable();
    }
    folds
}

/// Fits the forest and converts it to an ensemble.
pub(crate) fn fit_forest(
    data: &Dataset,
    hp: &Hyperparameters,
    rng: &mut ChaCha8Rng,
) -> Result<Ensemble, ModelError> {
    let trees = fit_trees(data, hp, rng)?;
    Ensemble::new(forest_spec(
        data,
        trees.into_iter().map(|t| t.nodes).collect(),
    ))
}

/// The ensemble a smartcore forest is: `x <= t` in `f64`, leaves averaged, nothing added.
pub(crate) fn forest_spec(data: &Dataset, trees: Vec<Vec<NodeSpec>>) -> EnsembleSpec {
    EnsembleSpec {
        n_features: data.n_features() as u32,
        task: match &data.target {
            Target::Classes { labels, .. } => Task::Classification {
                n_classes: labels.len() as u32,
                scoring: Scoring::PerClass,
            },
            Target::Values(_) => Task::Regression,
        },
        precision: Precision::F64,
        aggregate: Aggregate::Average,
        post_transform: PostTransform::None,
        base_values: Vec::new(),
        trees,
    }
}

/// smartcore's fitted tree, either kind (kept for the equivalence tests).
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum SmartTree {
    Classifier(SmartClassifier),
    Regressor(SmartRegressor),
}

/// One bagged tree: smartcore's original, the columns it saw, and our node list.
#[derive(Debug)]
pub(crate) struct FittedTree {
    // Serving needs only `nodes`; the other two are what the equivalence tests compare against.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) smartcore: SmartTree,
    /// Original feature index of each column the tree was fitted on (ascending).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) features: Vec<usize>,
    pub(crate) nodes: Vec<NodeSpec>,
}

pub(crate) fn fit_trees(
    data: &Dataset,
    hp: &Hyperparameters,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<FittedTree>, ModelError> {
    let n = data.len();
    let n_features = data.n_features();
    (0..hp.n_trees)
        .map(|_| {
            let mut features: Vec<usize> = (0..n_features).collect();
            if hp.max_features < n_features {
                shuffle(rng, &mut features);
                features.truncate(hp.max_features);
                features.sort_unstable();
            }
            let rows: Vec<usize> = if hp.bootstrap {
                (0..n).map(|_| below(rng, n)).collect()
            } else {
                (0..n).collect()
            };
            fit_tree(data, &rows, features, hp)
        })
        .collect()
}

fn fit_tree(
    data: &Dataset,
    rows: &[usize],
    features: Vec<usize>,
    hp: &Hyperparameters,
) -> Result<FittedTree, ModelError> {
    let failed = |err: smartcore::error::Failed| {
        ModelError::Training(format!("smartcore could not fit a tree: {err}"))
    };
    let (smartcore, nodes) = match &data.target {
        Target::Classes { classes, .. } => {
            let x = Array2::from_shape_fn((rows.len(), features.len()), |(i, j)| {
                data.rows[rows[i]][features[j]]
            });
            let y: Array1<u32> = rows.iter().map(|&i| classes[i] as u32).collect();
            let mut parameters = DecisionTreeClassifierParameters::default()
                .with_criterion(match hp.criterion {
                    Criterion::Entropy => SplitCriterion::Entropy,
                    _ => SplitCriterion::Gini,
                })
                .with_min_samples_leaf(hp.min_samples_leaf)
                .with_min_samples_split(hp.min_samples_split);
            if let Some(depth) = hp.max_depth {
                parameters = parameters.with_max_depth(depth);
            }
            // The tree draws no random numbers when it may use every column it is given (it
            // only shuffles columns for smartcore's own forest); the seed makes sure it never
            // reaches for OS entropy if that ever changes.
            parameters.seed = Some(hp.seed);
            let tree = SmartClassifier::fit(&x, &y, parameters).map_err(failed)?;
            let nodes = flatten_classifier(&tree, &features)?;
            (SmartTree::Classifier(tree), nodes)
        }
        Target::Values(values) => {
            let x = DenseMatrix::new(
                rows.len(),
                features.len(),
                rows.iter()
                    .flat_map(|&i| features.iter().map(move |&j| data.rows[i][j]))
                    .collect(),
                false,
            )
            .map_err(failed)?;
            let y: Vec<f64> = rows.iter().map(|&i| values[i]).collect();
            let mut parameters = DecisionTreeRegressorParameters::default()
                .with_min_samples_leaf(hp.min_samples_leaf)
                .with_min_samples_split(hp.min_samples_split);
            if let Some(depth) = hp.max_depth {
                parameters = parameters.with_max_depth(depth);
            }
            parameters.seed = Some(hp.seed);
            let tree = SmartRegressor::fit(&x, &y, parameters).map_err(failed)?;
            let nodes = flatten_regressor(&tree, &features)?;
            (SmartTree::Regressor(tree), nodes)
        }
    };
    Ok(FittedTree {
        smartcore,
        features,
        nodes,
    })
}

/// smartcore 0.7.0's serde form of `DecisionTreeClassifier`, field for field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifierMirror {
    nodes: Vec<NodeMirror<usize>>,
    classes: Vec<u32>,
    #[serde(rename = "parameters")]
    _parameters: IgnoredAny,
    #[serde(rename = "num_classes")]
    _num_classes: IgnoredAny,
    #[serde(rename = "depth")]
    _depth: IgnoredAny,
    #[serde(rename = "num_features")]
    _num_features: IgnoredAny,
    _phantom_tx: IgnoredAny,
    _phantom_x: IgnoredAny,
    _phantom_y: IgnoredAny,
}

/// smartcore 0.7.0's serde form of `DecisionTreeRegressor`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegressorMirror {
    tree_regressor: Option<BaseTreeMirror>,
    #[serde(rename = "num_features")]
    _num_features: IgnoredAny,
}

/// smartcore 0.7.0's serde form of its private `BaseTree<.., f64>`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseTreeMirror {
    nodes: Vec<NodeMirror<f64>>,
    #[serde(rename = "parameters")]
    _parameters: IgnoredAny,
    #[serde(rename = "depth")]
    _depth: IgnoredAny,
    #[serde(rename = "root_mass")]
    _root_mass: IgnoredAny,
    _phantom_tx: IgnoredAny,
    _phantom_ty: IgnoredAny,
    _phantom_x: IgnoredAny,
    _phantom_y: IgnoredAny,
}

/// smartcore 0.7.0's serde form of its private tree nodes (the classifier's also has
/// `n_node_samples` and `impurity`; the regressor's has neither).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeMirror<Out> {
    output: Out,
    split_feature: usize,
    split_value: Option<f64>,
    true_child: Option<usize>,
    false_child: Option<usize>,
    #[serde(rename = "split_score")]
    _split_score: IgnoredAny,
    #[serde(default, rename = "n_node_samples")]
    _n_node_samples: Option<IgnoredAny>,
    #[serde(default, rename = "impurity")]
    _impurity: Option<IgnoredAny>,
}

fn form_changed(detail: impl std::fmt::Display) -> ModelError {
    ModelError::Training(format!("unexpected smartcore tree form: {detail}"))
}

/// Converts a fitted smartcore classification tree into ensemble nodes.
pub(crate) fn flatten_classifier(
    tree: &SmartClassifier,
    features: &[usize],
) -> Result<Vec<NodeSpec>, ModelError> {
    let value = serde_json::to_value(tree).map_err(form_changed)?;
    let mirror: ClassifierMirror = serde_json::from_value(value).map_err(form_changed)?;
    flatten(&mirror.nodes, features, |node| {
        mirror
            .classes
            .get(node.output)
            .map(|&class| vec![(class, 1.0)])
    })
}

/// Converts a fitted smartcore regression tree into ensemble nodes.
pub(crate) fn flatten_regressor(
    tree: &SmartRegressor,
    features: &[usize],
) -> Result<Vec<NodeSpec>, ModelError> {
    let value = serde_json::to_value(tree).map_err(form_changed)?;
    let mirror: RegressorMirror = serde_json::from_value(value).map_err(form_changed)?;
    let base = mirror
        .tree_regressor
        .ok_or_else(|| form_changed("the regressor has no tree"))?;
    flatten(&base.nodes, features, |node| {
        node.output.is_finite().then(|| vec![(0, node.output)])
    })
}

/// Lays smartcore's nodes out breadth-first from its root (node 0), each split's two children
/// as an adjacent pair, mapping column `j` back to feature `features[j]`.
fn flatten<Out>(
    source: &[NodeMirror<Out>],
    features: &[usize],
    leaf: impl Fn(&NodeMirror<Out>) -> Option<Vec<(u32, f64)>>,
) -> Result<Vec<NodeSpec>, ModelError> {
    let mut out = vec![NodeSpec::Leaf {
        weights: Vec::new(),
    }];
    let mut pending = VecDeque::from([(0usize, 0usize)]);
    while let Some((index, slot)) = pending.pop_front() {
        // A tree has as many nodes as smartcore stored; more means the child links loop.
        if out.len() > source.len() {
            return Err(form_changed("child links do not form a tree"));
        }
        let node = source
            .get(index)
            .ok_or_else(|| form_changed(format!("node {index} does not exist")))?;
        out[slot] = match (node.true_child, node.false_child) {
            (Some(true_child), Some(false_child)) => {
                let threshold = node
                    .split_value
                    .ok_or_else(|| form_changed(format!("split {index} has no threshold")))?;
                let feature = features
                    .get(node.split_feature)
                    .and_then(|&f| u32::try_from(f).ok())
                    .ok_or_else(|| form_changed(format!("split {index} has a bad feature")))?;
                let left = out.len();
                let child = |offset: usize| {
                    u32::try_from(left + offset).map_err(|_| form_changed("too many nodes"))
                };
                let node = NodeSpec::Branch {
                    feature,
                    mode: Mode::Leq,
                    threshold,
                    missing_tracks_true: false,
                    true_child: child(0)?,
                    false_child: child(1)?,
                };
                out.extend([
                    NodeSpec::Leaf {
                        weights: Vec::new(),
                    },
                    NodeSpec::Leaf {
                        weights: Vec::new(),
                    },
                ]);
                pending.push_back((true_child, left));
                pending.push_back((false_child, left + 1));
                node
            }
            (None, _) => NodeSpec::Leaf {
                weights: leaf(node)
                    .ok_or_else(|| form_changed(format!("leaf {index} has a bad output")))?,
            },
            (Some(_), None) => return Err(form_changed(format!("split {index} has one child"))),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::Prediction;

    const IRIS_CSV: &[u8] = include_bytes!("../../../model-artifacts/iris.csv");

    fn iris() -> Dataset {
        Dataset::from_csv(IRIS_CSV, "species", TaskChoice::Auto).unwrap()
    }

    fn iris_hp() -> Hyperparameters {
        TrainConfig::new("species").hyperparameters(&iris())
    }

    /// The default configuration's final Iris forest, trained once for every test that needs it.
    fn default_trees() -> &'static [FittedTree] {
        static TREES: OnceLock<Vec<FittedTree>> = OnceLock::new();
        TREES.get_or_init(|| {
            let hp = iris_hp();
            fit_trees(&iris(), &hp, &mut rng(hp.seed, STREAM_FINAL_FOREST)).unwrap()
        })
    }

    /// A uniform point in a box a bit wider than the data.
    fn uniform(ranges: &[(f64, f64)], rng: &mut ChaCha8Rng) -> Vec<f64> {
        ranges
            .iter()
            .map(|(min, max)| {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                (min - 1.0) + u * (max - min + 2.0)
            })
            .collect()
    }

    /// Points to compare on: the rows, a few thousand uniform points, and for every split of
    /// `trees` points exactly on its threshold (where `<=` vs `<` would make a difference).
    fn probe_points(data: &Dataset, trees: &[&FittedTree], rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
        let ranges = data.feature_ranges();
        let mut points = data.rows.clone();
        points.extend((0..3000).map(|_| uniform(&ranges, rng)));
        for tree in trees {
            for node in &tree.nodes {
                if let NodeSpec::Branch {
                    feature, threshold, ..
                } = *node
                {
                    for _ in 0..3 {
                        let mut row = uniform(&ranges, rng);
                        row[feature as usize] = threshold;
                        points.push(row);
                    }
                }
            }
        }
        points
    }

    /// smartcore's own answer of one tree for `points` (class index or value).
    fn smartcore_predict(tree: &FittedTree, points: &[Vec<f64>]) -> Vec<f64> {
        let columns = Array2::from_shape_fn((points.len(), tree.features.len()), |(i, j)| {
            points[i][tree.features[j]]
        });
        match &tree.smartcore {
            SmartTree::Classifier(t) => t
                .predict(&columns)
                .unwrap()
                .iter()
                .map(|&c| f64::from(c))
                .collect(),
            SmartTree::Regressor(t) => {
                let flat: Vec<f64> = columns.iter().copied().collect();
                let matrix =
                    DenseMatrix::new(points.len(), tree.features.len(), flat, false).unwrap();
                t.predict(&matrix).unwrap()
            }
        }
    }

    #[test]
    fn flattened_trees_predict_exactly_like_smartcore() {
        let data = iris();
        let mut rng = rng(7, 0);
        for (index, tree) in default_trees().iter().enumerate() {
            let points = probe_points(&data, &[tree], &mut rng);
            let expected = smartcore_predict(tree, &points);
            let single = Ensemble::new(forest_spec(&data, vec![tree.nodes.clone()])).unwrap();
            for (point, &class) in points.iter().zip(&expected) {
                let Prediction::Class { class: ours, .. } = single.predict(point) else {
                    panic!("a classifier answers with a class");
                };
                assert_eq!(
                    ours as f64, class,
                    "tree {index} disagrees with smartcore at {point:?}"
                );
            }
        }
    }

    /// The default Iris forest answers bit for bit what the previous Iris-only forest did: vote
    /// shares `votes / n_trees` (recomputed here from smartcore's own per-tree predictions) and
    /// the first class with the most votes, on every training row, thousands of random points
    /// and points on every threshold of every tree.
    #[test]
    fn the_iris_forest_gives_vote_shares_bit_for_bit() {
        let data = iris();
        let trees = default_trees();
        let forest = Ensemble::new(forest_spec(
            &data,
            trees.iter().map(|t| t.nodes.clone()).collect(),
        ))
        .unwrap();
        let all: Vec<&FittedTree> = trees.iter().collect();
        let points = probe_points(&data, &all, &mut rng(11, 0));
        assert!(points.len() > 4_000, "{}", points.len());
        let per_tree: Vec<Vec<f64>> = trees
            .iter()
            .map(|t| smartcore_predict(t, &points))
            .collect();
        let mut scratch = forest.scratch();
        let mut batch = crate::Batch::new();
        let flat: Vec<f64> = points.iter().flatten().copied().collect();
        forest.predict_batch_into(&flat, &mut batch);
        for (p, point) in points.iter().enumerate() {
            let mut votes = [0u32; 3];
            for tree in &per_tree {
                votes[tree[p] as usize] += 1;
            }
            let mut expected_class = 0;
            for k in 1..3 {
                if votes[k] > votes[expected_class] {
                    expected_class = k;
                }
            }
            let expected_shares = votes.map(|v| f64::from(v) / f64::from(trees.len() as u32));
            for outcome in [forest.predict_into(point, &mut scratch), batch.get(p)] {
                let Outcome::Class { class, scores } = outcome else {
                    panic!("a classifier answers with a class");
                };
                assert_eq!(class, expected_class, "{point:?}");
                let bits: Vec<u64> = scores.iter().map(|s| s.to_bits()).collect();
                let expected_bits: Vec<u64> = expected_shares.iter().map(|s| s.to_bits()).collect();
                assert_eq!(bits, expected_bits, "{point:?}");
            }
        }
    }

    #[test]
    fn flattening_handles_trees_on_a_feature_subset() {
        let data = iris();
        let hp = Hyperparameters {
            n_trees: 8,
            max_features: 2,
            ..iris_hp()
        };
        let mut point_rng = rng(9, 0);
        for tree in fit_trees(&data, &hp, &mut rng(3, 0)).unwrap() {
            assert_eq!(tree.features.len(), 2);
            let points = probe_points(&data, &[&tree], &mut point_rng);
            let expected = smartcore_predict(&tree, &points);
            let single = Ensemble::new(forest_spec(&data, vec![tree.nodes.clone()])).unwrap();
            for (point, &class) in points.iter().zip(&expected) {
                let Prediction::Class { class: ours, .. } = single.predict(point) else {
                    panic!("a classifier answers with a class");
                };
                assert_eq!(ours as f64, class);
            }
        }
    }

    /// A regression data set made here: y = 3·x0 − x1² + noise-free steps.
    fn regression_data() -> Dataset {
        let mut csv = String::from("x0,x1,x2,y\n");
        let mut r = rng(5, 0);
        for _ in 0..200 {
            let x: Vec<f64> = (0..3)
                .map(|_| (below(&mut r, 1000) as f64) / 100.0)
                .collect();
            let y = 3.0 * x[0] - x[1] * x[1] + if x[2] > 5.0 { 2.5 } else { 0.0 };
            csv.push_str(&format!("{},{},{},{y}\n", x[0], x[1], x[2]));
        }
        Dataset::from_csv(csv.as_bytes(), "y", TaskChoice::Auto).unwrap()
    }

    #[test]
    fn flattened_regression_trees_predict_exactly_like_smartcore_and_the_forest_averages() {
        let data = regression_data();
        assert!(matches!(data.target, Target::Values(_)));
        let hp = TrainConfig::new("y").hyperparameters(&data);
        let hp = Hyperparameters { n_trees: 6, ..hp };
        let trees = fit_trees(&data, &hp, &mut rng(1, 0)).unwrap();
        let all: Vec<&FittedTree> = trees.iter().collect();
        let points = probe_points(&data, &all, &mut rng(2, 0));
        let per_tree: Vec<Vec<f64>> = trees
            .iter()
            .map(|t| smartcore_predict(t, &points))
            .collect();
        for (tree, expected) in trees.iter().zip(&per_tree) {
            let single = Ensemble::new(forest_spec(&data, vec![tree.nodes.clone()])).unwrap();
            for (point, &value) in points.iter().zip(expected) {
                assert_eq!(single.predict(point), Prediction::Value(value), "{point:?}");
            }
        }
        let forest = Ensemble::new(forest_spec(
            &data,
            trees.iter().map(|t| t.nodes.clone()).collect(),
        ))
        .unwrap();
        for (p, point) in points.iter().enumerate() {
            let sum: f64 = per_tree.iter().map(|t| t[p]).sum();
            assert_eq!(
                forest.predict(point),
                Prediction::Value(sum / trees.len() as f64)
            );
        }
    }

    #[test]
    fn a_regression_csv_trains_with_r2_metrics() {
        let mut csv = String::from("a,b,target\n");
        for row in &regression_data().rows {
            let y = 3.0 * row[0] - row[1] * row[1];
            csv.push_str(&format!("{},{},{y}\n", row[0], row[1]));
        }
        let config = TrainConfig {
            n_trees: 10,
            ..TrainConfig::new("target")
        };
        let artifacts =
            train_artifacts(csv.as_bytes(), "steps.csv", &config, "2026-01-01T00:00:00Z").unwrap();
        let manifest = &artifacts.manifest;
        assert_eq!(manifest.task, TaskKind::Regression);
        assert_eq!(manifest.name, "steps-random-forest");
        assert!(manifest.labels.is_empty());
        let metrics = manifest.metrics.as_ref().unwrap();
        assert!(metrics.holdout_r2.unwrap() > 0.8, "{metrics:?}");
        assert!(metrics.cv_r2_mean.unwrap() > 0.8, "{metrics:?}");
        assert_eq!(metrics.holdout_accuracy, None);
        assert_eq!(
            manifest.hyperparameters.as_ref().unwrap().criterion,
            Criterion::SquaredError
        );
        let again =
            train_artifacts(csv.as_bytes(), "steps.csv", &config, "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(again.model, artifacts.model);
    }

    #[test]
    fn trees_are_trained_on_different_bootstrap_samples() {
        let distinct: std::collections::HashSet<String> = default_trees()
            .iter()
            .map(|t| format!("{:?}", t.nodes))
            .collect();
        assert!(distinct.len() > default_trees().len() / 2);
    }

    #[test]
    fn training_twice_with_the_same_seed_produces_identical_bytes() {
        let data = iris();
        let hp = Hyperparameters {
            n_trees: 10,
            ..iris_hp()
        };
        let first = fit_forest(&data, &hp, &mut rng(hp.seed, 0))
            .unwrap()
            .to_bytes();
        let second = fit_forest(&data, &hp, &mut rng(hp.seed, 0))
            .unwrap()
            .to_bytes();
        assert_eq!(first, second);
        let other_seed = fit_forest(&data, &hp, &mut rng(hp.seed + 1, 0))
            .unwrap()
            .to_bytes();
        assert_ne!(first, other_seed);
    }

    #[test]
    fn the_random_stream_is_pinned() {
        // ChaCha8 keyed with 42 on stream 0. If a dependency update changes these draws, every
        // committed artifact stops being reproducible: that must fail here first.
        let mut r = rng(42, 0);
        let draws: Vec<usize> = (0..5).map(|_| below(&mut r, 150)).collect();
        assert_eq!(draws, [52, 42, 74, 55, 123]);
    }

    #[test]
    fn the_holdout_split_is_stratified_and_disjoint() {
        let data = iris();
        let (train, test) = holdout_split(&groups(&data), 0.3, &mut rng(1, 1));
        assert_eq!((train.len(), test.len()), (105, 45));
        let Target::Classes { classes, .. } = &data.target else {
            panic!("iris is a classification data set");
        };
        for class in 0..3 {
            assert_eq!(test.iter().filter(|&&i| classes[i] == class).count(), 15);
        }
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..150).collect::<Vec<_>>());
    }

    #[test]
    fn the_folds_are_stratified_and_partition_the_rows() {
        let data = iris();
        let folds = folds(&groups(&data), 5, &mut rng(1, 3));
        let Target::Classes { classes, .. } = &data.target else {
            panic!("iris is a classification data set");
        };
        let mut all: Vec<usize> = folds.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..150).collect::<Vec<_>>());
        for fold in &folds {
            for class in 0..3 {
                assert_eq!(fold.iter().filter(|&&i| classes[i] == class).count(), 10);
            }
        }
    }

    #[test]
    fn invalid_hyperparameters_are_refused() {
        let data = iris();
        let base = TrainConfig::new("species");
        let zero_trees = TrainConfig {
            n_trees: 0,
            ..base.clone()
        };
        let too_many_features = TrainConfig {
            max_features: Some(5),
            ..base.clone()
        };
        let one_fold = TrainConfig {
            cv_folds: 1,
            ..base.clone()
        };
        let all_held_out = TrainConfig {
            holdout_fraction: 1.0,
            ..base.clone()
        };
        for config in [zero_trees, too_many_features, one_fold, all_held_out] {
            assert!(matches!(
                evaluate(&data, &config),
                Err(ModelError::Training(_))
            ));
        }
    }

    #[test]
    fn the_recorded_smartcore_version_is_the_pinned_one() {
        let root = include_str!("../../../Cargo.toml");
        let pin = format!("smartcore = {{ version = \"={SMARTCORE_VERSION}\"");
        assert!(root.contains(&pin), "root Cargo.toml must contain `{pin}`");
    }
}
