//! What `template.yaml` lets each function do with the data it shares, checked against the code
//! that names that data: the rate-limit items each function may write (its group's `pk` prefix),
//! the one item the prediction function may read (the public JWKS), and the secret holding the
//! private keys, which only its reader and the operators may touch, and only the operators
//! change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use secure_ml_core::auth::Tier;
use secure_ml_core::auth::store::JWKS_ITEM_KEY;
use secure_ml_core::ratelimit::Group;
use serde_yaml::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn template() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/template.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// A value's text: a plain string, or `!Ref X` / `!GetAtt X.Arn` as written.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, text(&tagged.value)),
        other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
    }
}

fn list(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().map(text).collect(),
        Value::Null => Vec::new(),
        one => vec![text(one)],
    }
}

/// Every statement of a function's inline policies, with its actions listed.
fn statements(template: &Value, function: &str) -> Vec<(Vec<String>, Value)> {
    let policies = &template["Resources"][function]["Properties"]["Policies"];
    let mut out = Vec::new();
    for policy in policies.as_sequence().unwrap() {
        for statement in policy["Statement"].as_sequence().unwrap() {
            assert_eq!(
                text(&statement["Effect"]),
                "Allow",
                "{function}: {statement:?}"
            );
            out.push((list(&statement["Action"]), statement.clone()));
        }
    }
    out
}

/// The statements of `function` granting `action` on `resource`.
fn grants(template: &Value, function: &str, action: &str, resource: &str) -> Vec<Value> {
    statements(template, function)
        .into_iter()
        .filter(|(actions, s)| {
            actions.iter().any(|a| a == action) && text(&s["Resource"]) == resource
        })
        .map(|(_, s)| s)
        .collect()
}

/// The partition keys a statement's condition allows, with the operator that compares them.
fn leading_keys(statement: &Value) -> Option<(String, Vec<String>)> {
    let condition = statement["Condition"].as_mapping()?;
    condition.iter().find_map(|(operator, keys)| {
        let allowed = &keys["dynamodb:LeadingKeys"];
        (!allowed.is_null()).then(|| (text(operator), list(allowed)))
    })
}

const RATE_LIMITS: &str = "!GetAtt RateLimitTable.Arn";

#[test]
fn each_function_writes_only_its_own_groups_rate_limit_items() {
    let template = template();
    for (function, group) in [
        ("PredictFunction", Group::Predict(Tier::Free)),
        ("TokenFunction", Group::Token),
    ] {
        let writes = grants(&template, function, "dynamodb:UpdateItem", RATE_LIMITS);
        assert_eq!(
            writes.len(),
            1,
            "{function}: one UpdateItem grant on the rate-limit table"
        );
        assert_eq!(
            leading_keys(&writes[0]),
            Some((
                "ForAllValues:StringLike".to_owned(),
                vec![format!("{}#*", group.name())]
            )),
            "{function}: its limiter's items are `{}#<client key>`",
            group.name()
        );
        for write in [
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        ] {
            assert!(
                statements(&template, function)
                    .iter()
                    .all(|(actions, _)| !actions.iter().any(|a| a == write || a == "dynamodb:*")),
                "{function} may not {write}"
            );
        }
    }
}

#[test]
fn the_prediction_function_reads_only_the_jwks_item_and_no_secret() {
    let template = template();
    let reads = grants(
        &template,
        "PredictFunction",
        "dynamodb:GetItem",
        RATE_LIMITS,
    );
    assert_eq!(reads.len(), 1, "one GetItem grant on the rate-limit table");
    assert_eq!(
        leading_keys(&reads[0]),
        Some((
            "ForAllValues:StringEquals".to_owned(),
            vec![JWKS_ITEM_KEY.to_owned()]
        ))
    );
    for (actions, statement) in statements(&template, "PredictFunction") {
        assert!(
            actions.iter().all(|a| a.starts_with("dynamodb:")),
            "the prediction function needs nothing but DynamoDB: {statement:?}"
        );
        assert_eq!(text(&statement["Resource"]), RATE_LIMITS, "{statement:?}");
    }
}

#[test]
fn every_secret_is_closed_to_all_but_its_readers_and_the_operators() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let secrets: Vec<String> = resources
        .iter()
        .filter(|(_, r)| text(&r["Type"]) == "AWS::SecretsManager::Secret")
        .map(|(name, _)| text(name))
        .collect();
    assert!(!secrets.is_empty());
    let functions: Vec<String> = resources
        .iter()
        .filter(|(_, r)| text(&r["Type"]) == "AWS::Serverless::Function")
        .map(|(name, _)| text(name))
        .collect();
    let operator = "!Ref OperatorPrincipalArn".to_owned();

    for secret in &secrets {
        let reference = format!("!Ref {secret}");
        let mut readers: Vec<String> = functions
            .iter()
            .filter(|f| {
                !grants(&template, f, "secretsmanager:GetSecretValue", &reference).is_empty()
            })
            .map(|f| format!("!GetAtt {f}Role.Arn"))
            .collect();
        readers.push(operator.clone());

        let policies: Vec<&Value> = resources
            .values()
            .filter(|r| {
                text(&r["Type"]) == "AWS::SecretsManager::ResourcePolicy"
                    && text(&r["Properties"]["SecretId"]) == reference
            })
            .collect();
        assert_eq!(policies.len(), 1, "{secret}: one resource policy");
        let properties = &policies[0]["Properties"];
        assert_eq!(
            properties["BlockPublicPolicy"],
            Value::Bool(true),
            "{secret}"
        );
        let statements = properties["ResourcePolicy"]["Statement"]
            .as_sequence()
            .unwrap();
        let deny_all_but = |who: &[String]| {
            statements.iter().find(|s| {
                text(&s["Effect"]) == "Deny"
                    && text(&s["Principal"]) == "*"
                    && list(&s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]) == who
            })
        };
        let everything = deny_all_but(&readers)
            .unwrap_or_else(|| panic!("{secret}: no deny for all but {readers:?}"));
        assert_eq!(
            list(&everything["Action"]),
            ["secretsmanager:*"],
            "{secret}"
        );
        let writes = deny_all_but(std::slice::from_ref(&operator))
            .unwrap_or_else(|| panic!("{secret}: no deny of changes for all but the operators"));
        assert_eq!(
            list(&writes["NotAction"]),
            [
                "secretsmanager:GetSecretValue",
                "secretsmanager:DescribeSecret"
            ],
            "{secret}: everything but reading is the operators' alone"
        );
    }
}
