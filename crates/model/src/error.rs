//! The crate's single error type.

/// Everything that can go wrong while loading, verifying or training the model.
///
/// Messages are sentences meant for logs and for the training command's output; none of them
/// carries request data, so they are safe to log (but not meant for HTTP response bodies).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The artifact bytes are not a postcard-encoded ensemble (garbage, truncated, trailing bytes).
    #[error("the model artifact could not be decoded: {0}")]
    Decode(String),

    /// The artifact decoded but describes something this code must not run (wrong format
    /// version, out-of-range feature or child index, more nodes than allowed...), or it
    /// disagrees with its manifest.
    #[error("the model artifact is invalid: {0}")]
    InvalidModel(String),

    /// The artifact's sha256 differs from the one recorded in the manifest.
    #[error("the model artifact's sha256 is {actual}, but the manifest expects {expected}")]
    ChecksumMismatch {
        /// The digest recorded in `manifest.json`.
        expected: String,
        /// The digest of the bytes actually supplied.
        actual: String,
    },

    /// `manifest.json` is not valid JSON for [`crate::Manifest`].
    #[error("the model manifest could not be parsed: {0}")]
    Manifest(#[source] serde_json::Error),

    /// `manifest.json` parsed but its parts do not fit together.
    #[error("the model manifest is invalid: {0}")]
    InvalidManifest(String),

    /// The training CSV is malformed.
    #[error("the training data is invalid: {0}")]
    Data(String),

    /// Training could not run with the given data and hyper-parameters.
    #[error("training failed: {0}")]
    Training(String),
}
