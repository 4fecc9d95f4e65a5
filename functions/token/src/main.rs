//! The token function: wiring only. Telemetry, configuration (read once), SDK clients (built
//! once), the signing key set (loaded once, then refreshed by
//! [`secure_ml_core::auth::SigningKeys`]); `handler::handle` does the work.

mod handler;

use aws_config::BehaviorVersion;
use lambda_http::{Error, Request, run, service_fn};
use secure_ml_core::auth::store::KeySetStore;
use secure_ml_core::auth::{ClientRegistry, KeySetSource, SigningKeys, TokenSettings};
use secure_ml_core::config::Vars;
use secure_ml_core::ratelimit::{RateLimitConfig, RateLimiter, check_table, dynamodb_client};

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
    let settings = TokenSettings::from_vars(vars).map_err(|e| e.to_string())?;
    let key_source = KeySetSource::from_vars(vars).map_err(|e| e.to_string())?;
    // Same bounded timeouts and retries as the rate limiter (DYNAMODB_ATTEMPT_TIMEOUT_MS,
    // DYNAMODB_OPERATION_TIMEOUT_MS, DYNAMODB_MAX_ATTEMPTS): a slow table becomes a 503.
    let limits = RateLimitConfig::from_vars(vars).map_err(|e| e.to_string())?;
    let dynamodb = dynamodb_client(&limits.dynamo).await;
    let registry = ClientRegistry::from_vars(dynamodb.clone(), vars).map_err(|e| e.to_string())?;
    let limits_table = limits.table.clone();
    let limiter = RateLimiter::new(dynamodb.clone(), limits);
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;

    // Fail the cold start, not the first request, if the crypto backend is unusable.
    secure_ml_core::auth::self_test().map_err(|e| e.to_string())?;
    // The signing keys and both table checks are independent network calls: overlap them.
    let (keys, clients_table, limits_table) = tokio::join!(
        SigningKeys::load(KeySetStore::new(key_source, &sdk), settings),
        check_table(&dynamodb, registry.table(), "CLIENTS_TABLE"),
        check_table(&dynamodb, &limits_table, "RATE_LIMIT_TABLE"),
    );
    let keys = keys.map_err(|e| e.to_string())?;
    clients_table?;
    limits_table?;
    tracing::info!(kid = %keys.issuer().await.kid(), "signing keys loaded");
    Ok(handler::Deps {
        registry,
        keys,
        limiter,
    })
}
