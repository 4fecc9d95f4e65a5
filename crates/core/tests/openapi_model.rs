//! `openapi.yaml` and the committed model agree: the generated blocks are exactly what
//! `make openapi` writes for `model-artifacts/`, and what they promise holds for that model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use secure_ml_core::model::ServedModel;
use secure_ml_core::openapi::render;
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn committed() -> (ServedModel, String) {
    let manifest = String::from_utf8(read("model-artifacts/manifest.json")).unwrap();
    let file: Value = serde_json::from_str(&manifest).unwrap();
    let artifact = read(&format!(
        "model-artifacts/{}",
        file["file"].as_str().unwrap()
    ));
    let model = ServedModel::load(&artifact, &manifest).unwrap();
    let document = String::from_utf8(read("openapi.yaml")).unwrap();
    (model, document)
}

#[test]
fn the_committed_document_is_generated_from_the_committed_model() {
    let (model, document) = committed();
    let expected = render(&document, &model).unwrap();
    if expected != document {
        let line = expected
            .lines()
            .zip(document.lines())
            .position(|(a, b)| a != b)
            .map_or(
                expected.lines().count().min(document.lines().count()),
                |i| i + 1,
            );
        panic!(
            "openapi.yaml disagrees with model-artifacts/ from line {line} on: run `make openapi` \
             (the model is {} {})",
            model.manifest().name,
            model.version()
        );
    }
}

#[test]
fn the_documented_requests_are_accepted_and_the_documented_answers_are_the_models() {
    let (model, document) = committed();
    let document: Value = serde_yaml::from_str(&document).unwrap();
    let examples = &document["components"]["examples"];
    let request = model.request();
    for (body, answer) in [
        ("PredictArray", "PredictAnswer"),
        ("PredictNamed", "PredictAnswer"),
        ("PredictOutsideRange", "PredictAnswerOutsideRange"),
    ] {
        let body = examples[body]["value"].to_string();
        let row = request.parse_single(body.as_bytes()).unwrap();
        let served = serde_json::to_value(model.predict(&row, false)).unwrap();
        assert_eq!(served, examples[answer]["value"], "{body}");
    }
    let batch = examples["PredictBatch"]["value"].to_string();
    let rows = request.parse_batch(batch.as_bytes()).unwrap();
    let served = serde_json::to_value(model.predict_batch(&rows, false)).unwrap();
    assert_eq!(
        served,
        examples["PredictBatchAnswer"]["value"]["predictions"]
    );
    let card: Value = serde_json::from_str(model.card_json()).unwrap();
    assert_eq!(card, examples["ModelCard"]["value"]);
}
