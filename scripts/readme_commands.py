#!/usr/bin/env python3
"""Run the README's local-stack commands as a reader would type them, against a running stack.

Usage: scripts/readme_commands.py [--verbose] [--stack DIR --admin BIN]
  (no option)  against `make dev`'s stack, exactly as written (http://localhost:9000, .dev/)
  --stack DIR  against another stack (scripts/test.sh's), whose DIR holds what .dev/ holds for
               make dev (function.env, demo-client.json, demo-client.env): `http://localhost:9000`
               and `--invoke-port 9000` become the port of $SMLA_WATCH_URL, `.dev/` becomes DIR/,
               and `cargo run -q -p admin --` becomes BIN, the admin binary test.sh built (cargo
               run would resolve the admin's features on its own and build the SDK again)
  --verbose    print every block's output, not only a failing one's (it may show tokens)
Every fenced block that follows a `<!-- readme-check -->` line runs, in README order, in one
bash session from the repository root (`set -euo pipefail`; a block's variables stay set for the
next, as in a terminal); a `python` block runs with python3. curl fails on an HTTP error status
(--fail-with-body). `<!-- readme-check: expect TEXT -->` also requires TEXT in the output.
Exit status: 0 when every block ran and printed what it should; 1 otherwise; 2 for a usage error.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- readme-check(?:: expect (?P<expect>.+?))? -->$")
FENCE = re.compile(r"^```(?P<lang>sh|python)$")


def blocks(readme):
    """(line number, language, code, expected text) of every marked block."""
    lines = readme.splitlines()
    found = []
    for i, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if not marker:
            continue
        fence = FENCE.match(lines[i + 1].strip()) if i + 1 < len(lines) else None
        if not fence:
            sys.exit(f"README.md:{i + 1}: a readme-check marker must be followed by a ```sh or ```python block")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            sys.exit(f"README.md:{i + 2}: unterminated block")
        found.append((i + 3, fence["lang"], "\n".join(lines[i + 2 : end]) + "\n", marker["expect"]))
    return found


def main():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--stack", type=Path)
    parser.add_argument("--admin")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("-h", "--help", action="store_true")
    args = parser.parse_args()
    if args.help:
        print(__doc__)
        return 0
    if bool(args.stack) != bool(args.admin):
        print("readme_commands: --stack and --admin go together", file=sys.stderr)
        return 2

    env = dict(os.environ)
    substitutions = []
    if args.stack:
        url = os.environ.get("SMLA_WATCH_URL")
        if not url:
            print("readme_commands: --stack needs SMLA_WATCH_URL (the stack's base URL)", file=sys.stderr)
            return 2
        port = str(urllib.parse.urlsplit(url).port)
        substitutions = [
            ("http://localhost:9000", url.rstrip("/")),
            ("--invoke-port 9000", f"--invoke-port {port}"),
            (".dev/", f"{args.stack.resolve()}/"),
            ("cargo run -q -p admin --", shlex.quote(args.admin)),
        ]
        env["DEV_WATCH_PORT"] = port  # scripts/invoke.py's default address

    found = blocks((ROOT / "README.md").read_text())
    if not found:
        print("readme_commands: README.md marks no block with <!-- readme-check -->", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="smla-readme.") as tmp:
        tmp = Path(tmp)
        script = [
            "set -euo pipefail",
            "curl() { command curl --fail-with-body \"$@\"; }",
            # fd 3: the session's stderr, for the exit trap, which runs inside the failed block's
            # redirection to its output file.
            "exec 3>&2",
            'trap \'rc=$?; if ((rc)); then printf "\\nREADME.md:%s failed (exit %s); its output:\\n" '
            '"$line" "$rc" >&3; cat "$out" >&3; fi\' EXIT',
        ]
        for n, (line, lang, code, expect) in enumerate(found):
            for old, new in substitutions:
                code = code.replace(old, new)
            out = tmp / f"out-{n}"
            script.append(f"line={line} out={shlex.quote(str(out))}")
            if lang == "python":
                source = tmp / f"block-{n}.py"
                source.write_text(code)
                code = f"python3 {shlex.quote(str(source))}\n"
            script.append("{\n" + code + '} >"$out" 2>&1')
            if args.verbose:
                script.append('cat "$out"')
            if expect:
                script.append(
                    f'grep -qF -- {shlex.quote(expect)} "$out" || '
                    f'{{ echo "README.md:{line}: the output lacks {expect}"; false; }}'
                )
            script.append(f'echo "ok  README.md:{line} ({lang}, $(wc -l <"$out") lines of output)"')
        (tmp / "run.sh").write_text("\n".join(script) + "\n")
        result = subprocess.run(["bash", str(tmp / "run.sh")], cwd=ROOT, env=env, check=False)
    print(f"readme_commands: {len(found)} blocks {'passed' if result.returncode == 0 else 'FAILED'}")
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
