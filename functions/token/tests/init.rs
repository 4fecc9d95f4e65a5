//! Init against a misconfigured deployment: the binary is started as Lambda would start it, and
//! missing or corrupt signing keys or a missing table must end init with exactly one ERROR line
//! naming the problem and a non-zero exit, never a panic or a function that answers 500/503 to
//! everything.
//!
//! These need DynamoDB Local with the stack's tables (`make test` exports its coordinates).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use secure_ml_core::config::Program;
use secure_ml_core::testing::{InitRun, run_init_on_stack, scratch_file};

const BIN: &str = env!("CARGO_BIN_EXE_token");

fn start(overrides: &[(&str, &str)]) -> InitRun {
    run_init_on_stack(BIN, Program::Token, overrides)
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
    assert!(!run.init_failed(), "{:#?}", run.lines);
    assert!(
        run.lines.iter().any(|l| l.contains("\"init complete\"")),
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
    run.assert_failed_naming(&[missing.to_str().unwrap()]);
}

/// What a new stack's secret holds until `admin keys generate` (template.yaml), and what the
/// README says a fresh stack logs.
#[test]
#[ignore = "needs the local stack: run make test"]
fn an_empty_signing_key_set_fails_init_naming_where_it_is_and_what_to_run() {
    let path = scratch_file("empty-keys.json", r#"{"keys":[]}"#);
    let location = format!("file {}", path.display());
    let run = start(&[("SIGNING_KEYS_FILE", path.to_str().unwrap())]);
    std::fs::remove_file(&path).unwrap();
    run.assert_failed_naming(&[&location, "admin keys generate"]);
    let error: serde_json::Value = serde_json::from_str(run.at_level("ERROR")[0]).unwrap();
    let on_aws = error["error"]
        .as_str()
        .unwrap()
        .replace(&location, "secret …");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        readme.contains(&on_aws),
        "README.md should quote what a fresh stack logs: {on_aws}"
    );
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn corrupt_signing_keys_fail_init_naming_the_file() {
    let path = scratch_file("corrupt-keys.json", "{\"keys\": [{\"kid\": 7}");
    let run = start(&[("SIGNING_KEYS_FILE", path.to_str().unwrap())]);
    std::fs::remove_file(&path).unwrap();
    run.assert_failed_naming(&[path.to_str().unwrap()]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_missing_clients_table_fails_init_naming_it() {
    let table = format!("no-such-clients-{}", std::process::id());
    let run = start(&[("CLIENTS_TABLE", &table)]);
    run.assert_failed_naming(&[&table, "CLIENTS_TABLE", "does not exist"]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_missing_rate_limit_table_fails_init_naming_it() {
    let table = format!("no-such-limits-{}", std::process::id());
    let run = start(&[("RATE_LIMIT_TABLE", &table)]);
    run.assert_failed_naming(&[&table, "RATE_LIMIT_TABLE", "does not exist"]);
}
