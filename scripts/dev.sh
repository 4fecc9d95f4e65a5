#!/usr/bin/env bash
# Bring the whole API up locally (run by `make dev`); Ctrl-C stops everything it started.
#
# Usage: scripts/dev.sh
#   1. dev tools (scripts/tools.sh)          4. signing keys in .dev/ (generated only if absent)
#   2. DynamoDB Local on 127.0.0.1:8000      5. a demo client (credentials printed, and kept in
#   3. tables from template.yaml                .dev/demo-client.json and .dev/demo-client.env)
#   6. cargo lambda watch on 127.0.0.1:9000 (reloads on edit): the deployed API's paths
#      (http://localhost:9000/token, /predict, ...), up to DEV_WATCH_INSTANCES instances per
#      function
# then prints a copy-paste curl session and follows the function logs (.dev/watch.log).
# The stack's environment is in .dev/function.env (for the admin CLI: README, "Run it locally").
# Environment: DEV_DYNAMODB_PORT (8000), DEV_WATCH_PORT (9000), DEV_WATCH_INSTANCES (4),
#              TOOLS_DIR (.tools), DEV_WARMUP_TIMEOUT (seconds for the first compile, 1800).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

DDB_PORT="${DEV_DYNAMODB_PORT:-8000}"
WATCH_PORT="${DEV_WATCH_PORT:-9000}"
INSTANCES="${DEV_WATCH_INSTANCES:-4}"
WARMUP_TIMEOUT="${DEV_WARMUP_TIMEOUT:-1800}"
DEV_DIR="$SMLA_ROOT/.dev"

STACK_STARTED=false
# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
    if $STACK_STARTED && [[ "$1" != 0 && "$1" != 130 && "$1" != 143 ]]; then
        warn "make dev failed; logs: $DEV_DIR/dynamodb.log, $DEV_DIR/watch.log"
    fi
}
smla_init_cleanup on_exit

ensure_tools

for port in "$DDB_PORT" "$WATCH_PORT"; do
    port_is_free "$port" || die "port $port is already in use (another 'make dev'? check: ss -ltnp 'sport = :$port').
Stop that process, or pick other ports: DEV_DYNAMODB_PORT=8001 DEV_WATCH_PORT=9001 make dev"
done

mkdir -p "$DEV_DIR"
chmod 700 "$DEV_DIR"
export_stack_env "$DDB_PORT" "$WATCH_PORT" secure-ml-api-rate-limits secure-ml-api-clients "$DEV_DIR"

log "DynamoDB Local on 127.0.0.1:$DDB_PORT (in memory)"
STACK_STARTED=true
start_dynamodb "$DDB_PORT" "$DEV_DIR/dynamodb.log"

log "tables from template.yaml"
create_tables "$AWS_ENDPOINT_URL_DYNAMODB" RateLimitTable="$RATE_LIMIT_TABLE" ClientsTable="$CLIENTS_TABLE"

if [[ -s "$SIGNING_KEYS_FILE" ]]; then
    # DynamoDB Local starts empty: publish the public keys of the kept set again.
    log "signing keys: reusing $SIGNING_KEYS_FILE"
    run_step cargo run -q -p admin -- keys publish ||
        die "'cargo run -p admin -- keys publish' failed"
else
    log "signing keys: generating into $DEV_DIR"
    generate_keys # cargo run -q -p admin -- keys generate
fi

log "demo client"
client_json="$DEV_DIR/demo-client.json"
create_client "$client_json" cargo run -q -p admin -- -- --name demo --tier free --scopes "predict predict:proba"
# The same for a shell, exported for what it starts (README's Python client): `. .dev/demo-client.env`.
write_client_env "$client_json" "$DEV_DIR/demo-client.env" || die "could not write $DEV_DIR/demo-client.env"

log "cargo lambda watch on 127.0.0.1:$WATCH_PORT, up to $INSTANCES instances per function (first start compiles both functions; log: .dev/watch.log)"
write_function_env "$DEV_DIR/function.env"
start_watch "$WATCH_PORT" "$DEV_DIR/function.env" "$DEV_DIR/watch.log" "$INSTANCES"
# Follow the logs in the terminal from here on. On every reload cargo-lambda SIGKILLs the old
# build and logs `ERROR command killed code=ForceStop`: that one line is said as what it is.
# (Its log filter cannot drop it alone: the same statement reports a function that crashed.)
# shellcheck disable=SC2016 # $1 is expanded by the inner bash
spawn - bash -c 'tail -n +1 -F "$1" | sed -u "s/^ERROR command killed code=ForceStop\$/ INFO function stopped for a rebuild (cargo-lambda ends the old build with SIGKILL)/"' _ "$DEV_DIR/watch.log"
warm_function "$WATCH_PORT" predict /health "$WARMUP_TIMEOUT" || die "predict did not start (see above)"
warm_function "$WATCH_PORT" token /.well-known/jwks.json "$WARMUP_TIMEOUT" || die "token did not start (see above)"

base="http://localhost:$WATCH_PORT"
# A row the served model accepts: openapi.yaml's example, generated from model-artifacts/.
example="$("$VENV/bin/python" -c '
import json, yaml
document = yaml.safe_load(open("openapi.yaml"))
print(json.dumps(document["components"]["examples"]["PredictArray"]["value"]))' 2>/dev/null)" ||
    example='{"data": [...]}'
cat >&2 <<EOF

$(printf '\033[1;32m')secure-ml-api is up.$(printf '\033[0m') Demo client (valid until Ctrl-C; DynamoDB Local is in memory):
  client_id:     $CLIENT_ID
  client_secret: $CLIENT_SECRET

Copy-paste session:

  . .dev/demo-client.env                 # CLIENT_ID and CLIENT_SECRET of the demo client
  TOKEN=\$(curl -s -u "\$CLIENT_ID:\$CLIENT_SECRET" -d grant_type=client_credentials \\
      $base/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -i -X POST $base/predict -H "Authorization: Bearer \$TOKEN" \\
      -H 'Content-Type: application/json' -d '$example'
  curl -s $base/health
  curl -s $base/model -H "Authorization: Bearer \$TOKEN"
  curl -s $base/.well-known/jwks.json

Every route is at $base, as on AWS at the stack's ApiUrl; unknown paths get the predict
function's 404. Up to $INSTANCES instances per function; every HTTP request comes from 127.0.0.1
(one rate-limit budget): scripts/invoke.py sends events from other addresses (README).

Function logs follow. Ctrl-C stops DynamoDB Local, cargo lambda watch and the functions.

EOF

# Wait on watch itself: if it dies, so does the session (and cleanup runs).
wait "$WATCH_PID"
