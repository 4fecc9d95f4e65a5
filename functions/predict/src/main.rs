//! The prediction function: wiring only. Configuration, the SDK clients, the verifier's keys
//! and the embedded model are all prepared once, at init; `handler::handle` does the work.

mod handler;

use secure_ml_core::auth::{Verifier, VerifierConfig};
use secure_ml_core::aws::{Aws, Trust};
use secure_ml_core::config::Vars;
use secure_ml_core::frame::Frame;
use secure_ml_core::model::ServedModel;
use secure_ml_core::ratelimit::{RateLimitConfig, RateLimiter};

/// The model artifact and manifest, checked against each other by `build.rs` at build time and
/// again by [`ServedModel::load`] at init.
static MODEL_ARTIFACT: &[u8] = include_bytes!(env!("MODEL_ARTIFACT_PATH"));
static MODEL_MANIFEST: &str = include_str!(env!("MODEL_MANIFEST_PATH"));

// One thread: an invocation is handled start to end where its event arrives, with no hand-off
// between worker threads (two thread wake-ups per Runtime API exchange otherwise, at 1/14 of a
// vCPU), and init starts no worker threads. BENCHMARKS.md, "Per-request overhead".
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    secure_ml_core::frame::start(init, handler::handle).await
}

async fn init(vars: &Vars) -> Result<handler::Deps, String> {
    let model = ServedModel::load(MODEL_ARTIFACT, MODEL_MANIFEST).map_err(|e| e.to_string())?;
    let verifier_config = VerifierConfig::from_vars(vars).map_err(|e| e.to_string())?;
    let limits = RateLimitConfig::from_vars(vars).map_err(|e| e.to_string())?;
    let frame = Frame::from_vars(vars).map_err(|e| e.to_string())?;
    let trust = Trust::from_vars(vars).map_err(|e| e.to_string())?;
    let aws = Aws::load(&limits.dynamo, &trust).await;
    // The public keys are an item of the rate-limit table: reading them also proves the table
    // exists (a missing one fails init, naming it) and opens the connection requests will use.
    let verifier = Verifier::load(verifier_config, aws.dynamodb())
        .await
        .map_err(|e| e.to_string())?;
    Ok(handler::Deps {
        frame,
        model,
        verifier,
        limiter: RateLimiter::new(aws.dynamodb().clone(), limits),
    })
}
