//! The tree-ensemble operators, attribute by attribute, into an [`EnsembleSpec`].
//!
//! # What each operator means here
//!
//! - `TreeEnsembleRegressor` (ai.onnx.ml 1 and 3): one target (`n_targets = 1`), any
//!   `aggregate_function`, `base_values` of length 0 or 1, `post_transform` NONE or PROBIT
//!   (onnxruntime ignores the others for a single target, so a file asking for them is refused
//!   rather than read one way or the other).
//! - `TreeEnsembleClassifier` (1 and 3): the scores are summed. With two classes and every
//!   `class_ids` entry naming the same class, the trees keep one score: a probability
//!   (post-transform NONE and no negative weight: random forests) or a margin (LOGISTIC, or
//!   negative weights: gradient boosting); see `tree_model::Scoring`. Otherwise one score per
//!   class with `base_values` of length 0 or one per class.
//! - `TreeEnsemble` (5): one target, regression; `BRANCH_MEMBER` (set membership) is refused.
//!
//! Thresholds and weights keep their exact values: `float` attributes are widened to `f64`
//! exactly, `*_as_tensor` doubles are taken as they are. Weights on branch nodes are ignored, as
//! onnxruntime ignores them (old converters wrote some). Everything else that could make the
//! artifact mean something other than the file is an error naming the attribute.

use std::collections::{HashMap, VecDeque};

use tree_model::ensemble::{MAX_FEATURES, MAX_NODES, MAX_OUTPUTS, MAX_TREES};
use tree_model::{
    Aggregate, EnsembleSpec, Mode, NodeSpec, PostTransform, Precision, Scoring, Task,
};

use crate::ImportError;
use crate::attributes::{Attributes, FloatTensor, float_tensor, u8_tensor};
use crate::onnx::NodeProto;

/// An operator converted, before the graph around it is folded in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Converted {
    pub(crate) spec: EnsembleSpec,
    /// Class labels (classification only), integers written as decimal strings.
    pub(crate) labels: Vec<String>,
}

const NODE_ATTRIBUTES: [&str; 11] = [
    "nodes_falsenodeids",
    "nodes_featureids",
    "nodes_hitrates",
    "nodes_hitrates_as_tensor",
    "nodes_missing_value_tracks_true",
    "nodes_modes",
    "nodes_nodeids",
    "nodes_treeids",
    "nodes_truenodeids",
    "nodes_values",
    "nodes_values_as_tensor",
];

/// Converts the tree-ensemble `node`. `precision` comes from the graph input; `n_features`
/// from its shape when known (else the largest feature index used, plus one).
pub(crate) fn convert(
    node: &NodeProto,
    precision: Precision,
    n_features: Option<usize>,
) -> Result<Converted, ImportError> {
    match node.op_type.as_deref().unwrap_or("") {
        "TreeEnsembleClassifier" => classifier(node, precision, n_features),
        "TreeEnsembleRegressor" => regressor(node, precision, n_features),
        "TreeEnsemble" => tree_ensemble(node, precision, n_features),
        other => Err(ImportError::Graph(format!(
            "`{other}` is not a tree ensemble"
        ))),
    }
}

fn regressor(
    node: &NodeProto,
    precision: Precision,
    n_features: Option<usize>,
) -> Result<Converted, ImportError> {
    let mut known = NODE_ATTRIBUTES.to_vec();
    known.extend([
        "aggregate_function",
        "base_values",
        "base_values_as_tensor",
        "n_targets",
        "post_transform",
        "target_ids",
        "target_nodeids",
        "target_treeids",
        "target_weights",
        "target_weights_as_tensor",
    ]);
    let attrs = Attributes::new(node, &known)?;
    let n_targets = attrs.int("n_targets")?.unwrap_or(1);
    if n_targets != 1 {
        return Err(ImportError::Unsupported(format!(
            "`n_targets` = {n_targets} on node {}: only single-target regression is supported",
            attrs.node()
        )));
    }
    let aggregate = match attrs.string("aggregate_function")?.as_deref() {
        None | Some("SUM") => Aggregate::Sum,
        Some("AVERAGE") => Aggregate::Average,
        Some("MIN") => Aggregate::Min,
        Some("MAX") => Aggregate::Max,
        Some(other) => {
            return Err(ImportError::Unsupported(format!(
                "`aggregate_function` = {other:?} on node {}",
                attrs.node()
            )));
        }
    };
    let post_transform = post_transform_name(&attrs)?;
    if !matches!(post_transform, PostTransform::None | PostTransform::Probit) {
        return Err(ImportError::Unsupported(format!(
            "`post_transform` = {post_transform:?} on regressor node {}: onnxruntime ignores it for a single target, so its meaning is ambiguous",
            attrs.node()
        )));
    }
    let base_values = base_values(&attrs)?;
    if base_values.len() > 1 {
        return Err(ImportError::Invalid(format!(
            "`base_values` has {} values on node {} for 1 target",
            base_values.len(),
            attrs.node()
        )));
    }
    let nodes = LegacyNodes::read(&attrs)?;
    let weights = LegacyWeights::read(&attrs, "target")?;
    let (trees, max_feature) = nodes.build(&attrs, &weights, 1, "targets")?;
    Ok(Converted {
        spec: EnsembleSpec {
            n_features: feature_count(&attrs, n_features, max_feature)?,
            task: Task::Regression,
            precision,
            aggregate,
            post_transform,
            base_values,
            trees,
        },
        labels: Vec::new(),
    })
}

fn classifier(
    node: &NodeProto,
    precision: Precision,
    n_features: Option<usize>,
) -> Result<Converted, ImportError> {
    let mut known = NODE_ATTRIBUTES.to_vec();
    known.extend([
        "base_values",
        "base_values_as_tensor",
        "class_ids",
        "class_nodeids",
        "class_treeids",
        "class_weights",
        "class_weights_as_tensor",
        "classlabels_int64s",
        "classlabels_strings",
        "post_transform",
    ]);
    let attrs = Attributes::new(node, &known)?;
    let strings = attrs.strings("classlabels_strings")?;
    let ints = attrs.ints("classlabels_int64s")?;
    let labels: Vec<String> = match (strings.is_empty(), ints.is_empty()) {
        (false, true) => strings,
        (true, false) => ints.iter().map(i64::to_string).collect(),
        _ => {
            return Err(ImportError::Invalid(format!(
                "node {} must have exactly one of `classlabels_strings` and `classlabels_int64s`",
                attrs.node()
            )));
        }
    };
    let n_classes = labels.len();
    if !(2..=MAX_OUTPUTS).contains(&n_classes) {
        return Err(ImportError::Unsupported(format!(
            "{n_classes} class labels on node {} (2 to {MAX_OUTPUTS} are supported)",
            attrs.node()
        )));
    }
    let unique: std::collections::HashSet<&String> = labels.iter().collect();
    if unique.len() != n_classes {
        return Err(ImportError::Invalid(format!(
            "the class labels of node {} repeat a label",
            attrs.node()
        )));
    }
    let post_transform = post_transform_name(&attrs)?;
    let base_values = base_values(&attrs)?;
    let nodes = LegacyNodes::read(&attrs)?;
    let mut weights = LegacyWeights::read(&attrs, "class")?;
    let (task, n_outputs) = match weights.single_class() {
        Some(class) if n_classes == 2 => {
            if !(0..2).contains(&class) {
                return Err(ImportError::Invalid(format!(
                    "class_ids[0] = {class} is out of range for 2 classes on node {}",
                    attrs.node()
                )));
            }
            // One score kept for both classes: every weight goes to output 0.
            weights.ids = vec![0; weights.ids.len()];
            if base_values.len() > 1 {
                return Err(ImportError::Unsupported(format!(
                    "`base_values` of length {} on single-score binary classifier node {}",
                    base_values.len(),
                    attrs.node()
                )));
            }
            let scoring = match post_transform {
                PostTransform::Logistic => Scoring::BinaryMargin,
                PostTransform::None if weights.all_non_negative() && base_values.is_empty() => {
                    Scoring::BinaryProbability
                }
                PostTransform::None => Scoring::BinaryMargin,
                other => {
                    return Err(ImportError::Unsupported(format!(
                        "`post_transform` = {other:?} on single-score binary classifier node {}",
                        attrs.node()
                    )));
                }
            };
            (
                Task::Classification {
                    n_classes: 2,
                    scoring,
                },
                1,
            )
        }
        _ => {
            if !base_values.is_empty() && base_values.len() != n_classes {
                return Err(ImportError::Invalid(format!(
                    "`base_values` has {} values on node {} for {n_classes} classes",
                    base_values.len(),
                    attrs.node()
                )));
            }
            (
                Task::Classification {
                    n_classes: n_classes as u32,
                    scoring: Scoring::PerClass,
                },
                n_classes,
            )
        }
    };
    let (trees, max_feature) = nodes.build(&attrs, &weights, n_outputs, "classes")?;
    Ok(Converted {
        spec: EnsembleSpec {
            n_features: feature_count(&attrs, n_features, max_feature)?,
            task,
            precision,
            aggregate: Aggregate::Sum,
            post_transform,
            base_values,
            trees,
        },
        labels,
    })
}

fn post_transform_name(attrs: &Attributes<'_>) -> Result<PostTransform, ImportError> {
    Ok(match attrs.string("post_transform")?.as_deref() {
        None | Some("NONE") => PostTransform::None,
        Some("SOFTMAX") => PostTransform::Softmax,
        Some("LOGISTIC") => PostTransform::Logistic,
        Some("SOFTMAX_ZERO") => PostTransform::SoftmaxZero,
        Some("PROBIT") => PostTransform::Probit,
        Some(other) => {
            return Err(ImportError::Unsupported(format!(
                "`post_transform` = {other:?} on node {}",
                attrs.node()
            )));
        }
    })
}

fn base_values(attrs: &Attributes<'_>) -> Result<Vec<f64>, ImportError> {
    let values = attrs
        .floats_or_tensor("base_values")?
        .map(|t| t.values)
        .unwrap_or_default();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(ImportError::Invalid(format!(
            "`base_values` on node {} holds a value that is not finite",
            attrs.node()
        )));
    }
    Ok(values)
}

fn feature_count(
    attrs: &Attributes<'_>,
    declared: Option<usize>,
    max_feature: Option<u32>,
) -> Result<u32, ImportError> {
    let used = max_feature.map_or(1, |m| m as usize + 1);
    let n = match declared {
        Some(n) if n < used => {
            return Err(ImportError::Invalid(format!(
                "node {} splits on feature {} but the input has {n} features",
                attrs.node(),
                used - 1
            )));
        }
        Some(n) => n,
        None => used,
    };
    if n == 0 || n > MAX_FEATURES {
        return Err(ImportError::Unsupported(format!(
            "{n} input features (1 to {MAX_FEATURES} are supported)"
        )));
    }
    Ok(n as u32)
}

/// `nodes_featureids[i]` as a feature index: within `0..MAX_FEATURES`, else an error naming the
/// attribute, the value and `node`.
fn feature_id(
    featureids: &[i64],
    i: usize,
    node: &impl std::fmt::Display,
) -> Result<u32, ImportError> {
    u32::try_from(featureids[i])
        .ok()
        .filter(|&f| (f as usize) < MAX_FEATURES)
        .ok_or_else(|| {
            ImportError::Invalid(format!(
                "`nodes_featureids[{i}]` = {} is out of range on node {node}",
                featureids[i]
            ))
        })
}

fn parse_mode(mode: &str) -> Option<Option<Mode>> {
    Some(match mode {
        "BRANCH_LEQ" => Some(Mode::Leq),
        "BRANCH_LT" => Some(Mode::Lt),
        "BRANCH_GTE" => Some(Mode::Gte),
        "BRANCH_GT" => Some(Mode::Gt),
        "BRANCH_EQ" => Some(Mode::Eq),
        "BRANCH_NEQ" => Some(Mode::Neq),
        "LEAF" => None,
        _ => return None,
    })
}

/// The `nodes_*` arrays of `TreeEnsembleClassifier`/`Regressor`.
struct LegacyNodes<'a> {
    modes: Vec<String>,
    nodeids: &'a [i64],
    treeids: &'a [i64],
    featureids: &'a [i64],
    truenodeids: &'a [i64],
    falsenodeids: &'a [i64],
    missing: &'a [i64],
    values: FloatTensor,
}

/// Where each `(tree id, node id)` of a legacy node is in its `nodes_*` arrays.
type NodeIndex = HashMap<(i64, i64), usize>;

/// The `class_*` / `target_*` arrays: weights at the leaves.
struct LegacyWeights {
    prefix: &'static str,
    ids: Vec<i64>,
    nodeids: Vec<i64>,
    treeids: Vec<i64>,
    weights: Vec<f64>,
}

impl<'a> LegacyNodes<'a> {
    fn read(attrs: &Attributes<'a>) -> Result<Self, ImportError> {
        let modes = attrs.strings("nodes_modes")?;
        let n = modes.len();
        if n == 0 {
            return Err(ImportError::Invalid(format!(
                "node {} has no `nodes_modes` (no trees)",
                attrs.node()
            )));
        }
        if n > MAX_NODES {
            return Err(ImportError::Unsupported(format!(
                "node {} has {n} tree nodes, more than the {MAX_NODES} allowed",
                attrs.node()
            )));
        }
        let values = attrs
            .floats_or_tensor("nodes_values")?
            .unwrap_or(FloatTensor {
                values: Vec::new(),
                double: false,
            });
        let nodes = LegacyNodes {
            nodeids: attrs.ints("nodes_nodeids")?,
            treeids: attrs.ints("nodes_treeids")?,
            featureids: attrs.ints("nodes_featureids")?,
            truenodeids: attrs.ints("nodes_truenodeids")?,
            falsenodeids: attrs.ints("nodes_falsenodeids")?,
            missing: attrs.ints("nodes_missing_value_tracks_true")?,
            modes,
            values,
        };
        for (name, len) in [
            ("nodes_nodeids", nodes.nodeids.len()),
            ("nodes_treeids", nodes.treeids.len()),
            ("nodes_featureids", nodes.featureids.len()),
            ("nodes_truenodeids", nodes.truenodeids.len()),
            ("nodes_falsenodeids", nodes.falsenodeids.len()),
            ("nodes_values", nodes.values.values.len()),
        ] {
            if len != n {
                return Err(ImportError::Invalid(format!(
                    "inconsistent node arrays on node {}: `{name}` has {len} entries, `nodes_modes` {n}",
                    attrs.node()
                )));
            }
        }
        if !nodes.missing.is_empty() && nodes.missing.len() != n {
            return Err(ImportError::Invalid(format!(
                "inconsistent node arrays on node {}: `nodes_missing_value_tracks_true` has {} entries, `nodes_modes` {n}",
                attrs.node(),
                nodes.missing.len()
            )));
        }
        Ok(nodes)
    }

    /// Builds every tree (in order of first appearance of its tree id), root = node id 0,
    /// children laid out after their parent. Returns the trees and the largest feature used.
    fn build(
        &self,
        attrs: &Attributes<'_>,
        weights: &LegacyWeights,
        n_outputs: usize,
        outputs_name: &str,
    ) -> Result<(Vec<Vec<NodeSpec>>, Option<u32>), ImportError> {
        let node = attrs.node();
        let (index, tree_order) = self.index(node)?;
        let leaf_weights = weights.by_node(&index, n_outputs, outputs_name, node)?;
        let mut build = LegacyBuild {
            nodes: self,
            node,
            index,
            leaf_weights,
            visited: vec![false; self.modes.len()],
            max_feature: None,
        };
        let trees = tree_order
            .iter()
            .map(|&tree| build.tree(tree))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((trees, build.max_feature))
    }

    /// The position of each `(tree id, node id)`, and the tree ids in order of appearance.
    fn index(&self, node: &str) -> Result<(NodeIndex, Vec<i64>), ImportError> {
        let mut index: NodeIndex = HashMap::with_capacity(self.modes.len());
        let mut seen_trees = std::collections::HashSet::new();
        let mut tree_order = Vec::new();
        for i in 0..self.modes.len() {
            let key = (self.treeids[i], self.nodeids[i]);
            if seen_trees.insert(key.0) {
                tree_order.push(key.0);
            }
            if index.insert(key, i).is_some() {
                return Err(ImportError::Invalid(format!(
                    "node id {} appears twice in tree {} on node {node}",
                    key.1, key.0
                )));
            }
        }
        if tree_order.len() > MAX_TREES {
            return Err(ImportError::Unsupported(format!(
                "node {node} has {} trees, more than the {MAX_TREES} allowed",
                tree_order.len()
            )));
        }
        Ok((index, tree_order))
    }
}

/// The trees of one legacy node being built: where each node is, the leaf weights not placed
/// yet, the nodes already placed, and the largest feature seen.
struct LegacyBuild<'a, 'n> {
    nodes: &'a LegacyNodes<'n>,
    node: &'a str,
    index: NodeIndex,
    leaf_weights: HashMap<usize, Vec<(u32, f64)>>,
    visited: Vec<bool>,
    max_feature: Option<u32>,
}

impl LegacyBuild<'_, '_> {
    /// One tree, breadth first from its node 0.
    fn tree(&mut self, tree: i64) -> Result<Vec<NodeSpec>, ImportError> {
        let node = self.node;
        let root = *self.index.get(&(tree, 0)).ok_or_else(|| {
            ImportError::Invalid(format!(
                "tree {tree} has no node 0 (its root) on node {node}"
            ))
        })?;
        let mut out: Vec<NodeSpec> = Vec::new();
        let mut queue = VecDeque::from([(root, 0usize)]);
        out.push(NodeSpec::Leaf {
            weights: Vec::new(),
        });
        while let Some((i, slot)) = queue.pop_front() {
            if std::mem::replace(&mut self.visited[i], true) {
                return Err(ImportError::Invalid(format!(
                    "node {} of tree {tree} is reached twice (the node links do not form a tree) on node {node}",
                    self.nodes.nodeids[i]
                )));
            }
            let mode = parse_mode(&self.nodes.modes[i]).ok_or_else(|| {
                ImportError::Unsupported(format!(
                    "`nodes_modes[{i}]` = {:?} on node {node}",
                    self.nodes.modes[i]
                ))
            })?;
            let spec = match mode {
                None => self.leaf(i, tree)?,
                Some(mode) => self.branch(i, tree, mode, &mut out, &mut queue)?,
            };
            out[slot] = spec;
        }
        Ok(out)
    }

    /// Node `i`, a leaf: the weights that name it.
    fn leaf(&mut self, i: usize, tree: i64) -> Result<NodeSpec, ImportError> {
        let weights = self.leaf_weights.remove(&i).unwrap_or_default();
        if weights.is_empty() {
            return Err(ImportError::Invalid(format!(
                "leaf {} of tree {tree} has no weight on node {}",
                self.nodes.nodeids[i], self.node
            )));
        }
        Ok(NodeSpec::Leaf { weights })
    }

    /// Node `i`, a branch: its children get slots at the end of `out` and join the queue.
    fn branch(
        &mut self,
        i: usize,
        tree: i64,
        mode: Mode,
        out: &mut Vec<NodeSpec>,
        queue: &mut VecDeque<(usize, usize)>,
    ) -> Result<NodeSpec, ImportError> {
        let node = self.node;
        let nodes = self.nodes;
        let threshold = nodes.values.values[i];
        if threshold.is_nan() {
            return Err(ImportError::Invalid(format!(
                "`nodes_values[{i}]` (tree {tree}, node {}) is NaN on node {node}",
                nodes.nodeids[i]
            )));
        }
        let feature = feature_id(nodes.featureids, i, &node)?;
        self.max_feature = self.max_feature.max(Some(feature));
        let mut child = |id: i64, name: &str| -> Result<u32, ImportError> {
            let target = match self.index.get(&(tree, id)) {
                Some(&t) => t,
                None => {
                    return Err(ImportError::Invalid(format!(
                        "`{name}[{i}]` = {id} names no node of tree {tree} on node {node}"
                    )));
                }
            };
            let position = out.len();
            out.push(NodeSpec::Leaf {
                weights: Vec::new(),
            });
            queue.push_back((target, position));
            Ok(position as u32)
        };
        let true_child = child(nodes.truenodeids[i], "nodes_truenodeids")?;
        let false_child = child(nodes.falsenodeids[i], "nodes_falsenodeids")?;
        Ok(NodeSpec::Branch {
            feature,
            mode,
            threshold,
            missing_tracks_true: nodes.missing.get(i) == Some(&1),
            true_child,
            false_child,
        })
    }
}

impl LegacyWeights {
    fn read(attrs: &Attributes<'_>, prefix: &'static str) -> Result<Self, ImportError> {
        let ids = attrs.ints(&format!("{prefix}_ids"))?.to_vec();
        let nodeids = attrs.ints(&format!("{prefix}_nodeids"))?.to_vec();
        let treeids = attrs.ints(&format!("{prefix}_treeids"))?.to_vec();
        let weights = attrs
            .floats_or_tensor(&format!("{prefix}_weights"))?
            .map(|t| t.values)
            .unwrap_or_default();
        let n = ids.len();
        if n > MAX_NODES {
            return Err(ImportError::Unsupported(format!(
                "node {} has {n} leaf weights, more than the {MAX_NODES} allowed",
                attrs.node()
            )));
        }
        for (name, len) in [
            ("nodeids", nodeids.len()),
            ("treeids", treeids.len()),
            ("weights", weights.len()),
        ] {
            if len != n {
                return Err(ImportError::Invalid(format!(
                    "inconsistent leaf arrays on node {}: `{prefix}_{name}` has {len} entries, `{prefix}_ids` {n}",
                    attrs.node()
                )));
            }
        }
        Ok(LegacyWeights {
            prefix,
            ids,
            nodeids,
            treeids,
            weights,
        })
    }

    /// Leaf weights in attribute order, per node position (`index`), each checked: a node
    /// that exists, an output in range, a finite weight.
    fn by_node(
        &self,
        index: &NodeIndex,
        n_outputs: usize,
        outputs_name: &str,
        node: &str,
    ) -> Result<HashMap<usize, Vec<(u32, f64)>>, ImportError> {
        let mut leaf_weights: HashMap<usize, Vec<(u32, f64)>> = HashMap::new();
        for i in 0..self.ids.len() {
            let key = (self.treeids[i], self.nodeids[i]);
            let target = match index.get(&key) {
                Some(&target) => target,
                None => {
                    return Err(ImportError::Invalid(format!(
                        "`{}_nodeids[{i}]` names node {} of tree {}, which does not exist on node {node}",
                        self.prefix, key.1, key.0
                    )));
                }
            };
            let id = self.ids[i];
            if id < 0 || id as usize >= n_outputs {
                return Err(ImportError::Invalid(format!(
                    "`{}_ids[{i}]` = {id} is out of range for {n_outputs} {outputs_name} on node {node}",
                    self.prefix
                )));
            }
            let weight = self.weights[i];
            if !weight.is_finite() {
                return Err(ImportError::Invalid(format!(
                    "`{}_weights[{i}]` is not finite on node {node}",
                    self.prefix
                )));
            }
            leaf_weights
                .entry(target)
                .or_default()
                .push((id as u32, weight));
        }
        Ok(leaf_weights)
    }

    /// The class every weight names, when they all name the same one.
    fn single_class(&self) -> Option<i64> {
        let first = *self.ids.first()?;
        self.ids.iter().all(|&id| id == first).then_some(first)
    }

    fn all_non_negative(&self) -> bool {
        self.weights.iter().all(|&w| w >= 0.0)
    }
}

/// `TreeEnsemble` (ai.onnx.ml 5): interior nodes in `nodes_*`, leaves in `leaf_*`.
fn tree_ensemble(
    node: &NodeProto,
    precision: Precision,
    n_features: Option<usize>,
) -> Result<Converted, ImportError> {
    let attrs = Attributes::new(
        node,
        &[
            "aggregate_function",
            "leaf_targetids",
            "leaf_weights",
            "membership_values",
            "n_targets",
            "nodes_falseleafs",
            "nodes_falsenodeids",
            "nodes_featureids",
            "nodes_hitrates",
            "nodes_missing_value_tracks_true",
            "nodes_modes",
            "nodes_splits",
            "nodes_trueleafs",
            "nodes_truenodeids",
            "post_transform",
            "tree_roots",
        ],
    )?;
    let (aggregate, post_transform) = ensemble_options(&attrs)?;
    let nodes = OpsetNodes::read(&attrs)?;
    let (trees, max_feature) = nodes.trees()?;
    Ok(Converted {
        spec: EnsembleSpec {
            n_features: feature_count(&attrs, n_features, max_feature)?,
            task: Task::Regression,
            precision,
            aggregate,
            post_transform,
            base_values: Vec::new(),
            trees,
        },
        labels: Vec::new(),
    })
}

/// A `TreeEnsemble` node's target count, aggregate and post-transform, and the absence of set
/// membership: what this importer supports of the operator besides its trees.
fn ensemble_options(attrs: &Attributes<'_>) -> Result<(Aggregate, PostTransform), ImportError> {
    let label = attrs.node();
    let n_targets = attrs
        .int("n_targets")?
        .ok_or_else(|| ImportError::Invalid(format!("node {label} has no `n_targets`")))?;
    if n_targets != 1 {
        return Err(ImportError::Unsupported(format!(
            "`n_targets` = {n_targets} on node {label}: only single-target regression is supported"
        )));
    }
    let aggregate = match attrs.int("aggregate_function")?.unwrap_or(1) {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => {
            return Err(ImportError::Unsupported(format!(
                "`aggregate_function` = {other} on node {label}"
            )));
        }
    };
    let post_transform = match attrs.int("post_transform")?.unwrap_or(0) {
        0 => PostTransform::None,
        4 => PostTransform::Probit,
        other => {
            return Err(ImportError::Unsupported(format!(
                "`post_transform` = {other} on single-target node {label} (NONE or PROBIT are supported)"
            )));
        }
    };
    if let Some(members) = attrs.tensor("membership_values")?
        && !float_tensor(members, "membership_values", label)?
            .values
            .is_empty()
    {
        return Err(ImportError::Unsupported(format!(
            "`membership_values` on node {label}: set membership (BRANCH_MEMBER) is not supported"
        )));
    }
    Ok((aggregate, post_transform))
}

/// The `nodes_*`, `leaf_*` and `tree_roots` arrays of a `TreeEnsemble` node, their lengths
/// checked against each other.
struct OpsetNodes<'a> {
    label: String,
    splits: FloatTensor,
    modes: Vec<u8>,
    leaf_weights: FloatTensor,
    featureids: &'a [i64],
    truenodeids: &'a [i64],
    falsenodeids: &'a [i64],
    trueleafs: &'a [i64],
    falseleafs: &'a [i64],
    missing: &'a [i64],
    roots: &'a [i64],
    leaf_targets: &'a [i64],
}

impl<'a> OpsetNodes<'a> {
    fn read(attrs: &Attributes<'a>) -> Result<Self, ImportError> {
        let label = attrs.node().to_owned();
        let tensor = |name: &str| {
            attrs
                .tensor(name)?
                .ok_or_else(|| ImportError::Invalid(format!("node {label} has no `{name}`")))
        };
        let nodes = OpsetNodes {
            splits: float_tensor(tensor("nodes_splits")?, "nodes_splits", &label)?,
            modes: u8_tensor(tensor("nodes_modes")?, "nodes_modes", &label)?,
            leaf_weights: float_tensor(tensor("leaf_weights")?, "leaf_weights", &label)?,
            featureids: attrs.ints("nodes_featureids")?,
            truenodeids: attrs.ints("nodes_truenodeids")?,
            falsenodeids: attrs.ints("nodes_falsenodeids")?,
            trueleafs: attrs.ints("nodes_trueleafs")?,
            falseleafs: attrs.ints("nodes_falseleafs")?,
            missing: attrs.ints("nodes_missing_value_tracks_true")?,
            roots: attrs.ints("tree_roots")?,
            leaf_targets: attrs.ints("leaf_targetids")?,
            label,
        };
        nodes.check_lengths()?;
        Ok(nodes)
    }

    fn check_lengths(&self) -> Result<(), ImportError> {
        let label = &self.label;
        let n = self.featureids.len();
        if n > MAX_NODES || self.leaf_targets.len() > MAX_NODES {
            return Err(ImportError::Unsupported(format!(
                "node {label} has more than the {MAX_NODES} tree nodes allowed"
            )));
        }
        if self.roots.is_empty() || self.roots.len() > MAX_TREES {
            return Err(ImportError::Invalid(format!(
                "node {label} has {} trees (1 to {MAX_TREES} are supported)",
                self.roots.len()
            )));
        }
        for (name, len) in [
            ("nodes_splits", self.splits.values.len()),
            ("nodes_modes", self.modes.len()),
            ("nodes_truenodeids", self.truenodeids.len()),
            ("nodes_falsenodeids", self.falsenodeids.len()),
            ("nodes_trueleafs", self.trueleafs.len()),
            ("nodes_falseleafs", self.falseleafs.len()),
        ] {
            if len != n {
                return Err(ImportError::Invalid(format!(
                    "inconsistent node arrays on node {label}: `{name}` has {len} entries, `nodes_featureids` {n}"
                )));
            }
        }
        if !self.missing.is_empty() && self.missing.len() != n {
            return Err(ImportError::Invalid(format!(
                "inconsistent node arrays on node {label}: `nodes_missing_value_tracks_true` has {} entries, `nodes_featureids` {n}",
                self.missing.len()
            )));
        }
        if self.leaf_weights.values.len() != self.leaf_targets.len() {
            return Err(ImportError::Invalid(format!(
                "inconsistent leaf arrays on node {label}: `leaf_weights` has {} entries, `leaf_targetids` {}",
                self.leaf_weights.values.len(),
                self.leaf_targets.len()
            )));
        }
        Ok(())
    }

    /// Every tree, from its root in `tree_roots`, breadth first. Returns the trees and the
    /// largest feature used.
    fn trees(&self) -> Result<(Vec<Vec<NodeSpec>>, Option<u32>), ImportError> {
        let n = self.featureids.len();
        let mut visited = vec![false; n];
        let mut max_feature: Option<u32> = None;
        let mut trees = Vec::with_capacity(self.roots.len());
        for (t, &root) in self.roots.iter().enumerate() {
            let root = usize::try_from(root)
                .ok()
                .filter(|&r| r < n)
                .ok_or_else(|| {
                    ImportError::Invalid(format!(
                        "`tree_roots[{t}]` = {root} names no node on node {}",
                        self.label
                    ))
                })?;
            let mut out = vec![NodeSpec::Leaf {
                weights: Vec::new(),
            }];
            let mut queue = VecDeque::from([(root, 0usize)]);
            while let Some((i, slot)) = queue.pop_front() {
                if std::mem::replace(&mut visited[i], true) {
                    return Err(ImportError::Invalid(format!(
                        "interior node {i} is reached twice (the node links do not form trees) on node {}",
                        self.label
                    )));
                }
                let (spec, feature) = self.branch(i, &mut out, &mut queue)?;
                max_feature = max_feature.max(Some(feature));
                out[slot] = spec;
            }
            trees.push(out);
        }
        Ok((trees, max_feature))
    }

    /// Interior node `i` and the feature it reads; its children get slots at the end of `out`
    /// (a leaf child is placed at once, an interior one joins the queue).
    fn branch(
        &self,
        i: usize,
        out: &mut Vec<NodeSpec>,
        queue: &mut VecDeque<(usize, usize)>,
    ) -> Result<(NodeSpec, u32), ImportError> {
        let label = &self.label;
        let mode = self.mode(i)?;
        let threshold = self.splits.values[i];
        if threshold.is_nan() {
            return Err(ImportError::Invalid(format!(
                "`nodes_splits[{i}]` is NaN on node {label}"
            )));
        }
        let feature = feature_id(self.featureids, i, label)?;
        let mut children = [0u32; 2];
        for (c, (ids, leafs, name)) in [
            (self.truenodeids, self.trueleafs, "nodes_truenodeids"),
            (self.falsenodeids, self.falseleafs, "nodes_falsenodeids"),
        ]
        .into_iter()
        .enumerate()
        {
            let position = out.len();
            children[c] = position as u32;
            if leafs[i] == 1 {
                out.push(self.leaf(ids[i], name, i)?);
            } else {
                let target = usize::try_from(ids[i])
                    .ok()
                    .filter(|&p| p < self.featureids.len())
                    .ok_or_else(|| {
                        ImportError::Invalid(format!(
                            "`{name}[{i}]` = {} names no node on node {label}",
                            ids[i]
                        ))
                    })?;
                out.push(NodeSpec::Leaf {
                    weights: Vec::new(),
                });
                queue.push_back((target, position));
            }
        }
        let spec = NodeSpec::Branch {
            feature,
            mode,
            threshold,
            missing_tracks_true: self.missing.get(i) == Some(&1),
            true_child: children[0],
            false_child: children[1],
        };
        Ok((spec, feature))
    }

    fn mode(&self, i: usize) -> Result<Mode, ImportError> {
        Ok(match self.modes[i] {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            5 => Mode::Neq,
            6 => {
                return Err(ImportError::Unsupported(format!(
                    "`nodes_modes[{i}]` = BRANCH_MEMBER on node {}: set membership is not supported",
                    self.label
                )));
            }
            other => {
                return Err(ImportError::Invalid(format!(
                    "`nodes_modes[{i}]` = {other} is not a mode on node {}",
                    self.label
                )));
            }
        })
    }

    /// The leaf at `index` of the `leaf_*` arrays (named by `name[i]`): one weight, target 0.
    fn leaf(&self, index: i64, name: &str, i: usize) -> Result<NodeSpec, ImportError> {
        let label = &self.label;
        let position = usize::try_from(index)
            .ok()
            .filter(|&p| p < self.leaf_targets.len())
            .ok_or_else(|| {
                ImportError::Invalid(format!(
                    "`{name}[{i}]` = {index} names no leaf on node {label}"
                ))
            })?;
        if self.leaf_targets[position] != 0 {
            return Err(ImportError::Invalid(format!(
                "`leaf_targetids[{position}]` = {} is out of range for 1 target on node {label}",
                self.leaf_targets[position]
            )));
        }
        let weight = self.leaf_weights.values[position];
        if !weight.is_finite() {
            return Err(ImportError::Invalid(format!(
                "`leaf_weights[{position}]` is not finite on node {label}"
            )));
        }
        Ok(NodeSpec::Leaf {
            weights: vec![(0, weight)],
        })
    }
}
