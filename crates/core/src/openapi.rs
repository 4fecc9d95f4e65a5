//! The model-dependent part of `openapi.yaml`, generated from the served model.
//!
//! `openapi.yaml` is written by hand, except for two blocks between marker lines
//! (`# BEGIN GENERATED model-schemas` … `# END GENERATED model-schemas`, and the same for
//! `model-examples`) that [`render`] rewrites from the manifest and the artifact:
//!
//! - `model-schemas` (in `components.schemas`): one schema per feature (its bounds, unit and
//!   training range), a row as an array in feature order or as an object naming every feature,
//!   the two request bodies, and the answer (`Prediction`: a class index with its label and
//!   `Probabilities` for a classifier, a number for a regressor);
//! - `model-examples` (`components.examples`): requests built from the features' ranges, and
//!   the answers, model card and validation problems the function gives for them — computed
//!   here by the same parser and model the function runs, never typed in.
//!
//! The operations refer to both by name, and every example name exists for every model (a
//! regressor's `PredictAnswerProba` shows that the scope changes nothing), so the hand-written
//! part never names something a model lacks. `make train` and `make import-model` run the
//! `openapi-model` command after writing the model; `crates/core/tests/openapi_model.rs`
//! fails when the committed document and the committed model disagree.

mod yaml;

use tree_model::{AllowedRange, Feature, TaskKind};

use crate::model::ServedModel;
use crate::predict::{MAX_BATCH_ROWS, number};
use crate::problem::ApiError;

pub use yaml::Node;
use yaml::{map, num};

/// The generated blocks, by marker name.
pub const BLOCKS: [&str; 2] = ["model-schemas", "model-examples"];

/// Why a document could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("openapi.yaml has no `# BEGIN GENERATED {0}` line followed by `# END GENERATED {0}`")]
    Markers(&'static str),
    #[error("openapi.yaml has more than one `# BEGIN GENERATED {0}` line")]
    Repeated(&'static str),
    #[error("an example request for this model is refused by its own contract: {0}")]
    Example(String),
}

/// `document` with every generated block rewritten for `model`.
pub fn render(document: &str, model: &ServedModel) -> Result<String, OpenApiError> {
    let facts = Facts::of(model)?;
    let mut text = document.to_owned();
    for name in BLOCKS {
        let node = match name {
            "model-schemas" => facts.schemas(),
            _ => map([("examples", facts.examples())]),
        };
        text = replace_block(&text, name, &node)?;
    }
    Ok(text)
}

/// Replaces the lines between the markers of `name` with `node`'s entries, at the begin
/// marker's indentation.
fn replace_block(text: &str, name: &'static str, node: &Node) -> Result<String, OpenApiError> {
    let begin = format!("# BEGIN GENERATED {name}");
    let end = format!("# END GENERATED {name}");
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_start().starts_with(&begin))
        .collect();
    let start = match starts[..] {
        [start] => start,
        [] => return Err(OpenApiError::Markers(name)),
        _ => return Err(OpenApiError::Repeated(name)),
    };
    let stop = (start + 1..lines.len())
        .find(|&i| lines[i].trim_start().starts_with(&end))
        .ok_or(OpenApiError::Markers(name))?;
    let indent = lines[start].len() - lines[start].trim_start().len();
    let mut out: String = lines[..=start].concat();
    yaml::write_entries(node, indent, &mut out);
    out.push_str(&lines[stop..].concat());
    Ok(out)
}

/// Everything the blocks say, computed once.
struct Facts<'m> {
    model: &'m ServedModel,
    features: &'m [Feature],
    /// Component names of the features' schemas, in feature order.
    names: Vec<String>,
    /// A row inside every training range (their middle).
    typical: Vec<f64>,
    /// Rows near the low and the high end of the training ranges.
    low: Vec<f64>,
    high: Vec<f64>,
    /// `typical` with the last feature outside its training range, when one is known.
    outside: Vec<f64>,
}

impl<'m> Facts<'m> {
    fn of(model: &'m ServedModel) -> Result<Self, OpenApiError> {
        let features = model.manifest().features();
        let at = |share: f64| -> Vec<f64> {
            features
                .iter()
                .map(|f| inside(&f.allowed(), example_value(f, share)))
                .collect()
        };
        let typical = at(0.5);
        let mut outside = typical.clone();
        if let Some((index, value)) = features.iter().enumerate().rev().find_map(|(i, f)| {
            let (min, max) = f.training_range()?;
            let beyond = f.maximum.or(f.exclusive_maximum.map(|m| (m + max) / 2.0));
            let value = beyond.unwrap_or(max + (max - min).max(1.0));
            (value > max && f.allowed().contains(value)).then_some((i, value))
        }) {
            outside[index] = value;
        }
        let facts = Facts {
            model,
            features,
            names: component_names(features),
            typical,
            low: at(0.1),
            high: at(0.9),
            outside,
        };
        // Every example request must be one the function accepts.
        for row in [&facts.typical, &facts.low, &facts.high, &facts.outside] {
            model
                .request()
                .parse_single(array_body(row).as_bytes())
                .map_err(|error| OpenApiError::Example(error.to_string()))?;
        }
        Ok(facts)
    }

    fn classifier(&self) -> bool {
        self.model.manifest().task() == TaskKind::Classification
    }

    fn n(&self) -> usize {
        self.features.len()
    }
}

/// The value at `share` of the feature's training range (rounded to 3 significant digits), or
/// a value of its allowed range when the training range is unknown.
fn example_value(feature: &Feature, share: f64) -> f64 {
    match feature.training_range() {
        Some((min, max)) => round3(min + (max - min) * share),
        None => 0.0,
    }
}

/// `x` if allowed, else a value of the allowed range near its lower bound.
fn inside(allowed: &AllowedRange, x: f64) -> f64 {
    if allowed.contains(x) {
        return x;
    }
    let low = allowed.minimum.or(allowed.exclusive_minimum);
    let high = allowed.maximum.or(allowed.exclusive_maximum);
    match (low, high) {
        (Some(low), Some(high)) => (low + high) / 2.0,
        (Some(low), None) => low + 1.0,
        (None, Some(high)) => high - 1.0,
        (None, None) => 0.0,
    }
}

/// Three significant digits: `3.95`, `0.00123`, `1230`.
#[allow(clippy::cast_possible_truncation)]
fn round3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = (2 - x.abs().log10().floor() as i32).clamp(0, 15);
    let scale = 10f64.powi(digits);
    let rounded = (x * scale).round() / scale;
    // Through the shortest decimal form, so `0.1 + 0.2`-style noise never reaches a document.
    number(rounded).parse().unwrap_or(rounded)
}

/// `FeatureValue.<name>` with characters a component name may not hold replaced by `_`, and a
/// suffix where two names would collide.
fn component_names(features: &[Feature]) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(features.len());
    for (index, feature) in features.iter().enumerate() {
        let clean: String = feature
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = format!("FeatureValue.{clean}");
        if names.contains(&name) {
            name = format!("{name}.{index}");
        }
        names.push(name);
    }
    names
}

/// `{"data": [5.1, 3.5]}`.
fn array_body(row: &[f64]) -> String {
    format!("{{\"data\": {}}}", array(row))
}

fn array(row: &[f64]) -> String {
    let values: Vec<String> = row.iter().map(|x| number(*x)).collect();
    format!("[{}]", values.join(", "))
}

/// `{"<name>": 5.1, ...}` in feature order.
fn object(features: &[Feature], row: &[f64]) -> String {
    let members: Vec<String> = features
        .iter()
        .zip(row)
        .map(|(f, x)| {
            format!(
                "{}: {}",
                serde_json::Value::from(f.name.as_str()),
                number(*x)
            )
        })
        .collect();
    format!("{{{}}}", members.join(", "))
}

/// The schema keywords of an allowed range.
fn bounds(allowed: &AllowedRange) -> Vec<(&'static str, Node)> {
    [
        ("minimum", allowed.minimum),
        ("exclusiveMinimum", allowed.exclusive_minimum),
        ("maximum", allowed.maximum),
        ("exclusiveMaximum", allowed.exclusive_maximum),
    ]
    .into_iter()
    .filter_map(|(keyword, bound)| bound.map(|b| (keyword, num(b))))
    .collect()
}

mod examples;
mod schemas;

/// The body of the problem `error` renders.
fn problem(error: ApiError) -> Node {
    let response = error.into_response();
    let text = match response.body() {
        lambda_http::Body::Text(text) => text.clone(),
        _ => String::from("{}"),
    };
    Node::from_json(&text).unwrap_or(Node::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    const DOCUMENT: &str = include_str!("../../../openapi.yaml");

    fn rendered((artifact, manifest): (Vec<u8>, String)) -> serde_json::Value {
        let model = ServedModel::load(&artifact, &manifest).unwrap();
        let text = render(DOCUMENT, &model).unwrap();
        serde_yaml::from_str(&text).unwrap()
    }

    /// Every `$ref` in `node`, as the JSON Pointer after `#`.
    fn refs(node: &serde_json::Value, out: &mut Vec<String>) {
        match node {
            serde_json::Value::Object(members) => {
                for (key, value) in members {
                    match (key.as_str(), value.as_str()) {
                        ("$ref", Some(target)) => {
                            out.push(target.trim_start_matches('#').to_owned())
                        }
                        _ => refs(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
            _ => {}
        }
    }

    fn assert_every_reference_resolves(document: &serde_json::Value) {
        let mut targets = Vec::new();
        refs(document, &mut targets);
        assert!(targets.len() > 50, "{targets:?}");
        for target in targets {
            assert!(
                document.pointer(&target).is_some(),
                "{target} does not resolve"
            );
        }
    }

    #[test]
    fn a_regressors_document_answers_with_a_number_and_keeps_every_reference() {
        let document = rendered(fixtures::regressor());
        assert_every_reference_resolves(&document);
        let schemas = &document["components"]["schemas"];
        let prediction = &schemas["Prediction"];
        assert_eq!(prediction["properties"]["prediction"]["type"], "number");
        assert!(prediction["properties"].get("label").is_none());
        assert!(schemas.get("Probabilities").is_none());
        assert_eq!(schemas["FeatureValue.age"]["minimum"], 0);
        assert!(schemas["FeatureValue.bmi"].get("minimum").is_none());
        let examples = &document["components"]["examples"];
        assert_eq!(
            examples["PredictAnswerProba"]["value"],
            serde_json::json!({"prediction": 200.25, "model_version": "0.3.1", "warnings": []})
        );
        let warnings = &examples["PredictAnswerOutsideRange"]["value"]["warnings"];
        assert_eq!(
            warnings[0], "bmi = 75 is outside the training range [15, 45]",
            "{warnings}"
        );
    }

    #[test]
    fn feature_names_any_characters_become_valid_component_names_and_keys() {
        let document = rendered(fixtures::classifier());
        assert_every_reference_resolves(&document);
        let schemas = &document["components"]["schemas"];
        assert_eq!(
            schemas["FeatureObject"]["properties"]["y/z"]["$ref"],
            "#/components/schemas/FeatureValue.y_z"
        );
        assert_eq!(
            schemas["Prediction"]["properties"]["label"]["enum"],
            serde_json::json!(["no", "yes"])
        );
        let problem = &document["components"]["examples"]["ValidationNamedFeatures"]["value"];
        assert_eq!(problem["errors"][1]["pointer"], "/data/y~1z");
    }

    #[test]
    fn rendering_twice_changes_nothing() {
        let (artifact, manifest) = fixtures::regressor();
        let model = ServedModel::load(&artifact, &manifest).unwrap();
        let once = render(DOCUMENT, &model).unwrap();
        assert_eq!(render(&once, &model).unwrap(), once);
    }

    #[test]
    fn a_document_without_its_markers_is_refused() {
        let (artifact, manifest) = fixtures::regressor();
        let model = ServedModel::load(&artifact, &manifest).unwrap();
        let without = DOCUMENT.replace("# END GENERATED model-examples", "");
        assert!(matches!(
            render(&without, &model),
            Err(OpenApiError::Markers("model-examples"))
        ));
        let twice = format!("{DOCUMENT}\n  # BEGIN GENERATED model-schemas\n");
        assert!(matches!(
            render(&twice, &model),
            Err(OpenApiError::Repeated("model-schemas"))
        ));
    }

    #[test]
    fn example_values_are_short_and_inside_what_is_allowed() {
        assert_eq!(round3(3.9499999), 3.95);
        assert_eq!(round3(0.001_234_5), 0.00123);
        assert_eq!(round3(123_456.0), 123_456.0);
        let allowed = AllowedRange {
            minimum: Some(10.0),
            ..AllowedRange::default()
        };
        assert_eq!(inside(&allowed, 0.0), 11.0);
        assert_eq!(inside(&allowed, 12.0), 12.0);
    }
}
