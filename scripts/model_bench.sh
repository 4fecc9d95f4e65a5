#!/usr/bin/env bash
# Inference speed of large tree ensembles next to onnxruntime's, on the same models and rows, as
# one JSON document: a 300-tree depth-8 XGBoost classifier and a 100-tree scikit-learn random
# forest on 30 features; per row for a single row and within a 100-row batch, artifact size and
# decode (init) time; onnxruntime with intra_op_num_threads=1 and with its default pool.
# `make bench` (scripts/bench.sh) runs it in two halves: --prepare with its builds, --measure
# with its CPU benches, and reports the document in BENCHMARKS.md.
#
# Usage: scripts/model_bench.sh [--quick] [--prepare | --measure] [OUT.json]
#   (default OUT: target/model-bench/results.json)
#   --quick     short criterion runs (a smoke test of the pipeline, noisy figures)
#   --prepare   only train, export and import the models and compile the criterion bench; times
#               nothing. Leaves target/model-bench/gbm/ (model.bin + manifest.json, a model
#               directory for MODEL_ARTIFACTS_DIR) and gbm-predict.json (a POST /predict body of
#               one probe row); files whose content did not change keep their timestamps.
#   --measure   only time the models a previous --prepare left
# Needs the model tools (installed on first use: scripts/tools.sh --models). About 3 minutes.
# Output keys: models.{gbm,rf}.{artifact_bytes, onnx_bytes, ours.{decode_us, row_ns,
# batch_100_per_row_ns}, onnxruntime.{threads_1,threads_default}.{row_ns, batch_100_per_row_ns,
# session_create_ms}, speedup_vs_onnxruntime_*}, onnxruntime_call_overhead_ns.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

quick=false
prepare=true
measure=true
out=""
for arg in "$@"; do
    case "$arg" in
    --quick) quick=true ;;
    --prepare) measure=false ;;
    --measure) prepare=false ;;
    -h | --help)
        sed -n '2,21p' "$0"
        exit 0
        ;;
    -*) die "unknown option $arg (try --help)" ;;
    *) out="$arg" ;;
    esac
done
$prepare || $measure || die "give --prepare or --measure, not both (without either it does both)"

"$SMLA_ROOT/scripts/tools.sh" --models
target="$(cargo_target_dir)"
dir="$target/model-bench"
out="${out:-$dir/results.json}"
mkdir -p "$dir"

if $prepare; then
    log "training, exporting and importing the benchmark models"
    cargo build --quiet -p model-import --bin import-model
    "$VENV/bin/python" scripts/model_bench.py prepare "$dir" "$target/debug/import-model"
    cargo bench --quiet --no-run -p tree-model --bench inference
fi
$measure || exit 0

for f in gbm.bin rf.bin rows.f64 rows.f32 gbm.onnx rf.onnx; do
    [[ -s "$dir/$f" ]] || die "$dir/$f is missing: run scripts/model_bench.sh --prepare first"
done
rm -rf "$dir/criterion"
log "criterion: decode, one row, 100-row batch"
timing=(--warm-up-time 1 --measurement-time 4)
$quick && timing=(--warm-up-time 0.2 --measurement-time 0.5)
MODEL_BENCH_DIR="$dir" CRITERION_HOME="$dir/criterion" \
    cargo bench --quiet -p tree-model --bench inference -- "${timing[@]}" >&2

log "onnxruntime on the same models and rows"
"$VENV/bin/python" scripts/model_bench.py ort "$dir"
"$VENV/bin/python" scripts/model_bench.py report "$dir" | tee "$out"
log "wrote $out"
