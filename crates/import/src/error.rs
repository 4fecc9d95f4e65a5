//! The crate's single error type: one line, naming the node or attribute at fault.

/// Why a file could not be imported. Every message is one line meant for the person running
/// `make import-model`; nothing is written to `model-artifacts/` when one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The bytes are not an ONNX model.
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),

    /// The graph has no tree ensemble, or nodes around it that change the model's answers in a
    /// way the artifact cannot express.
    #[error("unsupported graph: {0}")]
    Graph(String),

    /// An operator attribute (or its value) the artifact cannot express.
    #[error("unsupported attribute: {0}")]
    Unsupported(String),

    /// The tree-ensemble attributes contradict each other (lengths, ids, ranges, NaN).
    #[error("invalid tree ensemble: {0}")]
    Invalid(String),

    /// The reference CSV given for the feature names and ranges.
    #[error("feature reference: {0}")]
    Features(String),

    /// The converted ensemble or its manifest failed the model crate's own validation.
    #[error("{0}")]
    Model(#[from] tree_model::ModelError),
}
