//! The configuration contract (`secure_ml_core::config::VARIABLES`) against the places that
//! restate it: `template.yaml`'s environment blocks and parameter defaults, and the README's
//! configuration table. (The local stack's function environment and the benchmark harness's
//! derive from the contract itself, through `admin config vars` and `config::read_by`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use secure_ml_core::config::{self, Presence, Program, VARIABLES, Var};
use serde_yaml::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn template() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// What a template value says: a literal, or `!Ref Parameter`.
#[derive(Debug, PartialEq)]
enum Setting {
    Literal(String),
    Parameter(String),
    Other,
}

fn setting(value: &Value) -> Setting {
    match value {
        Value::String(s) => Setting::Literal(s.clone()),
        Value::Number(n) => Setting::Literal(n.to_string()),
        Value::Tagged(tagged) if tagged.tag == "!Ref" => match &tagged.value {
            Value::String(name) => Setting::Parameter(name.clone()),
            _ => Setting::Other,
        },
        _ => Setting::Other,
    }
}

/// The environment a function gets: the template's globals, then its own variables.
fn environment(template: &Value, logical_id: &str) -> BTreeMap<String, Setting> {
    let blocks = [
        &template["Globals"]["Function"]["Environment"]["Variables"],
        &template["Resources"][logical_id]["Properties"]["Environment"]["Variables"],
    ];
    let mut env = BTreeMap::new();
    for block in blocks {
        if let Value::Mapping(map) = block {
            for (name, value) in map {
                env.insert(name.as_str().unwrap().to_owned(), setting(value));
            }
        }
    }
    env
}

fn parameter_default(template: &Value, name: &str) -> String {
    match &template["Parameters"][name]["Default"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("parameter {name} has no default: {other:?}"),
    }
}

#[test]
fn the_template_sets_only_contract_variables_for_the_function_that_reads_them() {
    let template = template();
    for (logical_id, program) in [
        ("PredictFunction", Program::Predict),
        ("TokenFunction", Program::Token),
    ] {
        for name in environment(&template, logical_id).keys() {
            let var = config::lookup(name)
                .unwrap_or_else(|| panic!("{logical_id} sets {name}, which no program reads"));
            assert!(
                var.read_by(program),
                "{logical_id} sets {name}, but the {} function does not read it",
                program.name()
            );
            assert!(
                !var.local_only,
                "{logical_id} sets {name}, which is for the local stack only"
            );
        }
    }
}

#[test]
fn the_template_sets_every_variable_a_function_requires() {
    let template = template();
    for (logical_id, program) in [
        ("PredictFunction", Program::Predict),
        ("TokenFunction", Program::Token),
    ] {
        let env = environment(&template, logical_id);
        for var in config::read_by(program).filter(|v| !v.local_only) {
            if matches!(var.presence, Presence::Required | Presence::OneOf(_)) {
                assert!(
                    env.contains_key(var.name),
                    "{logical_id} does not set {}, which the {} function requires",
                    var.name,
                    program.name()
                );
            }
        }
    }
}

#[test]
fn the_templates_values_and_parameter_defaults_are_the_contracts_defaults() {
    let template = template();
    for logical_id in ["PredictFunction", "TokenFunction"] {
        for (name, setting) in environment(&template, logical_id) {
            let var = config::lookup(&name).unwrap();
            let Some(default) = var.default() else {
                continue;
            };
            let value = match setting {
                Setting::Literal(value) => value,
                Setting::Parameter(parameter) => parameter_default(&template, &parameter),
                Setting::Other => continue,
            };
            assert_eq!(
                value, default,
                "{logical_id}: {name} is {value} in template.yaml but defaults to {default} in the code"
            );
        }
    }
}

fn readers(var: &Var) -> String {
    let names: Vec<&str> = var.readers.iter().map(|p| p.name()).collect();
    names.join(", ")
}

/// The README's configuration table as the contract says it should read.
fn expected_table() -> String {
    let mut table = String::from("| variable | read by | default | meaning |\n|---|---|---|---|\n");
    for var in VARIABLES {
        let default = match var.presence {
            Presence::Default(value) => format!("`{value}`"),
            Presence::Required => "required".to_owned(),
            Presence::OneOf(other) => format!("this or `{other}`"),
            Presence::Optional => "—".to_owned(),
        };
        table.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            var.name,
            readers(var),
            default,
            var.meaning
        ));
    }
    table
}

#[test]
fn the_readme_configuration_table_is_the_contract() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let expected = expected_table();
    let start = readme
        .find("| variable | read by |")
        .expect("README.md has a configuration table");
    let actual: String = readme[start..]
        .lines()
        .take_while(|line| line.starts_with('|'))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        actual, expected,
        "README.md's configuration table differs from config::VARIABLES; it should read:\n{expected}"
    );
}

#[test]
fn every_default_parses_where_it_is_used() {
    // Building every configuration from the defaults alone (plus the required names) proves
    // each default is a valid value of its type.
    let vars = config::Vars::from_pairs([
        ("RATE_LIMIT_TABLE", "t"),
        ("CLIENTS_TABLE", "c"),
        ("TOKEN_ISSUER", "i"),
        ("TOKEN_AUDIENCE", "a"),
        ("SIGNING_KEYS_FILE", "/k"),
    ]);
    secure_ml_core::ratelimit::RateLimitConfig::from_vars(&vars).unwrap();
    secure_ml_core::auth::TokenSettings::from_vars(&vars).unwrap();
    secure_ml_core::auth::VerifierConfig::from_vars(&vars).unwrap();
    secure_ml_core::frame::penalty::PenaltyPolicy::from_vars(&vars).unwrap();
    secure_ml_core::telemetry::log_filter(&vars).unwrap();
}
