//! The tree ensemble: its artifact encoding, validation on decode, and inference.
//!
//! # Semantics
//!
//! These are the semantics of the ONNX-ML tree-ensemble operators (`TreeEnsembleClassifier`,
//! `TreeEnsembleRegressor`, `TreeEnsemble`) as onnxruntime evaluates them, restricted to what
//! one model can mean:
//!
//! 1. **Walk.** Every tree starts at its node 0. A branch compares `x[feature]` with its
//!    threshold by its [`Mode`]; a true comparison goes to `true_child`, a false one to
//!    `false_child`. A NaN compares false in every mode except `Neq`, and goes to the true child
//!    anyway when the node has `missing_tracks_true`. With [`Precision::F32`] the input value
//!    is first rounded to `f32`, which is what the ONNX operator does with a `float` input and
//!    what scikit-learn, XGBoost and LightGBM do when they predict (they cast X to float32).
//! 2. **Leaves.** A leaf holds `(output, weight)` pairs. [`Aggregate`] combines the weights each
//!    output receives from all trees: `Sum`, `Average` (the sum divided by the number of trees),
//!    `Min` or `Max` (over the weights actually received). `base_values[k]` is then added.
//! 3. **Outputs.** Regression: one output, optionally through `Probit`. Classification with one
//!    output per class ([`Scoring::PerClass`]): the class is the first argmax of the scores
//!    *before* the transform (ties go to the lowest class index; classes that received no
//!    weight and have no base value take no part), and the class scores are the scores after
//!    [`PostTransform`]. Binary classifiers that keep a single score `s` for class 1 expand it
//!    into two class scores: [`Scoring::BinaryProbability`] (`s` is a probability: `[1 - s,
//!    s]`, class 1 iff `s > 0.5`) and [`Scoring::BinaryMargin`] (`s` is a margin: class 1 iff
//!    `s > 0`, scores `[σ(-s), σ(s)]` with `Logistic`, `[-s, s]` without).
//!
//! The smartcore forest is the special case: `x <= t` goes left, `f64` comparisons, a leaf has
//! weight 1 on its class, `Average` over the trees: class scores are vote shares, bit for bit
//! `votes / n_trees`.
//!
//! # Why this layout in memory
//!
//! A node is 16 bytes: the threshold, one `u32` holding feature, mode, the missing-value flag
//! and the leaf flag, and one `u32` index. A branch's two children are adjacent (true child at
//! `next`, false child at `next + 1`), so one index is enough and a tree's nodes are laid out
//! breadth-first, which keeps the top levels every row visits in a few cache lines. A leaf's
//! `next` points into one shared weight array. When every branch of the ensemble has the same
//! mode (the usual case: `<=` for scikit-learn and LightGBM, `<` for XGBoost), the walk is a
//! monomorphised loop without a mode dispatch, and without the NaN test when no branch tracks
//! missing values.
//!
//! A walk is a chain of dependent loads, so eight walks are kept in flight at once: in lockstep
//! when every tree is at most 12 levels deep (boosted ensembles), through a queue whose lanes take
//! the next walk as soon as one reaches its leaf otherwise (deep random-forest trees, whose path
//! lengths differ). A batch of shallow trees is evaluated tree-major (one tree for every row
//! before the next, so the tree stays in cache); a batch of deep trees row by row, as measured
//! faster on a 100-tree scikit-learn forest. Every path hands each row its leaves in tree order,
//! so a row's answer is the same bit for bit whichever path computed it.
//!
//! # Validation
//!
//! [`Ensemble::new`] (and so decoding) checks every index: features below `n_features`, leaf
//! outputs below the number of outputs, children strictly after their parent inside their own
//! tree and every node except the root the child of exactly one branch. A walk therefore only
//! moves forward and ends at a leaf; relaying the trees out cannot blow up; and prediction never
//! indexes out of bounds. Sizes are capped ([`MAX_NODES`], [`MAX_TREES`], [`MAX_FEATURES`],
//! [`MAX_OUTPUTS`]) so a hostile file cannot ask for unbounded memory.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// First bytes of every artifact.
pub const MAGIC: [u8; 4] = *b"SMTE";
/// Bumped whenever the encoded layout or the meaning of a field changes.
pub const FORMAT_VERSION: u16 = 1;
/// Most nodes in one ensemble (all trees together).
pub const MAX_NODES: usize = 10_000_000;
/// Most trees in one ensemble.
pub const MAX_TREES: usize = 100_000;
/// Most input features (the feature index shares a `u32` with the node flags).
pub const MAX_FEATURES: usize = 1 << 24;
/// Most outputs (classes or targets).
pub const MAX_OUTPUTS: usize = 1 << 16;

/// How a branch compares `x[feature]` with its threshold; true goes to the true child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// `x <= threshold` (scikit-learn, LightGBM, smartcore).
    Leq,
    /// `x < threshold` (XGBoost).
    Lt,
    /// `x >= threshold`.
    Gte,
    /// `x > threshold`.
    Gt,
    /// `x == threshold`.
    Eq,
    /// `x != threshold`.
    Neq,
}

/// How the weights an output receives from the trees are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aggregate {
    /// Sum of the weights (boosting).
    Sum,
    /// Sum divided by the number of trees (random forests).
    Average,
    /// Smallest weight received.
    Min,
    /// Largest weight received.
    Max,
}

/// Transform applied to the aggregated scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostTransform {
    /// Scores as aggregated.
    None,
    /// `exp(s_k - max) / Σ exp(s_j - max)`.
    Softmax,
    /// `1 / (1 + exp(-s))` per score.
    Logistic,
    /// Softmax that leaves scores of (almost) exactly zero at zero, as onnxruntime does.
    SoftmaxZero,
    /// `√2 · erfinv(2s - 1)`, the standard normal quantile of `s`.
    Probit,
}

/// How input values are compared with thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// The input is rounded to `f32` first (ONNX `float` inputs; what the training libraries do).
    F32,
    /// The input is compared as given (smartcore trains and predicts on `f64`).
    F64,
}

/// What the trees compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    /// One of `n_classes` classes (labels live in the manifest).
    Classification {
        /// Number of classes, at least 2.
        n_classes: u32,
        /// How the trees' outputs map to class scores.
        scoring: Scoring,
    },
    /// One real-valued target.
    Regression,
}

/// How a classifier's tree outputs become class scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scoring {
    /// One output per class.
    PerClass,
    /// Two classes, one output: the probability of class 1 (random forests in ONNX).
    BinaryProbability,
    /// Two classes, one output: the margin of class 1 (gradient boosting in ONNX).
    BinaryMargin,
}

/// One node as stored in the artifact; indices are relative to the node's own tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeSpec {
    /// An interior node.
    Branch {
        /// Index of the input feature compared.
        feature: u32,
        /// Comparison.
        mode: Mode,
        /// Threshold (never NaN).
        threshold: f64,
        /// Whether a NaN input goes to the true child.
        missing_tracks_true: bool,
        /// Node taken when the comparison holds.
        true_child: u32,
        /// Node taken otherwise.
        false_child: u32,
    },
    /// A leaf: `(output index, weight)` pairs, at least one.
    Leaf {
        /// Weights added to (or combined into) the outputs.
        weights: Vec<(u32, f64)>,
    },
}

/// Everything that defines an ensemble: what the importer and the trainer build, and what the
/// artifact holds after its magic number and format version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleSpec {
    /// Number of input features.
    pub n_features: u32,
    /// Classification or regression.
    pub task: Task,
    /// How inputs are compared.
    pub precision: Precision,
    /// How leaf weights combine.
    pub aggregate: Aggregate,
    /// Transform of the aggregated scores.
    pub post_transform: PostTransform,
    /// Added to each output after aggregation; empty or one per output.
    pub base_values: Vec<f64>,
    /// The trees; node 0 of each is its root.
    pub trees: Vec<Vec<NodeSpec>>,
}

/// The encoded form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ArtifactRepr {
    magic: [u8; 4],
    format_version: u16,
    spec: EnsembleSpec,
}

// Node word layout: feature in the low 24 bits, mode in bits 24-26, missing-tracks-true in bit
// 28, leaf in bit 31. A leaf keeps its weight count in the low 24 bits.
const FEATURE_MASK: u32 = (1 << 24) - 1;
const MODE_SHIFT: u32 = 24;
const MISSING_BIT: u32 = 1 << 28;
const LEAF_BIT: u32 = 1 << 31;

/// A compiled node (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    threshold: f64,
    word: u32,
    /// Branch: index of the true child (the false child follows it). Leaf: first weight.
    next: u32,
}

impl Node {
    #[inline(always)]
    fn is_leaf(self) -> bool {
        self.word & LEAF_BIT != 0
    }
    #[inline(always)]
    fn feature(self) -> usize {
        (self.word & FEATURE_MASK) as usize
    }
}

/// One leaf weight, compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Weight {
    output: u32,
    value: f64,
}

const fn mode_code(mode: Mode) -> u32 {
    match mode {
        Mode::Leq => 0,
        Mode::Lt => 1,
        Mode::Gte => 2,
        Mode::Gt => 3,
        Mode::Eq => 4,
        Mode::Neq => 5,
    }
}

/// A validated ensemble, ready to predict.
///
/// Build it with [`Ensemble::from_bytes`] (an artifact) or [`Ensemble::new`] (a spec from the
/// trainer or the importer). Every `Ensemble` that exists has passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble {
    spec: EnsembleSpec,
    nodes: Vec<Node>,
    roots: Vec<u32>,
    weights: Vec<Weight>,
    /// Trees' outputs per row (1 for regression and binary single-score classifiers).
    n_outputs: usize,
    /// Values per row in the result: classes for a classifier, 1 for regression.
    width: usize,
    /// The one mode every branch uses, when there is one, and whether any branch sends NaN to
    /// the true side.
    uniform_mode: Option<(Mode, bool)>,
    /// Whether every tree is shallow enough for lockstep walks (see [`LOCKSTEP_MAX_DEPTH`]).
    lockstep: bool,
}

/// The answer for one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome<'a> {
    /// A classifier's answer.
    Class {
        /// The predicted class index (into the manifest's labels).
        class: usize,
        /// Per-class scores after the post-transform (probabilities for the usual models).
        scores: &'a [f64],
    },
    /// A regressor's answer.
    Value(f64),
}

/// An owned [`Outcome`], for callers that keep answers around.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// A classifier's answer.
    Class {
        /// The predicted class index.
        class: usize,
        /// Per-class scores after the post-transform.
        scores: Vec<f64>,
    },
    /// A regressor's answer.
    Value(f64),
}

impl From<Outcome<'_>> for Prediction {
    fn from(outcome: Outcome<'_>) -> Self {
        match outcome {
            Outcome::Class { class, scores } => Prediction::Class {
                class,
                scores: scores.to_vec(),
            },
            Outcome::Value(value) => Prediction::Value(value),
        }
    }
}

/// Working memory for [`Ensemble::predict_into`], reused across rows: predicting allocates
/// nothing once a scratch exists. Make one per thread with [`Ensemble::scratch`].
#[derive(Debug, Clone)]
pub struct Scratch {
    scores: Vec<f64>,
    present: Vec<bool>,
    row: Vec<f64>,
    leaves: Vec<Node>,
}

/// Results of [`Ensemble::predict_batch_into`], reusable across batches.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    n_rows: usize,
    width: usize,
    regression: bool,
    scores: Vec<f64>,
    present: Vec<bool>,
    classes: Vec<usize>,
    rows: Vec<f64>,
    leaves: Vec<Node>,
}

impl Batch {
    /// An empty batch; buffers grow to the largest batch seen and are then reused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of rows predicted.
    pub fn len(&self) -> usize {
        self.n_rows
    }

    /// Whether no row was predicted.
    pub fn is_empty(&self) -> bool {
        self.n_rows == 0
    }

    /// The answer for row `index`.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    pub fn get(&self, index: usize) -> Outcome<'_> {
        assert!(index < self.n_rows, "row {index} is not in the batch");
        let scores = &self.scores[index * self.width..(index + 1) * self.width];
        if self.regression {
            Outcome::Value(scores[0])
        } else {
            Outcome::Class {
                class: self.classes[index],
                scores,
            }
        }
    }

    /// Every answer, in row order.
    pub fn iter(&self) -> impl Iterator<Item = Outcome<'_>> + '_ {
        (0..self.n_rows).map(|index| self.get(index))
    }
}

/// Trees walked side by side: enough independent load chains to hide cache latency.
const LANES: usize = 8;

/// The comparison a branch makes, chosen once per call so the walk loop is monomorphised.
trait Rule: Copy {
    /// Whether `node` sends `x` to its true child.
    fn go_true(self, node: Node, x: f64) -> bool;
}

/// Every branch has the same mode, compared by `C`; `MISSING`: some branch sends NaN to true.
#[derive(Clone, Copy)]
struct Uniform<C, const MISSING: bool>(C);

impl<C: Fn(f64, f64) -> bool + Copy, const MISSING: bool> Rule for Uniform<C, MISSING> {
    #[inline(always)]
    fn go_true(self, node: Node, x: f64) -> bool {
        // Without MISSING no branch tracks NaN: `C` alone is the rule (NaN compares false, and
        // `!=` is true for NaN anyway).
        (self.0)(x, node.threshold) || (MISSING && node.word & MISSING_BIT != 0 && x.is_nan())
    }
}

/// Mixed modes: the mode is read from each node.
#[derive(Clone, Copy)]
struct General;

impl Rule for General {
    #[inline(always)]
    fn go_true(self, node: Node, x: f64) -> bool {
        let t = node.threshold;
        (match (node.word >> MODE_SHIFT) & 0b111 {
            0 => x <= t,
            1 => x < t,
            2 => x >= t,
            3 => x > t,
            4 => x == t,
            _ => x != t,
        }) || (node.word & MISSING_BIT != 0 && x.is_nan())
    }
}

/// Calls `$self.$method(rule, args...)` with the rule for the ensemble's branches.
macro_rules! dispatch {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match $self.uniform_mode {
            Some((Mode::Leq, false)) => $self.$method(Uniform::<_, false>(|x: f64, t: f64| x <= t), $($arg),*),
            Some((Mode::Leq, true)) => $self.$method(Uniform::<_, true>(|x: f64, t: f64| x <= t), $($arg),*),
            Some((Mode::Lt, false)) => $self.$method(Uniform::<_, false>(|x: f64, t: f64| x < t), $($arg),*),
            Some((Mode::Lt, true)) => $self.$method(Uniform::<_, true>(|x: f64, t: f64| x < t), $($arg),*),
            Some((Mode::Gte, false)) => $self.$method(Uniform::<_, false>(|x: f64, t: f64| x >= t), $($arg),*),
            Some((Mode::Gte, true)) => $self.$method(Uniform::<_, true>(|x: f64, t: f64| x >= t), $($arg),*),
            Some((Mode::Gt, false)) => $self.$method(Uniform::<_, false>(|x: f64, t: f64| x > t), $($arg),*),
            Some((Mode::Gt, true)) => $self.$method(Uniform::<_, true>(|x: f64, t: f64| x > t), $($arg),*),
            Some((Mode::Eq, false)) => $self.$method(Uniform::<_, false>(|x: f64, t: f64| x == t), $($arg),*),
            Some((Mode::Eq, true)) => $self.$method(Uniform::<_, true>(|x: f64, t: f64| x == t), $($arg),*),
            Some((Mode::Neq, _)) => $self.$method(Uniform::<_, false>(|x: f64, t: f64| x != t), $($arg),*),
            None => $self.$method(General, $($arg),*),
        }
    };
}

/// A placeholder node (a leaf with no weights) for lanes and leaf buffers.
const EMPTY: Node = Node {
    threshold: 0.0,
    word: LEAF_BIT,
    next: 0,
};

/// Walks every job `(start node, row, tag)` to its leaf and reports `on_leaf(tag, leaf)`, with
/// [`LANES`] walks interleaved: each pass moves every live lane one level down, and a lane that
/// reaches its leaf takes the next job at once. A tree walk is a chain of dependent loads;
/// several independent chains in flight hide most of the cache latency, and refilling lanes
/// keeps them busy when trees (or rows' paths) differ in depth. Leaves may be reported out of
/// job order.
#[inline(always)]
fn walk_queue<'r, R: Rule>(
    nodes: &[Node],
    rule: R,
    mut jobs: impl Iterator<Item = (u32, &'r [f64], usize)>,
    mut on_leaf: impl FnMut(usize, Node),
) {
    let mut node = [EMPTY; LANES];
    let mut row: [&[f64]; LANES] = [&[]; LANES];
    let mut tag = [0usize; LANES];
    let mut live = 0;
    while live < LANES {
        let Some((start, r, t)) = jobs.next() else {
            break;
        };
        (node[live], row[live], tag[live]) = (nodes[start as usize], r, t);
        live += 1;
    }
    while live > 0 {
        let mut lane = 0;
        while lane < live {
            let current = node[lane];
            if current.is_leaf() {
                on_leaf(tag[lane], current);
                if let Some((start, r, t)) = jobs.next() {
                    (node[lane], row[lane], tag[lane]) = (nodes[start as usize], r, t);
                    lane += 1;
                } else {
                    // Retire the lane: the last live lane takes its place (and is looked at next).
                    live -= 1;
                    (node[lane], row[lane], tag[lane]) = (node[live], row[live], tag[live]);
                }
            } else {
                let go_true = rule.go_true(current, row[lane][current.feature()]);
                node[lane] = nodes[current.next as usize + usize::from(!go_true)];
                lane += 1;
            }
        }
    }
}

/// Walks `L` jobs in lockstep (lane `l`: `starts[l]` on `rows[l]`) and returns their leaves in
/// lane order. Cheaper per step than [`walk_queue`] when the trees are shallow and balanced (a
/// boosted ensemble of fixed depth), where lanes finish together.
#[inline(always)]
fn walk_lockstep<R: Rule, const L: usize>(
    nodes: &[Node],
    rule: R,
    starts: [u32; L],
    rows: [&[f64]; L],
) -> [Node; L] {
    let mut current = starts.map(|start| nodes[start as usize]);
    loop {
        let mut moved = false;
        for (node, row) in current.iter_mut().zip(rows) {
            if !node.is_leaf() {
                let go_true = rule.go_true(*node, row[node.feature()]);
                *node = nodes[node.next as usize + usize::from(!go_true)];
                moved = true;
            }
        }
        if !moved {
            return current;
        }
    }
}

/// Trees at most this deep are walked in lockstep, deeper ones through the lane queue.
const LOCKSTEP_MAX_DEPTH: usize = 12;

impl Ensemble {
    /// Validates `spec` and compiles it for prediction.
    pub fn new(spec: EnsembleSpec) -> Result<Ensemble, ModelError> {
        let shape = check_header(&spec)?;
        let total = check_trees(&spec, shape.n_outputs)?;
        let (nodes, roots, weights, depth) = compile(&spec, total);
        let uniform_mode = uniform_mode(&spec);
        Ok(Ensemble {
            spec,
            nodes,
            roots,
            weights,
            n_outputs: shape.n_outputs,
            width: shape.width,
            uniform_mode,
            lockstep: depth <= LOCKSTEP_MAX_DEPTH,
        })
    }

    /// Decodes and validates an artifact written by [`Ensemble::to_bytes`].
    ///
    /// Never panics, whatever the input: garbage, truncation and trailing bytes are
    /// [`ModelError::Decode`]; a well-formed but unsafe ensemble is [`ModelError::InvalidModel`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Ensemble, ModelError> {
        if !bytes.starts_with(&MAGIC) {
            return Err(ModelError::Decode(
                "the bytes do not start with the tree-ensemble magic number `SMTE`".to_owned(),
            ));
        }
        // The format version is checked before the rest is decoded, so a future version's
        // artifact is named as such instead of failing somewhere inside the decoder.
        let version = bytes
            .get(4..)
            .and_then(|rest| postcard::take_from_bytes::<u16>(rest).ok())
            .map(|(version, _)| version);
        if let Some(version) = version.filter(|&v| v != FORMAT_VERSION) {
            return Err(ModelError::InvalidModel(format!(
                "format version {version} is not supported (expected {FORMAT_VERSION})"
            )));
        }
        let (repr, rest): (ArtifactRepr, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|err| ModelError::Decode(err.to_string()))?;
        if !rest.is_empty() {
            return Err(ModelError::Decode(format!(
                "{} unexpected bytes follow the ensemble",
                rest.len()
            )));
        }
        if repr.magic != MAGIC || repr.format_version != FORMAT_VERSION {
            return Err(ModelError::InvalidModel(
                "wrong magic number or format version".to_owned(),
            ));
        }
        Ensemble::new(repr.spec)
    }

    /// Encodes the ensemble. Deterministic: equal specs give equal bytes (postcard has no maps
    /// and writes floats as their exact bits).
    pub fn to_bytes(&self) -> Vec<u8> {
        let repr = ArtifactRepr {
            magic: MAGIC,
            format_version: FORMAT_VERSION,
            spec: self.spec.clone(),
        };
        // Serializing owned vectors of plain values into a growable Vec cannot fail: postcard
        // only errors for unknown-length sequences or a full fixed buffer, neither possible here.
        postcard::to_allocvec(&repr).expect("postcard serialization into a Vec is infallible")
    }

    /// The spec the ensemble was built from.
    pub fn spec(&self) -> &EnsembleSpec {
        &self.spec
    }

    /// Number of input features a row must have.
    pub fn n_features(&self) -> usize {
        self.spec.n_features as usize
    }

    /// Number of classes; `None` for a regressor.
    pub fn n_classes(&self) -> Option<usize> {
        match self.spec.task {
            Task::Classification { n_classes, .. } => Some(n_classes as usize),
            Task::Regression => None,
        }
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Number of nodes, all trees together.
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Classification or regression.
    pub fn task(&self) -> Task {
        self.spec.task
    }

    /// Working memory for [`Ensemble::predict_into`].
    pub fn scratch(&self) -> Scratch {
        Scratch {
            scores: vec![0.0; self.width.max(self.n_outputs)],
            present: vec![false; self.n_outputs],
            row: vec![0.0; self.n_features()],
            leaves: vec![EMPTY; self.roots.len()],
        }
    }

    /// Predicts one row without allocating.
    ///
    /// # Panics
    ///
    /// If `row` does not have [`Ensemble::n_features`] values, or `scratch` was made by an
    /// ensemble of another shape. Both are the caller's construction, not request data.
    pub fn predict_into<'s>(&self, row: &[f64], scratch: &'s mut Scratch) -> Outcome<'s> {
        assert_eq!(row.len(), self.n_features(), "one value per feature");
        assert!(
            scratch.row.len() == self.n_features()
                && scratch.present.len() == self.n_outputs
                && scratch.leaves.len() == self.roots.len(),
            "a scratch made by this ensemble"
        );
        let row: &[f64] = match self.spec.precision {
            Precision::F64 => row,
            Precision::F32 => {
                for (slot, &x) in scratch.row.iter_mut().zip(row) {
                    *slot = round_f32(x);
                }
                &scratch.row
            }
        };
        let scores = &mut scratch.scores[..];
        let present = &mut scratch.present[..];
        scores.fill(0.0);
        present.fill(false);
        let leaves = &mut scratch.leaves[..];
        dispatch!(self, walk_row(row, leaves));
        for &leaf in leaves.iter() {
            self.accumulate(leaf, scores, present);
        }
        self.finish(scores, present)
    }

    /// Predicts one row into an owned answer (allocates its score vector).
    pub fn predict(&self, row: &[f64]) -> Prediction {
        let mut scratch = self.scratch();
        self.predict_into(row, &mut scratch).into()
    }

    /// Predicts every row of a row-major `n × n_features` matrix, tree by tree.
    ///
    /// Equal to [`Ensemble::predict_into`] row by row, bit for bit. `out` keeps its buffers, so
    /// a reused [`Batch`] allocates nothing once it has seen a batch this large.
    ///
    /// # Panics
    ///
    /// If `rows.len()` is not a multiple of [`Ensemble::n_features`].
    pub fn predict_batch_into(&self, rows: &[f64], out: &mut Batch) {
        let n_features = self.n_features();
        assert!(
            rows.len().is_multiple_of(n_features),
            "a batch needs one value per feature per row"
        );
        let n_rows = rows.len() / n_features;
        let stride = self.width.max(self.n_outputs);
        out.n_rows = n_rows;
        out.width = stride;
        out.regression = matches!(self.spec.task, Task::Regression);
        out.scores.clear();
        out.scores.resize(n_rows * stride, 0.0);
        out.present.clear();
        out.present.resize(n_rows * self.n_outputs, false);
        out.classes.clear();
        out.classes.resize(n_rows, 0);
        let mut rounded = std::mem::take(&mut out.rows);
        let rows: &[f64] = match self.spec.precision {
            Precision::F64 => rows,
            Precision::F32 => {
                rounded.clear();
                rounded.extend(rows.iter().map(|&x| round_f32(x)));
                &rounded
            }
        };
        if self.lockstep {
            dispatch!(self, walk_batch(rows, out));
        } else {
            // Deep trees: row by row through the lane queue, which keeps walks of different
            // trees in flight. Measured on a 100-tree scikit-learn forest (depth ~25), this is
            // faster than the tree-major order, whose rows share only the top levels of a tree.
            let mut leaves = std::mem::take(&mut out.leaves);
            leaves.clear();
            leaves.resize(self.roots.len(), EMPTY);
            let stride = out.width;
            for (index, row) in rows.chunks_exact(n_features).enumerate() {
                dispatch!(self, walk_row(row, &mut leaves));
                let scores = &mut out.scores[index * stride..index * stride + self.n_outputs];
                let present =
                    &mut out.present[index * self.n_outputs..(index + 1) * self.n_outputs];
                for &leaf in &leaves {
                    self.accumulate(leaf, scores, present);
                }
            }
            out.leaves = leaves;
        }
        out.rows = rounded;
        for index in 0..n_rows {
            let scores = &mut out.scores[index * stride..(index + 1) * stride];
            let present = &mut out.present[index * self.n_outputs..(index + 1) * self.n_outputs];
            if let Outcome::Class { class, .. } = self.finish(scores, present) {
                out.classes[index] = class;
            }
        }
        // The result width: a regressor's single value, else one score per class.
        out.width = stride;
    }

    /// Every tree for one row, [`LANES`] walks in flight at a time (see [`walk_queue`]); the
    /// leaves land in `leaves` in tree order, so the caller sums them as a plain loop would.
    #[inline(always)]
    fn walk_row<R: Rule>(&self, rule: R, row: &[f64], leaves: &mut [Node]) {
        if self.lockstep {
            let mut roots = self.roots.chunks_exact(LANES);
            let mut slots = leaves.chunks_exact_mut(LANES);
            for (roots, slots) in (&mut roots).zip(&mut slots) {
                let mut starts = [0u32; LANES];
                starts.copy_from_slice(roots);
                slots.copy_from_slice(&walk_lockstep(&self.nodes, rule, starts, [row; LANES]));
            }
            for (&root, slot) in roots.remainder().iter().zip(slots.into_remainder()) {
                *slot = walk_lockstep(&self.nodes, rule, [root], [row])[0];
            }
            return;
        }
        let jobs = self
            .roots
            .iter()
            .enumerate()
            .map(|(tree, &root)| (root, row, tree));
        walk_queue(&self.nodes, rule, jobs, |tree, leaf| leaves[tree] = leaf);
    }

    /// Every row of a batch of shallow trees (lockstep): one tree for every row before the next
    /// tree (tree-major: the tree stays in cache across rows), [`LANES`] rows in flight. Each
    /// row still receives its leaves in tree order, so its sums equal the row path's bit for bit.
    #[inline(always)]
    fn walk_batch<R: Rule>(&self, rule: R, rows: &[f64], out: &mut Batch) {
        let n_features = self.n_features();
        let stride = out.width;
        let n_outputs = self.n_outputs;
        let (scores, present) = (&mut out.scores, &mut out.present);
        let mut add = |index: usize, leaf: Node| {
            self.accumulate(
                leaf,
                &mut scores[index * stride..index * stride + n_outputs],
                &mut present[index * n_outputs..(index + 1) * n_outputs],
            );
        };
        for &root in &self.roots {
            let mut groups = rows.chunks_exact(n_features * LANES);
            let mut first = 0;
            for group in &mut groups {
                let lanes: [&[f64]; LANES] =
                    std::array::from_fn(|l| &group[l * n_features..(l + 1) * n_features]);
                let leaves = walk_lockstep(&self.nodes, rule, [root; LANES], lanes);
                for (l, leaf) in leaves.into_iter().enumerate() {
                    add(first + l, leaf);
                }
                first += LANES;
            }
            for (l, row) in groups.remainder().chunks_exact(n_features).enumerate() {
                add(
                    first + l,
                    walk_lockstep(&self.nodes, rule, [root], [row])[0],
                );
            }
        }
    }

    #[inline(always)]
    fn accumulate(&self, leaf: Node, scores: &mut [f64], present: &mut [bool]) {
        let start = leaf.next as usize;
        let count = leaf.feature();
        for weight in &self.weights[start..start + count] {
            let k = weight.output as usize;
            let w = weight.value;
            match self.spec.aggregate {
                Aggregate::Sum | Aggregate::Average => scores[k] += w,
                Aggregate::Min => {
                    if !present[k] || w < scores[k] {
                        scores[k] = w;
                    }
                }
                Aggregate::Max => {
                    if !present[k] || w > scores[k] {
                        scores[k] = w;
                    }
                }
            }
            present[k] = true;
        }
    }

    /// Aggregation's last step, base values, class choice and post-transform, in place.
    fn finish<'s>(&self, scores: &'s mut [f64], present: &mut [bool]) -> Outcome<'s> {
        let n_outputs = self.n_outputs;
        if self.spec.aggregate == Aggregate::Average {
            let n_trees = self.roots.len() as f64;
            for score in &mut scores[..n_outputs] {
                *score /= n_trees;
            }
        }
        if !self.spec.base_values.is_empty() {
            for ((score, &base), seen) in scores[..n_outputs]
                .iter_mut()
                .zip(&self.spec.base_values)
                .zip(present.iter_mut())
            {
                *score += base;
                *seen = true;
            }
        }
        match self.spec.task {
            Task::Regression => {
                let mut value = scores[0];
                if self.spec.post_transform == PostTransform::Probit {
                    value = probit(value);
                }
                scores[0] = value;
                Outcome::Value(value)
            }
            Task::Classification { scoring, .. } => {
                let class = match scoring {
                    Scoring::PerClass => {
                        let class = first_argmax(&scores[..n_outputs], present);
                        apply_transform(self.spec.post_transform, &mut scores[..n_outputs]);
                        class
                    }
                    Scoring::BinaryProbability => {
                        let s = scores[0];
                        scores[0] = 1.0 - s;
                        scores[1] = s;
                        usize::from(s > 0.5)
                    }
                    Scoring::BinaryMargin => {
                        let s = scores[0];
                        if self.spec.post_transform == PostTransform::Logistic {
                            scores[0] = logistic(-s);
                            scores[1] = logistic(s);
                        } else {
                            scores[0] = -s;
                            scores[1] = s;
                        }
                        usize::from(s > 0.0)
                    }
                };
                Outcome::Class {
                    class,
                    scores: &scores[..self.width],
                }
            }
        }
    }
}

/// `x` rounded to the nearest `f32` (NaN stays NaN), as a cast to float32 does.
#[inline(always)]
fn round_f32(x: f64) -> f64 {
    f64::from(x as f32)
}

/// First index of the largest score among those present; 0 when none is.
fn first_argmax(scores: &[f64], present: &[bool]) -> usize {
    let mut best: Option<usize> = None;
    for (index, (&score, &seen)) in scores.iter().zip(present).enumerate() {
        // Strictly greater: on a tie the lower index, seen first, stays the winner.
        if seen && best.is_none_or(|b| score > scores[b]) {
            best = Some(index);
        }
    }
    best.unwrap_or(0)
}

/// The logistic function, written as onnxruntime writes it (symmetric, no overflow).
pub(crate) fn logistic(x: f64) -> f64 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

fn apply_transform(transform: PostTransform, scores: &mut [f64]) {
    match transform {
        PostTransform::None => {}
        PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
        PostTransform::Probit => scores.iter_mut().for_each(|s| *s = probit(*s)),
        PostTransform::Softmax => {
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            scores.iter_mut().for_each(|s| *s /= sum);
        }
        PostTransform::SoftmaxZero => {
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                if s.abs() > 1e-7 {
                    *s = (*s - max).exp();
                    sum += *s;
                } else {
                    *s = 0.0;
                }
            }
            if sum > 0.0 {
                scores.iter_mut().for_each(|s| *s /= sum);
            }
        }
    }
}

/// The standard normal quantile of `p` (Acklam's rational approximation, relative error below
/// 1.2e-9); NaN outside (0, 1), ±∞ at the ends.
pub(crate) fn probit(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.02425;
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

struct Shape {
    n_outputs: usize,
    width: usize,
}

fn invalid<T>(message: impl Into<String>) -> Result<T, ModelError> {
    Err(ModelError::InvalidModel(message.into()))
}

/// Checks everything but the trees; returns the number of tree outputs and result width.
fn check_header(spec: &EnsembleSpec) -> Result<Shape, ModelError> {
    let n_features = spec.n_features as usize;
    if n_features == 0 || n_features > MAX_FEATURES {
        return invalid(format!(
            "{n_features} features is out of range (1 to {MAX_FEATURES})"
        ));
    }
    let transform = spec.post_transform;
    let shape = match spec.task {
        Task::Regression => {
            if !matches!(transform, PostTransform::None | PostTransform::Probit) {
                return invalid(format!(
                    "post-transform {transform:?} does not apply to a single regression target"
                ));
            }
            Shape {
                n_outputs: 1,
                width: 1,
            }
        }
        Task::Classification { n_classes, scoring } => {
            let n_classes = n_classes as usize;
            if !(2..=MAX_OUTPUTS).contains(&n_classes) {
                return invalid(format!(
                    "{n_classes} classes is out of range (2 to {MAX_OUTPUTS})"
                ));
            }
            match scoring {
                Scoring::PerClass => Shape {
                    n_outputs: n_classes,
                    width: n_classes,
                },
                Scoring::BinaryProbability | Scoring::BinaryMargin => {
                    if n_classes != 2 {
                        return invalid("a single-score classifier must have 2 classes");
                    }
                    let allowed = match scoring {
                        Scoring::BinaryProbability => transform == PostTransform::None,
                        _ => matches!(transform, PostTransform::None | PostTransform::Logistic),
                    };
                    if !allowed {
                        return invalid(format!(
                            "post-transform {transform:?} does not apply to {scoring:?} scoring"
                        ));
                    }
                    Shape {
                        n_outputs: 1,
                        width: 2,
                    }
                }
            }
        }
    };
    if !spec.base_values.is_empty() && spec.base_values.len() != shape.n_outputs {
        return invalid(format!(
            "{} base values for {} outputs",
            spec.base_values.len(),
            shape.n_outputs
        ));
    }
    if spec.base_values.iter().any(|b| !b.is_finite()) {
        return invalid("a base value is not finite");
    }
    Ok(shape)
}

/// Checks every tree; returns the total node count.
fn check_trees(spec: &EnsembleSpec, n_outputs: usize) -> Result<usize, ModelError> {
    if spec.trees.is_empty() {
        return invalid("the ensemble has no trees");
    }
    if spec.trees.len() > MAX_TREES {
        return invalid(format!(
            "{} trees is more than the {MAX_TREES} allowed",
            spec.trees.len()
        ));
    }
    let mut total_nodes = 0usize;
    let mut total_weights = 0usize;
    for (t, tree) in spec.trees.iter().enumerate() {
        if tree.is_empty() {
            return invalid(format!("tree {t} has no nodes"));
        }
        total_nodes += tree.len();
        if total_nodes > MAX_NODES {
            return invalid(format!(
                "the ensemble has more than the {MAX_NODES} nodes allowed"
            ));
        }
        let mut has_parent = vec![false; tree.len()];
        for (index, node) in tree.iter().enumerate() {
            match node {
                NodeSpec::Branch {
                    feature,
                    threshold,
                    true_child,
                    false_child,
                    ..
                } => {
                    if *feature >= spec.n_features {
                        return invalid(format!(
                            "tree {t} node {index} splits on feature {feature}, but there are {}",
                            spec.n_features
                        ));
                    }
                    if threshold.is_nan() {
                        return invalid(format!("tree {t} node {index} has a NaN threshold"));
                    }
                    for child in [*true_child, *false_child] {
                        let child = child as usize;
                        // Children strictly after their parent: every walk moves forward, so
                        // it ends at a leaf of its own tree.
                        if child <= index || child >= tree.len() {
                            return invalid(format!(
                                "tree {t} node {index} has a child ({child}) out of order or out of range"
                            ));
                        }
                        if std::mem::replace(&mut has_parent[child], true) {
                            return invalid(format!(
                                "tree {t} node {child} is the child of more than one branch"
                            ));
                        }
                    }
                }
                NodeSpec::Leaf { weights } => {
                    if weights.is_empty() || weights.len() > FEATURE_MASK as usize {
                        return invalid(format!(
                            "tree {t} leaf {index} has {} weights",
                            weights.len()
                        ));
                    }
                    total_weights += weights.len();
                    if total_weights > MAX_NODES {
                        return invalid(format!(
                            "the ensemble has more than the {MAX_NODES} leaf weights allowed"
                        ));
                    }
                    for &(output, weight) in weights {
                        if output as usize >= n_outputs {
                            return invalid(format!(
                                "tree {t} leaf {index} has a weight for output {output}, but there are {n_outputs}"
                            ));
                        }
                        if !weight.is_finite() {
                            return invalid(format!(
                                "tree {t} leaf {index} has a non-finite weight"
                            ));
                        }
                    }
                }
            }
        }
        if let Some(orphan) = has_parent.iter().skip(1).position(|&p| !p) {
            return invalid(format!(
                "tree {t} node {} is not reachable from the root",
                orphan + 1
            ));
        }
    }
    Ok(total_nodes)
}

/// Lays every tree out breadth-first with each branch's children adjacent; also returns the
/// depth of the deepest tree (branches on the longest path).
fn compile(spec: &EnsembleSpec, total: usize) -> (Vec<Node>, Vec<u32>, Vec<Weight>, usize) {
    let mut max_depth = 0;
    let mut nodes = Vec::with_capacity(total);
    let mut roots = Vec::with_capacity(spec.trees.len());
    let mut weights = Vec::new();
    let mut queue = std::collections::VecDeque::new();
    for tree in &spec.trees {
        // Sizes were bounded by validation (MAX_NODES < u32::MAX), so the casts are exact.
        let root = nodes.len();
        roots.push(root as u32);
        nodes.push(Node {
            threshold: 0.0,
            word: 0,
            next: 0,
        });
        queue.push_back((0usize, root, 0usize));
        while let Some((source, slot, depth)) = queue.pop_front() {
            max_depth = max_depth.max(depth);
            nodes[slot] = match &tree[source] {
                NodeSpec::Branch {
                    feature,
                    mode,
                    threshold,
                    missing_tracks_true,
                    true_child,
                    false_child,
                } => {
                    let next = nodes.len();
                    let placeholder = Node {
                        threshold: 0.0,
                        word: 0,
                        next: 0,
                    };
                    nodes.extend([placeholder, placeholder]);
                    queue.push_back((*true_child as usize, next, depth + 1));
                    queue.push_back((*false_child as usize, next + 1, depth + 1));
                    let missing = if *missing_tracks_true { MISSING_BIT } else { 0 };
                    Node {
                        threshold: *threshold,
                        word: feature | (mode_code(*mode) << MODE_SHIFT) | missing,
                        next: next as u32,
                    }
                }
                NodeSpec::Leaf { weights: leaf } => {
                    let first = weights.len();
                    weights.extend(leaf.iter().map(|&(output, value)| Weight { output, value }));
                    Node {
                        threshold: 0.0,
                        word: LEAF_BIT | leaf.len() as u32,
                        next: first as u32,
                    }
                }
            };
        }
    }
    (nodes, roots, weights, max_depth)
}

/// The single branch mode of the ensemble, if it has one, and whether any branch tracks NaN
/// to the true side.
fn uniform_mode(spec: &EnsembleSpec) -> Option<(Mode, bool)> {
    let mut first = None;
    let mut any_missing = false;
    for node in spec.trees.iter().flatten() {
        if let NodeSpec::Branch {
            mode,
            missing_tracks_true,
            ..
        } = node
        {
            any_missing |= *missing_tracks_true;
            match first {
                None => first = Some(*mode),
                Some(m) if m != *mode => return None,
                Some(_) => {}
            }
        }
    }
    Some((first.unwrap_or(Mode::Leq), any_missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(weights: &[(u32, f64)]) -> NodeSpec {
        NodeSpec::Leaf {
            weights: weights.to_vec(),
        }
    }

    fn vote(class: u32) -> Vec<NodeSpec> {
        vec![leaf(&[(class, 1.0)])]
    }

    fn branch(feature: u32, mode: Mode, threshold: f64, missing: bool) -> NodeSpec {
        NodeSpec::Branch {
            feature,
            mode,
            threshold,
            missing_tracks_true: missing,
            true_child: 1,
            false_child: 2,
        }
    }

    /// One stump: `x[0] <mode> threshold` → output 0 gets `yes`, else `no`.
    fn stump(mode: Mode, threshold: f64, missing: bool, yes: f64, no: f64) -> Vec<NodeSpec> {
        vec![
            branch(0, mode, threshold, missing),
            leaf(&[(0, yes)]),
            leaf(&[(0, no)]),
        ]
    }

    fn forest(n_classes: u32, trees: Vec<Vec<NodeSpec>>) -> EnsembleSpec {
        EnsembleSpec {
            n_features: 4,
            task: Task::Classification {
                n_classes,
                scoring: Scoring::PerClass,
            },
            precision: Precision::F64,
            aggregate: Aggregate::Average,
            post_transform: PostTransform::None,
            base_values: Vec::new(),
            trees,
        }
    }

    fn regressor(trees: Vec<Vec<NodeSpec>>) -> EnsembleSpec {
        EnsembleSpec {
            n_features: 1,
            task: Task::Regression,
            precision: Precision::F64,
            aggregate: Aggregate::Sum,
            post_transform: PostTransform::None,
            base_values: Vec::new(),
            trees,
        }
    }

    fn value(spec: &EnsembleSpec, x: f64) -> f64 {
        match Ensemble::new(spec.clone()).unwrap().predict(&[x]) {
            Prediction::Value(v) => v,
            Prediction::Class { .. } => panic!("a regressor answers with a value"),
        }
    }

    fn class_of(ensemble: &Ensemble, row: &[f64]) -> (usize, Vec<f64>) {
        match ensemble.predict(row) {
            Prediction::Class { class, scores } => (class, scores),
            Prediction::Value(_) => panic!("a classifier answers with a class"),
        }
    }

    #[test]
    fn nodes_stay_16_bytes_so_a_tree_walk_touches_few_cache_lines() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    #[test]
    fn a_two_way_tie_goes_to_the_lower_class_index() {
        let e = Ensemble::new(forest(3, vec![vote(2), vote(1), vote(2), vote(1)])).unwrap();
        assert_eq!(
            class_of(&e, &[5.0, 3.0, 4.0, 1.0]),
            (1, vec![0.0, 0.5, 0.5])
        );
    }

    #[test]
    fn a_three_way_tie_goes_to_class_zero_and_a_majority_wins_regardless_of_index() {
        let tie = Ensemble::new(forest(3, vec![vote(2), vote(1), vote(0)])).unwrap();
        assert_eq!(class_of(&tie, &[0.0; 4]).0, 0);
        let majority = Ensemble::new(forest(3, vec![vote(0), vote(2), vote(2)])).unwrap();
        assert_eq!(
            class_of(&majority, &[0.0; 4]),
            (2, vec![1.0 / 3.0, 0.0, 2.0 / 3.0])
        );
    }

    #[test]
    fn every_mode_compares_as_named_and_nan_goes_false_unless_tracked() {
        let cases = [
            (Mode::Leq, [(1.0, 1.0), (0.5, 1.0), (1.5, 2.0)]),
            (Mode::Lt, [(1.0, 2.0), (0.5, 1.0), (1.5, 2.0)]),
            (Mode::Gte, [(1.0, 1.0), (0.5, 2.0), (1.5, 1.0)]),
            (Mode::Gt, [(1.0, 2.0), (0.5, 2.0), (1.5, 1.0)]),
            (Mode::Eq, [(1.0, 1.0), (0.5, 2.0), (1.5, 2.0)]),
            (Mode::Neq, [(1.0, 2.0), (0.5, 1.0), (1.5, 1.0)]),
        ];
        for (mode, expectations) in cases {
            let spec = regressor(vec![stump(mode, 1.0, false, 1.0, 2.0)]);
            for (x, expected) in expectations {
                assert_eq!(value(&spec, x), expected, "{mode:?} at {x}");
            }
            // NaN: every comparison is false except `!=`.
            let nan_expected = if mode == Mode::Neq { 1.0 } else { 2.0 };
            assert_eq!(value(&spec, f64::NAN), nan_expected, "{mode:?} at NaN");
            let tracked = regressor(vec![stump(mode, 1.0, true, 1.0, 2.0)]);
            assert_eq!(value(&tracked, f64::NAN), 1.0, "{mode:?} tracks NaN");
            // Mixed with another mode, the general walk gives the same answers.
            assert!(
                Ensemble::new(tracked.clone())
                    .unwrap()
                    .uniform_mode
                    .is_some()
            );
            let mixed = regressor(vec![
                stump(mode, 1.0, false, 1.0, 2.0),
                stump(
                    if mode == Mode::Lt {
                        Mode::Leq
                    } else {
                        Mode::Lt
                    },
                    -1e9,
                    false,
                    0.0,
                    0.0,
                ),
            ]);
            assert!(Ensemble::new(mixed.clone()).unwrap().uniform_mode.is_none());
            for (x, expected) in expectations {
                assert_eq!(value(&mixed, x), expected, "{mode:?} mixed at {x}");
            }
        }
    }

    #[test]
    fn f32_precision_rounds_the_input_before_comparing() {
        // 0.1f32 is 0.100000001490116...; an f64 0.1 is below it, 0.1000000001 rounds to it.
        let threshold = f64::from(0.1f32);
        let mut spec = regressor(vec![stump(Mode::Lt, threshold, false, 1.0, 2.0)]);
        let just_below = 0.100_000_001_4;
        assert_eq!(value(&spec, just_below), 1.0);
        spec.precision = Precision::F32;
        // Rounded to f32 the value equals the threshold: `<` is false.
        assert_eq!(value(&spec, just_below), 2.0);
        assert_eq!(value(&spec, 0.09), 1.0);
    }

    #[test]
    fn aggregates_and_base_values_follow_the_onnx_definitions() {
        let trees = vec![
            stump(Mode::Leq, 0.0, false, 1.0, 10.0),
            stump(Mode::Leq, 0.0, false, 3.0, 30.0),
            stump(Mode::Leq, 0.0, false, -2.0, 20.0),
        ];
        let mut spec = regressor(trees);
        spec.base_values = vec![0.5];
        for (aggregate, expected) in [
            (Aggregate::Sum, 2.5),
            (Aggregate::Average, 2.0 / 3.0 + 0.5),
            (Aggregate::Min, -1.5),
            (Aggregate::Max, 3.5),
        ] {
            spec.aggregate = aggregate;
            assert_eq!(value(&spec, -1.0), expected, "{aggregate:?}");
        }
    }

    #[test]
    fn post_transforms_turn_scores_into_probabilities() {
        let trees = vec![vec![leaf(&[(0, 1.0), (1, 2.0), (2, 0.0)])]];
        let mut spec = forest(3, trees);
        spec.aggregate = Aggregate::Sum;
        spec.post_transform = PostTransform::Softmax;
        let (class, scores) = class_of(&Ensemble::new(spec.clone()).unwrap(), &[0.0; 4]);
        assert_eq!(class, 1);
        let z: f64 = [1.0f64, 2.0, 0.0].iter().map(|s| (s - 2.0).exp()).sum();
        let expected = [(-1.0f64).exp() / z, 1.0 / z, (-2.0f64).exp() / z];
        for (a, b) in scores.iter().zip(expected) {
            assert!((a - b).abs() < 1e-15);
        }
        spec.post_transform = PostTransform::SoftmaxZero;
        let (_, scores) = class_of(&Ensemble::new(spec.clone()).unwrap(), &[0.0; 4]);
        assert_eq!(scores[2], 0.0);
        assert!((scores[0] + scores[1] - 1.0).abs() < 1e-15);
        spec.post_transform = PostTransform::Logistic;
        let (_, scores) = class_of(&Ensemble::new(spec).unwrap(), &[0.0; 4]);
        assert_eq!(scores[2], 0.5);
        assert!((scores[1] - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-15);
    }

    #[test]
    fn probit_is_the_normal_quantile() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.025, -1.959_963_984_540_054),
            (0.001, -3.090_232_306_167_813_6),
        ] {
            assert!((probit(p) - z).abs() < 1e-8, "probit({p})");
        }
        assert!(probit(1.5).is_nan());
        let mut spec = regressor(vec![vec![leaf(&[(0, 0.975)])]]);
        spec.post_transform = PostTransform::Probit;
        assert!((value(&spec, 0.0) - 1.959_963_984_540_054).abs() < 1e-8);
    }

    #[test]
    fn single_score_binary_classifiers_expand_to_two_classes() {
        let binary = |scoring, post_transform, trees| EnsembleSpec {
            n_features: 1,
            task: Task::Classification {
                n_classes: 2,
                scoring,
            },
            precision: Precision::F32,
            aggregate: Aggregate::Sum,
            post_transform,
            base_values: Vec::new(),
            trees,
        };
        // A forest storing P(class 1) averaged over trees: class 1 iff s > 0.5.
        let probability = Ensemble::new(binary(
            Scoring::BinaryProbability,
            PostTransform::None,
            vec![stump(Mode::Leq, 0.0, false, 0.25, 0.75)],
        ))
        .unwrap();
        assert_eq!(class_of(&probability, &[-1.0]), (0, vec![0.75, 0.25]));
        assert_eq!(class_of(&probability, &[1.0]), (1, vec![0.25, 0.75]));
        let half = Ensemble::new(binary(
            Scoring::BinaryProbability,
            PostTransform::None,
            vec![vec![leaf(&[(0, 0.5)])]],
        ))
        .unwrap();
        assert_eq!(class_of(&half, &[0.0]).0, 0, "a tie goes to class 0");
        // A boosted margin through the logistic function: class 1 iff s > 0.
        let mut margin = binary(
            Scoring::BinaryMargin,
            PostTransform::Logistic,
            vec![stump(Mode::Leq, 0.0, false, -1.0, 2.0)],
        );
        margin.base_values = vec![0.5];
        let margin = Ensemble::new(margin).unwrap();
        let (class, scores) = class_of(&margin, &[-1.0]);
        assert_eq!(class, 0);
        assert!((scores[1] - 1.0 / (1.0 + 0.5f64.exp())).abs() < 1e-15);
        assert!((scores[0] + scores[1] - 1.0).abs() < 1e-15);
        assert_eq!(class_of(&margin, &[1.0]).0, 1);
    }

    #[test]
    fn classes_without_any_score_take_no_part_in_the_argmax() {
        let mut spec = forest(3, vec![vec![leaf(&[(1, -2.0), (2, -1.0)])]]);
        spec.aggregate = Aggregate::Sum;
        let (class, scores) = class_of(&Ensemble::new(spec).unwrap(), &[0.0; 4]);
        assert_eq!(class, 2);
        assert_eq!(scores, [0.0, -2.0, -1.0]);
    }

    #[test]
    fn batches_equal_rows_bit_for_bit_and_reuse_their_buffers() {
        let mut trees = Vec::new();
        for t in 0..20u32 {
            trees.push(vec![
                branch(t % 4, Mode::Leq, f64::from(t) / 10.0, t.is_multiple_of(3)),
                NodeSpec::Branch {
                    feature: (t + 1) % 4,
                    mode: Mode::Lt,
                    threshold: 0.5,
                    missing_tracks_true: false,
                    true_child: 3,
                    false_child: 4,
                },
                leaf(&[(t % 3, 0.3), ((t + 1) % 3, 0.1)]),
                leaf(&[(0, 0.2)]),
                leaf(&[(2, -0.7)]),
            ]);
        }
        let mut spec = forest(3, trees);
        spec.aggregate = Aggregate::Sum;
        spec.post_transform = PostTransform::Softmax;
        spec.precision = Precision::F32;
        spec.base_values = vec![0.1, 0.2, 0.3];
        let ensemble = Ensemble::new(spec).unwrap();
        let rows: Vec<f64> = (0..400)
            .map(|i| match i % 37 {
                0 => f64::NAN,
                k => (f64::from(k) - 18.0) / 9.0,
            })
            .collect();
        let mut batch = Batch::new();
        let mut scratch = ensemble.scratch();
        for _ in 0..2 {
            ensemble.predict_batch_into(&rows, &mut batch);
            assert_eq!(batch.len(), 100);
            for (i, row) in rows.chunks_exact(4).enumerate() {
                assert_eq!(batch.get(i), ensemble.predict_into(row, &mut scratch));
            }
        }
        ensemble.predict_batch_into(&[], &mut batch);
        assert!(batch.is_empty());
    }

    /// A plain recursive walk over the spec, independent of the compiled layout.
    fn reference_sum(spec: &EnsembleSpec, row: &[f64]) -> f64 {
        let mut sum = 0.0;
        for tree in &spec.trees {
            let mut index = 0;
            loop {
                match &tree[index] {
                    NodeSpec::Leaf { weights } => {
                        sum += weights[0].1;
                        break;
                    }
                    NodeSpec::Branch {
                        feature,
                        mode,
                        threshold,
                        missing_tracks_true,
                        true_child,
                        false_child,
                    } => {
                        let x = f64::from(row[*feature as usize] as f32);
                        let t = *threshold;
                        let holds = match mode {
                            Mode::Leq => x <= t,
                            Mode::Lt => x < t,
                            Mode::Gte => x >= t,
                            Mode::Gt => x > t,
                            Mode::Eq => x == t,
                            Mode::Neq => x != t,
                        } || (*missing_tracks_true && x.is_nan());
                        index = if holds { *true_child } else { *false_child } as usize;
                    }
                }
            }
        }
        sum
    }

    #[test]
    fn deep_and_shallow_ensembles_agree_with_a_plain_walk_on_rows_and_batches() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (depth, n_trees) in [(5usize, 37usize), (30, 21)] {
            // Caterpillar trees: each branch has a leaf and a deeper branch (at random sides).
            let mut trees = Vec::new();
            for _ in 0..n_trees {
                let mut nodes = Vec::new();
                let levels = 1 + (next() as usize) % depth;
                for level in 0..levels {
                    let here = nodes.len() as u32;
                    let (leaf_side, deeper) = if next().is_multiple_of(2) {
                        (1, 2)
                    } else {
                        (2, 1)
                    };
                    nodes.push(NodeSpec::Branch {
                        feature: (next() % 4) as u32,
                        mode: if next().is_multiple_of(2) {
                            Mode::Leq
                        } else {
                            Mode::Lt
                        },
                        threshold: f64::from((next() % 200) as f32 / 100.0 - 1.0),
                        missing_tracks_true: next().is_multiple_of(3),
                        true_child: here + if leaf_side == 1 { 1 } else { 2 },
                        false_child: here + if deeper == 2 { 2 } else { 1 },
                    });
                    nodes.push(leaf(&[(0, (next() % 1000) as f64 / 7.0)]));
                    if level + 1 == levels {
                        nodes.push(leaf(&[(0, -((next() % 1000) as f64) / 3.0)]));
                    }
                }
                trees.push(nodes);
            }
            let spec = EnsembleSpec {
                n_features: 4,
                precision: Precision::F32,
                ..regressor(trees)
            };
            let ensemble = Ensemble::new(spec.clone()).unwrap();
            assert_eq!(ensemble.lockstep, depth <= LOCKSTEP_MAX_DEPTH);
            let rows: Vec<f64> = (0..4 * 203u32)
                .map(|i| {
                    if i.is_multiple_of(29) {
                        f64::NAN
                    } else {
                        (next() % 240) as f64 / 100.0 - 1.2
                    }
                })
                .collect();
            let mut batch = Batch::new();
            ensemble.predict_batch_into(&rows, &mut batch);
            let mut scratch = ensemble.scratch();
            for (i, row) in rows.chunks_exact(4).enumerate() {
                let expected = reference_sum(&spec, row);
                let Outcome::Value(value) = ensemble.predict_into(row, &mut scratch) else {
                    panic!("a regressor answers with a value");
                };
                assert!(
                    (value - expected).abs() <= 1e-9 * expected.abs().max(1.0),
                    "{row:?}"
                );
                assert_eq!(batch.get(i), Outcome::Value(value));
            }
        }
    }

    #[test]
    fn the_manifest_format_names_this_magic_and_version() {
        let magic = std::str::from_utf8(&MAGIC).unwrap();
        assert!(crate::ARTIFACT_FORMAT.contains(magic));
        assert!(crate::ARTIFACT_FORMAT.ends_with(&format!("v{FORMAT_VERSION})")));
    }

    #[test]
    fn encoding_round_trips_and_is_stable() {
        let spec = forest(3, vec![vote(0), vote(2)]);
        let ensemble = Ensemble::new(spec.clone()).unwrap();
        let bytes = ensemble.to_bytes();
        assert_eq!(&bytes[..4], b"SMTE");
        let decoded = Ensemble::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, ensemble);
        assert_eq!(decoded.to_bytes(), bytes);
        assert_eq!(decoded.spec(), &spec);
    }

    #[test]
    fn decoding_rejects_ensembles_that_could_misbehave() {
        let split = |feature, threshold, t, f| NodeSpec::Branch {
            feature,
            mode: Mode::Leq,
            threshold,
            missing_tracks_true: false,
            true_child: t,
            false_child: f,
        };
        let cases: Vec<(&str, Vec<Vec<NodeSpec>>)> = vec![
            ("no trees", vec![]),
            ("empty tree", vec![vec![]]),
            ("class out of range", vec![vote(3)]),
            ("leaf without weights", vec![vec![leaf(&[])]]),
            ("non-finite weight", vec![vec![leaf(&[(0, f64::INFINITY)])]]),
            (
                "feature out of range",
                vec![vec![
                    split(4, 1.0, 1, 2),
                    leaf(&[(0, 1.0)]),
                    leaf(&[(1, 1.0)]),
                ]],
            ),
            (
                "NaN threshold",
                vec![vec![
                    split(0, f64::NAN, 1, 2),
                    leaf(&[(0, 1.0)]),
                    leaf(&[(1, 1.0)]),
                ]],
            ),
            (
                "self loop",
                vec![vec![
                    split(0, 1.0, 0, 2),
                    leaf(&[(0, 1.0)]),
                    leaf(&[(1, 1.0)]),
                ]],
            ),
            (
                "child past the end",
                vec![vec![split(0, 1.0, 1, 2), leaf(&[(0, 1.0)])]],
            ),
            (
                "backward edge",
                vec![vec![
                    split(0, 1.0, 1, 2),
                    split(1, 1.0, 0, 3),
                    leaf(&[(0, 1.0)]),
                    leaf(&[(1, 1.0)]),
                ]],
            ),
            (
                "shared child",
                vec![vec![
                    split(0, 1.0, 1, 2),
                    split(1, 1.0, 3, 4),
                    split(1, 1.0, 3, 4),
                    leaf(&[(0, 1.0)]),
                    leaf(&[(1, 1.0)]),
                ]],
            ),
            (
                "unreachable node",
                vec![vec![
                    split(0, 1.0, 1, 2),
                    leaf(&[(0, 1.0)]),
                    leaf(&[(1, 1.0)]),
                    leaf(&[(1, 1.0)]),
                ]],
            ),
        ];
        for (name, trees) in cases {
            let bytes = postcard::to_allocvec(&ArtifactRepr {
                magic: MAGIC,
                format_version: FORMAT_VERSION,
                spec: forest(3, trees),
            })
            .unwrap();
            assert!(
                matches!(
                    Ensemble::from_bytes(&bytes),
                    Err(ModelError::InvalidModel(_))
                ),
                "{name} was accepted"
            );
        }
    }

    #[test]
    fn decoding_rejects_shapes_and_transforms_that_do_not_fit() {
        let good = forest(3, vec![vote(0)]);
        let bad = vec![
            EnsembleSpec {
                n_features: 0,
                ..good.clone()
            },
            EnsembleSpec {
                base_values: vec![1.0],
                ..good.clone()
            },
            EnsembleSpec {
                base_values: vec![0.0, f64::NAN, 0.0],
                ..good.clone()
            },
            EnsembleSpec {
                task: Task::Classification {
                    n_classes: 1,
                    scoring: Scoring::PerClass,
                },
                ..good.clone()
            },
            EnsembleSpec {
                task: Task::Classification {
                    n_classes: 3,
                    scoring: Scoring::BinaryMargin,
                },
                ..good.clone()
            },
            EnsembleSpec {
                post_transform: PostTransform::Softmax,
                ..regressor(vec![vec![leaf(&[(0, 1.0)])]])
            },
        ];
        for spec in bad {
            assert!(
                matches!(
                    Ensemble::new(spec.clone()),
                    Err(ModelError::InvalidModel(_))
                ),
                "{spec:?} was accepted"
            );
        }
        let mut future = Ensemble::new(good).unwrap().to_bytes();
        future[4] = 2;
        let err = Ensemble::from_bytes(&future).unwrap_err().to_string();
        assert!(err.contains("format version 2"), "{err}");
    }

    #[test]
    fn size_caps_refuse_huge_ensembles_before_compiling_them() {
        let many_trees = forest(3, vec![vote(0); MAX_TREES + 1]);
        let err = Ensemble::new(many_trees).unwrap_err().to_string();
        assert!(err.contains("trees"), "{err}");
        let wide = EnsembleSpec {
            n_features: (MAX_FEATURES + 1) as u32,
            ..forest(3, vec![vote(0)])
        };
        assert!(Ensemble::new(wide).is_err());
    }

    /// A fuzz-style sweep: random bytes after a valid header, and random mutations of a valid
    /// artifact, must decode to an error or to an ensemble that predicts without panicking.
    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut trees = Vec::new();
        for t in 0..8u32 {
            trees.push(vec![
                branch(t % 4, Mode::Leq, 0.5, t.is_multiple_of(2)),
                leaf(&[(t % 3, 1.0)]),
                leaf(&[((t + 1) % 3, 0.5), (0, 0.25)]),
            ]);
        }
        let valid = Ensemble::new(forest(3, trees)).unwrap().to_bytes();
        let rows = [[0.0, 1.0, f64::NAN, -3.0], [0.5; 4], [9.0; 4]];
        let check = |bytes: &[u8]| {
            if let Ok(ensemble) = Ensemble::from_bytes(bytes) {
                let mut scratch = ensemble.scratch();
                let n = ensemble.n_features();
                let row: Vec<f64> = (0..n).map(|i| rows[i % 3][i % 4]).collect();
                let _ = ensemble.predict_into(&row, &mut scratch);
            }
        };
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..(next() % 4 + 1) {
                let position = (next() as usize) % bytes.len();
                bytes[position] = next() as u8;
            }
            check(&bytes);
            let len = (next() as usize) % (valid.len() + 8);
            let mut random: Vec<u8> = MAGIC.to_vec();
            random.extend([1, 0]);
            random.extend((0..len).map(|_| next() as u8));
            check(&random);
        }
        for len in 0..valid.len() {
            assert!(Ensemble::from_bytes(&valid[..len]).is_err());
        }
        let mut trailing = valid.clone();
        trailing.push(0);
        assert!(matches!(
            Ensemble::from_bytes(&trailing),
            Err(ModelError::Decode(_))
        ));
    }
}
