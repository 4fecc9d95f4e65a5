//! Our forest: flat trees, majority vote with vote shares, and the artifact encoding.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::{ModelError, N_CLASSES, N_FEATURES};

/// First bytes of every artifact, so that a wrong file is named as such instead of failing
/// somewhere inside the decoder.
const MAGIC: [u8; 4] = *b"IRRF";
/// Bumped whenever the encoded layout or the meaning of a field changes.
const FORMAT_VERSION: u16 = 1;

/// One node of a tree.
///
/// The children of a split are adjacent, which saves an index per node: rows with
/// `row[feature] <= threshold` go to `left`, the others to `left + 1` (smartcore's rule,
/// so NaN goes right). In the encoded artifact `left` is relative to the tree's root; in
/// memory it is an index into the forest-wide node vector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) enum Node {
    Split {
        feature: u8,
        threshold: f64,
        left: u32,
    },
    Leaf {
        class: u8,
    },
}

/// The encoded form: one self-contained node list per tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ForestRepr {
    magic: [u8; 4],
    format_version: u16,
    n_features: u8,
    n_classes: u8,
    trees: Vec<Vec<Node>>,
}

/// A bagged forest of decision trees trained with smartcore, in a compact form of our own.
///
/// Build it with [`Forest::from_bytes`] (the committed artifact) or with the training module.
/// Every forest that exists has passed validation: feature and class indices are in range and
/// every child index points forward inside its own tree, so prediction terminates, never
/// indexes out of bounds and never allocates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ForestRepr", into = "ForestRepr")]
pub struct Forest {
    /// Every tree's nodes, concatenated; split children are absolute indices into this vector.
    /// One vector instead of one per tree keeps the whole forest in a single allocation.
    nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`, in tree order.
    roots: Vec<u32>,
}

/// The forest's answer for one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Index into [`crate::LABELS`]: the class with the largest vote share, the lowest index on a tie.
    pub class: usize,
    /// Fraction of trees voting for each class; the shares sum to 1.
    pub shares: [f64; N_CLASSES],
}

impl Prediction {
    /// Turns vote counts into shares and picks the winner.
    ///
    /// The argmax runs on the integer counts: exact, and it picks the same class as an argmax
    /// over the shares because dividing by the same positive count preserves the order.
    fn from_votes(votes: [u32; N_CLASSES]) -> Self {
        let total: u32 = votes.iter().sum();
        let mut class = 0;
        for (candidate, &count) in votes.iter().enumerate() {
            // Strictly greater: on a tie the lower class index, seen first, stays the winner.
            if count > votes[class] {
                class = candidate;
            }
        }
        let total = f64::from(total.max(1));
        Self {
            class,
            shares: votes.map(|count| f64::from(count) / total),
        }
    }
}

impl Forest {
    /// Decodes an artifact written by [`Forest::to_bytes`] and validates it.
    ///
    /// Never panics, whatever the input: garbage, truncation and trailing bytes are decode
    /// errors; a well-formed but unsafe forest is an [`ModelError::InvalidModel`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Forest, ModelError> {
        if !bytes.starts_with(&MAGIC) {
            return Err(ModelError::Decode(
                "the bytes do not start with the Iris forest magic number".to_owned(),
            ));
        }
        let (repr, rest): (ForestRepr, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|err| ModelError::Decode(err.to_string()))?;
        if !rest.is_empty() {
            return Err(ModelError::Decode(format!(
                "{} unexpected bytes follow the forest",
                rest.len()
            )));
        }
        Forest::try_from(repr)
    }

    /// Encodes the forest as postcard bytes.
    ///
    /// Deterministic: the same forest always gives the same bytes (no maps, no padding, floats
    /// as their exact little-endian bits), which is what makes retraining reproducible byte for byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing owned vectors of plain structs into a growable Vec cannot fail: postcard
        // only errors for unknown-length sequences or a full fixed buffer, neither possible here.
        postcard::to_allocvec(&ForestRepr::from(self.clone()))
            .expect("postcard serialization into a Vec is infallible for ForestRepr")
    }

    /// Predicts one row: `[sepal_length, sepal_width, petal_length, petal_width]` in cm.
    ///
    /// Each tree votes for a class; [`Prediction::shares`] are the vote fractions and
    /// [`Prediction::class`] is their argmax, ties going to the lowest class index.
    /// No allocation, no panic.
    pub fn predict(&self, row: &[f64; N_FEATURES]) -> Prediction {
        let mut votes = [0u32; N_CLASSES];
        for &root in &self.roots {
            let mut index = root as usize;
            let class = loop {
                match self.nodes[index] {
                    Node::Leaf { class } => break class,
                    Node::Split {
                        feature,
                        threshold,
                        left,
                    } => {
                        index = if row[usize::from(feature)] <= threshold {
                            left as usize
                        } else {
                            left as usize + 1
                        };
                    }
                }
            };
            votes[usize::from(class)] += 1;
        }
        Prediction::from_votes(votes)
    }

    /// Predicts every row of an `n × 4` matrix; equal to calling [`Forest::predict`] per row.
    ///
    /// # Panics
    ///
    /// If `rows` does not have exactly [`N_FEATURES`] columns. The shape is the caller's
    /// construction, not request data: validate each instance before building the matrix.
    pub fn predict_batch(&self, rows: ArrayView2<'_, f64>) -> Vec<Prediction> {
        assert_eq!(
            rows.ncols(),
            N_FEATURES,
            "predict_batch needs one column per feature"
        );
        rows.rows()
            .into_iter()
            .map(|row| self.predict(&[row[0], row[1], row[2], row[3]]))
            .collect()
    }

    /// Number of classes (3: setosa, versicolor, virginica).
    pub fn n_classes(&self) -> usize {
        N_CLASSES
    }

    /// Number of trees that vote.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Builds and validates a forest from per-tree node lists with root-relative child indices.
    #[cfg(any(test, feature = "training"))]
    pub(crate) fn from_trees(trees: Vec<Vec<Node>>) -> Result<Forest, ModelError> {
        Forest::try_from(ForestRepr {
            magic: MAGIC,
            format_version: FORMAT_VERSION,
            n_features: N_FEATURES as u8,
            n_classes: N_CLASSES as u8,
            trees,
        })
    }

    /// The trees as root-relative node lists, the inverse of [`Forest::from_trees`].
    #[cfg(test)]
    pub(crate) fn trees(&self) -> Vec<Vec<Node>> {
        ForestRepr::from(self.clone()).trees
    }
}

impl TryFrom<ForestRepr> for Forest {
    type Error = ModelError;

    fn try_from(repr: ForestRepr) -> Result<Self, Self::Error> {
        let invalid = |message: String| Err(ModelError::InvalidModel(message));
        if repr.magic != MAGIC {
            return invalid("wrong magic number".to_owned());
        }
        if repr.format_version != FORMAT_VERSION {
            return invalid(format!(
                "format version {} is not supported (expected {FORMAT_VERSION})",
                repr.format_version
            ));
        }
        if usize::from(repr.n_features) != N_FEATURES || usize::from(repr.n_classes) != N_CLASSES {
            return invalid(format!(
                "expected {N_FEATURES} features and {N_CLASSES} classes, found {} and {}",
                repr.n_features, repr.n_classes
            ));
        }
        if repr.trees.is_empty() {
            return invalid("the forest has no trees".to_owned());
        }

        let total: usize = repr.trees.iter().map(Vec::len).sum();
        // Votes are counted in u32 and roots stored as u32: bound the whole forest by that.
        let Ok(total_u32) = u32::try_from(total) else {
            return invalid(format!("{total} nodes is too many"));
        };
        let mut nodes = Vec::with_capacity(total);
        let mut roots = Vec::with_capacity(repr.trees.len());
        for (tree_index, tree) in repr.trees.into_iter().enumerate() {
            if tree.is_empty() {
                return invalid(format!("tree {tree_index} has no nodes"));
            }
            // Cannot truncate: nodes.len() <= total, which fits in u32.
            let root = nodes.len() as u32;
            for (index, node) in tree.iter().enumerate() {
                match *node {
                    Node::Split {
                        feature,
                        threshold,
                        left,
                    } => {
                        if usize::from(feature) >= N_FEATURES {
                            return invalid(format!(
                                "tree {tree_index} node {index} splits on feature {feature}"
                            ));
                        }
                        if !threshold.is_finite() {
                            return invalid(format!(
                                "tree {tree_index} node {index} has a non-finite threshold"
                            ));
                        }
                        // Children strictly after their parent: every walk moves forward, so it
                        // ends at a leaf within the tree's own nodes.
                        let left = left as usize;
                        if left <= index || left + 1 >= tree.len() {
                            return invalid(format!(
                                "tree {tree_index} node {index} has children out of order or out of range"
                            ));
                        }
                    }
                    Node::Leaf { class } => {
                        if usize::from(class) >= N_CLASSES {
                            return invalid(format!(
                                "tree {tree_index} node {index} predicts class {class}"
                            ));
                        }
                    }
                }
            }
            roots.push(root);
            nodes.extend(tree.into_iter().map(|node| match node {
                Node::Split {
                    feature,
                    threshold,
                    left,
                } => Node::Split {
                    feature,
                    threshold,
                    left: root + left,
                },
                leaf @ Node::Leaf { .. } => leaf,
            }));
        }
        debug_assert_eq!(nodes.len(), total_u32 as usize);
        Ok(Forest { nodes, roots })
    }
}

impl From<Forest> for ForestRepr {
    fn from(forest: Forest) -> Self {
        let ends = forest
            .roots
            .iter()
            .skip(1)
            .map(|&root| root as usize)
            .chain(std::iter::once(forest.nodes.len()));
        let trees = forest
            .roots
            .iter()
            .zip(ends)
            .map(|(&root, end)| {
                forest.nodes[root as usize..end]
                    .iter()
                    .map(|node| match *node {
                        Node::Split {
                            feature,
                            threshold,
                            left,
                        } => Node::Split {
                            feature,
                            threshold,
                            left: left - root,
                        },
                        leaf @ Node::Leaf { .. } => leaf,
                    })
                    .collect()
            })
            .collect();
        ForestRepr {
            magic: MAGIC,
            format_version: FORMAT_VERSION,
            n_features: N_FEATURES as u8,
            n_classes: N_CLASSES as u8,
            trees,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(class: u8) -> Vec<Node> {
        vec![Node::Leaf { class }]
    }

    /// petal_length <= 2.45 → setosa, else petal_width <= 1.75 → versicolor, else virginica.
    fn textbook_tree() -> Vec<Node> {
        vec![
            Node::Split {
                feature: 2,
                threshold: 2.45,
                left: 1,
            },
            Node::Leaf { class: 0 },
            Node::Split {
                feature: 3,
                threshold: 1.75,
                left: 3,
            },
            Node::Leaf { class: 1 },
            Node::Leaf { class: 2 },
        ]
    }

    #[test]
    fn nodes_stay_16_bytes_so_a_tree_walk_touches_few_cache_lines() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    #[test]
    fn a_two_way_tie_goes_to_the_lower_class_index() {
        let forest = Forest::from_trees(vec![leaf(2), leaf(1), leaf(2), leaf(1)]).unwrap();
        let prediction = forest.predict(&[5.0, 3.0, 4.0, 1.0]);
        assert_eq!(prediction.shares, [0.0, 0.5, 0.5]);
        assert_eq!(prediction.class, 1);
    }

    #[test]
    fn a_three_way_tie_goes_to_class_zero() {
        let forest = Forest::from_trees(vec![leaf(2), leaf(1), leaf(0)]).unwrap();
        let prediction = forest.predict(&[5.0, 3.0, 4.0, 1.0]);
        assert_eq!(prediction.class, 0);
        assert!(prediction.shares.iter().all(|&s| s == prediction.shares[0]));
    }

    #[test]
    fn a_strict_majority_wins_regardless_of_index() {
        let forest = Forest::from_trees(vec![leaf(0), leaf(2), leaf(2)]).unwrap();
        let prediction = forest.predict(&[5.0, 3.0, 4.0, 1.0]);
        assert_eq!(prediction.class, 2);
        assert_eq!(prediction.shares, [1.0 / 3.0, 0.0, 2.0 / 3.0]);
    }

    #[test]
    fn a_value_equal_to_the_threshold_goes_left() {
        let forest = Forest::from_trees(vec![textbook_tree()]).unwrap();
        assert_eq!(forest.predict(&[5.0, 3.0, 2.45, 0.2]).class, 0);
        assert_eq!(
            forest
                .predict(&[5.0, 3.0, 2.450_000_000_000_001, 1.75])
                .class,
            1
        );
        assert_eq!(
            forest
                .predict(&[5.0, 3.0, 5.0, 1.750_000_000_000_001])
                .class,
            2
        );
    }

    #[test]
    fn nan_goes_right_like_in_smartcore() {
        let forest = Forest::from_trees(vec![textbook_tree()]).unwrap();
        assert_eq!(forest.predict(&[5.0, 3.0, f64::NAN, f64::NAN]).class, 2);
    }

    #[test]
    fn encoding_round_trips_and_is_stable() {
        let forest = Forest::from_trees(vec![textbook_tree(), leaf(1), textbook_tree()]).unwrap();
        let bytes = forest.to_bytes();
        let decoded = Forest::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, forest);
        assert_eq!(decoded.to_bytes(), bytes);
        assert_eq!(
            decoded.trees(),
            vec![textbook_tree(), leaf(1), textbook_tree()]
        );
        assert_eq!(decoded.n_trees(), 3);
    }

    #[test]
    fn serde_deserialization_validates_too() {
        let bad = ForestRepr::from(Forest::from_trees(vec![leaf(0)]).unwrap());
        let mut value = serde_json::to_value(&bad).unwrap();
        value["trees"][0][0] = serde_json::json!({ "Leaf": { "class": 7 } });
        assert!(serde_json::from_value::<Forest>(value).is_err());
    }

    #[test]
    fn decoding_rejects_forests_that_could_misbehave() {
        let split = |feature, threshold, left| Node::Split {
            feature,
            threshold,
            left,
        };
        let cases: Vec<(&str, Vec<Vec<Node>>)> = vec![
            ("no trees", vec![]),
            ("empty tree", vec![vec![]]),
            ("class out of range", vec![leaf(3)]),
            (
                "feature out of range",
                vec![vec![
                    split(4, 1.0, 1),
                    Node::Leaf { class: 0 },
                    Node::Leaf { class: 1 },
                ]],
            ),
            (
                "non-finite threshold",
                vec![vec![
                    split(0, f64::NAN, 1),
                    Node::Leaf { class: 0 },
                    Node::Leaf { class: 1 },
                ]],
            ),
            (
                "self loop",
                vec![vec![
                    split(0, 1.0, 0),
                    Node::Leaf { class: 0 },
                    Node::Leaf { class: 1 },
                ]],
            ),
            (
                "child past the end",
                vec![vec![split(0, 1.0, 1), Node::Leaf { class: 0 }]],
            ),
            (
                "backward edge",
                vec![vec![
                    split(0, 1.0, 1),
                    split(1, 1.0, 1),
                    Node::Leaf { class: 0 },
                    Node::Leaf { class: 1 },
                ]],
            ),
        ];
        for (name, trees) in cases {
            let bytes = postcard::to_allocvec(&ForestRepr {
                magic: MAGIC,
                format_version: FORMAT_VERSION,
                n_features: 4,
                n_classes: 3,
                trees,
            })
            .unwrap();
            assert!(
                matches!(Forest::from_bytes(&bytes), Err(ModelError::InvalidModel(_))),
                "{name} was accepted"
            );
        }
    }

    #[test]
    fn decoding_rejects_another_format_version_or_shape() {
        let good = ForestRepr::from(Forest::from_trees(vec![leaf(0)]).unwrap());
        for repr in [
            ForestRepr {
                format_version: 2,
                ..good.clone()
            },
            ForestRepr {
                n_features: 5,
                ..good.clone()
            },
            ForestRepr {
                n_classes: 2,
                ..good.clone()
            },
        ] {
            let bytes = postcard::to_allocvec(&repr).unwrap();
            assert!(matches!(
                Forest::from_bytes(&bytes),
                Err(ModelError::InvalidModel(_))
            ));
        }
    }

    #[test]
    fn decoding_rejects_trailing_bytes() {
        let mut bytes = Forest::from_trees(vec![leaf(0)]).unwrap().to_bytes();
        bytes.push(0);
        assert!(matches!(
            Forest::from_bytes(&bytes),
            Err(ModelError::Decode(_))
        ));
    }
}
