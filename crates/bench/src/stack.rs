//! The local stack the benchmarks run against (set up by `scripts/bench.sh`), and the
//! environment each function gets: Lambda's own variables, the template's globals, and the
//! function's variables — nothing from the harness's environment leaks into a function.

use std::path::PathBuf;

use secure_ml_core::auth::token::unix_now;
use secure_ml_core::auth::{KeySet, SCOPE_PREDICT, Tier, TokenIssuer, TokenSettings};
use secure_ml_core::config::Vars;
use secure_ml_core::ratelimit::{DynamoSettings, dynamodb_client};

use crate::Error;
use crate::function::Kind;

/// The template's DynamoDB timeouts and retries (`Globals.Function.Environment`).
pub const DYNAMO_SETTINGS: [(&str, &str); 3] = [
    ("DYNAMODB_ATTEMPT_TIMEOUT_MS", "250"),
    ("DYNAMODB_OPERATION_TIMEOUT_MS", "800"),
    ("DYNAMODB_MAX_ATTEMPTS", "3"),
];

/// What `scripts/bench.sh` exported: DynamoDB Local, table names, keys, a client.
#[derive(Debug, Clone)]
pub struct Stack {
    pub endpoint: String,
    pub region: String,
    pub rate_limit_table: String,
    pub clients_table: String,
    pub signing_keys_file: PathBuf,
    pub jwks_file: PathBuf,
    pub issuer: String,
    pub audience: String,
    /// A client created with `admin client create` (for `POST /token`).
    pub client_id: String,
    pub client_secret: String,
}

impl Stack {
    pub fn from_env() -> Result<Self, Error> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    Error::from(format!("{name} is not set (run through scripts/bench.sh)"))
                })
        };
        Ok(Self {
            endpoint: var("AWS_ENDPOINT_URL_DYNAMODB")?,
            region: var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
            rate_limit_table: var("RATE_LIMIT_TABLE")?,
            clients_table: var("CLIENTS_TABLE")?,
            signing_keys_file: var("SIGNING_KEYS_FILE")?.into(),
            jwks_file: var("JWKS_FILE")?.into(),
            issuer: var("TOKEN_ISSUER")?,
            audience: var("TOKEN_AUDIENCE")?,
            client_id: var("BENCH_CLIENT_ID")?,
            client_secret: var("BENCH_CLIENT_SECRET")?,
        })
    }

    /// The environment of `kind` under the Runtime API at `runtime_api`.
    pub fn function_env(&self, kind: Kind, runtime_api: &str) -> Vec<(String, String)> {
        let name = format!("smla-bench-{}", kind.name());
        let mut env: Vec<(&str, String)> = vec![
            // Lambda's reserved variables.
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]00000000000000000000000000000000".to_owned(),
            ),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_DEFAULT_REGION", self.region.clone()),
            ("TZ", ":UTC".to_owned()),
            // The execution role's credentials; locally, DynamoDB Local's dummies.
            ("AWS_ACCESS_KEY_ID", "local".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.endpoint.clone()),
        ];
        if kind == Kind::Null {
            return own(env);
        }
        // template.yaml Globals.Function.Environment.
        env.extend([
            ("RATE_LIMIT_TABLE", self.rate_limit_table.clone()),
            ("TOKEN_ISSUER", self.issuer.clone()),
            ("TOKEN_AUDIENCE", self.audience.clone()),
            ("RATE_LIMIT_MODE", "enforce".to_owned()),
            ("RATE_LIMIT_FAIL_POLICY", "fail-closed".to_owned()),
            ("METRICS_NAMESPACE", "SecureMlApi".to_owned()),
        ]);
        env.extend(DYNAMO_SETTINGS.map(|(n, v)| (n, v.to_owned())));
        // Each function's own variables, the template's defaults; files stand in for secrets.
        match kind {
            Kind::Predict => env.extend([
                ("JWKS_FILE", self.jwks_file.display().to_string()),
                ("PREDICT_RATE_PER_MINUTE", "60".to_owned()),
                ("PREDICT_BURST", "20".to_owned()),
                ("PREMIUM_MULTIPLIER", "5".to_owned()),
            ]),
            Kind::Token => env.extend([
                ("CLIENTS_TABLE", self.clients_table.clone()),
                (
                    "SIGNING_KEYS_FILE",
                    self.signing_keys_file.display().to_string(),
                ),
                ("TOKEN_LIFETIME_SECONDS", "900".to_owned()),
                ("TOKEN_RATE_PER_MINUTE", "10".to_owned()),
                ("TOKEN_BURST", "5".to_owned()),
            ]),
            Kind::Null => {}
        }
        own(env)
    }

    /// A fresh `predict`-scoped access token, signed with the stack's active key.
    pub fn mint_token(&self) -> Result<String, Error> {
        let json = std::fs::read_to_string(&self.signing_keys_file)?;
        let set = KeySet::from_json(&json)?;
        let issuer = TokenIssuer::new(
            &set,
            TokenSettings {
                issuer: self.issuer.clone(),
                audience: self.audience.clone(),
                lifetime_seconds: 900,
            },
        )?;
        let issued = issuer.issue(
            &self.client_id,
            &[SCOPE_PREDICT.to_owned()],
            Tier::Free,
            unix_now(),
        )?;
        Ok(issued.access_token)
    }
}

fn own(env: Vec<(&str, String)>) -> Vec<(String, String)> {
    env.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
}

/// A DynamoDB client built exactly as the functions build theirs (same helper, same template
/// timeouts and retries); endpoint, region and credentials from this process's environment.
pub async fn dynamodb() -> Result<aws_sdk_dynamodb::Client, Error> {
    let settings = DynamoSettings::from_vars(&Vars::from_pairs(DYNAMO_SETTINGS))?;
    Ok(dynamodb_client(&settings).await)
}
