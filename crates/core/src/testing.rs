//! Test support for the crates built on this one (feature `test-support`, enabled only as a
//! dev-dependency): DynamoDB clients whose every response comes from `aws-smithy-mocks` rules.
//!
//! `aws_smithy_mocks::mock_client!` needs the SDK's `test-util` feature, which changes the
//! features of the whole SDK and so makes the test build and the build that `cargo lambda
//! watch` runs compile it twice. This builder sets the same test defaults by hand instead.

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_smithy_mocks::{MockResponseInterceptor, create_mock_http_client};

pub use aws_smithy_mocks::{Rule, RuleMode, mock};

/// A DynamoDB client answered by `rules` (matched per `mode`); an unmatched request fails the
/// call, so no test can reach a real endpoint.
pub fn mock_dynamodb(mode: RuleMode, rules: &[&Rule]) -> aws_sdk_dynamodb::Client {
    let interceptor = rules.iter().fold(
        MockResponseInterceptor::new().rule_mode(mode),
        |interceptor, rule| interceptor.with_rule(rule),
    );
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Access lines a test frame wrote, shared with the frame.
pub type AccessLog = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// A request frame for handler tests: its access lines kept in memory (the returned log), and
/// a penalty of `rejections` per minute per source on the system clock.
pub fn frame_with_penalty(rejections: u32) -> (crate::frame::Frame, AccessLog) {
    let (sink, log) = crate::frame::access::Sink::memory();
    let policy = crate::frame::penalty::PenaltyPolicy {
        limit: rejections,
        window_ms: 60_000,
    };
    let clock = std::sync::Arc::new(crate::ratelimit::SystemClock);
    (crate::frame::Frame::new(policy, sink, clock), log)
}

/// [`frame_with_penalty`] with a penalty no test reaches unless it means to.
pub fn frame() -> crate::frame::Frame {
    frame_with_penalty(u32::MAX).0
}

/// The JSON lines of an access log.
pub fn access_lines(log: &AccessLog) -> Vec<serde_json::Value> {
    let bytes = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// What a function binary printed and how it ended, when started outside Lambda to exercise its
/// init: [`run_init`].
#[derive(Debug)]
pub struct InitRun {
    /// The exit code (`None`: killed by a signal, or by [`run_init`]'s time limit).
    pub code: Option<i32>,
    /// Every line of stdout and stderr, stdout first.
    pub lines: Vec<String>,
}

impl InitRun {
    /// The log lines at `level` (the JSON logs' `"level"` field).
    pub fn at_level(&self, level: &str) -> Vec<&str> {
        let needle = format!("\"level\":\"{level}\"");
        self.lines
            .iter()
            .filter(|line| line.contains(&needle))
            .map(String::as_str)
            .collect()
    }
}

/// Runs the function binary `bin` with exactly `env` (nothing inherited but `PATH`), as the
/// Lambda service would start it, and collects its output; killed after `limit`.
/// `AWS_LAMBDA_RUNTIME_API` points at a closed port unless `env` sets it, so a binary whose init
/// succeeds stops at its first call to the Runtime API.
pub fn run_init(
    bin: &std::path::Path,
    env: &[(&str, &str)],
    limit: std::time::Duration,
) -> std::io::Result<InitRun> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};

    let mut command = Command::new(bin);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_FUNCTION_NAME", "init-test")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let started = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if started.elapsed() > limit {
            child.kill()?;
            child.wait()?;
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut out)?;
    }
    Ok(InitRun {
        code,
        lines: out.lines().map(str::to_owned).collect(),
    })
}

impl InitRun {
    /// Asserts that init failed: exit code 1, exactly one ERROR line, saying `init failed` and
    /// containing every one of `names`, and no panic anywhere in the output.
    pub fn assert_failed_naming(&self, names: &[&str]) {
        assert_eq!(self.code, Some(1), "exit code; output: {:#?}", self.lines);
        let errors = self.at_level("ERROR");
        assert_eq!(errors.len(), 1, "exactly one ERROR line: {:#?}", self.lines);
        assert!(errors[0].contains("init failed"), "{}", errors[0]);
        for name in names {
            assert!(
                errors[0].contains(name),
                "{name:?} missing from: {}",
                errors[0]
            );
        }
        // Nothing else: in particular no plain-text second copy of the error (what returning it
        // from `main` would print).
        for line in &self.lines {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
                "every output line is a JSON log line, not {line:?}; output: {:#?}",
                self.lines
            );
        }
        assert!(
            !self.lines.iter().any(|l| l.contains("panicked")),
            "{:#?}",
            self.lines
        );
    }

    /// Whether some line says init failed.
    pub fn init_failed(&self) -> bool {
        self.lines.iter().any(|l| l.contains("init failed"))
    }
}

/// Runs the function binary `bin` of `program` with the local stack's environment: every
/// variable of the configuration contract it reads that the test process has (make test exports
/// the stack's), what Lambda itself sets, and `overrides` on top (an empty value unsets).
pub fn run_init_on_stack(
    bin: &str,
    program: crate::config::Program,
    overrides: &[(&str, &str)],
) -> InitRun {
    let platform = crate::config::PLATFORM.iter().copied();
    let contract = crate::config::read_by(program).map(|var| var.name);
    let mut env: Vec<(String, String)> = Vec::new();
    for name in platform.clone().chain(["AWS_ENDPOINT_URL_DYNAMODB"]) {
        if std::env::var(name).is_err() {
            panic!("{name} is not set: needs the local stack, run `make test`");
        }
    }
    for name in platform.chain(contract) {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_owned(), value));
        }
    }
    for (name, value) in overrides {
        env.retain(|(n, _)| n != name);
        env.push(((*name).to_owned(), (*value).to_owned()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    run_init(
        std::path::Path::new(bin),
        &env,
        std::time::Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
}

/// A rate-limit table of its own in the local stack's DynamoDB, named after this test process
/// and `name`, holding `jwks` (the text of its `jwks` item) when given: for a test to break the
/// public keys with, without touching the stack's table.
pub fn scratch_table(name: &str, jwks: Option<&str>) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
        ScalarAttributeType,
    };
    let table = format!("smla-init-{}-{name}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    runtime.block_on(async {
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = KeySchemaElement::builder()
            .attribute_name("pk")
            .key_type(KeyType::Hash)
            .build();
        client
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk").unwrap_or_else(|e| panic!("{e}")))
            .key_schema(key.unwrap_or_else(|e| panic!("{e}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create table {table}: {e}"));
        if let Some(jwks) = jwks {
            client
                .put_item()
                .table_name(&table)
                .item(
                    "pk",
                    AttributeValue::S(crate::auth::store::JWKS_ITEM_KEY.into()),
                )
                .item("document", AttributeValue::S(jwks.into()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put the jwks item into {table}: {e}"));
        }
    });
    table
}

/// A file named after this test process holding `contents`, for a test to break a setting with.
pub fn scratch_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("smla-init-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}
