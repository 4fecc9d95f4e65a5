//! The committed `model-artifacts/`, used through the public API only, as a service would.

use iris_model::training::{TrainConfig, train_artifacts};
use iris_model::{
    Forest, LABELS, Manifest, ModelError, N_CLASSES, Prediction, load_verified, sha256_hex, verify,
};
use ndarray::Array2;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

const MODEL: &[u8] = include_bytes!("../../../model-artifacts/model.bin");
const MANIFEST: &[u8] = include_bytes!("../../../model-artifacts/manifest.json");
const IRIS_CSV: &[u8] = include_bytes!("../../../model-artifacts/iris.csv");

fn committed() -> (Forest, Manifest) {
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

/// The first index of the largest share: the documented tie-break, recomputed independently.
fn first_argmax(shares: &[f64; N_CLASSES]) -> usize {
    let mut best = 0;
    for k in 1..N_CLASSES {
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
        assert_eq!(sha256_hex(IRIS_CSV), manifest.training_data.sha256);
        verify(MODEL, &manifest).unwrap();
    }

    #[test]
    fn retraining_with_the_manifests_settings_reproduces_both_committed_files_byte_for_byte() {
        let manifest = Manifest::from_json(MANIFEST).unwrap();
        let config = TrainConfig {
            hyperparameters: manifest.hyperparameters.clone(),
            holdout_fraction: manifest.metrics.holdout_fraction,
            cv_folds: manifest.metrics.cv_folds,
            model_version: manifest.version.clone(),
        };
        let retrained = train_artifacts(IRIS_CSV, &config, &manifest.trained_at).unwrap();
        assert!(
            retrained.model == MODEL,
            "model.bin differs from a retrain: run the training command and commit both files"
        );
        assert_eq!(retrained.manifest, manifest);
        assert_eq!(retrained.manifest.to_json().as_bytes(), MANIFEST);
    }

    #[test]
    fn the_committed_model_uses_the_default_configuration() {
        let manifest = Manifest::from_json(MANIFEST).unwrap();
        let default = TrainConfig::default();
        assert_eq!(manifest.hyperparameters, default.hyperparameters);
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
        let metrics = committed().1.metrics;
        assert!(metrics.holdout_accuracy >= 0.9, "{metrics:?}");
        assert!(metrics.cv_accuracy_mean >= 0.9, "{metrics:?}");
        assert_eq!(metrics.n_train_rows, 150);
    }

    #[test]
    fn the_manifest_describes_the_features_labels_and_forest() {
        let (forest, manifest) = committed();
        assert_eq!(manifest.labels, LABELS);
        assert_eq!(forest.n_trees(), manifest.hyperparameters.n_trees);
        assert_eq!(forest.n_classes(), 3);
        let ranges: Vec<(&str, &str, f64, f64)> = manifest
            .features
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.unit.as_str(),
                    f.training_min,
                    f.training_max,
                )
            })
            .collect();
        assert_eq!(
            ranges,
            [
                ("sepal_length", "cm", 4.3, 7.9),
                ("sepal_width", "cm", 2.0, 4.4),
                ("petal_length", "cm", 1.0, 6.9),
                ("petal_width", "cm", 0.1, 2.5),
            ]
        );
        assert_eq!(manifest.smartcore_version, "0.7.0");
        assert_eq!(manifest.training_data.rows, 150);
    }
}

mod predictions {
    use super::*;

    #[test]
    fn textbook_flowers_get_their_species() {
        let forest = committed().0;
        let cases = [
            ([5.1, 3.5, 1.4, 0.2], "setosa"),
            ([7.0, 3.2, 4.7, 1.4], "versicolor"),
            ([6.3, 3.3, 6.0, 2.5], "virginica"),
        ];
        for (row, label) in cases {
            let prediction = forest.predict(&row);
            assert_eq!(LABELS[prediction.class], label, "{row:?}: {prediction:?}");
            assert!(prediction.shares[prediction.class] >= 0.9, "{prediction:?}");
        }
    }

    #[test]
    fn the_class_is_always_the_first_argmax_of_the_shares() {
        let forest = committed().0;
        for row in random_rows(20_000, 1) {
            let prediction = forest.predict(&row);
            assert_eq!(
                prediction.class,
                first_argmax(&prediction.shares),
                "{row:?}"
            );
        }
    }

    #[test]
    fn shares_are_vote_fractions_that_sum_to_one() {
        let forest = committed().0;
        let n_trees = forest.n_trees() as f64;
        for row in random_rows(5_000, 2) {
            let Prediction { shares, .. } = forest.predict(&row);
            assert!(
                (shares.iter().sum::<f64>() - 1.0).abs() < 1e-12,
                "{shares:?}"
            );
            for share in shares {
                let votes = share * n_trees;
                assert!((votes - votes.round()).abs() < 1e-9, "{shares:?}");
            }
        }
    }

    #[test]
    fn batch_predictions_equal_row_predictions() {
        let forest = committed().0;
        let rows = random_rows(1_000, 3);
        let matrix = Array2::from_shape_fn((rows.len(), 4), |(i, j)| rows[i][j]);
        let batch = forest.predict_batch(matrix.view());
        let one_by_one: Vec<Prediction> = rows.iter().map(|row| forest.predict(row)).collect();
        assert_eq!(batch, one_by_one);
        assert!(
            forest
                .predict_batch(Array2::zeros((0, 4)).view())
                .is_empty()
        );
    }

    #[test]
    #[should_panic(expected = "one column per feature")]
    fn a_batch_with_the_wrong_number_of_columns_is_a_caller_bug() {
        committed().0.predict_batch(Array2::zeros((2, 3)).view());
    }
}

mod hostile_input {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"IRRF",
            b"not a model at all",
            b"\x80\x03\x8c\x08builtins\x94", // the start of a pickle
            &[0xff; 64],
        ] {
            assert!(Forest::from_bytes(bytes).is_err(), "{bytes:?} was accepted");
        }
    }

    #[test]
    fn every_truncation_of_the_artifact_is_an_error() {
        for len in 0..MODEL.len() {
            assert!(
                matches!(
                    Forest::from_bytes(&MODEL[..len]),
                    Err(ModelError::Decode(_))
                ),
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
                // Some flips still decode (a threshold's low bits, say): that forest must then be
                // one that is safe to run.
                if let Ok(forest) = Forest::from_bytes(&bytes) {
                    for row in &rows {
                        let prediction = forest.predict(row);
                        assert_eq!(prediction.class, first_argmax(&prediction.shares));
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
}
