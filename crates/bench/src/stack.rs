//! The local stack the benchmarks run against (set up by `scripts/bench.sh`), and the
//! environment each function gets: Lambda's own variables and the stack's values of the
//! variables the configuration contract says the function reads — nothing from the harness's
//! environment leaks into a function.

use std::path::PathBuf;

use secure_ml_core::auth::token::unix_now;
use secure_ml_core::auth::{KeySet, SCOPE_PREDICT, Tier, TokenIssuer, TokenSettings};
use secure_ml_core::aws::{Aws, DynamoSettings, Trust};
use secure_ml_core::config::{self, Program, Vars};

use crate::Error;
use crate::function::Kind;

/// What `scripts/bench.sh` exported: DynamoDB Local, table names, keys, a client.
#[derive(Debug, Clone)]
pub struct Stack {
    pub endpoint: String,
    pub region: String,
    pub rate_limit_table: String,
    pub clients_table: String,
    pub signing_keys_file: PathBuf,
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
        let program = match kind {
            Kind::Predict => Program::Predict,
            Kind::Token => Program::Token,
            Kind::Null | Kind::RuntimeNull => return own(env),
        };
        // The stack's values of the variables the function reads; every other variable of
        // the configuration contract keeps its default, which is the template's (a test in
        // secure-ml-core holds the two together). Files stand in for the secrets.
        let stack = [
            (config::RATE_LIMIT_TABLE.name, self.rate_limit_table.clone()),
            (config::CLIENTS_TABLE.name, self.clients_table.clone()),
            (config::TOKEN_ISSUER.name, self.issuer.clone()),
            (config::TOKEN_AUDIENCE.name, self.audience.clone()),
            (
                config::SIGNING_KEYS_FILE.name,
                self.signing_keys_file.display().to_string(),
            ),
        ];
        for var in config::read_by(program) {
            if let Some((name, value)) = stack.iter().find(|(name, _)| *name == var.name) {
                env.push((name, value.clone()));
            }
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

/// A DynamoDB client built exactly as the functions build theirs (same helper, the contract's
/// timeouts and retries, the same trusted roots); endpoint, region, credentials and
/// `SSL_CERT_FILE` from this process's environment.
pub async fn dynamodb() -> Result<aws_sdk_dynamodb::Client, Error> {
    let vars = Vars::default();
    let settings = DynamoSettings::from_vars(&vars)?;
    let trust = Trust::from_vars(&Vars::from_env())?;
    Ok(Aws::load(&settings, &trust).await.dynamodb().clone())
}
