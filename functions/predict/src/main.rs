//! The prediction function: wiring only. Configuration, the SDK client, the verifier's keys
//! and the embedded model are all prepared once, at init; `handler::handle` does the work.

use lambda_http::{Error, Request, run, service_fn};
use secure_ml_core::auth::{Verifier, VerifierConfig};
use secure_ml_core::config::Vars;
use secure_ml_core::model::ServedModel;
use secure_ml_core::ratelimit::{RateLimitConfig, RateLimiter, check_table, dynamodb_client};

mod handler;

/// The model artifact and manifest, checked against each other by `build.rs` at build time and
/// again by [`ServedModel::load`] at init.
static MODEL_ARTIFACT: &[u8] = include_bytes!(env!("MODEL_ARTIFACT_PATH"));
static MODEL_MANIFEST: &str = include_str!(env!("MODEL_MANIFEST_PATH"));

#[tokio::main]
async fn main() -> Result<(), Error> {
    let started = std::time::Instant::now();
    let vars = Vars::from_env();
    secure_ml_core::telemetry::init(vars.get("RUST_LOG"));
    let deps = secure_ml_core::telemetry::finish_init(started, init(&vars).await);
    let deps = &deps;
    run(service_fn(move |request: Request| async move {
        Ok::<_, std::convert::Infallible>(handler::handle(deps, request).await)
    }))
    .await
}

async fn init(vars: &Vars) -> Result<handler::Deps, String> {
    let model = ServedModel::load(MODEL_ARTIFACT, MODEL_MANIFEST).map_err(|e| e.to_string())?;
    let verifier_config = VerifierConfig::from_vars(vars).map_err(|e| e.to_string())?;
    let limit_config = RateLimitConfig::from_vars(vars).map_err(|e| e.to_string())?;
    let dynamodb = dynamodb_client(&limit_config.dynamo).await;
    // The public keys and the table check are independent network calls: overlap them.
    let (verifier, table) = tokio::join!(
        Verifier::load(verifier_config),
        check_table(&dynamodb, &limit_config.table, "RATE_LIMIT_TABLE"),
    );
    let verifier = verifier.map_err(|e| e.to_string())?;
    table?;
    let limiter = RateLimiter::new(dynamodb, limit_config);
    Ok(handler::Deps {
        model,
        verifier,
        limiter,
    })
}
