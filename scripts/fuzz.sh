#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of the request parsers and token verification (fuzz/), on the
# stable toolchain: cargo-fuzz with `--sanitizer none`. The code base forbids `unsafe`, so what
# there is to find is panics (including failed property assertions), aborts, timeouts and runaway
# memory, all of which libFuzzer catches without a sanitizer (a sanitizer would need nightly).
#
# Usage: scripts/fuzz.sh [TARGET...]
#   1. tools: cargo-fuzz into .tools/venv (scripts/tools.sh)
#   2. cargo fuzz build -s none: every target, once (release, debug assertions, coverage counters)
#   3. each TARGET (default: all of fuzz/fuzz_targets/) for FUZZ_SECONDS with the fixed seed
#      FUZZ_SEED, starting from fuzz/seeds/<target>/ (api_event also from events/*.json), with the
#      input size, time and memory limits set per target below
#   Exit status 1 if any target failed; for each failure, the crash file (under
#   fuzz/artifacts/<target>/) and the command that replays it. Every run's libFuzzer output is in
#   fuzz/artifacts/<target>/run.log.
# Environment: FUZZ_SECONDS (30, per target); FUZZ_SEED (1); FUZZ_CORPUS: a directory that keeps
#   the corpus of each target (<dir>/<target>/) from run to run, e.g. fuzz/corpus (git-ignored);
#   by default a temporary one, removed at the end; TOOLS_DIR.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SMLA_ROOT"

targets=()
for arg in "$@"; do
    case "$arg" in
    -h | --help)
        sed -n '2,19p' "$0"
        exit 0
        ;;
    -*) die "unknown option $arg (try --help)" ;;
    *) targets+=("$arg") ;;
    esac
done

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
SEED="${FUZZ_SEED:-1}"
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || die "FUZZ_SECONDS must be a positive integer"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "FUZZ_SEED must be a non-negative integer"

# Largest input per target: each function's own body or token limit, with room to cross it.
declare -A MAX_LEN=(
    [predict_request]=16384 # MAX_BODY_BYTES of POST /predict is 16 KiB
    [token_request]=4096    # the token endpoint refuses larger bodies
    [jwt_verify]=8192       # MAX_TOKEN_BYTES is 4096: inputs reach past it
    [api_event]=8192        # structured events reach the body limits with short inputs
)
TIMEOUT_SECONDS=10 # one input; the slowest legitimate one takes milliseconds
RSS_LIMIT_MB=1024

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/smla-fuzz.XXXXXX")"
SMLA_CLEANUP_HOOKS+=("rm -rf '$RUN_DIR'")
FAILED=()
SUMMARY=()

# shellcheck disable=SC2317 # called from the EXIT trap
on_exit() {
    local line
    print_timings
    if [[ ${#SUMMARY[@]} -gt 0 ]]; then
        printf '\n%-16s %10s %8s %7s %7s %7s  %s\n' target runs exec/s cov ft corpus result >&2
        for line in "${SUMMARY[@]}"; do printf '%s\n' "$line" >&2; done
    fi
    print_verdict "$1" fuzz.sh "no failure in ${#targets[@]} target(s), ${SECONDS_PER_TARGET}s each"
}
smla_init_cleanup on_exit

stage_begin "tools"
ensure_tools >/dev/null
command -v cargo-fuzz >/dev/null || die "cargo-fuzz missing from $VENV: run scripts/tools.sh"
stage_end

mapfile -t known < <(cargo fuzz list)
[[ ${#targets[@]} -gt 0 ]] || targets=("${known[@]}")
for target in "${targets[@]}"; do
    [[ " ${known[*]} " == *" $target "* ]] || die "no fuzz target $target (targets: ${known[*]})"
    [[ -n "${MAX_LEN[$target]:-}" ]] || die "no limits set for fuzz target $target in $0"
done

log "toolchain: $(rustc --version)"
stage_begin "cargo fuzz build -s none"
# cargo-fuzz has no --locked: in CI, fail here if fuzz/Cargo.lock is not current instead of
# fuzzing versions nobody reviewed.
if [[ "${CI:-}" == "true" ]]; then
    run_step cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null ||
        die "fuzz/Cargo.lock is not up to date with fuzz/Cargo.toml"
fi
run_step cargo fuzz build -s none || die "the fuzz targets do not build"
stage_end

# last_status NAME LOG: NAME (cov, ft, corp) from libFuzzer's last status line;
# final_stat NAME LOG: a value of its -print_final_stats block.
last_status() { grep -aE '^#[0-9]+[[:space:]]+(DONE|INITED|NEW|REDUCE|pulse)' "$2" | tail -n 1 | grep -oE "$1: [0-9]+" | grep -oE '[0-9]+$' || echo "-"; }
final_stat() { sed -n "s/^stat::$1:[[:space:]]*//p" "$2" | tail -n 1; }

for target in "${targets[@]}"; do
    stage_begin "fuzz $target (${SECONDS_PER_TARGET}s, seed $SEED)"
    if [[ -n "${FUZZ_CORPUS:-}" ]]; then
        corpus="$FUZZ_CORPUS/$target"
    else
        corpus="$RUN_DIR/corpus/$target"
    fi
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    seeds=("fuzz/seeds/$target")
    [[ "$target" != api_event ]] || seeds+=(events)
    # Written in the run's own directory and copied when done, so that two runs at once (make
    # fuzz during make test) cannot interleave their output in fuzz/artifacts/.
    log="$RUN_DIR/$target.log"
    rc=0
    # New inputs go to the first directory only: the seeds are read, never written.
    run_step cargo fuzz run -s none "$target" "$corpus" "${seeds[@]}" -- \
        -seed="$SEED" -max_total_time="$SECONDS_PER_TARGET" -max_len="${MAX_LEN[$target]}" \
        -timeout="$TIMEOUT_SECONDS" -rss_limit_mb="$RSS_LIMIT_MB" -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?
    cp "$log" "fuzz/artifacts/$target/run.log"
    result=ok
    if [[ "$rc" != 0 ]]; then
        result="FAILED (exit $rc)"
        FAILED+=("$target")
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        warn "$target failed; the end of its log (fuzz/artifacts/$target/run.log):"
        grep -avE '^\s+([0-9]+: |at )' "$log" | grep -aB2 -A8 -E 'panicked at|ERROR: libFuzzer|SUMMARY' | tail -n 30 >&2 || tail -n 30 "$log" >&2
        if [[ -n "$crash" ]]; then
            warn "crash file: $crash"
            warn "replay:   cargo fuzz run -s none $target $crash"
            warn "minimize: cargo fuzz tmin -s none $target $crash"
        fi
    fi
    SUMMARY+=("$(printf '%-16s %10s %8s %7s %7s %7s  %s' "$target" \
        "$(final_stat number_of_executed_units "$log")" "$(final_stat average_exec_per_sec "$log")" \
        "$(last_status cov "$log")" "$(last_status ft "$log")" "$(last_status corp "$log")" "$result")")
    stage_end "$result"
done

[[ ${#FAILED[@]} -eq 0 ]] || die "fuzzing found failures in: ${FAILED[*]}"
