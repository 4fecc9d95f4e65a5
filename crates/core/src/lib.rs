//! Shared library of secure-ml-api.
//!
//! Layout:
//! - [`config`]: the configuration contract ([`config::VARIABLES`]) and typed configuration
//!   read once at init from a [`config::Vars`] snapshot.
//! - [`frame`]: the request frame both functions share — event conversion, route tables,
//!   the per-source penalty, and the access line that is also the metrics record.
//! - [`aws`]: SDK configuration and clients, built once per cold start.
//! - [`problem`]: the one [`problem::ApiError`] enum and its RFC 9457 problem+json rendering.
//! - [`http`]: request plumbing shared by both functions (body limits, content types, routing).
//! - [`model`]: the served model: decoding at init, predictions (a class with its label and
//!   scores, or a number) and range warnings, all as its manifest says.
//! - [`predict`]: the prediction request contract the manifest implies: parsing and validation
//!   with JSON pointers, rows as arrays in feature order or objects naming the features.
//! - [`openapi`]: the model-dependent blocks of `openapi.yaml`, generated from the model.
//! - [`auth`]: access tokens (EdDSA JWT issue and verification), signing keys, the client registry.
//! - [`ratelimit`]: per-IP GCRA rate limiting with state in DynamoDB.
//! - [`telemetry`]: JSON logs and the end of init.
//! - `testing` (feature `test-support`): mocked SDK clients for the functions' tests.
//!
//! Feature `aws` (default): everything that calls AWS — the DynamoDB-backed
//! `ratelimit::RateLimiter`, `auth::registry`, and the public JWKS item of the rate-limit table;
//! feature `secrets` adds the private key set in Secrets Manager (token function, admin).
//! Without `aws` the crate keeps the request parsers, validation, token issuing and verification
//! over local key material, and the rate-limit policies; the fuzz targets (`fuzz/`) build it that
//! way.

pub mod auth;
pub mod aws;
pub mod config;
pub mod frame;
pub mod http;
pub mod model;
pub mod openapi;
pub mod predict;
pub mod problem;
pub mod ratelimit;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
