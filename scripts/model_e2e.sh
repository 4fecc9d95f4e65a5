#!/usr/bin/env bash
# Proof that the served model is the user's model, through the real prediction function: the
# README's "Serve your own model" steps, each model imported, built into the predict function and
# asked over HTTP, its answers compared with the library that trained it.
#
# Usage: scripts/model_e2e.sh [MODEL...]      (default: every model the README documents: wine diabetes)
#   stages: tools (scripts/tools.sh --models) -> for each MODEL: the README's training script
#           (scikit-learn, exported with skl2onnx) and its `make import-model` line, run with
#           MODEL_ARTIFACTS_DIR=<run dir> (model-artifacts/ and openapi.yaml are never touched;
#           the model's own openapi.yaml is written next to it and validated) -> the predict
#           function built against that directory (MODEL_ARTIFACTS_DIR; the workspace's debug
#           build, as `make test` makes it) -> DynamoDB Local (free port), tables, signing keys, a
#           client with `predict predict:proba` -> the function and the token function behind
#           `smla-bench gateway` (template.yaml's routes, the functions' Runtime API) ->
#           scripts/model_e2e.py check: a token from POST /token, 10,000 rows per model through
#           POST /predict/batch, 200 through POST /predict as arrays and by name, the README's
#           documented requests answered exactly as documented; every answer equal to the
#           library's (class; probabilities and regression values within 1e-5) and valid against
#           the model's generated openapi.yaml -> scripts/smoke.sh through the same gateway ->
#           the default build restored (the predict binary embeds model-artifacts/ again).
# Environment: MODEL_E2E_ROWS (10000 per model), TOOLS_DIR.
# Logs (kept): target/model-e2e/ (gateway, functions, DynamoDB Local, each model's directory).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

case "${1:-}" in
-h | --help)
    sed -n '2,23p' "$0"
    exit 0
    ;;
esac
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(wine diabetes)
ROWS="${MODEL_E2E_ROWS:-10000}"
OUT_DIR="$SMLA_ROOT/target/model-e2e"
# Batches of up to 100 rows from 127.0.0.1: limits the run cannot reach (a per-minute quota must
# divide 60000).
LIMITS=(PREDICT_RATE_PER_MINUTE=12000 PREDICT_BURST=1000000 TOKEN_RATE_PER_MINUTE=12000 TOKEN_BURST=1000
    REJECTION_LIMIT=100000000)
cargo_locked=()
[[ "${CI:-}" == "true" ]] && cargo_locked=(--locked)

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/smla-model-e2e.XXXXXX")"
chmod 700 "$RUN_DIR"
rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"

# The predict function is rebuilt against each model in target/'s debug build; whatever happens,
# the build is left embedding model-artifacts/ again.
restore_build() {
    env -u MODEL_ARTIFACTS_DIR cargo build -q "${cargo_locked[@]}" --workspace --bin predict --test init >/dev/null 2>&1 ||
        warn "could not rebuild the predict function against model-artifacts/: run cargo build"
}
# stop_session PID: TERM the session PID leads (spawn) and its descendants, KILL what is left
# after 5 s.
stop_session() {
    local pids=() i
    mapfile -t pids < <(proc_tree "$1")
    [[ ${#pids[@]} -eq 0 ]] || kill -TERM "${pids[@]}" 2>/dev/null || true
    for i in $(seq 1 50); do
        mapfile -t pids < <(proc_tree "$1")
        [[ ${#pids[@]} -eq 0 ]] && break
        sleep 0.1
    done
    [[ ${#pids[@]} -eq 0 ]] || kill -KILL "${pids[@]}" 2>/dev/null || true
    _forget_session "$1:leader"
}
# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
    local rc="$1"
    print_timings
    [[ "$rc" == 0 ]] || print_log_tails 15 "$OUT_DIR"/*.log "$OUT_DIR"/functions-*/*
    print_verdict "$rc" model_e2e.sh "every model answered over HTTP as its library does" \
        "logs in ${OUT_DIR#"$SMLA_ROOT"/}"
}
smla_init_cleanup on_exit
SMLA_CLEANUP_HOOKS+=("rm -rf '$RUN_DIR'" restore_build)

stage_begin "tools (scripts/tools.sh --models)"
run_step "$SMLA_ROOT/scripts/tools.sh" --models
stage_end

# Functions and routes from template.yaml: what API Gateway would route where.
routes=()
mapfile -t routes < <("$VENV/bin/python" - "$SMLA_ROOT/template.yaml" <<'EOF'
import sys
sys.path.insert(0, "scripts")
from create_tables import load_template

for resource in load_template(sys.argv[1]).get("Resources", {}).values():
    if resource.get("Type") != "AWS::Serverless::Function":
        continue
    binary = resource["Metadata"]["BuildProperties"]["Binary"]
    for event in (resource.get("Properties", {}).get("Events") or {}).values():
        props = event.get("Properties") or {}
        if event.get("Type") == "HttpApi":
            key = f"{str(props.get('Method', 'ANY')).upper()} {props['Path']}" if "Path" in props else "$default"
            print(f"--route={key}={binary}")
EOF
)
[[ ${#routes[@]} -gt 3 ]] || die "found no HTTP API routes in template.yaml"

stage_begin "build (the workspace's debug build: token, admin, gateway)"
run_step cargo build "${cargo_locked[@]}" --workspace --all-targets
TARGET_DIR="$(cargo_target_dir)"
HARNESS="$TARGET_DIR/debug/smla-bench"
ADMIN_BIN="$TARGET_DIR/debug/admin"
stage_end

for model in "${models[@]}"; do
    dir="$RUN_DIR/$model"
    stage_begin "$model: the README's training script and make import-model"
    run_step "$VENV/bin/python" "$SMLA_ROOT/scripts/model_e2e.py" prepare "$model" "$dir" --rows "$ROWS"
    mapfile -t import_args <"$dir/import.args"
    mkdir -p "$dir/artifacts"
    # The documented command, writing into the run's directory (and that model's openapi.yaml).
    run_step env MODEL_ARTIFACTS_DIR="$dir/artifacts" make --no-print-directory import-model "${import_args[@]}"
    run_step "$VENV/bin/openapi-spec-validator" "$dir/artifacts/openapi.yaml"
    stage_end

    stage_begin "$model: the predict function built against it"
    # --workspace and a test target: the features `cargo build --workspace --all-targets`
    # resolves, so only the predict function's own targets are rebuilt.
    run_step env MODEL_ARTIFACTS_DIR="$dir/artifacts" cargo build -q "${cargo_locked[@]}" --workspace --bin predict --test init
    cp "$TARGET_DIR/debug/predict" "$dir/predict"
    cp -r "$dir/artifacts" "$OUT_DIR/$model-artifacts"
    stage_end
done

stage_begin "DynamoDB Local, tables, keys, a client"
DDB_PORT="$(free_port)"
start_dynamodb "$DDB_PORT" "$OUT_DIR/dynamodb.log"
suffix="$(date +%s)-$$"
# The issuer is the template's shape (not a URL of the gateway, whose port changes per model).
export_stack_env "$DDB_PORT" 0 "smla-e2e-$suffix-rate-limits" "smla-e2e-$suffix-clients" "$RUN_DIR"
export TOKEN_ISSUER="urn:secure-ml-api:smla-model-e2e"
create_tables "$AWS_ENDPOINT_URL_DYNAMODB" RateLimitTable="$RATE_LIMIT_TABLE" ClientsTable="$CLIENTS_TABLE"
generate_keys "$ADMIN_BIN"
create_client "$RUN_DIR/client.json" "$ADMIN_BIN" -- --name model-e2e --tier free --scopes "predict predict:proba"
# Through the environment, never a command line: smla-bench reads BENCH_CLIENT_*, the checks CLIENT_*.
export CLIENT_ID CLIENT_SECRET BENCH_CLIENT_ID="$CLIENT_ID" BENCH_CLIENT_SECRET="$CLIENT_SECRET"
stage_end

env_args=()
for limit in "${LIMITS[@]}"; do env_args+=(--env "$limit"); done
for model in "${models[@]}"; do
    dir="$RUN_DIR/$model"
    stage_begin "$model: served behind smla-bench gateway, compared with the library"
    GATEWAY_PORT="$(free_port)"
    mkdir -p "$OUT_DIR/functions-$model"
    spawn "$OUT_DIR/gateway-$model.log" "$HARNESS" gateway --port "$GATEWAY_PORT" --logs "$OUT_DIR/functions-$model" \
        --function "predict=$dir/predict" --function "token=$TARGET_DIR/debug/token" "${routes[@]}" "${env_args[@]}"
    gateway_pid=$SPAWNED_PID
    wait_tcp "$GATEWAY_PORT" 120 "$gateway_pid" "smla-bench gateway" ||
        die "the functions did not start behind the gateway (log: ${OUT_DIR#"$SMLA_ROOT"/}/gateway-$model.log)"
    check_rc=0
    run_step "$VENV/bin/python" "$SMLA_ROOT/scripts/model_e2e.py" check "$model" "$dir" \
        "http://127.0.0.1:$GATEWAY_PORT" --rows "$ROWS" >"$OUT_DIR/check-$model.txt" || check_rc=$?
    tee -a "$OUT_DIR/summary.txt" <"$OUT_DIR/check-$model.txt"
    [[ $check_rc == 0 ]] || die "$model: the API and the library disagree (above)"
    run_step "$SMLA_ROOT/scripts/smoke.sh" "http://127.0.0.1:$GATEWAY_PORT" >"$OUT_DIR/smoke-$model.log" 2>&1 ||
        die "scripts/smoke.sh failed against $model (log: ${OUT_DIR#"$SMLA_ROOT"/}/smoke-$model.log)"
    tail -n 1 "$OUT_DIR/smoke-$model.log"
    kill -0 "$gateway_pid" 2>/dev/null || die "the gateway stopped during the checks"
    stop_session "$gateway_pid"
    stage_end
done

stage_begin "the default build restored"
restore_build
stage_end
unset CLIENT_SECRET BENCH_CLIENT_SECRET client_secret
