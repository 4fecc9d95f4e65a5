//! The committed `model-artifacts/` (the Iris default), used through the public API only, as a
//! service would. This file and `iris.csv` are the only places that know the model is Iris.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use tree_model::training::{TrainConfig, train_artifacts};
use tree_model::{
    Batch, Ensemble, Manifest, ModelError, Outcome, TaskKind, load_verified, sha256_hex, verify,
};

const MODEL: &[u8] = include_bytes!("../../../model-artifacts/model.bin");
const MANIFEST: &[u8] = include_bytes!("../../../model-artifacts/manifest.json");
const IRIS_CSV: &[u8] = include_bytes!("../../../model-artifacts/iris.csv");
const TARGET: &str = "species";
const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

fn committed() -> (Ensemble, Manifest) {
    load_verified(MODEL, MANIFEST).expect("the committed artifacts load and verify")
}

/// Uniform rows in a box wider than the training data on every side.
fn random_rows(n: usize, seed: u64) -> Vec<[f64; 4]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut row = [0.0; 4];
            for value in &mut row {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                *value = 0.01 + u * 9.0;
            }
            row
        })
        .collect()
}

/// A feature as the model card test reads it: name, unit, training range.
type FeatureSummary<'a> = (&'a str, Option<&'a str>, Option<(f64, f64)>);
/// A named edit of a manifest's JSON.
type Edit = (&'static str, fn(&mut serde_json::Value));

/// The class and scores of a classifier's answer.
fn class_and_scores(outcome: Outcome<'_>) -> (usize, Vec<f64>) {
    match outcome {
        Outcome::Class { class, scores } => (class, scores.to_vec()),
        Outcome::Value(_) => panic!("the Iris model is a classifier"),
    }
}

/// The first index of the largest share: the documented tie-break, recomputed independently.
fn first_argmax(shares: &[f64]) -> usize {
    let mut best = 0;
    for k in 1..shares.len() {
        if shares[k] > shares[best] {
            best = k;
        }
    }
    best
}

mod reproducibility {
    use super::*;

    #[test]
    fn the_committed_artifacts_sha256_equals_the_manifest() {
        let manifest = Manifest::from_json(MANIFEST).unwrap();
        assert_eq!(sha256_hex(MODEL), manifest.sha256);
        assert_eq!(
            sha256_hex(IRIS_CSV),
            manifest.training_data.as_ref().unwrap().sha256
        );
        verify(MODEL, &manifest).unwrap();
    }

    #[test]
    fn retraining_with_the_manifests_settings_reproduces_both_committed_files_byte_for_byte() {
        let manifest = Manifest::from_json(MANIFEST).unwrap();
        let config = TrainConfig::from_manifest(&manifest, TARGET).unwrap();
        let retrained = train_artifacts(
            IRIS_CSV,
            "iris.csv",
            &config,
            manifest.trained_at.as_deref().unwrap(),
        )
        .unwrap();
        assert!(
            retrained.model == MODEL,
            "model.bin differs from a retrain: run `make train` and commit both files"
        );
        assert_eq!(retrained.manifest, manifest);
        assert_eq!(retrained.manifest.to_json().as_bytes(), MANIFEST);
    }

    #[test]
    fn the_committed_model_uses_the_default_configuration() {
        let manifest = Manifest::from_json(MANIFEST).unwrap();
        let default = TrainConfig::new(TARGET);
        let hp = manifest.hyperparameters.unwrap();
        assert_eq!(hp.n_trees, default.n_trees);
        assert_eq!(hp.max_depth, default.max_depth);
        assert_eq!(hp.max_features, 4);
        assert_eq!(hp.seed, default.seed);
        assert_eq!(manifest.version, default.model_version);
    }

    #[test]
    fn encoding_the_decoded_artifact_gives_back_the_same_bytes() {
        assert_eq!(committed().0.to_bytes(), MODEL);
    }
}

mod model_card {
    use super::*;

    #[test]
    fn the_holdout_and_cross_validated_accuracies_are_at_least_ninety_percent() {
        let metrics = committed().1.metrics.unwrap();
        assert!(metrics.holdout_accuracy.unwrap() >= 0.9, "{metrics:?}");
        assert!(metrics.cv_accuracy_mean.unwrap() >= 0.9, "{metrics:?}");
        assert_eq!(metrics.n_train_rows, 150);
    }

    #[test]
    fn the_manifest_describes_the_features_labels_and_forest() {
        let (ensemble, manifest) = committed();
        assert_eq!(manifest.task(), TaskKind::Classification);
        assert_eq!(manifest.labels(), LABELS);
        assert_eq!(
            ensemble.n_trees(),
            manifest.hyperparameters.as_ref().unwrap().n_trees
        );
        assert_eq!(ensemble.n_classes(), Some(3));
        let ranges: Vec<FeatureSummary<'_>> = manifest
            .features()
            .iter()
            .map(|f| (f.name.as_str(), f.unit.as_deref(), f.training_range()))
            .collect();
        assert_eq!(
            ranges,
            [
                ("sepal_length", Some("cm"), Some((4.3, 7.9))),
                ("sepal_width", Some("cm"), Some((2.0, 4.4))),
                ("petal_length", Some("cm"), Some((1.0, 6.9))),
                ("petal_width", Some("cm"), Some((0.1, 2.5))),
            ]
        );
        for feature in manifest.features() {
            let allowed = feature.allowed();
            assert_eq!(allowed.describe(), "(0, 100]");
            assert!(!allowed.contains(0.0) && allowed.contains(100.0));
        }
        assert_eq!(manifest.smartcore_version.as_deref(), Some("0.7.0"));
        assert_eq!(manifest.training_data.unwrap().rows, 150);
    }
}

mod predictions {
    use super::*;

    #[test]
    fn textbook_flowers_get_their_species() {
        let ensemble = committed().0;
        let mut scratch = ensemble.scratch();
        let cases = [
            ([5.1, 3.5, 1.4, 0.2], "setosa"),
            ([7.0, 3.2, 4.7, 1.4], "versicolor"),
            ([6.3, 3.3, 6.0, 2.5], "virginica"),
        ];
        for (row, label) in cases {
            let (class, shares) = class_and_scores(ensemble.predict_into(&row, &mut scratch));
            assert_eq!(LABELS[class], label, "{row:?}: {shares:?}");
            assert!(shares[class] >= 0.9, "{shares:?}");
        }
    }

    #[test]
    fn the_class_is_always_the_first_argmax_of_the_shares() {
        let ensemble = committed().0;
        let mut scratch = ensemble.scratch();
        for row in random_rows(20_000, 1) {
            let (class, shares) = class_and_scores(ensemble.predict_into(&row, &mut scratch));
            assert_eq!(class, first_argmax(&shares), "{row:?}");
        }
    }

    #[test]
    fn shares_are_vote_fractions_that_sum_to_one() {
        let ensemble = committed().0;
        let n_trees = ensemble.n_trees() as f64;
        let mut scratch = ensemble.scratch();
        for row in random_rows(5_000, 2) {
            let (_, shares) = class_and_scores(ensemble.predict_into(&row, &mut scratch));
            assert!(
                (shares.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                "{shares:?}"
            );
            for share in shares {
                let votes = share * n_trees;
                assert!((votes - votes.round()).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn batch_predictions_equal_row_predictions() {
        let ensemble = committed().0;
        let rows = random_rows(1_000, 3);
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        let mut batch = Batch::new();
        ensemble.predict_batch_into(&flat, &mut batch);
        let mut scratch = ensemble.scratch();
        assert_eq!(batch.len(), rows.len());
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(batch.get(i), ensemble.predict_into(row, &mut scratch));
        }
    }

    #[test]
    #[should_panic(expected = "one value per feature")]
    fn a_row_with_the_wrong_number_of_values_is_a_caller_bug() {
        let ensemble = committed().0;
        let mut scratch = ensemble.scratch();
        let _ = ensemble.predict_into(&[1.0, 2.0, 3.0], &mut scratch);
    }
}

mod hostile_input {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"SMTE",
            b"IRRF\x01\x00\x04\x03",
            b"not a model at all",
            b"\x80\x03\x8c\x08builtins\x94", // the start of a pickle
            &[0xff; 64],
        ] {
            assert!(
                Ensemble::from_bytes(bytes).is_err(),
                "{bytes:?} was accepted"
            );
        }
    }

    #[test]
    fn every_truncation_of_the_artifact_is_an_error() {
        for len in 0..MODEL.len() {
            assert!(
                Ensemble::from_bytes(&MODEL[..len]).is_err(),
                "a {len}-byte prefix was accepted"
            );
        }
    }

    #[test]
    fn flipped_bytes_never_make_decoding_or_prediction_panic() {
        let rows = random_rows(20, 4);
        for position in 0..MODEL.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut bytes = MODEL.to_vec();
                bytes[position] ^= mask;
                // Some flips still decode (a threshold's low bits, say): that ensemble must then
                // be one that is safe to run.
                if let Ok(ensemble) = Ensemble::from_bytes(&bytes) {
                    let mut scratch = ensemble.scratch();
                    for row in &rows {
                        let row: Vec<f64> =
                            (0..ensemble.n_features()).map(|i| row[i % 4]).collect();
                        let _ = ensemble.predict_into(&row, &mut scratch);
                    }
                }
            }
        }
    }

    #[test]
    fn a_tampered_artifact_fails_verification_with_both_digests_named() {
        let manifest = Manifest::from_json(MANIFEST).unwrap();
        let mut tampered = MODEL.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let err = verify(&tampered, &manifest).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ModelError::ChecksumMismatch { .. }));
        assert!(message.contains(&manifest.sha256), "{message}");
        assert!(message.contains(&sha256_hex(&tampered)), "{message}");
        assert!(load_verified(&tampered, MANIFEST).is_err());
    }

    #[test]
    fn a_manifest_with_unknown_fields_is_rejected() {
        let mut value: serde_json::Value = serde_json::from_slice(MANIFEST).unwrap();
        value["surprise"] = serde_json::json!(true);
        let bytes = serde_json::to_vec(&value).unwrap();
        assert!(matches!(
            Manifest::from_json(&bytes),
            Err(ModelError::Manifest(_))
        ));
    }

    #[test]
    fn a_manifest_whose_parts_do_not_fit_is_rejected() {
        let base: serde_json::Value = serde_json::from_slice(MANIFEST).unwrap();
        let edits: [Edit; 5] = [
            ("regression with labels", |m| {
                m["task"] = "regression".into()
            }),
            ("one label", |m| m["labels"] = serde_json::json!(["setosa"])),
            ("duplicate feature", |m| {
                m["features"][1]["name"] = "sepal_length".into()
            }),
            ("both provenances", |m| {
                m["imported_at"] = "2026-01-01T00:00:00Z".into()
            }),
            ("empty allowed range", |m| {
                m["features"][0]["maximum"] = (-1.0).into()
            }),
        ];
        for (name, edit) in edits {
            let mut value = base.clone();
            edit(&mut value);
            let bytes = serde_json::to_vec(&value).unwrap();
            assert!(
                matches!(
                    Manifest::from_json(&bytes),
                    Err(ModelError::InvalidManifest(_))
                ),
                "{name} was accepted"
            );
        }
        // A manifest that disagrees with the artifact: one feature too many.
        let mut value = base.clone();
        value["features"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "stem_length"}));
        let bytes = serde_json::to_vec(&value).unwrap();
        let err = load_verified(MODEL, &bytes).unwrap_err().to_string();
        assert!(err.contains("features"), "{err}");
    }
}
