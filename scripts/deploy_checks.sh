#!/usr/bin/env bash
# Deploy checks (run by `make deploy-checks` and by scripts/test.sh after the tests): everything
# `sam deploy` depends on that can be checked without an AWS account. Nothing here reaches AWS.
#
# Usage: scripts/deploy_checks.sh [--no-build]
#   1. tools: aws-sam-cli + cfn-lint into .tools/venv (scripts/tools.sh --deploy); the Rust target
#      aarch64-unknown-linux-gnu (rustup target add, if missing); qemu-user + libc6-arm64-cross
#      (scripts/tools.sh --arm64: apt-get, as root or with passwordless sudo)
#   2. the local tables still come from template.yaml: scripts/create_tables.py's parser finds
#      RateLimitTable (pk, TTL expires_at) and ClientsTable (client_id)
#   3. cfn-lint template.yaml; sam validate --lint; sam validate (SAM transform) -- offline: in a
#      network namespace of their own where unshare(1) allows it, else behind a dead proxy
#   4. sam build --beta-features (rust-cargolambda, arm64, release) into .aws-sam/build, timed
#   5. both bootstrap files are ELF aarch64 needing at most glibc 2.34 (provided.al2023)
#   6. both bootstrap files run under qemu-aarch64 behind a local API Gateway stand-in and pass
#      scripts/smoke.sh, 429s included (scripts/arm64_smoke.sh; logs in .aws-sam/arm64-smoke)
#   7. each function's build directory zipped (as `sam deploy` uploads it) and at most 8 MiB
#   --no-build   stop after step 3 (seconds instead of minutes; needs neither Rust target nor qemu)
# Environment: TOOLS_DIR; DEPLOY_ZIP_LIMIT_BYTES (8388608); DEPLOY_BUILD_WARN_SECONDS (600: a
#   slower sam build is reported, CI has to stay well inside its time).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

build=true
for arg in "$@"; do
    case "$arg" in
    --no-build) build=false ;;
    -h | --help)
        sed -n '2,21p' "$0"
        exit 0
        ;;
    *) die "unknown argument $arg (try --help)" ;;
    esac
done

TARGET=aarch64-unknown-linux-gnu
FUNCTIONS=(PredictFunction TokenFunction) # logical ids in template.yaml
BUILD_DIR="$SMLA_ROOT/.aws-sam/build"     # sam's default, so `sam deploy` can follow a check
ZIP_DIR="$SMLA_ROOT/.aws-sam/deploy-checks"
ZIP_LIMIT="${DEPLOY_ZIP_LIMIT_BYTES:-8388608}"
WARN_SECONDS="${DEPLOY_BUILD_WARN_SECONDS:-600}"
# No telemetry. Region and credentials are fakes: only `sam validate` without --lint asks for
# them, and nothing may use them to reach AWS (the offline wrapper below makes sure).
export SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline
unset AWS_ENDPOINT_URL_DYNAMODB

# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
    print_timings
    print_verdict "$1" deploy_checks.sh "all checks passed"
}
smla_init_cleanup on_exit

# offline CMD...: run CMD with no network. A private network namespace (unshare -n; -r maps the
# caller to root in a user namespace where it is not root) has only a loopback that is down; where
# unshare is not allowed (some containers), every HTTP(S) client the tools use is sent to a proxy
# address nothing listens on, so an attempt fails at once instead of reaching AWS.
offline() {
    if unshare -n true 2>/dev/null; then
        unshare -n "$@"
    elif unshare -rn true 2>/dev/null; then
        unshare -rn "$@"
    else
        HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
            http_proxy=http://127.0.0.1:9 NO_PROXY='' no_proxy='' "$@"
    fi
}
offline_mode() {
    if unshare -n true 2>/dev/null || unshare -rn true 2>/dev/null; then echo "network namespace"; else echo "dead proxy"; fi
}

# ---------------------------------------------------------------------------------------------
stage_begin "deploy tools (scripts/tools.sh --deploy)"
run_step "$SMLA_ROOT/scripts/tools.sh" --deploy
for tool in sam cfn-lint cargo-lambda; do
    [[ -x "$VENV/bin/$tool" ]] || die "$tool missing from $VENV/bin after scripts/tools.sh --deploy"
done
"$VENV/bin/python" -c 'import ziglang' 2>/dev/null || die "ziglang missing from $VENV (cargo-lambda cross-compiles with it)"
log "$("$VENV/bin/sam" --version), $("$VENV/bin/cfn-lint" --version), $("$VENV/bin/cargo-lambda" lambda --version 2>&1 | head -n 1)"
stage_end

if $build; then
    stage_begin "rust target $TARGET"
    if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        log "rustup target add $TARGET (fetches the target's standard library)"
        run_step rustup target add "$TARGET" ||
            die "'rustup target add $TARGET' failed: sam build cross-compiles the functions for arm64 and needs it"
    fi
    stage_end

    # Before the build, so that a machine that cannot emulate arm64 fails in seconds.
    stage_begin "qemu-user (tools.sh --arm64)"
    run_step "$SMLA_ROOT/scripts/tools.sh" --arm64
    stage_end
fi

# ---------------------------------------------------------------------------------------------
stage_begin "local tables come from template.yaml"
"$VENV/bin/python" - "$SMLA_ROOT/template.yaml" <<'EOF' || die "template.yaml no longer declares the tables the code and scripts/create_tables.py expect"
import sys
sys.path.insert(0, "scripts")
from create_tables import table_definitions

tables = table_definitions(sys.argv[1])
want = {
    # logical id: (hash key, TTL attribute or None) -- the names the Rust code reads and writes
    "RateLimitTable": ("pk", "expires_at"),
    "ClientsTable": ("client_id", None),
}
problems = []
for logical_id, (key, ttl) in want.items():
    props = tables.get(logical_id)
    if props is None:
        problems.append(f"{logical_id}: not found (template declares {sorted(tables)})")
        continue
    schema = [(k["AttributeName"], k["KeyType"]) for k in props.get("KeySchema", [])]
    if schema != [(key, "HASH")]:
        problems.append(f"{logical_id}: key schema {schema}, expected [({key!r}, 'HASH')]")
    types = {a["AttributeName"]: a["AttributeType"] for a in props.get("AttributeDefinitions", [])}
    if types.get(key) != "S":
        problems.append(f"{logical_id}: attribute {key} has type {types.get(key)!r}, expected 'S'")
    spec = props.get("TimeToLiveSpecification") or {}
    if ttl and not (spec.get("Enabled") and spec.get("AttributeName") == ttl):
        problems.append(f"{logical_id}: TTL {spec}, expected {ttl!r} enabled")
    if not ttl and spec.get("Enabled"):
        problems.append(f"{logical_id}: unexpected TTL {spec}")
    if props.get("BillingMode") != "PAY_PER_REQUEST":
        problems.append(f"{logical_id}: BillingMode {props.get('BillingMode')!r}, expected PAY_PER_REQUEST")
for p in problems:
    print("  " + p, file=sys.stderr)
if problems:
    sys.exit(1)
print("RateLimitTable (pk, TTL expires_at) and ClientsTable (client_id) found", file=sys.stderr)
EOF
stage_end

# ---------------------------------------------------------------------------------------------
log "offline checks run isolated from the network ($(offline_mode))"

stage_begin "cfn-lint template.yaml"
offline "$VENV/bin/cfn-lint" template.yaml || die "cfn-lint found problems in template.yaml (above)"
stage_end

stage_begin "sam validate --lint"
offline "$VENV/bin/sam" validate --lint --template-file template.yaml </dev/null ||
    die "sam validate --lint failed (above)"
stage_end

# Without --lint, sam validate runs the SAM transform itself (cfn-lint applies it too, but this
# is the translator `sam deploy` uses). samconfig.toml turns lint on for validate, so this run
# gets an empty config file; region and credentials are the fakes exported above.
stage_begin "sam validate (SAM transform)"
mkdir -p "$SMLA_ROOT/.aws-sam"
printf 'version = 0.1\n' >"$SMLA_ROOT/.aws-sam/empty-samconfig.toml"
offline "$VENV/bin/sam" validate --template-file template.yaml \
    --config-file "$SMLA_ROOT/.aws-sam/empty-samconfig.toml" --region us-east-1 </dev/null ||
    die "sam validate failed (above)"
stage_end

$build || exit 0

# ---------------------------------------------------------------------------------------------
# --no-cached (samconfig.toml's setting too): sam's cache keys on a checksum of every file under
# CodeUri, here the whole repository with target/ (gigabytes, changed by any cargo run), so it
# costs minutes and rarely hits; cargo's incremental build in target/ is the cache that works.
# No --parallel: concurrent cargo-lambda builds race on their zig linker setup (samconfig.toml).
stage_begin "sam build (rust-cargolambda, arm64, release)"
rm -rf "$BUILD_DIR"
build_start=$(date +%s)
run_step "$VENV/bin/sam" build --beta-features --no-cached --template-file template.yaml \
    --build-dir "$BUILD_DIR" </dev/null || die "sam build failed (above)"
build_seconds=$(($(date +%s) - build_start))
stage_end
log "sam build took ${build_seconds}s"
if ((build_seconds > WARN_SECONDS)); then
    warn "sam build took ${build_seconds}s, more than ${WARN_SECONDS}s: CI has to stay well inside its time limit"
fi

stage_begin "bootstrap binaries (ELF aarch64, glibc <= 2.34)"
for fn in "${FUNCTIONS[@]}"; do
    bin="$BUILD_DIR/$fn/bootstrap"
    [[ -f "$bin" && -x "$bin" ]] || die "$fn: no executable bootstrap at $bin"
    if command -v file >/dev/null; then
        desc=$(file -b "$bin")
        [[ "$desc" == *"ELF 64-bit"*"ARM aarch64"* ]] || die "$fn: bootstrap is not an aarch64 ELF: $desc"
        log "$fn/bootstrap: $desc"
    fi
    # The same facts without file(1): ELF magic, 64-bit, little endian, e_machine 183 (AArch64);
    # and no symbol version newer than the glibc of provided.al2023 (2.34).
    "$VENV/bin/python" - "$bin" "$fn" <<'EOF' || die "$fn: bootstrap cannot run on provided.al2023 arm64"
import re, struct, sys
path, fn = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
    sys.exit(f"{fn}: not a 64-bit little-endian ELF file")
machine = struct.unpack_from("<H", data, 18)[0]
if machine != 183:
    sys.exit(f"{fn}: ELF machine {machine}, expected 183 (AArch64)")
found = re.findall(rb"GLIBC_(2\.[0-9]+(?:\.[0-9]+)?)", data)
versions = sorted({tuple(int(part) for part in v.decode().split(".")) for v in found})
if versions and versions[-1] > (2, 34):
    sys.exit(f"{fn}: needs glibc {'.'.join(map(str, versions[-1]))}, provided.al2023 has 2.34")
need = ".".join(map(str, versions[-1])) if versions else "none (static)"
print(f"{fn}: AArch64 ELF, {len(data) / 1048576:.1f} MiB, newest glibc symbol {need}", file=sys.stderr)
EOF
done
stage_end

# The files just checked, executed: both functions under emulation, driven through the smoke
# flow by HTTP as API Gateway would. Its own stages are in the table it prints.
stage_begin "arm64 bootstraps: smoke under qemu"
run_step "$SMLA_ROOT/scripts/arm64_smoke.sh" "$BUILD_DIR" ||
    die "the arm64 bootstraps from sam build failed under emulation (above)"
stage_end

stage_begin "deployment packages (zip, <= $(awk -v b="$ZIP_LIMIT" 'BEGIN { printf "%g", b / 1048576 }') MiB each)"
rm -rf "$ZIP_DIR"
mkdir -p "$ZIP_DIR"
"$VENV/bin/python" - "$BUILD_DIR" "$ZIP_DIR" "$ZIP_LIMIT" "${FUNCTIONS[@]}" <<'EOF' || die "a deployment package is too large or could not be made"
import os, sys, zipfile
build_dir, zip_dir, limit, functions = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
failed = False
for fn in functions:
    src = os.path.join(build_dir, fn)
    dest = os.path.join(zip_dir, f"{fn}.zip")
    raw = 0
    # Deflate, as `sam package`/`sam deploy` zip a function's build directory for upload.
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for root, _, files in os.walk(src):
            for name in sorted(files):
                path = os.path.join(root, name)
                raw += os.path.getsize(path)
                z.write(path, os.path.relpath(path, src))
    size = os.path.getsize(dest)
    verdict = "ok" if size <= limit else f"OVER the {limit / 1048576:g} MiB limit"
    failed |= size > limit
    print(f"{fn}.zip: {size / 1048576:.2f} MiB ({size} bytes; unzipped {raw / 1048576:.2f} MiB)  {verdict}", file=sys.stderr)
sys.exit(1 if failed else 0)
EOF
stage_end
log "packages in ${ZIP_DIR#"$SMLA_ROOT"/}; sam build took ${build_seconds}s; the build in ${BUILD_DIR#"$SMLA_ROOT"/} is ready for 'sam deploy'"
