//! The importer on hand-built ONNX files: what it converts, and a one-line error for each kind
//! of bad file, with `model-artifacts/` (here a temporary directory) left untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

use model_import::onnx::attribute_proto::AttributeType;
use model_import::onnx::tensor_proto::DataType;
use model_import::onnx::tensor_shape_proto::{Dimension, dimension};
use model_import::onnx::type_proto::{Tensor, Value};
use model_import::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use model_import::{ImportError, ImportOptions, import};
use prost::Message;
use tree_model::{Outcome, PostTransform, Scoring, Task, TaskKind};

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn floats(name: &str, values: &[f32]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Floats as i32),
        floats: values.to_vec(),
        ..Default::default()
    }
}

fn strings(name: &str, values: &[&str]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Strings as i32),
        strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn tensor(name: &str, data_type: DataType, raw: Vec<u8>) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Tensor as i32),
        t: Some(TensorProto {
            data_type: Some(data_type as i32),
            raw_data: Some(raw),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `x[0] <= 0.5` → leaf 1, else leaf 2; one tree.
fn stump_nodes() -> Vec<AttributeProto> {
    vec![
        ints("nodes_treeids", &[0, 0, 0]),
        ints("nodes_nodeids", &[0, 1, 2]),
        ints("nodes_featureids", &[0, 0, 0]),
        strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF"]),
        floats("nodes_values", &[0.5, 0.0, 0.0]),
        ints("nodes_truenodeids", &[1, 0, 0]),
        ints("nodes_falsenodeids", &[2, 0, 0]),
        ints("nodes_missing_value_tracks_true", &[0, 0, 0]),
    ]
}

/// A three-class stump: leaf 1 votes class 0, leaf 2 class 2.
fn classifier_attributes() -> Vec<AttributeProto> {
    let mut attrs = stump_nodes();
    attrs.extend([
        ints("class_treeids", &[0, 0]),
        ints("class_nodeids", &[1, 2]),
        ints("class_ids", &[0, 2]),
        floats("class_weights", &[1.0, 1.0]),
        ints("classlabels_int64s", &[10, 20, 30]),
        string("post_transform", "NONE"),
    ]);
    attrs
}

fn regressor_attributes() -> Vec<AttributeProto> {
    let mut attrs = stump_nodes();
    attrs.extend([
        ints("target_treeids", &[0, 0]),
        ints("target_nodeids", &[1, 2]),
        ints("target_ids", &[0, 0]),
        floats("target_weights", &[-1.5, 2.5]),
        int("n_targets", 1),
        floats("base_values", &[10.0]),
    ]);
    attrs
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: Some(format!("{op}-node")),
        op_type: Some(op.into()),
        domain: Some(
            if op.starts_with("Tree") {
                "ai.onnx.ml"
            } else {
                ""
            }
            .into(),
        ),
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: outputs.iter().map(|s| (*s).to_owned()).collect(),
        attribute,
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, features: Option<i64>) -> ValueInfoProto {
    let dim = |value: Option<i64>| Dimension {
        value: value.map(dimension::Value::DimValue),
        ..Default::default()
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(Value::TensorType(Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto {
                    dim: vec![dim(None), dim(features)],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, outputs: &[&str], ml_opset: i64) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("hand".into()),
        producer_version: Some("1".into()),
        opset_import: vec![
            OperatorSetIdProto {
                domain: Some("ai.onnx.ml".into()),
                version: Some(ml_opset),
            },
            OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(17),
            },
        ],
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            input: vec![value_info("X", DataType::Float, Some(2))],
            output: outputs
                .iter()
                .map(|o| value_info(o, DataType::Float, None))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn classifier(attrs: Vec<AttributeProto>) -> ModelProto {
    model(
        vec![node(
            "TreeEnsembleClassifier",
            &["X"],
            &["label", "probabilities"],
            attrs,
        )],
        &["label", "probabilities"],
        3,
    )
}

fn regressor(attrs: Vec<AttributeProto>) -> ModelProto {
    model(
        vec![node("TreeEnsembleRegressor", &["X"], &["variable"], attrs)],
        &["variable"],
        3,
    )
}

fn options() -> ImportOptions {
    ImportOptions {
        file_name: "hand.onnx".into(),
        name: None,
        version: "2.0.0".into(),
        imported_at: "2026-01-01T00:00:00Z".into(),
        features_csv: None,
    }
}

fn import_model(model: &ModelProto) -> Result<model_import::Imported, ImportError> {
    import(&model.encode_to_vec(), &options())
}

fn error_of(model: &ModelProto) -> String {
    let message = import_model(model)
        .expect_err("the file is refused")
        .to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    message
}

fn replace(mut attrs: Vec<AttributeProto>, new: AttributeProto) -> Vec<AttributeProto> {
    attrs.retain(|a| a.name != new.name);
    attrs.push(new);
    attrs
}

mod converts {
    use super::*;

    #[test]
    fn a_classifier_with_integer_labels_keeps_them_as_strings_and_predicts_its_leaves() {
        let imported = import_model(&classifier(classifier_attributes())).unwrap();
        let manifest = &imported.manifest;
        assert_eq!(manifest.task, TaskKind::Classification);
        assert_eq!(manifest.labels, ["10", "20", "30"]);
        assert_eq!(manifest.name, "hand");
        assert_eq!(manifest.version, "2.0.0");
        assert_eq!(manifest.features.len(), 2);
        assert_eq!(manifest.features[1].name, "f1");
        assert_eq!(manifest.features[1].training_range(), None);
        let source = manifest.source.as_ref().unwrap();
        assert_eq!(
            (
                source.op.as_str(),
                source.opset,
                source.producer_name.as_str()
            ),
            ("TreeEnsembleClassifier", 3, "hand")
        );
        let e = &imported.ensemble;
        let mut scratch = e.scratch();
        assert_eq!(
            e.predict_into(&[0.5, 9.0], &mut scratch),
            Outcome::Class {
                class: 0,
                scores: &[1.0, 0.0, 0.0]
            }
        );
        // Float32 precision: 0.50000001 rounds to 0.5f32, so it still goes left.
        assert!(matches!(
            e.predict_into(&[0.500_000_01, 0.0], &mut scratch),
            Outcome::Class { class: 0, .. }
        ));
        assert!(matches!(
            e.predict_into(&[0.6, 0.0], &mut scratch),
            Outcome::Class { class: 2, .. }
        ));
    }

    #[test]
    fn a_regressor_adds_its_base_value() {
        let imported = import_model(&regressor(regressor_attributes())).unwrap();
        assert_eq!(imported.manifest.task, TaskKind::Regression);
        assert!(imported.manifest.labels.is_empty());
        let e = &imported.ensemble;
        let mut scratch = e.scratch();
        assert_eq!(
            e.predict_into(&[0.0, 0.0], &mut scratch),
            Outcome::Value(8.5)
        );
        assert_eq!(
            e.predict_into(&[1.0, 0.0], &mut scratch),
            Outcome::Value(12.5)
        );
    }

    #[test]
    fn a_single_score_binary_classifier_becomes_a_margin_or_a_probability() {
        let binary = |weights: [f32; 2], transform: &str| {
            let mut attrs = stump_nodes();
            attrs.extend([
                ints("class_treeids", &[0, 0]),
                ints("class_nodeids", &[1, 2]),
                ints("class_ids", &[0, 0]),
                floats("class_weights", &weights),
                strings("classlabels_strings", &["no", "yes"]),
                string("post_transform", transform),
            ]);
            import_model(&classifier(attrs)).unwrap().ensemble
        };
        let probability = binary([0.2, 0.9], "NONE");
        assert!(matches!(
            probability.task(),
            Task::Classification {
                scoring: Scoring::BinaryProbability,
                ..
            }
        ));
        let margin = binary([-1.0, 2.0], "LOGISTIC");
        assert!(matches!(
            margin.task(),
            Task::Classification {
                scoring: Scoring::BinaryMargin,
                ..
            }
        ));
        assert_eq!(margin.spec().post_transform, PostTransform::Logistic);
    }

    #[test]
    fn a_sigmoid_node_after_the_ensemble_becomes_its_post_transform() {
        let mut attrs = stump_nodes();
        attrs.extend([
            ints("class_treeids", &[0, 0]),
            ints("class_nodeids", &[1, 2]),
            ints("class_ids", &[0, 0]),
            floats("class_weights", &[-1.0, 2.0]),
            ints("classlabels_int64s", &[0, 1]),
        ]);
        let graph = model(
            vec![
                node("TreeEnsembleClassifier", &["X"], &["label", "raw"], attrs),
                node("Sigmoid", &["raw"], &["probabilities"], vec![]),
            ],
            &["label", "probabilities"],
            3,
        );
        let e = import_model(&graph).unwrap().ensemble;
        assert_eq!(e.spec().post_transform, PostTransform::Logistic);
    }

    #[test]
    fn the_tree_ensemble_operator_of_opset_5_converts_like_the_regressor() {
        let le_f32 = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let attrs = vec![
            ints("tree_roots", &[0]),
            ints("nodes_featureids", &[1]),
            tensor("nodes_modes", DataType::Uint8, vec![1]),
            tensor("nodes_splits", DataType::Float, le_f32(&[0.25])),
            ints("nodes_truenodeids", &[0]),
            ints("nodes_trueleafs", &[1]),
            ints("nodes_falsenodeids", &[1]),
            ints("nodes_falseleafs", &[1]),
            ints("leaf_targetids", &[0, 0]),
            tensor("leaf_weights", DataType::Float, le_f32(&[3.0, 4.0])),
            int("n_targets", 1),
            int("aggregate_function", 1),
        ];
        let graph = model(vec![node("TreeEnsemble", &["X"], &["Y"], attrs)], &["Y"], 5);
        let imported = import_model(&graph).unwrap();
        let e = &imported.ensemble;
        let mut scratch = e.scratch();
        // BRANCH_LT on feature 1.
        assert_eq!(
            e.predict_into(&[9.0, 0.2], &mut scratch),
            Outcome::Value(3.0)
        );
        assert_eq!(
            e.predict_into(&[9.0, 0.25], &mut scratch),
            Outcome::Value(4.0)
        );
        assert_eq!(imported.manifest.source.unwrap().op, "TreeEnsemble");
    }

    #[test]
    fn a_reference_csv_names_the_features_and_gives_their_training_ranges() {
        let options = ImportOptions {
            features_csv: Some(b"width,height\n1.5,3\n-2,nan\n0.5,\n".to_vec()),
            ..options()
        };
        let imported =
            import(&regressor(regressor_attributes()).encode_to_vec(), &options).unwrap();
        let features = &imported.manifest.features;
        assert_eq!(features[0].name, "width");
        assert_eq!(features[0].training_range(), Some((-2.0, 1.5)));
        assert_eq!(features[1].training_range(), Some((3.0, 3.0)));
        let wrong_width = ImportOptions {
            features_csv: Some(b"a,b,c\n1,2,3\n".to_vec()),
            ..super::options()
        };
        let err = import(
            &regressor(regressor_attributes()).encode_to_vec(),
            &wrong_width,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("3 columns"), "{err}");
    }
}

/// Each bad file: its one-line message names what is wrong.
mod refuses {
    use super::*;

    fn assert_mentions(model: &ModelProto, needles: &[&str]) {
        let message = error_of(model);
        for needle in needles {
            assert!(
                message.contains(needle),
                "`{message}` should mention `{needle}`"
            );
        }
    }

    #[test]
    fn a_file_that_is_not_onnx() {
        for bytes in [
            &b"not a model"[..],
            &[0xff; 32],
            b"\x80\x03\x8c\x08builtins\x94",
            b"",
        ] {
            let err = import(bytes, &options()).unwrap_err().to_string();
            assert!(err.starts_with("not an ONNX model"), "{err}");
        }
    }

    #[test]
    fn a_graph_without_a_tree_ensemble() {
        let graph = model(vec![node("Gemm", &["X", "W"], &["Y"], vec![])], &["Y"], 3);
        assert_mentions(&graph, &["no TreeEnsembleClassifier", "Gemm"]);
    }

    #[test]
    fn an_unsupported_attribute() {
        let attrs = replace(classifier_attributes(), ints("nodes_secret", &[1]));
        assert_mentions(
            &classifier(attrs),
            &["unsupported attribute", "`nodes_secret`"],
        );
        let softmax = replace(regressor_attributes(), string("post_transform", "SOFTMAX"));
        assert_mentions(&regressor(softmax), &["`post_transform`", "Softmax"]);
        let targets = replace(regressor_attributes(), int("n_targets", 3));
        assert_mentions(&regressor(targets), &["`n_targets` = 3"]);
    }

    #[test]
    fn inconsistent_node_arrays() {
        let attrs = replace(classifier_attributes(), floats("nodes_values", &[0.5, 0.0]));
        assert_mentions(
            &classifier(attrs),
            &["inconsistent node arrays", "`nodes_values` has 2 entries"],
        );
        let attrs = replace(classifier_attributes(), ints("class_nodeids", &[1]));
        assert_mentions(&classifier(attrs), &["inconsistent leaf arrays"]);
        let attrs = replace(
            classifier_attributes(),
            ints("nodes_truenodeids", &[7, 0, 0]),
        );
        assert_mentions(
            &classifier(attrs),
            &["`nodes_truenodeids[0]` = 7 names no node"],
        );
    }

    #[test]
    fn a_nan_threshold() {
        let attrs = replace(
            classifier_attributes(),
            floats("nodes_values", &[f32::NAN, 0.0, 0.0]),
        );
        assert_mentions(&classifier(attrs), &["`nodes_values[0]`", "NaN"]);
    }

    #[test]
    fn a_feature_id_out_of_range() {
        let attrs = replace(
            classifier_attributes(),
            ints("nodes_featureids", &[-1, 0, 0]),
        );
        assert_mentions(
            &classifier(attrs),
            &["`nodes_featureids[0]` = -1 is out of range"],
        );
        let le_f32 = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let attrs = vec![
            ints("tree_roots", &[0]),
            ints("nodes_featureids", &[1 << 40]),
            tensor("nodes_modes", DataType::Uint8, vec![1]),
            tensor("nodes_splits", DataType::Float, le_f32(&[0.25])),
            ints("nodes_truenodeids", &[0]),
            ints("nodes_trueleafs", &[1]),
            ints("nodes_falsenodeids", &[1]),
            ints("nodes_falseleafs", &[1]),
            ints("leaf_targetids", &[0, 0]),
            tensor("leaf_weights", DataType::Float, le_f32(&[3.0, 4.0])),
            int("n_targets", 1),
            int("aggregate_function", 1),
        ];
        let graph = model(vec![node("TreeEnsemble", &["X"], &["Y"], attrs)], &["Y"], 5);
        assert_mentions(
            &graph,
            &["`nodes_featureids[0]` = 1099511627776 is out of range"],
        );
    }

    #[test]
    fn a_class_id_out_of_range() {
        let attrs = replace(classifier_attributes(), ints("class_ids", &[0, 3]));
        assert_mentions(
            &classifier(attrs),
            &["`class_ids[1]` = 3 is out of range for 3 classes"],
        );
    }

    #[test]
    fn too_many_trees() {
        let n = tree_model::ensemble::MAX_TREES as i64 + 1;
        let ids: Vec<i64> = (0..n).collect();
        let zeros = vec![0i64; n as usize];
        let modes = vec!["LEAF"; n as usize];
        let attrs = vec![
            ints("nodes_treeids", &ids),
            ints("nodes_nodeids", &zeros),
            ints("nodes_featureids", &zeros),
            strings("nodes_modes", &modes),
            floats("nodes_values", &vec![0.0; n as usize]),
            ints("nodes_truenodeids", &zeros),
            ints("nodes_falsenodeids", &zeros),
            ints("target_treeids", &ids),
            ints("target_nodeids", &zeros),
            ints("target_ids", &zeros),
            floats("target_weights", &vec![1.0; n as usize]),
            int("n_targets", 1),
        ];
        assert_mentions(&regressor(attrs), &["100001 trees", "100000 allowed"]);
    }

    #[test]
    fn too_many_nodes() {
        // TreeEnsemble's node count is the length of nodes_featureids (packed: 1 byte each).
        let n = tree_model::ensemble::MAX_NODES + 1;
        let attrs = vec![
            ints("tree_roots", &[0]),
            ints("nodes_featureids", &vec![0; n]),
            int("n_targets", 1),
            tensor("nodes_modes", DataType::Uint8, vec![0]),
            tensor("nodes_splits", DataType::Float, vec![0; 4]),
            tensor("leaf_weights", DataType::Float, vec![0; 4]),
        ];
        let graph = model(vec![node("TreeEnsemble", &["X"], &["Y"], attrs)], &["Y"], 5);
        assert_mentions(&graph, &["more than the 10000000 tree nodes allowed"]);
    }

    #[test]
    fn missing_inputs() {
        let graph = model(
            vec![node(
                "TreeEnsembleRegressor",
                &["features"],
                &["variable"],
                regressor_attributes(),
            )],
            &["variable"],
            3,
        );
        assert_mentions(&graph, &["`features`", "missing input"]);
        let mut no_input = regressor(regressor_attributes());
        no_input.graph.as_mut().unwrap().input.clear();
        assert_mentions(&no_input, &["0 inputs"]);
    }

    #[test]
    fn a_node_that_would_change_the_answers() {
        let graph = model(
            vec![
                node(
                    "TreeEnsembleRegressor",
                    &["X"],
                    &["raw"],
                    regressor_attributes(),
                ),
                node("Abs", &["raw"], &["variable"], vec![]),
            ],
            &["variable"],
            3,
        );
        assert_mentions(&graph, &["`Abs-node` (Abs)", "not supported"]);
    }

    #[test]
    fn integer_features() {
        let mut graph = regressor(regressor_attributes());
        graph.graph.as_mut().unwrap().input = vec![value_info("X", DataType::Int64, Some(2))];
        assert_mentions(&graph, &["INT64"]);
    }
}

/// The binary: exit status, one line on stderr, and the output directory untouched on failure.
mod command {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("import-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir
    }

    fn run(onnx: &Path, out: &Path) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_import-model"))
            .args([
                "--onnx",
                onnx.to_str().expect("a UTF-8 path"),
                "--out-dir",
                out.to_str().expect("a UTF-8 path"),
            ])
            .env("SOURCE_DATE_EPOCH", "0")
            .output()
            .expect("import-model runs")
    }

    #[test]
    fn a_refused_file_leaves_the_output_directory_untouched() {
        let dir = temp_dir("refused");
        let out = dir.join("model-artifacts");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("model.bin"), b"previous model").unwrap();
        std::fs::write(out.join("manifest.json"), b"{}").unwrap();
        let bad_files: Vec<Vec<u8>> = vec![
            b"garbage".to_vec(),
            classifier(replace(classifier_attributes(), ints("class_ids", &[0, 9])))
                .encode_to_vec(),
            classifier(replace(
                classifier_attributes(),
                floats("nodes_values", &[f32::NAN, 0.0, 0.0]),
            ))
            .encode_to_vec(),
        ];
        for bytes in bad_files {
            let onnx = dir.join("bad.onnx");
            std::fs::write(&onnx, bytes).unwrap();
            let output = run(&onnx, &out);
            assert!(!output.status.success());
            let stderr = String::from_utf8(output.stderr).unwrap();
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.starts_with("import-model: error: "), "{stderr}");
            let mut names: Vec<String> = std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, ["manifest.json", "model.bin"]);
            assert_eq!(
                std::fs::read(out.join("model.bin")).unwrap(),
                b"previous model"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_good_file_writes_an_artifact_and_manifest_that_load() {
        let dir = temp_dir("good");
        let onnx = dir.join("stump.onnx");
        std::fs::write(&onnx, regressor(regressor_attributes()).encode_to_vec()).unwrap();
        let output = run(&onnx, &dir);
        assert!(output.status.success(), "{output:?}");
        let model = std::fs::read(dir.join("model.bin")).unwrap();
        let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
        let (_, manifest) = tree_model::load_verified(&model, &manifest).unwrap();
        assert_eq!(manifest.name, "stump");
        assert_eq!(
            manifest.imported_at.as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
