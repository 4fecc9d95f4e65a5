"""schemathesis hooks for scripts/contract.sh (loaded through SCHEMATHESIS_HOOKS).

Each hook narrows generation where the run itself, not the API, would make a case meaningless.
Every one says why; none hides a response of the functions.
"""

import json
import os
import time

import requests
import schemathesis
from schemathesis.core.transport import Response


def _local_emulator() -> bool:
    # contract.sh sets this when the base URL is the local stack (`cargo lambda watch`).
    return os.environ.get("SMLA_CONTRACT_LOCAL") == "1"


@schemathesis.hook
def filter_case(ctx, case):
    """Locally only: drop raw bodies that are not UTF-8, which `cargo lambda watch` cannot carry.

    (A case hook rather than filter_body: the coverage phase applies case hooks only.)

    `cargo lambda watch` (cargo-lambda 1.9.2) answers such a body with a textual Content-Type
    (application/json, application/x-www-form-urlencoded) itself, with
    `500 text/plain {"type":"https://httpstatuses.com/500",...}`, and never invokes the function:
    it cannot put the bytes into the event's string `body`. The functions' own handling of the same
    bytes (base64-encoded in the event, as API Gateway sends binary bodies) is `400 malformed-json`
    (predict) and a 4xx OAuth error (token), checked through the invoke API.
    """
    if not _local_emulator():
        return True
    body = case.body
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _basic_only(operation, case):
    """POST /token, positive cases: the client authenticates with HTTP Basic only.

    The run authenticates every token request with HTTP Basic (clientBasic in
    scripts/schemathesis.toml). `client_id`/`client_secret` form fields on top of that are
    `400 invalid_request` by design (RFC 6749 §2.3: one method per request; SPEC §2), a rule that
    depends on a header and so cannot be a schema keyword. Positive cases (the documented
    examples included) therefore carry the credentials in the header alone, and
    positive_data_acceptance can demand a 200 for every one. Negative cases keep whatever was
    generated: both methods at once must be, and are, rejected.
    """
    meta = case.meta
    if (
        operation is not None
        and operation.path == "/token"
        and (meta is None or meta.generation.mode.is_positive)
        and isinstance(case.body, dict)
    ):
        case.body = {k: v for k, v in case.body.items() if k not in ("client_id", "client_secret")}
    return case


@schemathesis.hook
def map_case(ctx, case):
    return _basic_only(ctx.operation, case)


@schemathesis.hook
def before_add_examples(ctx, examples):
    # The examples phase bypasses map_case; the documented `form-credentials` example is a
    # request without an Authorization header.
    for case in examples:
        _basic_only(ctx.operation, case)


# What `cargo lambda watch` answers when it cannot pass a request to the function or an answer
# back. The functions' own problem types are relative (`/problems/...`), never this one.
_EMULATOR_500 = {"type": "https://httpstatuses.com/500", "status": 500, "title": "Internal Server Error"}
_RESENDS = 3


def _emulator_failure(status, content):
    if status != 500:
        return False
    try:
        return json.loads(content) == _EMULATOR_500
    except ValueError:
        return False


@schemathesis.hook
def after_call(ctx, case, response):
    """Locally only: re-send, up to three times, a request that `cargo lambda watch` failed itself.

    In fresh CI runs the emulator (cargo-lambda 1.9.2) answered one 100-row batch with its own
    `500 {"type":"https://httpstatuses.com/500",...}` while the function logged either a 200 for
    it or nothing at all; by hand, the same request always got the function's 200. Only that exact
    body is re-sent, so every answer of the functions is judged as it came; a request the
    emulator fails every time still fails the run. Each re-send is written to
    SMLA_CONTRACT_RESENT, which contract.sh prints.
    """
    if not _local_emulator() or not _emulator_failure(response.status_code, response.content):
        return
    for attempt in range(1, _RESENDS + 1):
        time.sleep(0.05 * attempt)
        with requests.Session() as session:
            fresh = session.send(response.request.copy(), timeout=30)
        with open(os.environ["SMLA_CONTRACT_RESENT"], "a", encoding="utf-8") as log:
            log.write(f"{response.request.method} {response.request.path_url} -> {fresh.status_code} (re-send {attempt})\n")
        if not _emulator_failure(fresh.status_code, fresh.content):
            replacement = Response.from_requests(fresh, verify=response.verify)
            for name in Response.__slots__:
                try:
                    setattr(response, name, getattr(replacement, name))
                except AttributeError:
                    pass
            return
