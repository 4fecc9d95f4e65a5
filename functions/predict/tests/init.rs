//! Init against a misconfigured deployment: the binary is started as Lambda would start it, and
//! a missing or corrupt resource must end init with exactly one ERROR line naming the problem
//! and a non-zero exit, never a panic or a function that answers 503 to everything.
//!
//! These need DynamoDB Local with the stack's tables (`make test` exports its coordinates).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use secure_ml_core::config::Program;
use secure_ml_core::testing::{InitRun, run_init_on_stack, scratch_table};

const BIN: &str = env!("CARGO_BIN_EXE_predict");

fn start(overrides: &[(&str, &str)]) -> InitRun {
    run_init_on_stack(BIN, Program::Predict, overrides)
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn with_every_resource_present_init_succeeds() {
    let run = start(&[]);
    assert!(!run.init_failed(), "{:#?}", run.lines);
    assert!(
        run.lines.iter().any(|l| l.contains("\"init complete\"")),
        "{:#?}",
        run.lines
    );
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_missing_rate_limit_table_fails_init_naming_it() {
    let table = format!("no-such-table-{}", std::process::id());
    let run = start(&[("RATE_LIMIT_TABLE", &table)]);
    run.assert_failed_naming(&[&table, "RATE_LIMIT_TABLE", "does not exist"]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_corrupt_jwks_item_fails_init_naming_it() {
    let table = scratch_table("corrupt-jwks", Some("{\"keys\": [{\"kty\": "));
    let run = start(&[("RATE_LIMIT_TABLE", &table)]);
    run.assert_failed_naming(&[&table, "jwks", "RATE_LIMIT_TABLE"]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_jwks_with_a_key_of_the_wrong_type_fails_init() {
    let table = scratch_table(
        "rsa-jwks",
        Some(r#"{"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"}]}"#),
    );
    let run = start(&[("RATE_LIMIT_TABLE", &table)]);
    run.assert_failed_naming(&[]);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_missing_setting_fails_init_naming_the_variable() {
    let run = start(&[("TOKEN_ISSUER", "")]);
    run.assert_failed_naming(&["TOKEN_ISSUER"]);
}

/// A JWKS that does not exist yet is not an init failure: keys are generated after the first
/// deploy, and the verifier reloads on the first token with an unknown `kid`. Until then every
/// token is refused, which the WARN line says.
#[test]
#[ignore = "needs the local stack: run make test"]
fn a_jwks_not_created_yet_is_a_warning_not_an_init_failure() {
    let table = scratch_table("no-jwks", None);
    let run = start(&[("RATE_LIMIT_TABLE", &table)]);
    assert!(
        run.at_level("WARN")
            .iter()
            .any(|line| line.contains("JWKS is empty")),
        "{:#?}",
        run.lines
    );
    assert!(!run.init_failed(), "{:#?}", run.lines);
}

#[test]
#[ignore = "needs the local stack: run make test"]
fn a_malformed_log_filter_fails_init_naming_rust_log() {
    let run = start(&[("RUST_LOG", "info,[")]);
    run.assert_failed_naming(&["RUST_LOG"]);
}
