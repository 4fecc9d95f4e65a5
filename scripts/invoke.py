#!/usr/bin/env python3
"""Send an API Gateway event to a function of the local stack, from the address you choose.

`cargo lambda watch` gives every HTTP request the source IP 127.0.0.1, so every curl call shares
one rate-limit budget. Its Lambda invoke API takes an event as it is, source IP included: this
sends one of events/*.json (or any API Gateway HTTP API event) there, the way the end-to-end
tests exercise per-address limits.

Usage: scripts/invoke.py [--source-ip ADDR] [--count N] [--print-event] FUNCTION EVENT_FILE
  FUNCTION       predict or token
  EVENT_FILE     e.g. events/predict.json
  --source-ip    requestContext.http.sourceIp (default: the event's own)
  --count N      send it N times, one after the other, one line per answer (status, RateLimit,
                 Retry-After): more than 20 predictions from one address meet the predict limit
  --print-event  print the event as it would be sent and send nothing, e.g. for
                 `cargo lambda invoke --invoke-address 127.0.0.1 --data-file FILE`
Substitutions: `Bearer REPLACE_WITH_ACCESS_TOKEN` becomes the token in $TOKEN (export it after
the README's curl session); a `Basic` Authorization header becomes the credentials in
$CLIENT_ID and $CLIENT_SECRET, else those of `make dev`'s demo client (.dev/demo-client.json).
Environment: INVOKE_URL (default http://127.0.0.1:$DEV_WATCH_PORT, port 9000), TOKEN, CLIENT_ID,
CLIENT_SECRET.
Exit status: 0 when every event was answered (whatever the HTTP status in the answer), 1 when
the invoke API failed, 2 for a usage error.
"""

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "REPLACE_WITH_ACCESS_TOKEN"


def usage_error(message):
    print(f"invoke: {message}", file=sys.stderr)
    sys.exit(2)


def client_credentials():
    """CLIENT_ID/CLIENT_SECRET from the environment, else make dev's demo client."""
    client_id, secret = os.environ.get("CLIENT_ID"), os.environ.get("CLIENT_SECRET")
    if client_id and secret:
        return client_id, secret
    demo = ROOT / ".dev" / "demo-client.json"
    try:
        client = json.loads(demo.read_text())
        return client["client_id"], client["client_secret"]
    except (OSError, ValueError, KeyError):
        usage_error(f"the event sends client credentials: export CLIENT_ID and CLIENT_SECRET, or start make dev ({demo})")


def prepare(event, source_ip):
    """The event with the caller's token, client credentials and source address."""
    headers = event.get("headers") or {}
    for name, value in list(headers.items()):
        if name.lower() != "authorization" or not isinstance(value, str):
            continue
        if PLACEHOLDER in value:
            token = os.environ.get("TOKEN")
            if not token:
                usage_error("the event needs an access token: export TOKEN (README, \"Run it locally\")")
            headers[name] = value.replace(PLACEHOLDER, token)
        elif value.startswith("Basic "):
            client_id, secret = client_credentials()
            headers[name] = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    context = event.setdefault("requestContext", {})
    if source_ip:
        context.setdefault("http", {})["sourceIp"] = source_ip
    return event


def invoke(url, function, event):
    """The function's answer (an API Gateway response) to one event."""
    event["requestContext"]["requestId"] = str(uuid.uuid4())  # one access line per send
    request = urllib.request.Request(
        f"{url}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"invoke: {request.full_url}: {error} (is make dev running?)", file=sys.stderr)
        sys.exit(1)


def header(answer, name):
    for key, value in (answer.get("headers") or {}).items():
        if key.lower() == name:
            return value
    return None


def body_of(answer):
    body = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        body = base64.b64decode(body).decode(errors="replace")
    return body


def main():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("function", nargs="?")
    parser.add_argument("event_file", nargs="?")
    parser.add_argument("--source-ip")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--print-event", action="store_true")
    parser.add_argument("-h", "--help", action="store_true")
    args = parser.parse_args()
    if args.help:
        print(__doc__)
        return
    if not args.function or not args.event_file or args.count < 1:
        usage_error("usage: scripts/invoke.py [--source-ip ADDR] [--count N] [--print-event] FUNCTION EVENT_FILE")
    try:
        event = json.loads(Path(args.event_file).read_text())
    except (OSError, ValueError) as error:
        usage_error(f"cannot read {args.event_file}: {error}")
    event = prepare(event, args.source_ip)
    if args.print_event:
        print(json.dumps(event, indent=2))
        return
    url = os.environ.get("INVOKE_URL", f"http://127.0.0.1:{os.environ.get('DEV_WATCH_PORT', '9000')}").rstrip("/")
    if args.count == 1:
        answer = invoke(url, args.function, event)
        print(f"HTTP {answer.get('statusCode')}")
        for name, value in sorted((answer.get("headers") or {}).items()):
            print(f"{name}: {value}")
        print()
        print(body_of(answer))
        return
    for i in range(1, args.count + 1):
        answer = invoke(url, args.function, event)
        line = f"{i:3}: HTTP {answer.get('statusCode')}"
        for name in ("ratelimit", "retry-after"):
            if header(answer, name) is not None:
                line += f"  {name}: {header(answer, name)}"
        print(line)


if __name__ == "__main__":
    main()
