#!/usr/bin/env bash
# The project's one test command (run by `make test` and CI): lint, then every test, unit and
# integration, against a throwaway local stack. Exit status = the result; everything it started is
# stopped at the end, pass, fail or Ctrl-C.
#
# Usage: scripts/test.sh [--no-lint] [-- LIBTEST_ARGS...]
#   stages: tools -> cargo fmt --check -> clippy -D warnings -> cargo deny -> build -> DynamoDB Local
#           (free port) -> tables -> signing keys (temp dir) -> cargo lambda watch (free port,
#           both functions warmed) -> a second cargo lambda watch of the same build (free port,
#           predict warmed; the flood's other half) -> smoke test -> README commands -> cargo test
#           --workspace -- --include-ignored [LIBTEST_ARGS] -> contract test (openapi +
#           schemathesis) -> fault injection -> log scan for secrets -> key rotation and
#           revocation -> fuzzing -> imported models (scripts/model_oracle.sh,
#           scripts/model_e2e.sh) -> deploy checks (cfn-lint, sam validate, sam build)
#   --no-lint        skip fmt and clippy (quick local iterations)
#   LIBTEST_ARGS     e.g. a test-name filter: scripts/test.sh -- rate_limit (skips the contract,
#                    fault, fuzz and model stages)
# Tests read: AWS_ENDPOINT_URL_DYNAMODB AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
#   RATE_LIMIT_TABLE CLIENTS_TABLE SIGNING_KEYS_FILE TOKEN_ISSUER TOKEN_AUDIENCE
#   SMLA_WATCH_URL (http://127.0.0.1:<port>: the deployed API's paths and the invoke API)
#   SMLA_WATCH_URLS (both watches' base URLs, SMLA_WATCH_URL first, space-separated)
#   SMLA_WATCH_INSTANCES (instances per function, in each watch).
# Environment: TOOLS_DIR, TEST_WARMUP_TIMEOUT (seconds for compiling the functions, 1800),
#   TEST_WATCH_INSTANCES (instances per function under cargo lambda watch, 8),
#   TEST_DEPLOY_CHECKS=0 (skip scripts/deploy_checks.sh outside CI), TEST_SAM_BUILD=0 (skip only
#   its release arm64 sam build and zip-size check outside CI), TEST_FUZZ=0 (skip fuzzing),
#   TEST_FUZZ_SECONDS (20 per target), TEST_MODELS=0 (skip the imported-model stage outside CI).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

lint=true
libtest_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --no-lint) lint=false ;;
    --)
        shift
        libtest_args=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,27p' "$0"
        exit 0
        ;;
    *) die "unknown argument $1 (try --help)" ;;
    esac
    shift
done

WARMUP_TIMEOUT="${TEST_WARMUP_TIMEOUT:-1800}"
# CI checks that Cargo.lock is committed and current; locally cargo may update it.
cargo_locked=()
[[ "${CI:-}" == "true" ]] && cargo_locked=(--locked)
# A fresh clone builds everything once: incremental caches only pay off on rebuilds, and they
# would add their own copy of every workspace crate to target/.
[[ "${CI:-}" == "true" ]] && export CARGO_INCREMENTAL=0

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/smla-test.XXXXXX")"
chmod 700 "$RUN_DIR"
LOG_DIR="$SMLA_ROOT/target/test-logs" # survives the run, for reading after a failure

# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
    local rc="$1"
    print_timings
    if [[ "$rc" != 0 ]]; then
        rm -rf "$LOG_DIR"
        mkdir -p "$LOG_DIR"
        cp "$RUN_DIR"/{dynamodb,watch,watch-2}.log "$LOG_DIR/" 2>/dev/null || true
        print_log_tails 40 "$LOG_DIR"/{dynamodb,watch,watch-2}.log
    fi
    print_verdict "$rc" test.sh "all stages passed" "full logs in ${LOG_DIR#"$SMLA_ROOT"/}"
}
smla_init_cleanup on_exit
SMLA_CLEANUP_HOOKS+=("rm -rf '$RUN_DIR'")

# A run on a fresh clone and machine writes about 5 GiB (measured: 4.0 GiB in the checkout —
# target/, fuzz/target, .tools — plus the cargo registry, the arm64 standard library and caches).
# Warn, not refuse: a warm checkout needs far less.
DISK_NEED_KIB=$((6 * 1024 * 1024))
if (($(disk_free_kib) < DISK_NEED_KIB)); then
    warn "only $(($(disk_free_kib) / 1024)) MiB free on the disk of $SMLA_ROOT; a first run needs about 5 GiB (the stage table at the end shows what each stage used)"
fi

stage_begin "tools"
ensure_tools
stage_end

if $lint; then
    stage_begin "cargo fmt --check"
    run_step cargo fmt --all --check
    stage_end

    stage_begin "cargo clippy -D warnings"
    run_step cargo clippy "${cargo_locked[@]}" --workspace --all-targets -- -D warnings
    # secure-ml-core without its `aws` feature, as the fuzz targets build it.
    run_step cargo clippy "${cargo_locked[@]}" -p secure-ml-core --no-default-features --lib -- -D warnings
    stage_end
fi

# Licences, banned and duplicate crates, sources (deny.toml); offline: advisories need the
# network (README "Supply chain"). cargo-deny reads `cargo metadata` for every platform, so the
# sources of crates no build here compiles (Windows-only ones, for instance) are fetched first:
# on a fresh machine nothing else downloads them.
stage_begin "cargo deny (bans, licenses, sources)"
run_step cargo fetch "${cargo_locked[@]}"
run_step cargo-deny --offline check bans licenses sources
stage_end

# Compile everything before any server starts: a build failure is reported as one, and the
# "tests" stage below measures running them. One build of all targets resolves features once for
# the whole workspace, so `cargo test` reuses it and the admin binary below comes from it too
# (`cargo run -p admin` would resolve admin's features alone and rebuild a dozen heavy
# dependencies such as aws-lc-sys: minutes on a fresh clone).
stage_begin "build (all targets)"
run_step cargo build "${cargo_locked[@]}" --workspace --all-targets
ADMIN_BIN="$(cargo_target_dir)/debug/admin"
stage_end

stage_begin "DynamoDB Local"
DDB_PORT="$(free_port)"
start_dynamodb "$DDB_PORT" "$RUN_DIR/dynamodb.log"
stage_end

stage_begin "tables from template.yaml"
WATCH_PORT="$(free_port)"
while [[ "$WATCH_PORT" == "$DDB_PORT" ]]; do WATCH_PORT="$(free_port)"; done
WATCH2_PORT="$(free_port)"
while [[ "$WATCH2_PORT" == "$DDB_PORT" || "$WATCH2_PORT" == "$WATCH_PORT" ]]; do WATCH2_PORT="$(free_port)"; done
suffix="$(date +%s)-$$"
export_stack_env "$DDB_PORT" "$WATCH_PORT" "smla-test-$suffix-rate-limits" "smla-test-$suffix-clients" "$RUN_DIR"
create_tables "$AWS_ENDPOINT_URL_DYNAMODB" RateLimitTable="$RATE_LIMIT_TABLE" ClientsTable="$CLIENTS_TABLE"
stage_end

stage_begin "signing keys"
generate_keys "$ADMIN_BIN"
stage_end

# --ignore-changes: the functions under test never restart mid-run, whatever is edited or built
# meanwhile (cargo test itself writes only to target/, which watch ignores anyway).
stage_begin "cargo lambda watch + warm-up"
# Slow refill for the end-to-end limit tests: a flood that finishes within seconds must admit
# exactly the burst (predict: 20, one unit per 10 s; token: 5, one per minute). The rejection
# penalty (per instance) is set well above the few bad requests the smoke test, the README
# commands and the routing test send from 127.0.0.1, but low enough for the test that floods a
# source of its own to reach it on every instance in seconds.
export PREDICT_RATE_PER_MINUTE=6 TOKEN_RATE_PER_MINUTE=1 REJECTION_LIMIT=100
# Several instances per function (the first request starts them all), so the floods race
# admissions across instances in DynamoDB as on AWS.
export SMLA_WATCH_INSTANCES="${TEST_WATCH_INSTANCES:-8}"
write_function_env "$RUN_DIR/function.env" "$ADMIN_BIN"
start_watch "$WATCH_PORT" "$RUN_DIR/function.env" "$RUN_DIR/watch.log" "$SMLA_WATCH_INSTANCES" --ignore-changes
warm_function "$WATCH_PORT" predict /health "$WARMUP_TIMEOUT"
warm_function "$WATCH_PORT" token /.well-known/jwks.json "$WARMUP_TIMEOUT"
stage_end

# The exactness flood sends 200 requests at once from one address, more than one watch can
# queue: in cargo-lambda 1.9.2 a function's queue holds 100 invocations, and one more stops
# watch for good (functions/predict/tests/e2e.rs, WATCH_QUEUE). A second watch of the same
# build, with the same environment, tables and instance count, takes half of them; its
# instances race the first watch's in DynamoDB, as instances do on AWS. Only predict is warmed:
# the flood sends it nothing else. The first watch stays the stack's (WATCH_PID, WATCH_LOG).
stage_begin "second cargo lambda watch + warm-up"
watch1=("$WATCH_PID" "$WATCH_LOG")
start_watch "$WATCH2_PORT" "$RUN_DIR/function.env" "$RUN_DIR/watch-2.log" "$SMLA_WATCH_INSTANCES" --ignore-changes
WATCH2_LOG="$WATCH_LOG"
warm_function "$WATCH2_PORT" predict /health "$WARMUP_TIMEOUT"
WATCH_PID="${watch1[0]}" WATCH_LOG="${watch1[1]}"
export SMLA_WATCH_URLS="$SMLA_WATCH_URL http://127.0.0.1:$WATCH2_PORT"
stage_end

# --- Hook: smoke test (part of the deploy-checks hook below; runs here, before the tests) ----
#   scripts/smoke.sh, the client flow a user runs against AWS, at the same paths on the local
#   stack. Every HTTP request through watch comes from 127.0.0.1 and shares one budget (token:
#   burst 5, one per minute): the smoke spends 2 token requests and 5 predict units, the README
#   commands 2 token requests and 4 predict units, the e2e tests 1 token request.
stage_begin "smoke test (scripts/smoke.sh)"
smoke_rc=0
(umask 077 && : >"$RUN_DIR/smoke-client.json")
if run_step "$ADMIN_BIN" client create --name smoke --scopes "predict predict:proba" --json \
    >"$RUN_DIR/smoke-client.json"; then
    read -r smoke_id smoke_secret < <("$VENV/bin/python" -c 'import json, sys
c = json.load(open(sys.argv[1])); print(c["client_id"], c["client_secret"])' "$RUN_DIR/smoke-client.json") ||
        smoke_rc=$?
    # The credentials go through the environment, not a command line (`ps` shows those).
    export CLIENT_ID="$smoke_id" CLIENT_SECRET="$smoke_secret"
    [[ $smoke_rc != 0 ]] || run_step "$SMLA_ROOT/scripts/smoke.sh" "$SMLA_WATCH_URL" || smoke_rc=$?
    unset CLIENT_ID CLIENT_SECRET smoke_secret
else
    smoke_rc=$?
fi
stage_end "$([[ $smoke_rc == 0 ]] && echo ok || echo "FAILED (exit $smoke_rc)")"

# Every README command for the local stack (the blocks marked readme-check), as written, against
# this stack: a directory laid out as make dev's .dev/ (the stack's environment, a demo client)
# stands in for .dev/, and the admin binary built above for `cargo run -q -p admin --`.
stage_begin "README commands (scripts/readme_commands.py)"
readme_rc=0
README_DEV="$RUN_DIR/dev"
mkdir -m 700 "$README_DEV"
cp "$RUN_DIR/function.env" "$README_DEV/function.env"
(umask 077 && : >"$README_DEV/demo-client.json")
if run_step "$ADMIN_BIN" client create --name demo --scopes "predict predict:proba" --json \
    >"$README_DEV/demo-client.json"; then
    write_client_env "$README_DEV/demo-client.json" "$README_DEV/demo-client.env" || readme_rc=$?
    [[ $readme_rc != 0 ]] || run_step "$VENV/bin/python" "$SMLA_ROOT/scripts/readme_commands.py" \
        --stack "$README_DEV" --admin "$ADMIN_BIN" || readme_rc=$?
else
    readme_rc=$?
fi
stage_end "$([[ $readme_rc == 0 ]] && echo ok || echo "FAILED (exit $readme_rc)")"

stage_begin "cargo test (unit + integration)"
# The e2e tests write every secret and token they use to SMLA_CANARY_FILE; the leak scan below
# searches the logs for them. fault_injection stops DynamoDB Local, so it runs alone, later.
export SMLA_CANARY_FILE="$RUN_DIR/canaries" SMLA_WATCH_LOG="$WATCH_LOG" SMLA_DYNAMODB_PID="$DYNAMODB_PID" \
    SMLA_ADMIN="$ADMIN_BIN"
(umask 077 && : >"$SMLA_CANARY_FILE")
test_rc=0
run_step cargo test "${cargo_locked[@]}" --workspace -- --include-ignored --skip fault_injection --skip key_revocation \
    "${libtest_args[@]+"${libtest_args[@]}"}" || test_rc=$?
stage_end "$([[ $test_rc == 0 ]] && echo ok || echo "FAILED (exit $test_rc)")"

# The OpenAPI contract: openapi.yaml validated, then schemathesis (fixed seed and budget, every
# check) against a second `cargo lambda watch` of the same build with limits the run cannot hit.
contract_rc=0
if [[ ${#libtest_args[@]} == 0 ]]; then
    stage_begin "contract test (scripts/contract.sh: openapi.yaml + schemathesis)"
    run_step env CONTRACT_ADMIN="$ADMIN_BIN" "$SMLA_ROOT/scripts/contract.sh" --watch || contract_rc=$?
    stage_end "$([[ $contract_rc == 0 ]] && echo ok || echo "FAILED (exit $contract_rc)")"
fi

# DynamoDB Local stopped (SIGSTOP) mid-run and resumed, with nothing else running against the
# stack: responses within the configured bound under the configured fail policy, then recovery
# in the same function instances (no new init).
fault_rc=0
if [[ ${#libtest_args[@]} == 0 ]]; then
    stage_begin "fault injection (DynamoDB stopped mid-run)"
    run_step cargo test "${cargo_locked[@]}" --workspace --test e2e fault_injection \
        -- --include-ignored --nocapture || fault_rc=$?
    stage_end "$([[ $fault_rc == 0 ]] && echo ok || echo "FAILED (exit $fault_rc)")"
fi

# Secrets never reach a log: every secret and token the tests used (canaries), the smoke test's
# client secret and the private signing keys, searched for in everything the functions (both
# watches) and DynamoDB Local logged during the run.
stage_begin "secrets never logged (log scan)"
leak_rc=0
{
    cat "$SMLA_CANARY_FILE"
    "$VENV/bin/python" - "$RUN_DIR/smoke-client.json" "$SIGNING_KEYS_FILE" <<'PY'
import json, sys
smoke, keys = sys.argv[1:]
try:
    print(json.load(open(smoke))["client_secret"])
except (OSError, ValueError, KeyError):
    pass
for key in json.load(open(keys)).get("keys", []):
    for field in ("d", "private_key", "pkcs8"):
        if isinstance(key.get(field), str):
            print(key[field])
PY
} | awk 'length($0) >= 16' | sort -u >"$RUN_DIR/canaries.all"
canaries="$(wc -l <"$RUN_DIR/canaries.all")"
if [[ "$canaries" -lt 3 ]]; then
    warn "only $canaries secrets to search for: the tests did not record theirs"
    leak_rc=1
elif grep -F -n -f "$RUN_DIR/canaries.all" "$WATCH_LOG" "$WATCH2_LOG" "$RUN_DIR/dynamodb.log" >"$RUN_DIR/leaks" 2>/dev/null; then
    warn "a secret appears in the logs ($(wc -l <"$RUN_DIR/leaks") lines; file:line below, values withheld):"
    cut -d: -f1,2 "$RUN_DIR/leaks" | head -n 20 >&2
    leak_rc=1
else
    log "searched $(cat "$WATCH_LOG" "$WATCH2_LOG" "$RUN_DIR/dynamodb.log" | wc -l) log lines for $canaries secrets: none found"
fi
stage_end "$([[ $leak_rc == 0 ]] && echo ok || echo FAILED)"

# `admin keys rotate` and `admin keys revoke` against the running stack: the revoked key's
# tokens are refused at /predict. Alone and after the log scan: it replaces the stack's keys.
key_rc=0
if [[ ${#libtest_args[@]} == 0 ]]; then
    stage_begin "key rotation and revocation (end to end)"
    run_step cargo test "${cargo_locked[@]}" --workspace --test e2e key_revocation \
        -- --include-ignored --nocapture || key_rc=$?
    stage_end "$([[ $key_rc == 0 ]] && echo ok || echo "FAILED (exit $key_rc)")"
fi

# Coverage-guided fuzzing of the parsers and token verification (cargo-fuzz, stable toolchain,
# fixed seed): TEST_FUZZ_SECONDS per target (20; `make fuzz` runs longer). Needs no stack.
fuzz_rc=0
if [[ ${#libtest_args[@]} == 0 && "${TEST_FUZZ:-1}" != 0 ]]; then
    stage_begin "fuzzing (scripts/fuzz.sh)"
    run_step env FUZZ_SECONDS="${TEST_FUZZ_SECONDS:-20}" "$SMLA_ROOT/scripts/fuzz.sh" || fuzz_rc=$?
    stage_end "$([[ $fuzz_rc == 0 ]] && echo ok || echo "FAILED (exit $fuzz_rc)")"
fi

# Imported models are the users' models: 18 model types from scikit-learn, XGBoost and LightGBM
# against their libraries and onnxruntime (10,000 rows each), then the README's "Serve your own
# model" end to end: its training scripts and `make import-model` lines, the prediction function
# built against each model and served behind smla-bench gateway, 10,000 rows per model over HTTP
# compared with the library, the README's requests answered as documented. Installs the model
# tools into .tools/venv on first use (scripts/tools.sh --models). About 2 minutes on 2 cores
# once built; the first run adds the tools' install and a release build of the importer.
models_rc=0
if [[ ${#libtest_args[@]} == 0 && ("${TEST_MODELS:-1}" != 0 || "${CI:-}" == "true") ]]; then
    stage_begin "imported models (scripts/model_oracle.sh, scripts/model_e2e.sh)"
    run_step "$SMLA_ROOT/scripts/model_oracle.sh" || models_rc=$?
    run_step "$SMLA_ROOT/scripts/model_e2e.sh" || models_rc=$?
    stage_end "$([[ $models_rc == 0 ]] && echo ok || echo "FAILED (exit $models_rc)")"
fi

# --- Hook: deploy checks (later stage; needs `scripts/tools.sh --deploy`) ---------------------
#   scripts/deploy_checks.sh: cfn-lint template.yaml; sam validate --lint (offline); sam build
#   (rust-cargolambda, arm64, release: minutes); bootstrap checks; the bootstraps under qemu
#   through the smoke flow (scripts/arm64_smoke.sh, on a stack of its own, with the build above);
#   zip size checks. TEST_DEPLOY_CHECKS=0 skips it (quick local iterations; CI always runs it).
deploy_rc=0
if [[ "${TEST_DEPLOY_CHECKS:-1}" != 0 || "${CI:-}" == "true" ]]; then
    stage_begin "deploy checks (scripts/deploy_checks.sh)"
    # Includes the release arm64 `sam build` of both functions and the zip-size check (minutes
    # on a fresh clone, seconds when target/ is warm). TEST_SAM_BUILD=0 skips the build (and so
    # the run under qemu) in quick local iterations; CI always builds.
    deploy_args=()
    [[ "${TEST_SAM_BUILD:-1}" == 0 && "${CI:-}" != "true" ]] && deploy_args=(--no-build)
    run_step "$SMLA_ROOT/scripts/deploy_checks.sh" "${deploy_args[@]+"${deploy_args[@]}"}" || deploy_rc=$?
    stage_end "$([[ $deploy_rc == 0 ]] && echo ok || echo "FAILED (exit $deploy_rc)")"
fi

for rc in "$test_rc" "$contract_rc" "$fault_rc" "$leak_rc" "$key_rc" "$fuzz_rc" "$models_rc" "$smoke_rc" "$readme_rc" "$deploy_rc"; do [[ $rc == 0 ]] || exit "$rc"; done
exit 0
