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
