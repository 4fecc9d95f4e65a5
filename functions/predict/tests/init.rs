//! Init against a misconfigured deployment: the binary is started as Lambda would start it, and
//! a missing or corrupt resource must end init with exactly one ERROR line naming the problem
//! and a non-zero exit, never a panic or a function that answers 503 to everything.
//!
//! These need DynamoDB Local with the stack's tables (`make test` exports its coordinates).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use secure_ml_core::testing::{InitRun, run_init};

const BIN: &str = env!("CARGO_BIN_EXE_predict");
const NEEDS_STACK: &str = "needs the local stack: run `make test`";

/// The stack's settings for this function, with `overrides` replacing or adding variables.
fn start(overrides: &[(&str, &str)]) -> InitRun {
    let mut env: Vec<(String, String)> = [
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "RATE_LIMIT_TABLE",
        "JWKS_FILE",
        "TOKEN_ISSUER",
        "TOKEN_AUDIENCE",
    ]
    .iter()
    .map(|name| {
        let value = std::env::var(name).unwrap_or_else(|_| panic!("{name}: {NEEDS_STACK}"));
        ((*name).to_owned(), value)
    })
    .collect();
    for (name, value) in overrides {
        env.retain(|(n, _)| n != name);
        env.push(((*name).to_owned(), (*value).to_owned()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    run_init(Path::new(BIN), &env, Duration::from_secs(30)).unwrap()
}

/// Init failed with one ERROR line that contains every one of `names`, and nothing panicked.
fn assert_init_failed_naming(run: &InitRun, names: &[&str]) {
    assert_eq!(run.code, Some(1), "exit code; output: {:#?}", run.lines);
    let errors = run.at_level("ERROR");
    assert_eq!(errors.len(), 1, "exactly one ERROR line: {:#?}", run.lines);
    assert!(errors[0].contains("init failed"), "{}", errors[0]);
    for name in names {
        assert!(
            errors[0].contains(name),
            "{name:?} missing from: {}",
            errors[0]
        );
    }
    assert!(
        !run.lines.iter().any(|l| l.contains("panicked")),
        "{:#?}",
        run.lines
    );
}

fn scratch_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("smla-init-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn with_every_resource_present_init_succeeds() {
    let run = start(&[]);
    assert!(
        run.at_level("ERROR")
            .iter()
            .all(|line| !line.contains("init failed")),
        "{:#?}",
        run.lines
    );
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_missing_rate_limit_table_fails_init_naming_it() {
    let table = format!("no-such-table-{}", std::process::id());
    let run = start(&[("RATE_LIMIT_TABLE", &table)]);
    assert_init_failed_naming(&run, &[&table, "RATE_LIMIT_TABLE", "does not exist"]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_corrupt_jwks_file_fails_init_naming_it() {
    let path = scratch_file("corrupt-jwks.json", "{\"keys\": [{\"kty\": ");
    let run = start(&[("JWKS_FILE", path.to_str().unwrap())]);
    std::fs::remove_file(&path).unwrap();
    assert_init_failed_naming(&run, &[path.to_str().unwrap()]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_jwks_with_a_key_of_the_wrong_type_fails_init() {
    let path = scratch_file(
        "rsa-jwks.json",
        r#"{"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"}]}"#,
    );
    let run = start(&[("JWKS_FILE", path.to_str().unwrap())]);
    std::fs::remove_file(&path).unwrap();
    assert_init_failed_naming(&run, &[]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_missing_setting_fails_init_naming_the_variable() {
    let run = start(&[("TOKEN_ISSUER", "")]);
    assert_init_failed_naming(&run, &["TOKEN_ISSUER"]);
}

/// A JWKS that does not exist yet is not an init failure: keys are generated after the first
/// deploy, and the verifier reloads on the first token with an unknown `kid`. Until then every
/// token is refused, which the WARN line says.
#[test]
#[ignore = "needs the local stack: run make test"]
fn a_jwks_not_created_yet_is_a_warning_not_an_init_failure() {
    let missing =
        std::env::temp_dir().join(format!("smla-init-{}-absent.json", std::process::id()));
    let run = start(&[("JWKS_FILE", missing.to_str().unwrap())]);
    assert!(
        run.at_level("WARN")
            .iter()
            .any(|line| line.contains("JWKS is empty")),
        "{:#?}",
        run.lines
    );
    assert!(
        !run.lines.iter().any(|l| l.contains("init failed")),
        "{:#?}",
        run.lines
    );
}
