//! Init against a misconfigured deployment: the binary is started as Lambda would start it, and
//! missing or corrupt signing keys or a missing table must end init with exactly one ERROR line
//! naming the problem and a non-zero exit, never a panic or a function that answers 500/503 to
//! everything.
//!
//! These need DynamoDB Local with the stack's tables (`make test` exports its coordinates).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use secure_ml_core::testing::{InitRun, run_init};

const BIN: &str = env!("CARGO_BIN_EXE_token");
const NEEDS_STACK: &str = "needs the local stack: run `make test`";

/// The stack's settings for this function, with `overrides` replacing or adding variables.
fn start(overrides: &[(&str, &str)]) -> InitRun {
    let mut env: Vec<(String, String)> = [
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "RATE_LIMIT_TABLE",
        "CLIENTS_TABLE",
        "SIGNING_KEYS_FILE",
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
        run.lines.iter().any(|l| l.contains("signing keys loaded")),
        "{:#?}",
        run.lines
    );
    assert!(
        !run.lines.iter().any(|l| l.contains("init failed")),
        "{:#?}",
        run.lines
    );
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn missing_signing_keys_fail_init_naming_the_file() {
    let missing =
        std::env::temp_dir().join(format!("smla-init-{}-absent.json", std::process::id()));
    let run = start(&[("SIGNING_KEYS_FILE", missing.to_str().unwrap())]);
    assert_init_failed_naming(&run, &[missing.to_str().unwrap()]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn corrupt_signing_keys_fail_init_naming_the_file() {
    let path = scratch_file("corrupt-keys.json", "{\"keys\": [{\"kid\": 7}");
    let run = start(&[("SIGNING_KEYS_FILE", path.to_str().unwrap())]);
    std::fs::remove_file(&path).unwrap();
    assert_init_failed_naming(&run, &[path.to_str().unwrap()]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_missing_clients_table_fails_init_naming_it() {
    let table = format!("no-such-clients-{}", std::process::id());
    let run = start(&[("CLIENTS_TABLE", &table)]);
    assert_init_failed_naming(&run, &[&table, "CLIENTS_TABLE", "does not exist"]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_missing_rate_limit_table_fails_init_naming_it() {
    let table = format!("no-such-limits-{}", std::process::id());
    let run = start(&[("RATE_LIMIT_TABLE", &table)]);
    assert_init_failed_naming(&run, &[&table, "RATE_LIMIT_TABLE", "does not exist"]);
}
