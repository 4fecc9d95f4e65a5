//! Build-time import of ONNX-ML tree ensembles into the project's own artifact.
//!
//! `make import-model ONNX=model.onnx` runs the `import-model` binary: the ONNX file is decoded
//! with prost against the official `onnx-ml.proto` (vendored in `proto/`, compiled by protox at
//! build time: no system `protoc`, no hand-written decoder), the graph around the tree ensemble
//! is checked ([`graph`]), the operator's attributes are converted ([`convert`]) into a
//! `tree_model::EnsembleSpec`, and the result is validated by the model crate exactly as the
//! prediction function will validate it at init. Only then are `model.bin` and `manifest.json`
//! written (to temporary files, renamed into place), so a refused file leaves
//! `model-artifacts/` untouched. Nothing in the file is ever executed: ONNX is plain data.
//!
//! `model-predict` evaluates an artifact on rows from standard input; the agreement tests
//! (`scripts/model_oracle.sh`) compare it with the training libraries and onnxruntime.
//!
//! This crate is build-time only: the Lambda functions do not depend on it, so they link no
//! protobuf or ONNX code.

pub mod onnx {
    //! Types generated from the vendored `proto/onnx-ml.proto`.
    #![allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

mod attributes;
pub mod convert;
mod error;
pub mod graph;

use prost::Message;
use tree_model::{
    ARTIFACT_FILE, ARTIFACT_FORMAT, Ensemble, Feature, Manifest, PostTransform, Scoring, Source,
    Task, TaskKind, check_agreement, sha256_hex,
};

pub use error::ImportError;

/// What the manifest should say besides what the file holds.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The ONNX file's name (recorded as the source); its stem is the default model name.
    pub file_name: String,
    /// Model name; `None`: the file's stem.
    pub name: Option<String>,
    /// Model version, served as `model_version`.
    pub version: String,
    /// RFC 3339 date-time of the import.
    pub imported_at: String,
    /// A reference CSV (feature names in the header, training ranges from its rows).
    pub features_csv: Option<Vec<u8>>,
}

/// An imported model, ready to be written.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The converted ensemble.
    pub ensemble: Ensemble,
    /// `ensemble.to_bytes()`, the content of `model.bin`.
    pub model: Vec<u8>,
    /// The content of `manifest.json`.
    pub manifest: Manifest,
}

/// Converts the ONNX file `bytes`.
pub fn import(bytes: &[u8], options: &ImportOptions) -> Result<Imported, ImportError> {
    let model =
        onnx::ModelProto::decode(bytes).map_err(|err| ImportError::NotOnnx(err.to_string()))?;
    let graph = match (&model.graph, model.ir_version) {
        (Some(graph), Some(ir)) if ir > 0 => graph,
        _ => {
            return Err(ImportError::NotOnnx(
                "the file has no IR version or no graph".to_owned(),
            ));
        }
    };
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref() == Some("ai.onnx.ml"))
        .and_then(|o| o.version)
        .ok_or_else(|| ImportError::Graph("the model imports no ai.onnx.ml opset".to_owned()))?;
    let plan = graph::plan(graph)?;
    let op = plan.ensemble.op_type.clone().unwrap_or_default();
    if op == "TreeEnsemble" && opset < 5 || op != "TreeEnsemble" && opset >= 5 {
        return Err(ImportError::Graph(format!(
            "{op} is not an operator of ai.onnx.ml opset {opset}"
        )));
    }
    let mut converted = convert::convert(plan.ensemble, plan.precision, plan.n_features)?;
    fold(&mut converted.spec, &plan)?;

    let ensemble = Ensemble::new(converted.spec)?;
    let artifact = ensemble.to_bytes();
    let n_features = ensemble.n_features();
    let features = match &options.features_csv {
        Some(csv) => reference_features(csv, n_features)?,
        None => (0..n_features)
            .map(|i| Feature::named(format!("f{i}")))
            .collect(),
    };
    let (task, labels) = match ensemble.task() {
        Task::Classification { .. } => (TaskKind::Classification, converted.labels),
        Task::Regression => (TaskKind::Regression, Vec::new()),
    };
    let spec = ensemble.spec();
    let stem = options
        .file_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(&options.file_name)
        .trim_end_matches(".onnx");
    let manifest = Manifest {
        name: options.name.clone().unwrap_or_else(|| stem.to_owned()),
        version: options.version.clone(),
        file: ARTIFACT_FILE.to_owned(),
        sha256: sha256_hex(&artifact),
        format: ARTIFACT_FORMAT.to_owned(),
        task,
        algorithm: format!(
            "tree ensemble of {} trees ({:?} of leaf weights, post-transform {:?})",
            ensemble.n_trees(),
            spec.aggregate,
            spec.post_transform
        ),
        hyperparameters: None,
        smartcore_version: None,
        features,
        labels,
        metrics: None,
        trained_at: None,
        training_data: None,
        source: Some(Source {
            kind: "onnx".to_owned(),
            file: options.file_name.clone(),
            sha256: sha256_hex(bytes),
            producer_name: model.producer_name.clone().unwrap_or_default(),
            producer_version: model.producer_version.clone().unwrap_or_default(),
            op,
            opset,
        }),
        imported_at: Some(options.imported_at.clone()),
    };
    manifest.check()?;
    check_agreement(&ensemble, &manifest)?;
    Ok(Imported {
        ensemble,
        model: artifact,
        manifest,
    })
}

/// Folds an `Add` and a `Sigmoid`/`Softmax` found after the ensemble into its spec.
fn fold(spec: &mut tree_model::EnsembleSpec, plan: &graph::Plan<'_>) -> Result<(), ImportError> {
    if plan.added.is_empty() && plan.transform.is_none() {
        return Ok(());
    }
    if spec.post_transform != PostTransform::None {
        return Err(ImportError::Graph(format!(
            "the graph transforms scores that the ensemble already transformed ({:?})",
            spec.post_transform
        )));
    }
    if !plan.added.is_empty() {
        let outputs = match spec.task {
            Task::Classification {
                scoring: Scoring::PerClass,
                n_classes,
            } => n_classes as usize,
            _ => 1,
        };
        let added: Vec<f64> = match plan.added.len() {
            1 => vec![plan.added[0]; outputs],
            n if n == outputs => plan.added.clone(),
            n => {
                return Err(ImportError::Graph(format!(
                    "an Add after the ensemble adds {n} values to {outputs} scores"
                )));
            }
        };
        if spec.base_values.is_empty() {
            spec.base_values = added;
        } else {
            for (base, a) in spec.base_values.iter_mut().zip(added) {
                *base += a;
            }
        }
        if let Task::Classification {
            scoring: scoring @ Scoring::BinaryProbability,
            ..
        } = &mut spec.task
        {
            *scoring = Scoring::BinaryMargin;
        }
    }
    if let Some(transform) = plan.transform {
        match (&mut spec.task, transform) {
            (
                Task::Classification {
                    scoring: Scoring::PerClass,
                    ..
                },
                _,
            ) => {
                spec.post_transform = transform;
            }
            (Task::Classification { scoring, .. }, PostTransform::Logistic) => {
                *scoring = Scoring::BinaryMargin;
                spec.post_transform = transform;
            }
            _ => {
                return Err(ImportError::Graph(format!(
                    "a {transform:?} node after this ensemble's single score is not supported"
                )));
            }
        }
    }
    Ok(())
}

/// Feature names and training ranges from a reference CSV: the header names the columns (one per
/// input feature, in order), and each column's smallest and largest finite value is its range.
fn reference_features(csv: &[u8], n_features: usize) -> Result<Vec<Feature>, ImportError> {
    let bad = |message: String| ImportError::Features(message);
    let text = std::str::from_utf8(csv).map_err(|_| bad("the CSV is not UTF-8".to_owned()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad("the CSV is empty".to_owned()))?
        .split(',')
        .map(str::trim)
        .collect();
    if header.len() != n_features {
        return Err(bad(format!(
            "the header has {} columns, the model takes {n_features} features",
            header.len()
        )));
    }
    let mut ranges: Vec<Option<(f64, f64)>> = vec![None; n_features];
    for (offset, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != n_features {
            return Err(bad(format!(
                "line {} has {} fields, expected {n_features}",
                offset + 2,
                fields.len()
            )));
        }
        for (range, field) in ranges.iter_mut().zip(fields) {
            // Empty fields and NaN are missing values: they widen no range.
            if field.is_empty() {
                continue;
            }
            let value: f64 = field
                .parse()
                .map_err(|_| bad(format!("line {}: `{field}` is not a number", offset + 2)))?;
            if value.is_finite() {
                let (min, max) = range.get_or_insert((value, value));
                *min = min.min(value);
                *max = max.max(value);
            }
        }
    }
    Ok(header
        .iter()
        .zip(ranges)
        .map(|(name, range)| Feature {
            training_min: range.map(|r| r.0),
            training_max: range.map(|r| r.1),
            ..Feature::named(*name)
        })
        .collect())
}
