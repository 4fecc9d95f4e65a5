//! Inference speed of large ensembles: decode at init, one row, and a row within a 100-row batch.
//!
//! | bench | what |
//! |---|---|
//! | `ensemble/decode/<model>` | `Ensemble::from_bytes` of the artifact (validation included): the init-time cost |
//! | `ensemble/row/<model>` | `predict_into` of one row (rows cycle through the probe set) |
//! | `ensemble/rows_100/<model>` | `predict_into` on 100 rows one by one (what the batch path is compared with) |
//! | `ensemble/batch_100/<model>` | `predict_batch_into` of 100 rows; criterion reports it per row (throughput 100 elements) |
//!
//! Models: `gbm` (300 gradient-boosted trees of depth 8 on 30 features) and `rf` (a 100-tree
//! random forest on 30 features). With `MODEL_BENCH_DIR` set (scripts/model_bench.sh does), the
//! artifacts `gbm.bin` and `rf.bin` and the rows `rows.f64` (little-endian f64, 30 per row) come
//! from there, imported from the XGBoost and scikit-learn models that onnxruntime is timed on;
//! without it, ensembles of the same shape are generated here so that `cargo bench -p tree-model`
//! runs anywhere.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tree_model::{
    Aggregate, Batch, Ensemble, EnsembleSpec, Mode, NodeSpec, PostTransform, Precision, Scoring,
    Task,
};

const N_FEATURES: usize = 30;

/// xorshift64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A tree of exactly `depth` levels of branches (breadth-first, children adjacent).
fn full_tree(
    depth: u32,
    rng: &mut Rng,
    mode: Mode,
    leaf: &mut dyn FnMut(&mut Rng) -> NodeSpec,
) -> Vec<NodeSpec> {
    let branches = (1usize << depth) - 1;
    let mut nodes = Vec::with_capacity(2 * branches + 1);
    for index in 0..branches {
        nodes.push(NodeSpec::Branch {
            feature: (rng.next() % N_FEATURES as u64) as u32,
            mode,
            threshold: f64::from((rng.unit() * 4.0 - 2.0) as f32),
            missing_tracks_true: rng.next().is_multiple_of(2),
            true_child: (2 * index + 1) as u32,
            false_child: (2 * index + 2) as u32,
        });
    }
    for _ in 0..=branches {
        nodes.push(leaf(rng));
    }
    nodes
}

fn synthetic_gbm() -> Ensemble {
    let mut rng = Rng(0x5eed);
    let trees = (0..300)
        .map(|_| {
            full_tree(8, &mut rng, Mode::Lt, &mut |r| NodeSpec::Leaf {
                weights: vec![(0, r.unit() - 0.5)],
            })
        })
        .collect();
    Ensemble::new(EnsembleSpec {
        n_features: N_FEATURES as u32,
        task: Task::Classification {
            n_classes: 2,
            scoring: Scoring::BinaryMargin,
        },
        precision: Precision::F32,
        aggregate: Aggregate::Sum,
        post_transform: PostTransform::Logistic,
        base_values: vec![0.1],
        trees,
    })
    .expect("a valid synthetic ensemble")
}

fn synthetic_rf() -> Ensemble {
    let mut rng = Rng(0xf0_5e57);
    let trees = (0..100)
        .map(|_| {
            full_tree(12, &mut rng, Mode::Leq, &mut |r| NodeSpec::Leaf {
                weights: vec![(0, r.unit() / 100.0)],
            })
        })
        .collect();
    Ensemble::new(EnsembleSpec {
        n_features: N_FEATURES as u32,
        task: Task::Classification {
            n_classes: 2,
            scoring: Scoring::BinaryProbability,
        },
        precision: Precision::F32,
        aggregate: Aggregate::Sum,
        post_transform: PostTransform::None,
        base_values: Vec::new(),
        trees,
    })
    .expect("a valid synthetic ensemble")
}

/// `(name, artifact bytes)` of each model and the probe rows.
fn inputs() -> (Vec<(&'static str, Vec<u8>)>, Vec<f64>) {
    match std::env::var_os("MODEL_BENCH_DIR") {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            let read = |name: &str| {
                std::fs::read(dir.join(name))
                    .unwrap_or_else(|err| panic!("MODEL_BENCH_DIR/{name}: {err}"))
            };
            let rows = read("rows.f64")
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect();
            (vec![("gbm", read("gbm.bin")), ("rf", read("rf.bin"))], rows)
        }
        None => {
            let mut rng = Rng(42);
            let rows = (0..1000 * N_FEATURES)
                .map(|_| rng.unit() * 4.0 - 2.0)
                .collect();
            (
                vec![
                    ("gbm", synthetic_gbm().to_bytes()),
                    ("rf", synthetic_rf().to_bytes()),
                ],
                rows,
            )
        }
    }
}

fn inference(c: &mut Criterion) {
    let (models, rows) = inputs();
    let n_rows = rows.len() / N_FEATURES;
    assert!(n_rows >= 100, "at least 100 probe rows");
    let mut group = c.benchmark_group("ensemble");
    for (name, bytes) in &models {
        let ensemble = Ensemble::from_bytes(bytes).expect("the artifact decodes");
        assert_eq!(ensemble.n_features(), N_FEATURES);
        eprintln!(
            "{name}: {} trees, {} nodes, artifact {} bytes",
            ensemble.n_trees(),
            ensemble.n_nodes(),
            bytes.len()
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| Ensemble::from_bytes(black_box(bytes)).is_ok())
        });
        let mut scratch = ensemble.scratch();
        group.bench_function(format!("row/{name}"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % n_rows;
                let row = &rows[i * N_FEATURES..(i + 1) * N_FEATURES];
                black_box(ensemble.predict_into(black_box(row), &mut scratch));
            })
        });
        group.throughput(Throughput::Elements(100));
        group.bench_function(format!("rows_100/{name}"), |b| {
            let mut start = 0;
            b.iter(|| {
                start = (start + 100) % (n_rows - 99);
                for row in
                    rows[start * N_FEATURES..(start + 100) * N_FEATURES].chunks_exact(N_FEATURES)
                {
                    black_box(ensemble.predict_into(black_box(row), &mut scratch));
                }
            })
        });
        let mut batch = Batch::new();
        group.bench_function(format!("batch_100/{name}"), |b| {
            let mut start = 0;
            b.iter(|| {
                start = (start + 100) % (n_rows - 99);
                let rows = &rows[start * N_FEATURES..(start + 100) * N_FEATURES];
                ensemble.predict_batch_into(black_box(rows), &mut batch);
                black_box(batch.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
