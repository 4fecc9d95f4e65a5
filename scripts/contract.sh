#!/usr/bin/env bash
# Contract test of openapi.yaml: the document is validated, then schemathesis checks that a running
# stack answers as the document says (statuses, content types, headers, bodies, authentication).
#
# Usage: scripts/contract.sh [--watch | --validate-only]
#   1. openapi-spec-validator openapi.yaml (OpenAPI 3.1 structure, $refs, schemas)
#   2. an access token from POST /token, for the client CLIENT_ID
#   3. schemathesis (st run) on every operation at the one base URL: every check, a fixed seed
#      and budget, settings and credentials from scripts/schemathesis.toml
#   --validate-only  step 1 alone (no stack needed)
#   --watch          serve the functions for this run from a second `cargo lambda watch` (free
#                    port, generous rate limits, a rate-limit table of its own, a client made with
#                    the admin CLI) beside the stack whose variables are exported (test.sh's, after
#                    export_stack_env: DynamoDB Local, clients table, keys). The caller's watch and
#                    its rate-limit state are left untouched.
# Environment (without --watch):
#   CONTRACT_URL          the API's base URL, where every route is (locally $SMLA_WATCH_URL or
#                         http://localhost:9000; on AWS the stack output ApiUrl)
#   CLIENT_ID, CLIENT_SECRET  a client with scopes "predict predict:proba"; environment only, never
#                         arguments (with --watch: created when unset)
#   The stack must admit the whole run from one IP within a minute: ~1,700 predict requests
#   (a few thousand units at most: a batch costs one per row) and ~550 token requests, e.g.
#   PREDICT_RATE_PER_MINUTE=12000 PREDICT_BURST=100000 TOKEN_RATE_PER_MINUTE=12000
#   TOKEN_BURST=100000 (what --watch uses). A 429 fails the run: it is documented, but it means
#   the case was never checked.
# Environment (always):
#   CONTRACT_SEED (20261123), CONTRACT_MAX_EXAMPLES (500: generated cases per operation and phase)
#   CONTRACT_REPORT_DIR   JUnit reports, one per run (default target/contract)
#   CONTRACT_ADMIN        the admin binary for --watch (default <cargo target dir>/debug/admin)
#   CONTRACT_WARMUP_TIMEOUT  seconds for --watch to start the functions (600)
#   CONTRACT_WATCH_INSTANCES instances per function for --watch (2; schemathesis sends one request
#                         at a time)
#   CONTRACT_ALLOW_REMOTE=1  allow a base URL off loopback (an AWS stage); refused otherwise
#   TOOLS_DIR             as for scripts/tools.sh
# Exit status: 0 when the document is valid and schemathesis found nothing; 1 on any failure or
# missing input; 2 for an unknown argument.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

usage() {
    sed -n '2,35p' "$0" >&2
    exit 2
}
mode=run
case "${1:-}" in
"") ;;
--watch) mode=watch ;;
--validate-only) mode=validate ;;
-h | --help) usage ;;
*) usage ;;
esac
[[ $# -le 1 ]] || usage

SPEC="$SMLA_ROOT/openapi.yaml"
ST_CONFIG="$SMLA_ROOT/scripts/schemathesis.toml"
SEED="${CONTRACT_SEED:-20261123}"
MAX_EXAMPLES="${CONTRACT_MAX_EXAMPLES:-500}"
REPORT_DIR="${CONTRACT_REPORT_DIR:-$SMLA_ROOT/target/contract}"
# Generous limits for --watch: every request of the run comes from 127.0.0.1. Each per-minute
# quota divides 60000 (whole-millisecond intervals), the premium one (x5) too.
CONTRACT_LIMITS=(PREDICT_RATE_PER_MINUTE=12000 PREDICT_BURST=100000 TOKEN_RATE_PER_MINUTE=12000 TOKEN_BURST=100000
    REJECTION_LIMIT=100000000)

[[ "$SEED" =~ ^[0-9]+$ ]] || die "CONTRACT_SEED must be an integer (got '$SEED')"
[[ "$MAX_EXAMPLES" =~ ^[1-9][0-9]*$ ]] || die "CONTRACT_MAX_EXAMPLES must be a positive integer (got '$MAX_EXAMPLES')"

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/smla-contract.XXXXXX")"
chmod 700 "$RUN_DIR"

# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
    print_timings
    if [[ "$1" != 0 && -s "$RUN_DIR/watch.log" ]]; then
        mkdir -p "$REPORT_DIR"
        cp "$RUN_DIR/watch.log" "$REPORT_DIR/watch.log"
        print_log_tails 30 "$REPORT_DIR/watch.log"
    fi
    print_verdict "$1" contract.sh passed
}
smla_init_cleanup on_exit
SMLA_CLEANUP_HOOKS+=("rm -rf '$RUN_DIR'")

[[ -x "$VENV/bin/st" && -x "$VENV/bin/openapi-spec-validator" ]] ||
    die "schemathesis/openapi-spec-validator missing from $VENV: run scripts/tools.sh"

stage_begin "openapi-spec-validator"
run_step "$VENV/bin/openapi-spec-validator" "$SPEC"
stage_end
[[ "$mode" != validate ]] || exit 0

# is_loopback URL: the URL's host is 127.0.0.0/8, ::1 or localhost.
is_loopback() {
    python3 - "$1" <<'EOF'
import ipaddress, sys, urllib.parse
host = urllib.parse.urlsplit(sys.argv[1]).hostname or ""
try:
    sys.exit(0 if host == "localhost" or ipaddress.ip_address(host).is_loopback else 1)
except ValueError:
    sys.exit(1)
EOF
}

if [[ "$mode" == watch ]]; then
    stage_begin "cargo lambda watch (contract)"
    : "${RATE_LIMIT_TABLE:?--watch needs the stack variables exported (export_stack_env; see test.sh)}"
    : "${AWS_ENDPOINT_URL_DYNAMODB:?--watch needs the stack variables exported (export_stack_env)}"
    # A rate-limit table of its own: the caller's table holds 127.0.0.1's state under its (small)
    # policies, which these policies would read as a debt of minutes.
    export RATE_LIMIT_TABLE="$RATE_LIMIT_TABLE-contract"
    create_tables "$AWS_ENDPOINT_URL_DYNAMODB" RateLimitTable="$RATE_LIMIT_TABLE" >/dev/null
    export "${CONTRACT_LIMITS[@]}"
    admin_bin="${CONTRACT_ADMIN:-$(cargo_target_dir)/debug/admin}"
    [[ -x "$admin_bin" ]] || die "admin binary $admin_bin not found: build it (cargo build -p admin) or set CONTRACT_ADMIN"
    # The public keys live in the rate-limit table: publish them into this one too.
    run_step "$admin_bin" keys publish >/dev/null || die "'admin keys publish' into $RATE_LIMIT_TABLE failed"
    write_function_env "$RUN_DIR/function.env" "$admin_bin"
    port="$(free_port)"
    start_watch "$port" "$RUN_DIR/function.env" "$RUN_DIR/watch.log" "${CONTRACT_WATCH_INSTANCES:-2}" --ignore-changes
    warm_function "$port" predict /health "${CONTRACT_WARMUP_TIMEOUT:-600}" || die "predict did not start"
    warm_function "$port" token /.well-known/jwks.json "${CONTRACT_WARMUP_TIMEOUT:-600}" || die "token did not start"
    CONTRACT_URL="http://127.0.0.1:$port"
    stage_end
    if [[ -z "${CLIENT_ID:-}" || -z "${CLIENT_SECRET:-}" ]]; then
        stage_begin "client (admin client create)"
        create_client "$RUN_DIR/client.json" "$admin_bin" -- --name contract --scopes "predict predict:proba"
        stage_end
    fi
fi

: "${CONTRACT_URL:?set CONTRACT_URL (or use --watch); see --help}"
[[ -n "${CLIENT_ID:-}" && -n "${CLIENT_SECRET:-}" ]] || die "CLIENT_ID and CLIENT_SECRET must be set (environment)"
CONTRACT_URL="${CONTRACT_URL%/}"
local_stack=false
if is_loopback "$CONTRACT_URL"; then
    local_stack=true
else
    [[ "${CONTRACT_ALLOW_REMOTE:-0}" == 1 ]] ||
        die "$CONTRACT_URL is not on this machine (loopback); set CONTRACT_ALLOW_REMOTE=1 to test a remote stage"
fi
if [[ "${CONTRACT_ALLOW_REMOTE:-0}" != 1 ]]; then
    # Loopback only: no proxy may carry the run anywhere else.
    unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
    export NO_PROXY="*" no_proxy="*"
fi
export CLIENT_ID CLIENT_SECRET
export SCHEMATHESIS_HOOKS="$SMLA_ROOT/scripts/contract_hooks.py"
# Hypothesis' own cache (constants, unicode tables) goes with the run, not into the work tree.
export HYPOTHESIS_STORAGE_DIRECTORY="$RUN_DIR/hypothesis"
# The local stack is `cargo lambda watch`: the hooks skip what only its HTTP emulation mishandles.
if $local_stack; then export SMLA_CONTRACT_LOCAL=1; fi

stage_begin "access token (POST /token)"
# The secret goes to urllib through the environment and the token comes back on stdout: neither
# is ever on a command line.
SMLA_CONTRACT_TOKEN="$(TOKEN_URL="$CONTRACT_URL/token" "$VENV/bin/python" - <<'EOF'
import base64, json, os, sys, urllib.error, urllib.parse, urllib.request
basic = base64.b64encode(
    f"{urllib.parse.quote_plus(os.environ['CLIENT_ID'])}:{urllib.parse.quote_plus(os.environ['CLIENT_SECRET'])}".encode()
).decode()
request = urllib.request.Request(
    os.environ["TOKEN_URL"],
    data=b"grant_type=client_credentials",
    headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
except urllib.error.HTTPError as e:
    sys.exit(f"POST /token answered {e.code}: {e.read()[:300].decode(errors='replace')}")
scopes = set(body.get("scope", "").split())
if not {"predict", "predict:proba"} <= scopes:
    sys.exit(f"the client must hold 'predict predict:proba'; its token has scope {body.get('scope')!r}")
print(body["access_token"])
EOF
)" || die "could not get an access token from $CONTRACT_URL/token"
export SMLA_CONTRACT_TOKEN
stage_end

mkdir -p "$REPORT_DIR"

# The after_call hook in contract_hooks.py re-sends, locally, a request that cargo lambda watch
# itself failed; each re-send is recorded here and reported below.
export SMLA_CONTRACT_RESENT="$RUN_DIR/resent"
: >"$SMLA_CONTRACT_RESENT"

stage_begin "schemathesis: every operation"
rc=0
run_step "$VENV/bin/st" --config-file "$ST_CONFIG" run "$SPEC" --url "$CONTRACT_URL" \
    --checks all --seed "$SEED" --max-examples "$MAX_EXAMPLES" \
    --report junit --report-junit-path "$REPORT_DIR/contract.xml" || rc=$?
stage_end "$([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)")"

if [[ -s "$SMLA_CONTRACT_RESENT" ]]; then
    warn "cargo lambda watch answered $(wc -l <"$SMLA_CONTRACT_RESENT") request(s) with its own 500; re-sent:"
    cat "$SMLA_CONTRACT_RESENT" >&2
fi
[[ $rc == 0 ]] || rc=1
exit "$rc"
