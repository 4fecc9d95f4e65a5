#!/usr/bin/env bash
# Smoke test of a running secure-ml-api: the whole client flow, with curl (python3 reads the JSON).
#
# Usage: scripts/smoke.sh BASE_URL CLIENT_ID CLIENT_SECRET
#        scripts/smoke.sh BASE_URL                  (CLIENT_ID and CLIENT_SECRET from the environment)
#        scripts/smoke.sh --dev                     (the `make dev` stack and its demo client)
#   BASE_URL  the API's root, where every route is: the stack output ApiUrl on AWS, e.g.
#             https://abc123.execute-api.us-east-1.amazonaws.com, or http://localhost:9000 for the
#             local stack (no trailing path either way)
#   --dev     exactly that for `make dev`: http://localhost:DEV_WATCH_PORT (9000), the client in
#             .dev/demo-client.json
# Environment:
#   CLIENT_ID, CLIENT_SECRET  instead of the arguments (keeps the secret out of `ps` and history)
#   SMOKE_TIMEOUT      seconds per request (default 30: room for a Lambda cold start)
#   SMOKE_RATE_LIMIT=1 after the flow, also the refusals: token requests, then predictions, until
#                      one is refused (at most SMOKE_RATE_LIMIT_MAX each, 50): 429, Retry-After,
#                      RateLimit headers, a problem+json body. It spends the caller's whole budget
#                      of both, so on AWS that IP is refused until the limits refill.
#
# The client needs scope `predict`; with `predict:proba` the probabilities are checked too.
# Any model: the rows sent are built from the model card (the middle and both ends of each
# feature's training range, within its allowed range), and the answers are checked against it
# (a classifier's index, label and probabilities; a regressor's number, with no label).
# Checks, in order: health; JWKS (keys, no private members); token (200, no-store); model card;
# predict (RateLimit headers); batch; invalid body (422 problem+json); no token
# (401 + WWW-Authenticate: Bearer); wrong secret (401 invalid_client + WWW-Authenticate: Basic);
# an unknown path (404 problem+json from the predict function, the template's `$default` route);
# a wrong method (405 problem+json with Allow).
# Cost from the caller's IP: 2 token requests (the wrong secret counts: the limit is checked
# before credentials) and 5 units of predict quota (the model card + 1 + a 3-row batch).
# Secrets and tokens reach curl through header files (mode 0600), never its command line.
# Exit status: 0 when every check passed; 1 at the first failure, saying what was expected and
# what came back; 2 for a usage error.
set -euo pipefail

usage() {
    sed -n '2,30p' "$0" >&2
    exit 2
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage
if [[ "${1:-}" == "--dev" && $# == 1 ]]; then
    dev_client="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.dev/demo-client.json"
    [[ -s "$dev_client" ]] || { echo "smoke: $dev_client not found: start the local stack with 'make dev' first" >&2; exit 2; }
    read -r CLIENT_ID CLIENT_SECRET < <(python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); print(c["client_id"], c["client_secret"])' "$dev_client") ||
        { echo "smoke: cannot read client_id/client_secret from $dev_client" >&2; exit 2; }
    set -- "http://localhost:${DEV_WATCH_PORT:-9000}"
fi
case $# in
1) base="$1" ;;
3)
    base="$1"
    CLIENT_ID="$2"
    CLIENT_SECRET="$3"
    ;;
*) usage ;;
esac
BASE_URL="${base%/}"
TIMEOUT="${SMOKE_TIMEOUT:-30}"
[[ -n "$BASE_URL" ]] || { echo "smoke: BASE_URL is empty" >&2; usage; }
[[ -n "${CLIENT_ID:-}" && -n "${CLIENT_SECRET:-}" ]] ||
    { echo "smoke: CLIENT_ID and CLIENT_SECRET are required (arguments or environment)" >&2; usage; }
command -v curl >/dev/null || { echo "smoke: curl not found" >&2; exit 2; }
command -v python3 >/dev/null || { echo "smoke: python3 not found" >&2; exit 2; }
export CLIENT_ID CLIENT_SECRET

T="$(mktemp -d "${TMPDIR:-/tmp}/smla-smoke.XXXXXX")"
chmod 700 "$T"
trap 'rm -rf "$T"' EXIT
export SMOKE_DIR="$T"

PASSED=()
green() { printf '\033[1;32m%s\033[0m' "$*"; }
red() { printf '\033[1;31m%s\033[0m' "$*"; }

# Python side of every check: reads the last response from $SMOKE_DIR and the step's state.
cat >"$T/check.py" <<'EOF'
import base64, json, os, re, sys

D = os.environ["SMOKE_DIR"]
STEP = sys.argv[1]


def fail(msg):
    body = ""
    try:
        body = open(f"{D}/body", encoding="utf-8", errors="replace").read(600)
    except OSError:
        pass
    print(f"FAILED {STEP}: {msg}", file=sys.stderr)
    print(f"  HTTP {status()} {headers().get('content-type', '')}", file=sys.stderr)
    if body:
        print(f"  body: {body}", file=sys.stderr)
    if status() == 429 and not STEP.endswith("-limited"):
        print(f"  (rate-limited: Retry-After {headers().get('retry-after', '?')} s; this IP has spent its "
              "budget, wait and run again)", file=sys.stderr)
    sys.exit(1)


def status():
    try:
        return int(open(f"{D}/status").read().strip() or 0)
    except (OSError, ValueError):
        return 0


def headers():
    """Headers of the last response (the final one after any 100 Continue), names lower-cased."""
    out = {}
    try:
        raw = open(f"{D}/headers", encoding="latin-1").read()
    except OSError:
        return out
    for line in raw.splitlines():
        if line.startswith("HTTP/"):
            out = {}
        elif ":" in line:
            name, _, value = line.partition(":")
            out[name.strip().lower()] = value.strip()
    return out


def body_json():
    try:
        return json.load(open(f"{D}/body", encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"body is not JSON ({exc})")


def expect(cond, msg):
    if not cond:
        fail(msg)


def expect_status(code):
    expect(status() == code, f"expected HTTP {code}, got {status() or 'no answer'}")


def content_type(prefix):
    ct = headers().get("content-type", "")
    expect(ct.split(";")[0].strip().lower() == prefix, f"expected Content-Type {prefix}, got {ct!r}")


def state(name, value=None):
    path = f"{D}/state-{name}"
    if value is None:
        return open(path).read()
    with open(path, "w") as f:
        f.write(value)


def ratelimit_headers():
    h = headers()
    expect("ratelimit-policy" in h, "no RateLimit-Policy header")
    expect("ratelimit" in h, "no RateLimit header")
    expect(re.search(r'r=\d+', h["ratelimit"]) and re.search(r't=\d+', h["ratelimit"]),
           f"RateLimit header {h['ratelimit']!r} lacks r=/t=")
    return h["ratelimit"]


def problem(code):
    content_type("application/problem+json")
    p = body_json()
    for field in ("type", "title", "status", "detail"):
        expect(field in p, f"problem body lacks {field!r}")
    expect(p["status"] == code, f"problem status {p['status']} != {code}")
    return p


def b64url_json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


PROBA_SCOPE = "predict:proba"
step = STEP

if step == "health":
    expect_status(200)
    b = body_json()
    expect(b.get("status") == "ok", f"status {b.get('status')!r} != 'ok'")
    expect(b.get("model_version"), "no model_version")
    state("model_version", b["model_version"])
    print(f"model {b['model_version']}")

elif step == "jwks":
    expect_status(200)
    b = body_json()
    keys = b.get("keys")
    expect(isinstance(keys, list) and keys, "no keys in the JWKS (run `admin keys generate`)")
    private = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
    kids = []
    for key in keys:
        leaked = private & set(key)
        expect(not leaked, f"key {key.get('kid')!r} has private members {sorted(leaked)}")
        for field in ("kid", "alg", "kty"):
            expect(key.get(field), f"a key lacks {field!r}")
        expect(key.get("use") == "sig", f"key {key['kid']!r} has use {key.get('use')!r}, not 'sig'")
        kids.append(f"{key['kid']}:{key['alg']}")
    cc = headers().get("cache-control", "")
    expect("max-age" in cc, f"Cache-Control {cc!r} has no max-age")
    state("kids", " ".join(kids))
    print(f"{len(keys)} key(s): {', '.join(kids)}")

elif step == "token-header":  # Authorization: Basic header file for the token request
    raw = f"{os.environ['CLIENT_ID']}:{os.environ[sys.argv[2]]}".encode()
    print("Authorization: Basic " + base64.b64encode(raw).decode())

elif step == "token":
    expect_status(200)
    content_type("application/json")
    h = headers()
    expect("no-store" in h.get("cache-control", ""), f"Cache-Control {h.get('cache-control')!r} lacks no-store")
    expect("no-cache" in h.get("pragma", ""), f"Pragma {h.get('pragma')!r} lacks no-cache")
    b = body_json()
    expect(str(b.get("token_type", "")).lower() == "bearer", f"token_type {b.get('token_type')!r}")
    expect(isinstance(b.get("expires_in"), int) and b["expires_in"] > 0, f"expires_in {b.get('expires_in')!r}")
    scopes = str(b.get("scope", "")).split()
    expect("predict" in scopes, f"token scope {b.get('scope')!r} lacks 'predict' (create the client with it)")
    tok = b.get("access_token")
    expect(isinstance(tok, str) and tok.count(".") == 2, "access_token is not a JWT")
    head = b64url_json(tok.split(".")[0])
    expect(head.get("typ") == "at+jwt", f"token typ {head.get('typ')!r} != 'at+jwt'")
    kids = state("kids").split()
    expect(f"{head.get('kid')}:{head.get('alg')}" in kids,
           f"token kid/alg {head.get('kid')}/{head.get('alg')} not in the JWKS ({kids})")
    with open(f"{D}/bearer.hdr", "w") as f:
        f.write(f"Authorization: Bearer {tok}\n")
    state("scopes", " ".join(scopes))
    print(f"scope {b.get('scope')!r}, expires_in {b['expires_in']} s, kid {head.get('kid')}")

elif step == "model":
    expect_status(200)
    content_type("application/json")
    b = body_json()
    expect(b.get("version") == state("model_version"),
           f"model card version {b.get('version')!r} != {state('model_version')!r}")
    expect(re.fullmatch(r"[0-9a-f]{64}", str(b.get("sha256", ""))), f"sha256 {b.get('sha256')!r}")
    features = b.get("features")
    expect(isinstance(features, list) and features and all(f.get("name") for f in features),
           f"features {features!r}")
    expect(b.get("task") in ("classification", "regression"), f"task {b.get('task')!r}")
    if b["task"] == "classification":
        expect(isinstance(b.get("labels"), list) and len(b["labels"]) >= 2, f"labels {b.get('labels')!r}")
    state("card", json.dumps(b))

    def allowed(f, x):
        return ((f.get("minimum") is None or x >= f["minimum"])
                and (f.get("exclusive_minimum") is None or x > f["exclusive_minimum"])
                and (f.get("maximum") is None or x <= f["maximum"])
                and (f.get("exclusive_maximum") is None or x < f["exclusive_maximum"]))

    def value(f, share):
        """`share` of the feature's training range, or else a value its allowed range admits."""
        lo, hi = f.get("training_min"), f.get("training_max")
        x = round(lo + (hi - lo) * share, 6) if lo is not None and hi is not None else 0.0
        if allowed(f, x):
            return x
        low = f.get("minimum", f.get("exclusive_minimum"))
        high = f.get("maximum", f.get("exclusive_maximum"))
        if low is not None and high is not None:
            return (low + high) / 2
        return low + 1 if low is not None else high - 1

    rows = [[value(f, share) for f in features] for share in (0.5, 0.1, 0.9)]
    for name, body in (("predict", {"data": rows[0]}), ("batch", {"instances": rows}),
                       ("invalid", {"data": rows[0][:-1]})):
        with open(f"{D}/body-{name}", "w") as f:
            json.dump(body, f)
    print(f"{b.get('name')} {b['version']} ({b['task']}, {len(features)} features), sha256 {b['sha256'][:12]}…")

elif step in ("predict", "batch"):
    expect_status(200)
    content_type("application/json")
    rl = ratelimit_headers()
    b = body_json()
    card = json.loads(state("card"))
    proba = PROBA_SCOPE in state("scopes").split()
    version = state("model_version")
    rows = [b] if step == "predict" else b.get("predictions")
    n = 1 if step == "predict" else 3
    expect(isinstance(rows, list) and len(rows) == n, f"expected {n} prediction(s), got {rows!r}")
    answers = []
    for row in rows:
        expect(isinstance(row.get("warnings"), list), "no warnings list")
        if card["task"] == "regression":
            value = row.get("prediction")
            expect(isinstance(value, (int, float)) and not isinstance(value, bool),
                   f"prediction {value!r} is not a number")
            expect("label" not in row and "probabilities" not in row,
                   f"a regressor's answer with a label or probabilities: {row}")
            answers.append(f"{value:g}")
            continue
        labels = card["labels"]
        index = row.get("prediction")
        expect(isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(labels),
               f"prediction {index!r} is not a class index")
        label = row.get("label")
        expect(label == labels[index], f"label {label!r} != labels[{index}] = {labels[index]!r}")
        if proba:
            p = row.get("probabilities")
            expect(isinstance(p, dict) and sorted(p) == sorted(labels), f"probabilities {p!r} are not one per label")
            expect(max(p, key=p.get) == label, f"probabilities {p} disagree with label {label!r}")
        else:
            expect("probabilities" not in row, "probabilities returned without scope predict:proba")
        answers.append(label)
    got_version = b.get("model_version") if step == "batch" else rows[0].get("model_version")
    expect(got_version == version, f"model_version {got_version!r} != health's {version!r}")
    print(f"{','.join(answers)}; RateLimit: {rl}")

elif step == "invalid-body":
    expect_status(422)
    p = problem(422)
    errors = p.get("errors")
    expect(isinstance(errors, list) and errors, "422 problem without an errors list")
    pointers = [e.get("pointer") for e in errors]
    expect("/data" in pointers, f"errors {errors} do not point at /data")
    expect("ratelimit" not in headers(), "a rejected body carried RateLimit headers (spent quota?)")
    print(f"{p['type']}: {pointers}")

elif step == "no-token":
    expect_status(401)
    problem(401)
    challenge = headers().get("www-authenticate", "")
    expect(challenge.lower().startswith("bearer"), f"WWW-Authenticate {challenge!r} is not a Bearer challenge")
    print(f"WWW-Authenticate: {challenge}")

elif step == "unknown-path":
    # API Gateway's own answer would be {"message":"Not Found"}: the `$default` route must have
    # brought the request to the predict function.
    expect_status(404)
    p = problem(404)
    expect(p["type"] == "/problems/not-found", f"type {p['type']!r}")
    print(p["type"])

elif step == "wrong-method":
    expect_status(405)
    p = problem(405)
    allow = headers().get("allow", "")
    expect(allow == sys.argv[2], f"Allow {allow!r} != {sys.argv[2]!r}")
    print(f"{p['type']}, Allow: {allow}")

elif step == "wrong-secret":
    expect_status(401)
    content_type("application/json")
    b = body_json()
    expect(b.get("error") == "invalid_client", f"error {b.get('error')!r} != 'invalid_client'")
    challenge = headers().get("www-authenticate", "")
    expect(challenge.lower().startswith("basic"), f"WWW-Authenticate {challenge!r} is not a Basic challenge")
    print(f"invalid_client, WWW-Authenticate: {challenge}")

elif step in ("token-limited", "predict-limited"):  # one request of a flood: admitted, or refused
    policy = step.split("-")[0]
    if status() == 200:
        print("admitted")
        sys.exit(0)
    expect_status(429)
    p = problem(429)
    h = headers()
    retry = h.get("retry-after", "")
    expect(retry.isdigit() and int(retry) > 0, f"Retry-After {retry!r} is not a positive number of seconds")
    rl = ratelimit_headers()
    expect(f'"{policy}"' in h["ratelimit-policy"], f"RateLimit-Policy {h['ratelimit-policy']!r} is not {policy!r}'s")
    expect(re.search(r"\br=0\b", rl), f"refused, but RateLimit {rl!r} has quota left")
    print(f"429 after {int(sys.argv[2]) - 1} admitted: Retry-After {retry} s, RateLimit: {rl}, {p['type']}")

else:
    fail(f"unknown step {step}")
EOF

# request STEP METHOD URL [CURL ARGS...]: one request; status, headers and body into $T.
request() {
    local step="$1" method="$2" url="$3"
    shift 3
    rm -f "$T/status" "$T/headers" "$T/body"
    if ! curl -sS --max-time "$TIMEOUT" -X "$method" -o "$T/body" -D "$T/headers" -w '%{http_code}' \
        "$@" "$url" >"$T/status" 2>"$T/curl.err"; then
        printf '%s %s: %s %s: %s\n  (is the API up at that address?)\n' "$(red FAILED)" "$step" "$method" "$url" \
            "$(cat "$T/curl.err")" >&2
        exit 1
    fi
}

# check STEP [ARGS...]: the Python checks for the response just received.
check() {
    local line
    line=$(python3 "$T/check.py" "$@") || {
        printf '%s (%s)\n' "$(red "smoke test failed at step '$1'")" "$BASE_URL" >&2
        exit 1
    }
    PASSED+=("$1")
    printf '  %s %-13s %s\n' "$(green ok)" "$1" "$line"
}

json=(-H 'Content-Type: application/json')
printf 'smoke: %s\n' "$BASE_URL"

request health GET "$BASE_URL/health"
check health

request jwks GET "$BASE_URL/.well-known/jwks.json"
check jwks

(umask 077 && python3 "$T/check.py" token-header CLIENT_SECRET >"$T/basic.hdr")
request token POST "$BASE_URL/token" -H @"$T/basic.hdr" --data-urlencode grant_type=client_credentials
check token

# The model card first: the rows below are built from its features (the body-* files).
request model GET "$BASE_URL/model" -H @"$T/bearer.hdr"
check model

request predict POST "$BASE_URL/predict" -H @"$T/bearer.hdr" "${json[@]}" --data @"$T/body-predict"
check predict

# The middle and both ends of the training ranges.
request batch POST "$BASE_URL/predict/batch" -H @"$T/bearer.hdr" "${json[@]}" --data @"$T/body-batch"
check batch

# A row one value short.
request invalid-body POST "$BASE_URL/predict" -H @"$T/bearer.hdr" "${json[@]}" --data @"$T/body-invalid"
check invalid-body

request no-token POST "$BASE_URL/predict" "${json[@]}" --data @"$T/body-predict"
check no-token

request unknown-path GET "$BASE_URL/no/such/path"
check unknown-path

request wrong-method GET "$BASE_URL/predict"
check wrong-method POST

# A secret that cannot be the client's: its own with one more character.
export SMOKE_WRONG_SECRET="${CLIENT_SECRET}x"
(umask 077 && python3 "$T/check.py" token-header SMOKE_WRONG_SECRET >"$T/wrong.hdr")
request wrong-secret POST "$BASE_URL/token" -H @"$T/wrong.hdr" --data-urlencode grant_type=client_credentials
check wrong-secret

# until_refused STEP METHOD URL [CURL ARGS...]: the same request until the limiter refuses it.
until_refused() {
    local step="$1" n line
    for ((n = 1; n <= ${SMOKE_RATE_LIMIT_MAX:-50}; n++)); do
        request "$@"
        line=$(python3 "$T/check.py" "$step" "$n") || {
            printf '%s (%s)\n' "$(red "smoke test failed at step '$step'")" "$BASE_URL" >&2
            exit 1
        }
        [[ "$line" == admitted ]] && continue
        PASSED+=("$step")
        printf '  %s %-13s %s\n' "$(green ok)" "$step" "$line"
        return 0
    done
    printf '%s: %s requests admitted, none refused (is the limit higher?)\n' "$(red "smoke test failed at step '$step'")" "$((n - 1))" >&2
    exit 1
}

if [[ "${SMOKE_RATE_LIMIT:-0}" == 1 ]]; then
    until_refused token-limited POST "$BASE_URL/token" -H @"$T/basic.hdr" --data-urlencode grant_type=client_credentials
    until_refused predict-limited POST "$BASE_URL/predict" -H @"$T/bearer.hdr" "${json[@]}" \
        --data @"$T/body-predict"
fi

printf '%s: %s checks passed (%s)\n' "$(green 'smoke test passed')" "${#PASSED[@]}" "${PASSED[*]}"
