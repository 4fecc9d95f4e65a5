//! The local stack against the deployed one, so that they cannot drift apart: `cargo lambda
//! watch`'s router (`[workspace.metadata.lambda.watch.router]` in Cargo.toml), the OpenAPI
//! document's paths and servers, and every URL path the README, the dev script, the smoke test
//! and the end-to-end tests request, each checked against the HTTP API routes of template.yaml.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The local stack's port (`make dev`'s `DEV_WATCH_PORT` default).
const DEV_PORT: &str = "9000";

/// Paths that are not routes but are requested on purpose: watch's Lambda invoke API (its
/// prefix), and the unknown path the smoke test expects a 404 for.
const NOT_ROUTES: &[&str] = &["/2015-03-31/functions/", "/no/such/path"];

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The HTTP API's routes in template.yaml: each event path with the binary of the function it
/// invokes, and the binary of the function behind `$default` (the event without a path).
struct TemplateRoutes {
    paths: BTreeMap<String, String>,
    default: String,
}

fn template_routes() -> TemplateRoutes {
    let template = yaml("template.yaml");
    let mut paths = BTreeMap::new();
    let mut default = None;
    let Value::Mapping(resources) = &template["Resources"] else {
        panic!("template.yaml has no Resources");
    };
    for (id, resource) in resources {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{id:?} names no Binary"))
            .to_owned();
        let Value::Mapping(events) = &resource["Properties"]["Events"] else {
            continue;
        };
        for (name, event) in events {
            if event["Type"] != "HttpApi" {
                continue;
            }
            let properties = &event["Properties"];
            match properties["Path"].as_str() {
                Some(path) => {
                    // The router sends every method of a path to its function, which answers
                    // a wrong one with 405: that is only what AWS does for ANY routes.
                    assert_eq!(
                        properties["Method"].as_str(),
                        Some("ANY"),
                        "{id:?} {name:?}: a route for one method would make API Gateway answer \
                         the others itself; the local router could not follow"
                    );
                    let previous = paths.insert(path.to_owned(), binary.clone());
                    assert!(previous.is_none(), "{path} is routed twice");
                }
                None => {
                    assert!(default.is_none(), "two $default routes");
                    default = Some(binary.clone());
                }
            }
        }
    }
    TemplateRoutes {
        paths,
        default: default.expect("template.yaml has a $default route"),
    }
}

/// `[workspace.metadata.lambda.watch.router]` as cargo-lambda reads it: from `cargo metadata`.
fn watch_router() -> BTreeMap<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(format!("{ROOT}/Cargo.toml"))
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo metadata: {output:?}");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let router = metadata["metadata"]["lambda"]["watch"]["router"]
        .as_object()
        .expect("Cargo.toml has [workspace.metadata.lambda.watch.router]");
    router
        .iter()
        .map(|(path, function)| {
            let function = function.as_str().unwrap_or_else(|| {
                panic!("router entry {path}: one function for every method, as the template's ANY routes")
            });
            (path.clone(), function.to_owned())
        })
        .collect()
}

#[test]
fn the_watch_router_routes_as_the_template_does() {
    let template = template_routes();
    let mut expected = template.paths.clone();
    // `$default`: every other path. A catch-all does not match `/` itself.
    expected.insert("/{*path}".to_owned(), template.default.clone());
    expected.insert("/".to_owned(), template.default);
    assert_eq!(
        watch_router(),
        expected,
        "Cargo.toml's watch router differs from template.yaml's routes"
    );
}

#[test]
fn the_openapi_paths_are_the_templates_and_one_base_url_serves_them() {
    let template = template_routes();
    let openapi = yaml("openapi.yaml");
    let Value::Mapping(paths) = &openapi["paths"] else {
        panic!("openapi.yaml has no paths");
    };
    let documented: BTreeSet<&str> = paths.keys().map(|k| k.as_str().unwrap()).collect();
    let routed: BTreeSet<&str> = template.paths.keys().map(String::as_str).collect();
    assert_eq!(documented, routed);
    for (path, item) in paths {
        assert!(
            item.get("servers").is_none(),
            "{path:?} has servers of its own: every path is at the API's one base URL"
        );
    }

    let servers = openapi["servers"].as_sequence().expect("servers");
    let urls: Vec<&str> = servers.iter().map(|s| s["url"].as_str().unwrap()).collect();
    assert_eq!(
        urls,
        [
            "http://localhost:{port}",
            "https://{apiId}.execute-api.{region}.amazonaws.com"
        ],
        "the local stack and the HTTP API's $default stage, neither with a path"
    );
    assert_eq!(servers[0]["variables"]["port"]["default"], DEV_PORT);
    assert!(
        read("scripts/dev.sh").contains(&format!("DEV_WATCH_PORT:-{DEV_PORT}")),
        "make dev's default port is {DEV_PORT}"
    );
}

/// The path after each occurrence of `base` in `text`.
fn paths_after<'t>(text: &'t str, base: &str) -> Vec<&'t str> {
    text.match_indices(base)
        .map(|(at, _)| {
            let rest = &text[at + base.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-~%".contains(c)))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn every_path_the_docs_and_scripts_request_is_a_route() {
    let template = template_routes();
    // How each file spells the API's base URL.
    let files: &[(&str, &[&str])] = &[
        (
            "README.md",
            &["http://localhost:9000", "$API_URL", "{API_URL}"],
        ),
        ("scripts/dev.sh", &["$base"]),
        ("scripts/smoke.sh", &["$BASE_URL"]),
        ("functions/predict/tests/e2e.rs", &["{base}"]),
    ];
    for (file, bases) in files {
        let text = read(file);
        assert!(
            !text.contains("lambda-url"),
            "{file} uses cargo-lambda's /lambda-url/ prefix; the deployed paths work locally"
        );
        let mut seen = 0;
        for base in *bases {
            for path in paths_after(&text, base) {
                if path.is_empty() || path == "/" {
                    continue;
                }
                seen += 1;
                assert!(
                    template.paths.contains_key(path)
                        || NOT_ROUTES.iter().any(|p| path.starts_with(p)),
                    "{file} requests {base}{path}, which is no route of template.yaml"
                );
            }
        }
        assert!(
            seen > 0,
            "{file}: no request found; are the bases {bases:?} still right?"
        );
    }
}
