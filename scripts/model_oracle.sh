#!/usr/bin/env bash
# Proof that an imported model is the user's model: trains scikit-learn, XGBoost and LightGBM
# models (random forests, extra trees, gradient boosting, histogram boosting; classifiers and
# regressors) on data shipped inside scikit-learn or generated, exports each to ONNX, imports it
# with `import-model` into a temporary directory (never model-artifacts/), and compares
# `model-predict` with the training library and with onnxruntime on 10,000 rows per model inside
# and outside the training range (NaN rows where the model handles missing values): the same class
# on every row, probabilities and relative regression values within 1e-5. Prints one table row
# per model type; exit status 0 only if every model agrees.
#
# Usage: scripts/model_oracle.sh [--rows N] [--only NAME] [--json FILE] [--seed N]
# Needs: the model tools (installed on first use: scripts/tools.sh --models). Builds the two
# commands in the debug profile, which `cargo build --workspace --all-targets` (make test) has
# already built. About 2 minutes on 2 cores, most of it training and onnxruntime.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

case "${1:-}" in
-h | --help)
    sed -n '2,13p' "$0"
    exit 0
    ;;
esac

"$SMLA_ROOT/scripts/tools.sh" --models
cargo build --quiet -p model-import --bins
target="$(cargo_target_dir)/debug"
exec "$VENV/bin/python" "$SMLA_ROOT/scripts/model_oracle.py" \
    --import-model "$target/import-model" --model-predict "$target/model-predict" "$@"
