#!/usr/bin/env bash
# Benchmarks (run by `make bench`): cold start, warm path, CPU path, large models next to
# onnxruntime, sizes, memory, DynamoDB calls per request and cost per million predictions, each
# next to its floor measured in the same run, written to BENCHMARKS.md. Leaves no process
# behind, whatever happens.
#
# Usage: scripts/bench.sh [--quick] [--out FILE]
#   stages: tools -> build (x86_64 release functions, predict with jitter entropy, the large
#           models (scripts/model_bench.sh --prepare), predict with the large GBM embedded,
#           harness, criterion benches; before anything is timed) -> arm64 zips (cargo lambda)
#           -> DynamoDB Local (free port) -> tables -> signing keys + a client (admin CLI) ->
#           DynamoDB Local warm-up -> cold starts (null; predict, the Iris and the GBM builds
#           alternating; token) -> DynamoDB floor of a fresh process -> warm (predict, token)
#           -> DynamoDB calls per request -> anonymous requests -> cold starts over TLS, then
#           under 128 and 256 MB CPU shares (with their floors) -> stop DynamoDB Local ->
#           criterion (core parts, whole handler) -> large models next to onnxruntime
#           (scripts/model_bench.sh --measure) -> report
#   --quick      a smoke test of the pipeline: 3 cold starts, 200 warm invocations, short criterion
#   --out FILE   where the report goes (default: BENCHMARKS.md at the repository root)
# Environment: TOOLS_DIR; BENCH_COLD_RUNS (20), BENCH_WARM_INVOCATIONS (2000),
#   BENCH_TOKEN_INVOCATIONS (300), BENCH_REJECTION_REQUESTS (200), BENCH_SKIP_ZIP=1 (no arm64
#   build; sizes left out).
# Exit status: 0 when every stage measured, whatever the numbers say (benchmarks report, they
# never fail a build); 1 when something could not be built, started or measured. The report is
# written either way, with the stages that ran. Raw results and logs: target/bench-results/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

quick=false
OUT="$SMLA_ROOT/BENCHMARKS.md"
while [[ $# -gt 0 ]]; do
    case "$1" in
    --quick) quick=true ;;
    --out)
        OUT="$(realpath -m "${2:?--out needs a file}")"
        shift
        ;;
    -h | --help)
        sed -n '2,26p' "$SMLA_ROOT/scripts/bench.sh"
        exit 0
        ;;
    *) die "unknown argument $1 (try --help)" ;;
    esac
    shift
done

# The benchmarks are of the Iris default (their requests are Iris rows); the large model gets a
# build of its own below.
unset MODEL_ARTIFACTS_DIR

COLD_RUNS="${BENCH_COLD_RUNS:-20}"
WARM_INVOCATIONS="${BENCH_WARM_INVOCATIONS:-2000}"
TOKEN_INVOCATIONS="${BENCH_TOKEN_INVOCATIONS:-300}"
REJECTION_REQUESTS="${BENCH_REJECTION_REQUESTS:-200}"
CRITERION_ARGS=(--warm-up-time 1 --measurement-time 3)
if $quick; then
    COLD_RUNS=3 WARM_INVOCATIONS=200 TOKEN_INVOCATIONS=50 REJECTION_REQUESTS=30
    CRITERION_ARGS=(--warm-up-time 0.5 --measurement-time 1)
fi

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/smla-bench.XXXXXX")"
chmod 700 "$RUN_DIR"
RESULTS="$RUN_DIR/results"
KEEP_DIR="$SMLA_ROOT/target/bench-results" # raw results and logs survive the run
HARNESS="$SMLA_ROOT/target/release/smla-bench"
STARTED="$(date +%s)"
FAILED=()

# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
    local rc="$1"
    print_timings
    if [[ -d "$RESULTS" ]]; then
        rm -rf "$KEEP_DIR"
        mkdir -p "$KEEP_DIR"
        cp -r "$RESULTS/." "$KEEP_DIR/" 2>/dev/null || true
        cp "$RUN_DIR"/*.log "$KEEP_DIR/" 2>/dev/null || true
    fi
    print_verdict "$rc" bench.sh "done; report in $OUT, raw results in $KEEP_DIR" \
        "raw results and logs in $KEEP_DIR"
}
smla_init_cleanup on_exit
SMLA_CLEANUP_HOOKS+=("rm -rf '$RUN_DIR'")

# measure NAME CMD...: run a measuring step; a failure is recorded, and the next stages still run.
measure() {
    local name="$1"
    shift
    stage_begin "$name"
    if run_step "$@"; then
        stage_end
    else
        stage_end "FAILED"
        FAILED+=("$name")
    fi
}

# ---------------------------------------------------------------------------------------------
# Build everything first: nothing is timed while rustc runs.

stage_begin "tools"
ensure_tools
stage_end

BUILD_CMD="cargo build --release -p predict-function -p token-function"
BIN_DIR="$RUN_DIR/bin"
stage_begin "build: x86_64 release functions"
# shellcheck disable=SC2086 # word splitting of the command is intended
run_step $BUILD_CMD
# Keep this build's own artifacts: `cargo bench` below rebuilds the same binaries with the bench
# profile and the dev-dependencies' features (aws-sdk-dynamodb/test-util), and cargo then points
# target/release/<bin> at those. The second cargo call is a no-op that names the artifacts.
mkdir -p "$BIN_DIR"
# shellcheck disable=SC2086
cargo ${BUILD_CMD#cargo } --message-format=json 2>/dev/null | python3 -c '
import json, shutil, sys
copied = set()
for line in sys.stdin:
    msg = json.loads(line)
    exe = msg.get("executable") if msg.get("reason") == "compiler-artifact" else None
    if exe and msg["target"]["name"] in ("predict", "token"):
        shutil.copy2(exe, sys.argv[1] + "/" + msg["target"]["name"])
        copied.add(msg["target"]["name"])
sys.exit(0 if copied == {"predict", "token"} else 1)
' "$BIN_DIR" || die "could not locate the release binaries of predict and token"
stage_end

# The same predict function built with aws-lc's CPU jitter entropy (aws-lc-sys's default;
# .cargo/config.toml turns it off for every build of this repository), for the cold-start A/B.
# Its own target directory: the switch rebuilds aws-lc and everything above it.
JITTER_CMD="AWS_LC_SYS_NO_JITTER_ENTROPY=0 cargo build --release -p predict-function"
stage_begin "build: predict with jitter entropy"
if AWS_LC_SYS_NO_JITTER_ENTROPY=0 CARGO_TARGET_DIR="$SMLA_ROOT/target/bench-jitter" \
    run_step cargo build --release -p predict-function; then
    cp "$SMLA_ROOT/target/bench-jitter/release/predict" "$BIN_DIR/predict-jitter"
    stage_end
else
    stage_end "FAILED"
    FAILED+=("predict with jitter entropy")
fi

# The large models of scripts/model_bench.sh: trained, exported and imported here, timed after
# DynamoDB Local has stopped. The gradient-boosted one is also a model directory to build the
# predict function with.
MODEL_BENCH_DIR="$(cargo_target_dir)/model-bench"
MODEL_BENCH_CMD="scripts/model_bench.sh --measure"
if $quick; then MODEL_BENCH_CMD+=" --quick"; fi
stage_begin "build: large models (model_bench.sh --prepare)"
if run_step scripts/model_bench.sh --prepare; then stage_end; else
    stage_end "FAILED"
    FAILED+=("large models")
fi

# The same functions built with the large gradient-boosted model embedded instead of Iris, for
# the cold-start comparison: the same command as the shipped build (features unify alike), in
# a target directory of its own like the jitter build's. Its first run builds everything once;
# later runs find nothing to do while the model directory is unchanged (model_bench.sh keeps its
# files when their content is the same). Building it in target/release instead would recompile
# and relink predict twice per run, to embed the model and to embed Iris again.
GBM_CMD="MODEL_ARTIFACTS_DIR=${MODEL_BENCH_DIR#"$SMLA_ROOT"/}/gbm $BUILD_CMD"
stage_begin "build: predict with the large GBM embedded"
# shellcheck disable=SC2086 # word splitting of the command is intended
if MODEL_ARTIFACTS_DIR="$MODEL_BENCH_DIR/gbm" CARGO_TARGET_DIR="$SMLA_ROOT/target/bench-gbm" \
    run_step $BUILD_CMD; then
    cp "$SMLA_ROOT/target/bench-gbm/release/predict" "$BIN_DIR/predict-gbm"
    stage_end
else
    stage_end "FAILED"
    FAILED+=("predict with the large GBM")
fi

stage_begin "build: harness"
run_step cargo build --release -p secure-ml-bench
stage_end

CRIT_CORE_CMD="cargo bench -p secure-ml-core --bench cpu_path -- ${CRITERION_ARGS[*]}"
CRIT_HANDLER_CMD="cargo bench -p predict-function --bench handler -- ${CRITERION_ARGS[*]}"
stage_begin "build: criterion benches"
run_step cargo bench --no-run -p secure-ml-core --bench cpu_path
run_step cargo bench --no-run -p predict-function --bench handler
stage_end

# The same command as `make build` (and SAM's rust-cargolambda), plus the zip: features unify
# over the whole workspace exactly as in the deployed artifact.
ZIP_CMD="cargo lambda build --release --arm64 --output-format zip --bin predict --bin token"
if [[ "${BENCH_SKIP_ZIP:-}" == 1 ]]; then
    log "BENCH_SKIP_ZIP=1: no arm64 build, sizes left out"
else
    stage_begin "build: arm64 zips (cargo lambda + zig)"
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
        run_step rustup target add aarch64-unknown-linux-gnu
    # shellcheck disable=SC2086 # word splitting of the command is intended
    if run_step $ZIP_CMD; then stage_end; else
        stage_end "FAILED"
        FAILED+=("arm64 zips")
    fi
fi

# ---------------------------------------------------------------------------------------------
# The local stack

stage_begin "DynamoDB Local"
DDB_PORT="$(free_port)"
start_dynamodb "$DDB_PORT" "$RUN_DIR/dynamodb.log"
stage_end

stage_begin "tables, signing keys, client"
suffix="$(date +%s)-$$"
export_stack_env "$DDB_PORT" 0 "smla-bench-$suffix-rate-limits" "smla-bench-$suffix-clients" "$RUN_DIR"
export TOKEN_ISSUER="urn:secure-ml-api:smla-bench" # the template's form
create_tables "$AWS_ENDPOINT_URL_DYNAMODB" RateLimitTable="$RATE_LIMIT_TABLE" ClientsTable="$CLIENTS_TABLE"
generate_keys
create_client "$RUN_DIR/client.json" cargo run -q -p admin -- -- --name bench
rm -f "$RUN_DIR/client.json"
export BENCH_CLIENT_ID="$CLIENT_ID" BENCH_CLIENT_SECRET="$CLIENT_SECRET"
stage_end

# ---------------------------------------------------------------------------------------------
# Measurements against the stack

PREDICT_BIN="$BIN_DIR/predict"
TOKEN_BIN="$BIN_DIR/token"
mkdir -p "$RESULTS"

# DynamoDB Local is a JVM: its first few thousand requests run interpreted. Warm it up so the
# first scenario is not charged for its JIT.
measure "warm up DynamoDB Local" "$HARNESS" warmup-dynamodb --calls 3000
measure "cold start: null function" "$HARNESS" coldstart --function null --runs "$COLD_RUNS" --out "$RESULTS"
# The build with the large GBM alternates with the shipped one: the difference is the model's.
GBM=()
cold_predict="cold start: predict"
if [[ -x "$BIN_DIR/predict-gbm" ]]; then
    GBM=(--variant "predict-gbm=$BIN_DIR/predict-gbm" --request "predict-gbm=$MODEL_BENCH_DIR/gbm-predict.json")
    cold_predict="cold start: predict, Iris and large GBM"
fi
measure "$cold_predict" "$HARNESS" coldstart --function predict --binary "$PREDICT_BIN" "${GBM[@]}" --runs "$COLD_RUNS" --out "$RESULTS"
measure "cold start: token" "$HARNESS" coldstart --function token --binary "$TOKEN_BIN" --runs "$COLD_RUNS" --out "$RESULTS"
measure "DynamoDB floor of a fresh process" "$HARNESS" fresh-process --runs "$COLD_RUNS" --out "$RESULTS"
measure "warm: predict" "$HARNESS" warm --function predict --binary "$PREDICT_BIN" --invocations "$WARM_INVOCATIONS" --out "$RESULTS"
measure "warm: token" "$HARNESS" warm --function token --binary "$TOKEN_BIN" --invocations "$TOKEN_INVOCATIONS" --warmup 20 --out "$RESULTS"
measure "DynamoDB calls per request" "$HARNESS" calls --predict "$PREDICT_BIN" --token "$TOKEN_BIN" --out "$RESULTS"
measure "anonymous requests (worst case)" "$HARNESS" rejections --predict "$PREDICT_BIN" --token "$TOKEN_BIN" --requests "$REJECTION_REQUESTS" --out "$RESULTS"

# Cold starts as AWS sees them: DynamoDB Local behind TLS, then also under a Lambda memory
# size's CPU share (a cgroup quota; skipped with the reason in the report where the machine
# cannot give one). The build with jitter entropy alternates with the shipped one.
JITTER=()
[[ -x "$BIN_DIR/predict-jitter" ]] && JITTER=(--variant "predict-jitter=$BIN_DIR/predict-jitter")
for share in "" 128 256; do
    args=(--tls)
    label="TLS"
    if [[ -n "$share" ]]; then
        args+=(--cpu-share-mb "$share")
        label="TLS, $share MB CPU share"
        measure "cold start: null, $share MB CPU share" "$HARNESS" coldstart --function null --runs "$COLD_RUNS" --cpu-share-mb "$share" --out "$RESULTS"
    fi
    measure "DynamoDB floor of a fresh process ($label)" "$HARNESS" fresh-process --runs "$COLD_RUNS" "${args[@]}" --out "$RESULTS"
    measure "cold start: predict ($label)" "$HARNESS" coldstart --function predict --binary "$PREDICT_BIN" "${JITTER[@]}" --runs "$COLD_RUNS" "${args[@]}" --out "$RESULTS"
    if [[ "$share" != 256 ]]; then
        measure "cold start: token ($label)" "$HARNESS" coldstart --function token --binary "$TOKEN_BIN" --runs "$COLD_RUNS" "${args[@]}" --out "$RESULTS"
    fi
done

# The CPU benches need no stack; stop DynamoDB Local (a JVM) so it cannot disturb them.
stage_begin "stop DynamoDB Local"
kill -TERM "$DYNAMODB_PID" 2>/dev/null || true
for _ in $(seq 1 50); do kill -0 "$DYNAMODB_PID" 2>/dev/null || break; sleep 0.1; done
_forget_session "$DYNAMODB_PID:leader"
kill -KILL "$DYNAMODB_PID" 2>/dev/null || true
stage_end

export CRITERION_HOME="$RESULTS/criterion"
# shellcheck disable=SC2086 # word splitting of the commands is intended
measure "criterion: core parts" $CRIT_CORE_CMD
# shellcheck disable=SC2086
measure "criterion: whole handler" $CRIT_HANDLER_CMD
# shellcheck disable=SC2086
measure "large models next to onnxruntime" $MODEL_BENCH_CMD "$RESULTS/model-bench.json"

stage_begin "report"
run_step "$HARNESS" report --results "$RESULTS" --criterion "$CRITERION_HOME" \
    --lambda-dir "$SMLA_ROOT/target/lambda" --release-dir "$BIN_DIR" --out "$OUT" \
    --command "build=$BUILD_CMD" --command "zip=$ZIP_CMD" --command "jitter=$JITTER_CMD" \
    --command "criterion-core=$CRIT_CORE_CMD" --command "criterion-handler=$CRIT_HANDLER_CMD" \
    --command "model-bench=$MODEL_BENCH_CMD" --command "gbm-build=$GBM_CMD" \
    --elapsed "scripts/bench.sh$($quick && echo ' --quick'), $(($(date +%s) - STARTED)) s including builds"
stage_end

if [[ ${#FAILED[@]} -gt 0 ]]; then
    warn "stages that could not measure: ${FAILED[*]}"
    exit 1
fi
