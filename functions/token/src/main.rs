//! The token function: wiring only. Configuration (read once), the SDK clients (built once),
//! the signing key set (loaded once, then refreshed by [`SigningKeys`]); `handler::handle` does
//! the work.

mod handler;

use secure_ml_core::auth::store::KeySetStore;
use secure_ml_core::auth::{ClientRegistry, KeySetSource, SigningKeys, TokenSettings};
use secure_ml_core::aws::{Aws, DynamoSettings, Trust, check_table};
use secure_ml_core::config::{self, Vars};
use secure_ml_core::frame::Frame;
use secure_ml_core::ratelimit::{RateLimitConfig, RateLimiter};

// One thread: an invocation is handled start to end where its event arrives, with no hand-off
// between worker threads (two thread wake-ups per Runtime API exchange otherwise, at 1/14 of a
// vCPU), and init starts no worker threads. BENCHMARKS.md, "Per-request overhead".
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    secure_ml_core::frame::start(init, handler::handle).await
}

async fn init(vars: &Vars) -> Result<handler::Deps, String> {
    let settings = TokenSettings::from_vars(vars).map_err(|e| e.to_string())?;
    let key_source = KeySetSource::from_vars(vars).map_err(|e| e.to_string())?;
    let limits = RateLimitConfig::from_vars(vars).map_err(|e| e.to_string())?;
    let frame = Frame::from_vars(vars).map_err(|e| e.to_string())?;
    let dynamo = DynamoSettings::from_vars(vars).map_err(|e| e.to_string())?;
    let trust = Trust::from_vars(vars).map_err(|e| e.to_string())?;
    let aws = Aws::load(&dynamo, &trust).await;
    let registry =
        ClientRegistry::from_vars(aws.dynamodb().clone(), vars).map_err(|e| e.to_string())?;
    // Fail the cold start, not the first request, if the crypto backend is unusable.
    secure_ml_core::auth::self_test().map_err(|e| e.to_string())?;
    // The signing keys and both table checks are independent network calls: overlap them.
    let (keys, clients_table, limits_table) = tokio::join!(
        SigningKeys::load(KeySetStore::new(key_source, aws.sdk()), settings),
        check_table(aws.dynamodb(), registry.table(), config::CLIENTS_TABLE.name),
        check_table(aws.dynamodb(), &limits.table, config::RATE_LIMIT_TABLE.name),
    );
    let keys = keys.map_err(|e| e.to_string())?;
    clients_table?;
    limits_table?;
    tracing::info!(kid = %keys.issuer().await.kid(), "signing keys loaded");
    Ok(handler::Deps {
        frame,
        registry,
        keys,
        limiter: RateLimiter::new(aws.dynamodb().clone(), limits),
    })
}
