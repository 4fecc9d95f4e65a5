#!/usr/bin/env bash
# The artifact that ships is the artifact that was tested: the arm64 `bootstrap` files of
# `sam build`, exactly as `sam deploy` uploads them, run under qemu-user against a Lambda Runtime
# API and DynamoDB Local, and scripts/smoke.sh's whole client flow sent through them. Run by
# scripts/deploy_checks.sh after `sam build`; runs alone on an existing build too.
#
# Usage: scripts/arm64_smoke.sh [BUILD_DIR]
#   BUILD_DIR  sam's build directory (default .aws-sam/build): BUILD_DIR/<LogicalId>/bootstrap
#   stages: tools (scripts/tools.sh --arm64: qemu-user, libc6-arm64-cross) -> build of the
#           harness and the admin CLI (x86_64, the build `make test` makes) -> DynamoDB Local
#           (free port), tables from template.yaml, signing keys, a client -> both bootstraps
#           started under `qemu-aarch64 -L /usr/aarch64-linux-gnu` behind `smla-bench gateway`
#           (template.yaml's routes, one base URL, the stack's environment) -> scripts/smoke.sh
#           with SMOKE_RATE_LIMIT=1 (health, JWKS, token, predict, batch, model card, 401, 422,
#           then 429 on both functions) -> the functions' logs searched for the client secret and
#           the private signing keys
# Environment: TOOLS_DIR; ARM64_SMOKE_INIT_TIMEOUT (seconds for both inits, 180).
# Logs (kept): .aws-sam/arm64-smoke/ (gateway, functions, DynamoDB Local).
#
# Emulation makes every step many times slower than on Lambda: no timing from this run is a
# performance figure, and none is printed as one (BENCHMARKS.md measures natively).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

case "${1:-}" in
-h | --help)
    sed -n '2,22p' "$0"
    exit 0
    ;;
esac
[[ $# -le 1 ]] || die "usage: scripts/arm64_smoke.sh [BUILD_DIR] (try --help)"
BUILD_DIR="$(realpath -m "${1:-$SMLA_ROOT/.aws-sam/build}")"
INIT_TIMEOUT="${ARM64_SMOKE_INIT_TIMEOUT:-180}"
ARM64_SYSROOT=/usr/aarch64-linux-gnu # where libc6-arm64-cross installs (scripts/tools.sh)
LOG_DIR="$SMLA_ROOT/.aws-sam/arm64-smoke"
# Low limits, so that a few requests reach the 429s: smoke.sh spends 2 token requests and 5
# predict units, which leaves 1 token request and 3 predictions before each refusal. One unit a
# minute refills slower than the run spends.
LIMITS=(TOKEN_BURST=3 TOKEN_RATE_PER_MINUTE=1 PREDICT_BURST=8 PREDICT_RATE_PER_MINUTE=1)
cargo_locked=()
[[ "${CI:-}" == "true" ]] && cargo_locked=(--locked)

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/smla-arm64.XXXXXX")"
chmod 700 "$RUN_DIR"
rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR/functions"

# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
    local rc="$1"
    print_timings
    [[ "$rc" == 0 ]] || print_log_tails 20 "$LOG_DIR/gateway.log" "$LOG_DIR"/functions/*
    print_verdict "$rc" arm64_smoke.sh "the arm64 bootstraps passed the smoke test under emulation" \
        "logs in ${LOG_DIR#"$SMLA_ROOT"/}"
}
smla_init_cleanup on_exit
SMLA_CLEANUP_HOOKS+=("rm -rf '$RUN_DIR'")

# ---------------------------------------------------------------------------------------------
stage_begin "qemu-user (tools.sh --arm64)"
run_step "$SMLA_ROOT/scripts/tools.sh" --arm64
stage_end

# Functions (logical id, binary) and HTTP API routes (route key, binary), from template.yaml:
# what API Gateway will route where. SAM makes an HttpApi event without Path and Method the
# $default route.
"$VENV/bin/python" - "$SMLA_ROOT/template.yaml" >"$RUN_DIR/template.tsv" <<'EOF' ||
import sys
sys.path.insert(0, "scripts")
from create_tables import load_template

resources = load_template(sys.argv[1]).get("Resources", {})
for logical_id, resource in resources.items():
    if resource.get("Type") != "AWS::Serverless::Function":
        continue
    binary = (resource.get("Metadata") or {}).get("BuildProperties", {}).get("Binary")
    if not binary:
        sys.exit(f"{logical_id}: no Metadata.BuildProperties.Binary")
    print(f"function\t{logical_id}\t{binary}")
    for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
        if event.get("Type") != "HttpApi":
            continue
        props = event.get("Properties") or {}
        if "Path" not in props and "Method" not in props:
            key = "$default"
        else:
            key = f"{str(props.get('Method', 'ANY')).upper()} {props['Path']}"
        print(f"route\t{key}\t{binary}")
EOF
    die "cannot read the functions and routes from template.yaml"
mapfile -t TEMPLATE_LINES <"$RUN_DIR/template.tsv"
gateway_args=()
for line in "${TEMPLATE_LINES[@]}"; do
    IFS=$'\t' read -r what key binary <<<"$line"
    if [[ "$what" == function ]]; then
        bootstrap="$BUILD_DIR/$key/bootstrap"
        [[ -x "$bootstrap" ]] || die "$key: no executable $bootstrap (run sam build, or scripts/deploy_checks.sh)"
        gateway_args+=(--function "$binary=$bootstrap")
    else
        gateway_args+=(--route "$key=$binary")
    fi
done
for limit in "${LIMITS[@]}"; do gateway_args+=(--env "$limit"); done

# The very build `make test` makes (same command, same features), so after it this is a no-op;
# `cargo build -p admin -p secure-ml-bench` would resolve other features and rebuild the SDK.
stage_begin "build: harness + admin (x86_64)"
run_step cargo build "${cargo_locked[@]}" --workspace --all-targets
TARGET_DIR="$(cargo_target_dir)"
HARNESS="$TARGET_DIR/debug/smla-bench"
ADMIN_BIN="$TARGET_DIR/debug/admin"
stage_end

stage_begin "DynamoDB Local, tables, keys"
DDB_PORT="$(free_port)"
start_dynamodb "$DDB_PORT" "$LOG_DIR/dynamodb.log"
GATEWAY_PORT="$(free_port)"
while [[ "$GATEWAY_PORT" == "$DDB_PORT" ]]; do GATEWAY_PORT="$(free_port)"; done
suffix="$(date +%s)-$$"
export_stack_env "$DDB_PORT" "$GATEWAY_PORT" "smla-arm64-$suffix-rate-limits" "smla-arm64-$suffix-clients" "$RUN_DIR"
# The template's issuer shape (urn:secure-ml-api:<stack name>), not the cargo-lambda URL.
export TOKEN_ISSUER="urn:secure-ml-api:smla-arm64-smoke"
create_tables "$AWS_ENDPOINT_URL_DYNAMODB" RateLimitTable="$RATE_LIMIT_TABLE" ClientsTable="$CLIENTS_TABLE"
generate_keys "$ADMIN_BIN"
create_client "$RUN_DIR/client.json" "$ADMIN_BIN" -- --name arm64-smoke --scopes "predict predict:proba"
# Through the environment, never a command line (`ps` shows those). smla-bench reads the stack's
# client as BENCH_CLIENT_*; smoke.sh as CLIENT_*.
export CLIENT_ID CLIENT_SECRET BENCH_CLIENT_ID="$CLIENT_ID" BENCH_CLIENT_SECRET="$CLIENT_SECRET"
stage_end

stage_begin "bootstraps init (qemu-aarch64)"
log "gateway on 127.0.0.1:$GATEWAY_PORT: ${gateway_args[*]}"
spawn "$LOG_DIR/gateway.log" "$HARNESS" gateway --port "$GATEWAY_PORT" --logs "$LOG_DIR/functions" \
    --init-timeout "$INIT_TIMEOUT" "${gateway_args[@]}" -- qemu-aarch64 -L "$ARM64_SYSROOT"
GATEWAY_PID=$SPAWNED_PID
# The gateway listens once both functions have asked for their first event (init complete).
wait_tcp "$GATEWAY_PORT" "$((INIT_TIMEOUT + 30))" "$GATEWAY_PID" "smla-bench gateway" ||
    die "the bootstraps did not start behind the gateway (log: ${LOG_DIR#"$SMLA_ROOT"/}/gateway.log)"
stage_end

stage_begin "smoke + 429 via the bootstraps"
run_step env SMOKE_RATE_LIMIT=1 "$SMLA_ROOT/scripts/smoke.sh" "http://127.0.0.1:$GATEWAY_PORT" ||
    die "the arm64 bootstraps failed the smoke test (above; logs in ${LOG_DIR#"$SMLA_ROOT"/})"
kill -0 "$GATEWAY_PID" 2>/dev/null || die "the gateway stopped during the smoke test"
stage_end

# The shipped binaries log no secret either: the client secret and the private signing keys,
# searched for in everything the functions and the gateway wrote.
stage_begin "secrets never logged (arm64)"
"$VENV/bin/python" - "$RUN_DIR/client.json" "$SIGNING_KEYS_FILE" >"$RUN_DIR/canaries" <<'EOF'
import json, sys
client, keys = sys.argv[1:]
print(json.load(open(client))["client_secret"])
for key in json.load(open(keys)).get("keys", []):
    for field in ("d", "private_key", "pkcs8"):
        if isinstance(key.get(field), str):
            print(key[field])
EOF
awk 'length($0) >= 16' "$RUN_DIR/canaries" | sort -u >"$RUN_DIR/canaries.long"
[[ "$(wc -l <"$RUN_DIR/canaries.long")" -ge 2 ]] || die "found no secrets to search for (client secret, private keys)"
if grep -rF -l -f "$RUN_DIR/canaries.long" "$LOG_DIR"; then
    die "a secret appears in the files above"
fi
log "searched $(cat "$LOG_DIR/gateway.log" "$LOG_DIR"/functions/* | wc -l) log lines for $(wc -l <"$RUN_DIR/canaries.long") secrets: none found"
stage_end
unset CLIENT_SECRET BENCH_CLIENT_SECRET client_secret
