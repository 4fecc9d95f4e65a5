"""schemathesis hooks for scripts/contract.sh (loaded through SCHEMATHESIS_HOOKS).

Each hook narrows generation where the run itself, not the API, would make a case meaningless.
Every one says why; none hides a response of the functions.
"""

import os

import schemathesis


def _local_emulator() -> bool:
    # contract.sh sets this when the base URLs are `cargo lambda watch` function URLs.
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
