//! The graph around the tree ensemble: what feeds it, and what happens to its scores.
//!
//! skl2onnx and onnxmltools write one tree-ensemble node plus plumbing: `Cast`/`Identity` on the
//! way in, and on the way out `ZipMap` (probabilities as a map), `Cast`/`Identity` of the label,
//! `Mul` by a constant 1 (LightGBM), `Reshape`/`Flatten`. Some converters express part of the
//! model as extra nodes after the ensemble: an `Add` of a constant (a base score), a `Sigmoid` or
//! a `Softmax` (the post-transform). Those are folded into the artifact. Any other node, or one of
//! these used in a way that would change the answers differently, is refused with its name.

use std::collections::{HashMap, HashSet, VecDeque};

use tree_model::{PostTransform, Precision};

use crate::ImportError;
use crate::attributes::{float_tensor, node_label, type_name};
use crate::onnx::tensor_proto::DataType;
use crate::onnx::tensor_shape_proto::dimension::Value as Dim;
use crate::onnx::type_proto::Value as TypeValue;
use crate::onnx::{GraphProto, NodeProto, TensorProto};

/// Tree-ensemble operators the importer converts.
pub(crate) const ENSEMBLE_OPS: [&str; 3] = [
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "TreeEnsemble",
];
/// Nodes that pass values through unchanged.
const PASS_THROUGH: [&str; 5] = ["Identity", "Cast", "Reshape", "Flatten", "ZipMap"];

/// What the graph says besides the ensemble node's own attributes.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    /// The tree-ensemble node.
    pub(crate) ensemble: &'a NodeProto,
    /// How inputs reach the ensemble: rounded to float32 on the way, or double throughout.
    pub(crate) precision: Precision,
    /// The input's feature count, when its shape says.
    pub(crate) n_features: Option<usize>,
    /// Constants added to the scores after the ensemble (`Add` nodes), summed.
    pub(crate) added: Vec<f64>,
    /// A post-transform applied by a node after the ensemble.
    pub(crate) transform: Option<PostTransform>,
}

/// Finds the ensemble and checks every other node of `graph`.
pub(crate) fn plan(graph: &GraphProto) -> Result<Plan<'_>, ImportError> {
    let initializers: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .filter_map(|t| Some((t.name.as_deref()?, t)))
        .collect();

    let ensembles: Vec<&NodeProto> = graph
        .node
        .iter()
        .filter(|n| {
            ENSEMBLE_OPS.contains(&n.op_type.as_deref().unwrap_or(""))
                && n.domain.as_deref() == Some("ai.onnx.ml")
        })
        .collect();
    let ensemble = match ensembles.as_slice() {
        [one] => *one,
        [] => {
            let mut ops: Vec<&str> = graph
                .node
                .iter()
                .map(|n| n.op_type.as_deref().unwrap_or("?"))
                .collect();
            ops.sort_unstable();
            ops.dedup();
            return Err(ImportError::Graph(format!(
                "no TreeEnsembleClassifier, TreeEnsembleRegressor or TreeEnsemble node in domain ai.onnx.ml (the graph has: {})",
                if ops.is_empty() {
                    "no nodes".to_owned()
                } else {
                    ops.join(", ")
                }
            )));
        }
        _ => {
            return Err(ImportError::Graph(format!(
                "{} tree-ensemble nodes; one model per file is supported",
                ensembles.len()
            )));
        }
    };

    // The real inputs (old files also list initializers as inputs).
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name.as_deref().unwrap_or("")))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(ImportError::Graph(format!(
            "the graph has {} inputs; a tree ensemble takes exactly one feature tensor",
            inputs.len()
        )));
    };
    let input_name = input.name.as_deref().unwrap_or("");
    let tensor_type = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => t,
        _ => {
            return Err(ImportError::Graph(format!(
                "graph input `{input_name}` is not a tensor"
            )));
        }
    };
    let elem = tensor_type.elem_type.unwrap_or(0);
    let mut precision = if elem == DataType::Float as i32 {
        Precision::F32
    } else if elem == DataType::Double as i32 {
        Precision::F64
    } else {
        return Err(ImportError::Graph(format!(
            "graph input `{input_name}` has element type {}; FLOAT or DOUBLE features are supported",
            type_name(elem)
        )));
    };
    let n_features = match tensor_type.shape.as_ref().map(|s| s.dim.as_slice()) {
        Some([_, last]) => match last.value {
            Some(Dim::DimValue(n)) if n > 0 => Some(n as usize),
            _ => None,
        },
        Some(dims) if dims.len() != 2 => {
            return Err(ImportError::Graph(format!(
                "graph input `{input_name}` has {} dimensions; a [rows, features] matrix is expected",
                dims.len()
            )));
        }
        _ => None,
    };

    let producers: HashMap<&str, &NodeProto> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let mut accounted: HashSet<*const NodeProto> = HashSet::from([ensemble as *const _]);

    // Backwards from the ensemble's input to the graph input, through Identity and Cast only.
    let mut tensor =
        ensemble.input.first().map(String::as_str).ok_or_else(|| {
            ImportError::Graph(format!("node {} has no input", node_label(ensemble)))
        })?;
    while tensor != input_name {
        let Some(&producer) = producers.get(tensor) else {
            return Err(ImportError::Graph(format!(
                "tensor `{tensor}` feeding the tree ensemble is neither the graph input nor produced by a node (missing input)"
            )));
        };
        match producer.op_type.as_deref() {
            Some("Identity") => {}
            Some("Cast") => {
                let to = producer
                    .attribute
                    .iter()
                    .find(|a| a.name.as_deref() == Some("to"))
                    .and_then(|a| a.i)
                    .unwrap_or(0);
                if to == i64::from(DataType::Float as i32) {
                    precision = Precision::F32;
                } else if to != i64::from(DataType::Double as i32) {
                    return Err(ImportError::Graph(format!(
                        "node {} casts the features to {} before the tree ensemble",
                        node_label(producer),
                        type_name(to as i32)
                    )));
                }
            }
            _ => {
                return Err(ImportError::Graph(format!(
                    "node {} transforms the features before the tree ensemble; only Identity and Cast may",
                    node_label(producer)
                )));
            }
        }
        accounted.insert(producer as *const _);
        tensor = producer.input.first().map(String::as_str).unwrap_or("");
    }

    // Forwards from the ensemble's outputs.
    let consumers: HashMap<&str, Vec<&NodeProto>> =
        graph.node.iter().fold(HashMap::new(), |mut map, n| {
            for i in &n.input {
                map.entry(i.as_str()).or_default().push(n);
            }
            map
        });
    let classifier = ensemble.op_type.as_deref() == Some("TreeEnsembleClassifier");
    let (label, scores) = if classifier {
        (ensemble.output.first(), ensemble.output.get(1))
    } else {
        (None, ensemble.output.first())
    };
    let graph_outputs: HashSet<&str> = graph
        .output
        .iter()
        .filter_map(|o| o.name.as_deref())
        .collect();
    let mut reaches_output = false;

    // The label may only be passed on or cast (our class is the ensemble's own choice).
    if let Some(label) = label {
        let mut queue = VecDeque::from([label.as_str()]);
        while let Some(tensor) = queue.pop_front() {
            reaches_output |= graph_outputs.contains(tensor);
            for &node in consumers.get(tensor).into_iter().flatten() {
                if !matches!(node.op_type.as_deref(), Some("Identity" | "Cast")) {
                    return Err(ImportError::Graph(format!(
                        "node {} changes the predicted label; only Identity and Cast may follow it",
                        node_label(node)
                    )));
                }
                accounted.insert(node as *const _);
                queue.extend(node.output.iter().map(String::as_str));
            }
        }
    }

    // The scores: pass-through nodes, Mul by 1, and folded Add / Sigmoid / Softmax. Every path
    // to a graph output must apply the same folds.
    let mut folds_at_outputs: Vec<(Vec<f64>, Option<PostTransform>)> = Vec::new();
    if let Some(scores) = scores {
        let mut queue = VecDeque::from([(scores.as_str(), Vec::<f64>::new(), None)]);
        while let Some((tensor, added, transform)) = queue.pop_front() {
            if graph_outputs.contains(tensor) {
                reaches_output = true;
                folds_at_outputs.push((added.clone(), transform));
            }
            for &node in consumers.get(tensor).into_iter().flatten() {
                accounted.insert(node as *const _);
                let label = node_label(node);
                let constant = || -> Result<Vec<f64>, ImportError> {
                    let other = node
                        .input
                        .iter()
                        .find(|i| i.as_str() != tensor)
                        .and_then(|i| initializers.get(i.as_str()))
                        .ok_or_else(|| {
                            ImportError::Graph(format!(
                                "node {label} combines the scores with a tensor that is not a constant"
                            ))
                        })?;
                    Ok(float_tensor(other, "value", &label)?.values)
                };
                let (added, transform) = match node.op_type.as_deref().unwrap_or("") {
                    op if PASS_THROUGH.contains(&op) => (added.clone(), transform),
                    "Mul" => {
                        if constant()?.iter().any(|&v| v != 1.0) {
                            return Err(ImportError::Graph(format!(
                                "node {label} multiplies the scores by a value other than 1"
                            )));
                        }
                        (added.clone(), transform)
                    }
                    "Add" if transform.is_none() => {
                        let c = constant()?;
                        let sum = if added.is_empty() {
                            c
                        } else if c.len() == added.len() {
                            added.iter().zip(&c).map(|(a, b)| a + b).collect()
                        } else {
                            return Err(ImportError::Graph(format!(
                                "node {label} adds constants of another shape"
                            )));
                        };
                        (sum, None)
                    }
                    "Sigmoid" if transform.is_none() => {
                        (added.clone(), Some(PostTransform::Logistic))
                    }
                    "Softmax" if transform.is_none() => {
                        (added.clone(), Some(PostTransform::Softmax))
                    }
                    _ => {
                        return Err(ImportError::Graph(format!(
                            "node {label} after the tree ensemble is not supported"
                        )));
                    }
                };
                for output in &node.output {
                    queue.push_back((output.as_str(), added.clone(), transform));
                }
            }
        }
    }
    if !reaches_output {
        return Err(ImportError::Graph(
            "no graph output comes from the tree ensemble".to_owned(),
        ));
    }
    if let Some(node) = graph
        .node
        .iter()
        .find(|n| !accounted.contains(&(*n as *const _)))
    {
        return Err(ImportError::Graph(format!(
            "node {} is not on the tree ensemble's path",
            node_label(node)
        )));
    }
    let (added, transform) = folds_at_outputs.first().cloned().unwrap_or_default();
    if folds_at_outputs
        .iter()
        .any(|(a, t)| *a != added || *t != transform)
    {
        return Err(ImportError::Graph(
            "the scores reach the graph outputs through different transforms".to_owned(),
        ));
    }
    Ok(Plan {
        ensemble,
        precision,
        n_features,
        added,
        transform,
    })
}
