"""scopeweb-gate: run a Scope Web gate from CI, wait for its verdict, verify its attestation.

  scopeweb-gate run --server URL --gate NAME [--checkpoint REF] [--prompts FILE] [--wait]
                    [--require-signoff] [--json PATH] [--junit PATH] [--markdown PATH]
  scopeweb-gate status RUN --server URL [--json PATH] [--junit PATH] [--markdown PATH]
  scopeweb-gate verify FILE (--cert PEM_FILE | --server URL)

The gate key comes from the environment variable SCOPEWEB_GATE_TOKEN, or from a file named
with --token-file; never from the command line, where process lists and CI logs show it. The
server's address may come from SCOPEWEB_URL instead of --server. Progress goes to stderr; the
Markdown summary (or a one-line verdict) to stdout.

exit codes:
  0  run: the gate passed (with --require-signoff: passed and signed off); without --wait,
     the run was submitted. status: the run passed. verify: the attestation verifies.
  1  the gate failed: a metric missed its threshold, or a reviewer rejected the run.
     verify: the attestation does not verify (changed, malformed or signed by another key).
  2  error: the server could not be reached or answered 4xx/5xx, bad input or file, the run
     ended in error, or --timeout ran out.
  3  status only: the run is still queued, running or awaiting sign-off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from scopeweb_gate.attestation import PREDICATE_TYPE, AttestationError, verify_envelope
from scopeweb_gate.client import Client, GateError, api_base
from scopeweb_gate.outputs import junit_xml, markdown_summary, result_from_json, result_json

EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_PENDING = 0, 1, 2, 3
TOKEN_ENV = "SCOPEWEB_GATE_TOKEN"  # noqa: S105  (the variable's name, not a secret)
SERVER_ENV = "SCOPEWEB_URL"
PROG = "scopeweb-gate"


def main(argv: Sequence[str] | None = None) -> int:
    """The command's entry point: the exit code (see the module docstring)."""
    args = parser().parse_args(argv)
    try:
        code: int = args.command(args)
    except GateError as exc:
        _say(f"{PROG}: {exc}")
        return EXIT_ERROR
    return code


# --- run ---------------------------------------------------------------------------------------


def command_run(args: argparse.Namespace) -> int:
    client = Client(api_base(_server(args)), _token(args))
    fields = {"gate": args.gate}
    fields |= {name: getattr(args, name) for name in ("checkpoint", "label") if getattr(args, name)}
    if args.prompts:
        status = client.post_multipart("runs", fields, {"prompts": Path(args.prompts)})
    else:
        status = client.post_json("runs", fields)
    run_id = _run_id(status)
    _say(f"{PROG}: run {run_id} of gate {args.gate} submitted: {status.get('url', '')}")
    if not args.wait:
        print(f"run {run_id}: {status.get('url', '')}")
        return EXIT_PASS
    status = _wait(client, status, args)
    write_outputs(status, args)
    print(summary(status))
    code = run_exit(status, args.require_signoff)
    if code == EXIT_PASS and status.get("state") == "awaiting_signoff":
        _say(f"{PROG}: the metrics passed; sign-off is pending: {status.get('url', '')}")
    elif code == EXIT_ERROR and status.get("error"):
        _say(f"{PROG}: run {run_id} ended in error: {status['error']}")
    return code


def _wait(client: Client, status: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Poll the run until its verdict is set (with --require-signoff: until it finishes),
    reporting each change of state or progress on stderr. Raises GateError at --timeout."""
    run_id = _run_id(status)
    deadline = time.monotonic() + args.timeout
    shown = ""
    while True:
        line = _progress(status)
        if line != shown:
            _say(line)
            shown = line
        if status.get("finished") or (not args.require_signoff and status.get("verdict")):
            return status
        left = deadline - time.monotonic()
        if left <= 0:
            raise GateError(
                f"timed out after {args.timeout:g} s waiting for run {run_id} "
                f"(state {status.get('state')}): {status.get('url', '')}"
            )
        time.sleep(min(args.poll, left))
        status = client.get_json_retrying(f"runs/{run_id}")


def _progress(status: dict[str, Any]) -> str:
    progress = status.get("progress") or {}
    line = f"run {status.get('id')}: {status.get('state')}"
    if progress.get("note"):
        line += f" - {progress['note']}"
    if progress.get("total"):
        line += f" ({progress.get('done', 0)}/{progress['total']})"
    signoff = status.get("signoff") or {}
    if status.get("state") == "awaiting_signoff" and signoff.get("text"):
        line += f"; sign-off {signoff['text']}"
    return line


def run_exit(status: dict[str, Any], require_signoff: bool) -> int:
    """The exit code of ``run`` for a settled status object (see the module docstring)."""
    state, verdict = status.get("state"), status.get("verdict")
    if state == "error" or verdict == "error":
        return EXIT_ERROR
    if verdict == "fail" or state in ("failed", "rejected"):
        return EXIT_FAIL
    if require_signoff:
        return EXIT_PASS if state == "passed" else EXIT_ERROR
    return EXIT_PASS if verdict == "pass" else EXIT_ERROR


# --- status ------------------------------------------------------------------------------------

_STATUS_EXITS = {
    "passed": EXIT_PASS,
    "failed": EXIT_FAIL,
    "rejected": EXIT_FAIL,
    "error": EXIT_ERROR,
    "queued": EXIT_PENDING,
    "running": EXIT_PENDING,
    "awaiting_signoff": EXIT_PENDING,
}


def command_status(args: argparse.Namespace) -> int:
    client = Client(api_base(_server(args)), _token(args))
    status = client.get_json(f"runs/{args.run}")
    write_outputs(status, args)
    print(summary(status, markdown=False))
    return _STATUS_EXITS.get(str(status.get("state")), EXIT_ERROR)


# --- verify ------------------------------------------------------------------------------------


def command_verify(args: argparse.Namespace) -> int:
    envelope = _read(Path(args.file), "attestation")
    if args.cert:
        pem, source = _read(Path(args.cert), "--cert"), args.cert
    else:
        server = args.server or os.environ.get(SERVER_ENV)
        if not server:
            raise GateError(f"verify needs --cert PEM_FILE or --server URL (or {SERVER_ENV})")
        client = Client(api_base(server))
        pem, source = client.get_text("certificate").encode("utf-8"), client.url("certificate")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise GateError(f"{source}: not a PEM certificate") from None
    try:
        verified = verify_envelope(envelope, certificates, predicate_type=PREDICATE_TYPE)
    except AttestationError as exc:
        _say(f"{PROG}: {args.file} does not verify: {exc}")
        return EXIT_FAIL
    print(f"{args.file}: verified, signed by key {verified.keyid}")
    for line in _predicate_lines(verified.predicate):
        print(line)
    for subject in verified.statement["subject"]:
        digests = ", ".join(f"{k}:{v}" for k, v in sorted(subject["digest"].items()))
        print(f"subject: {subject.get('name', '')} {digests}")
    return EXIT_PASS


def _predicate_lines(predicate: dict[str, Any]) -> list[str]:
    gate = predicate.get("gate")
    if isinstance(gate, dict):
        name, version = gate.get("name"), gate.get("version")
    else:
        name, version = gate, predicate.get("gate_version")
    lines = [f"gate: {name}" + (f" (version {version})" if version is not None else "")]
    state = f" (state {predicate['state']})" if predicate.get("state") else ""
    lines.append(f"verdict: {predicate.get('verdict')}{state}")
    if "signoff" in predicate:
        required = predicate.get("signoffs_required")
        needs = f" ({required} required)" if required is not None else ""
        lines.append(f"sign-off: {predicate['signoff']}{needs}")
    for signoff in predicate.get("signoffs", []):
        lines.append(f"sign-off: {signoff}")
    for decision in predicate.get("decisions", []):
        said = f": {decision['statement']}" if decision.get("statement") else ""
        lines.append(
            f"decision: {decision.get('decision')} by {decision.get('reviewer')} "
            f"at {decision.get('at')}{said}"
        )
    return lines


# --- shared ------------------------------------------------------------------------------------


def _server(args: argparse.Namespace) -> str:
    server: str | None = args.server or os.environ.get(SERVER_ENV)
    if not server:
        raise GateError(f"no server: pass --server URL or set {SERVER_ENV}")
    return server


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        token = _read(Path(args.token_file), "--token-file").decode("utf-8", "replace").strip()
        source = f"--token-file {args.token_file}"
    else:
        token, source = os.environ.get(TOKEN_ENV, "").strip(), TOKEN_ENV
    if not token:
        raise GateError(
            f"no gate key: set {TOKEN_ENV} (a CI secret) or pass --token-file PATH"
            if source == TOKEN_ENV
            else f"{source} is empty"
        )
    if any(c in token for c in "\r\n\0"):
        raise GateError(f"the gate key in {source} has a line break in it")
    return token


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise GateError(f"{what} {path}: no such file") from None  # "--prompts foo: …"
    except OSError as exc:
        raise GateError(f"{what} {path}: cannot be read: {exc.strerror or exc}") from None


def _run_id(status: dict[str, Any]) -> int:
    run_id = status.get("id")
    if not isinstance(run_id, int):
        raise GateError(f"the server's reply names no run: {json.dumps(status)[:200]}")
    return run_id


def write_outputs(status: dict[str, Any], args: argparse.Namespace) -> None:
    """The --json, --junit and --markdown files, from the run's result; none while the run
    has no result yet."""
    wanted = [
        (p, f)
        for p, f in (
            (args.json, result_json),
            (args.junit, junit_xml),
            (args.markdown, markdown_summary),
        )
        if p
    ]
    if not wanted:
        return
    if status.get("result") is None:
        paths = ", ".join(str(p) for p, _ in wanted)
        _say(f"{PROG}: run {status.get('id')} has no result yet; not written: {paths}")
        return
    try:
        result = result_from_json(json.dumps(status["result"]))
    except ValueError as exc:
        raise GateError(f"the server's result cannot be read: {exc}") from None
    for path, write in wanted:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(write(result), encoding="utf-8")
        except OSError as exc:
            raise GateError(f"cannot write {path}: {exc.strerror or exc}") from None


def summary(status: dict[str, Any], *, markdown: bool = True) -> str:
    """The result's Markdown summary, or while there is none (or with ``markdown=False``)
    one line: the run's state, verdict, sign-off and error."""
    if markdown and status.get("result") is not None:
        try:
            return markdown_summary(result_from_json(json.dumps(status["result"])))
        except ValueError as exc:
            raise GateError(f"the server's result cannot be read: {exc}") from None
    signoff = (status.get("signoff") or {}).get("text")
    line = f"gate {status.get('gate')} run {status.get('id')}: {status.get('state')}"
    if status.get("verdict"):
        line += f", verdict {status['verdict']}"
    if signoff:
        line += f", sign-off {signoff}"
    if status.get("error"):
        line += f", error: {status['error']}"
    return f"{line} ({status.get('url', '')})"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="start a gate run (and with --wait, wait for it)",
        epilog="exit codes: 0 passed (with --require-signoff: and signed off; without --wait: "
        "submitted), 1 failed or rejected, 2 error or timeout",
    )
    run.set_defaults(command=command_run)
    _add_server(run)
    run.add_argument("--gate", required=True, help="the gate's name (the key's own gate)")
    run.add_argument("--checkpoint", help="the model to gate: a folder or a hub reference")
    run.add_argument("--prompts", metavar="FILE", help="a prompt file: .jsonl, .csv or .txt")
    run.add_argument("--label", help="shown with the run, e.g. a commit SHA or PR number")
    run.add_argument("--wait", action="store_true", help="wait for the verdict")
    run.add_argument(
        "--require-signoff",
        action="store_true",
        help="with --wait: wait for the reviewers too; pass only once signed off",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="give up waiting after this long (exit 2; default 1800)",
    )
    run.add_argument(
        "--poll",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between status requests (default 5)",
    )
    _add_outputs(run)

    status = commands.add_parser(
        "status",
        help="a run's state (exit 3 while unfinished)",
        epilog="exit codes: 0 passed, 1 failed or rejected, 2 error, 3 still queued, running "
        "or awaiting sign-off",
    )
    status.set_defaults(command=command_status)
    status.add_argument("run", type=int, metavar="RUN", help="the run's id")
    _add_server(status)
    _add_outputs(status)

    verify = commands.add_parser(
        "verify",
        help="verify a run's signed attestation",
        epilog="exit codes: 0 verifies, 1 does not verify, 2 a file or the server is missing",
    )
    verify.set_defaults(command=command_verify)
    verify.add_argument("file", metavar="FILE", help="the DSSE envelope (JSON)")
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--cert", metavar="PEM_FILE", help="the deployment's certificate")
    source.add_argument("--server", metavar="URL", help="fetch the certificate from Scope Web")
    return top


def _add_server(command: argparse.ArgumentParser) -> None:
    command.add_argument("--server", metavar="URL", help=f"Scope Web's address ({SERVER_ENV})")
    command.add_argument(
        "--token-file", metavar="PATH", help=f"read the gate key from PATH, not {TOKEN_ENV}"
    )


def _add_outputs(command: argparse.ArgumentParser) -> None:
    command.add_argument("--json", metavar="PATH", help="write the result as JSON")
    command.add_argument("--junit", metavar="PATH", help="write the result as JUnit XML")
    command.add_argument("--markdown", metavar="PATH", help="write the Markdown summary")
