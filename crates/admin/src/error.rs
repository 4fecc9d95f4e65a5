//! The one error type of the admin CLI. Every message is a sentence an operator can act on, and
//! none carries a secret or key material.

use secure_ml_core::auth::{AuthError, RegistryError};
use secure_ml_core::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Keys(#[from] AuthError),
    #[error(
        "a signing key set already exists in {location}; pass --force to replace it (every token it signed will stop verifying), or use `admin keys rotate`"
    )]
    KeySetExists { location: String },
    #[error("there is no signing key set in {location}; run `admin keys generate` first")]
    NoKeySet { location: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
}
