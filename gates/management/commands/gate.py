"""``manage.py gate``: gates on the server side, the twin of ``scopeweb-gate``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gates.models import Gate, GateRun
from gates.selectors import gate_run_status
from gates.services.definitions import (
    gate_save,
    gate_schema,
    gate_token_create,
    gate_yaml,
    parse_gate_yaml,
)
from gates.services.execution import gate_run_execute
from gates.services.runs import gate_run_decide, gate_run_start
from scopeweb.accounts.actor import Actor
from scopeweb.refusals import Refused
from scopeweb_gate.cli import run_exit, summary, write_outputs

ACTIONS = ("import", "export", "key", "schema", "run", "status", "decide")


class Command(BaseCommand):
    help = (
        "CI gates. `import FILE` saves a YAML gate (a new version when it exists), `export NAME` "
        "prints one, `schema` prints its JSON Schema, `key NAME KEYNAME` makes a gate key for "
        "scopeweb-gate (printed once). `run NAME [--checkpoint REF] [--prompts FILE]` runs the "
        "gate in this process and exits 0 pass, 1 fail, 2 error, writing --json/--junit/"
        "--markdown; `status RUN` prints a run; `decide RUN approve|reject --user U "
        "--statement S` records a reviewer's decision."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("operands", nargs="*", metavar="ARG")
        parser.add_argument("--checkpoint", default="")
        parser.add_argument("--prompts", type=Path)
        parser.add_argument("--label", default="")
        parser.add_argument("--require-signoff", action="store_true")
        parser.add_argument("--timeout", type=float, default=24 * 3600)
        parser.add_argument("--user", help="who acts (run: the starter; decide: the reviewer)")
        parser.add_argument("--statement", default="")
        for name in ("json", "junit", "markdown"):
            parser.add_argument(f"--{name}", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        action, rest = options["action"], options["operands"]
        try:
            if action == "schema":
                self.stdout.write(json.dumps(gate_schema(), indent=2))
            elif action == "import":
                text = Path(_one(rest, "FILE")).read_text(encoding="utf-8")
                saved = gate_save(
                    document=parse_gate_yaml(text), actor=_actor(options), via="command"
                )
                self.stdout.write(f"saved gate {saved.name} version {saved.version}")
            elif action == "export":
                self.stdout.write(gate_yaml(_gate(_one(rest, "NAME"))), ending="")
            elif action == "key":
                if len(rest) != 2:
                    raise CommandError("key takes NAME and KEYNAME.")
                token, key = gate_token_create(
                    gate=_gate(rest[0]), name=rest[1], actor=_actor(options)
                )
                self.stdout.write(key)
                print(f"gate key {token.prefix}… for {rest[0]} (shown once)", file=sys.stderr)
            elif action == "status":
                self._report(_run(_one(rest, "RUN")), options, exit_code=False)
            elif action == "decide":
                if len(rest) != 2 or rest[1] not in ("approve", "reject"):
                    raise CommandError("decide takes RUN and approve or reject.")
                run = _run(rest[0])
                gate_run_decide(
                    run=run,
                    actor=_actor(options, required=True),
                    approve=rest[1] == "approve",
                    statement=options["statement"],
                )
                self._report(_run(rest[0]), options, exit_code=False)
            else:
                self._gate_run(_gate(_one(rest, "NAME")), options)
        except Refused as exc:
            details = "".join(f"\n  {p['field']}: {p['problem']}" for p in exc.as_dict().get(
                "problems", []))  # fmt: skip
            raise CommandError(f"{exc}{details}") from None
        except OSError as exc:
            raise CommandError(str(exc)) from None

    def _gate_run(self, gate: Gate, options: dict[str, Any]) -> None:
        prompts: Path | None = options["prompts"]
        run = gate_run_start(
            gate=gate,
            actor=_actor(options),
            checkpoint=options["checkpoint"],
            prompts=prompts.read_bytes() if prompts else None,
            prompts_name=prompts.name if prompts else "",
            label=options["label"],
            queue=False,
        )
        print(f"gate run {run.pk} of {gate.name} v{gate.version}", file=sys.stderr)
        try:
            gate_run_execute(run.job_id)
        except Exception as exc:  # recorded on the run; the exit code says error
            print(f"gate run {run.pk} stopped: {exc}", file=sys.stderr)
        run.refresh_from_db()
        deadline = time.monotonic() + options["timeout"]
        while options["require_signoff"] and not run.finished and time.monotonic() < deadline:
            if run.state != GateRun.State.AWAITING_SIGNOFF:
                break
            time.sleep(5)
            run.refresh_from_db()
        self._report(run, options, exit_code=True)

    def _report(self, run: GateRun, options: dict[str, Any], *, exit_code: bool) -> None:
        status = gate_run_status(run)
        outputs = argparse.Namespace(
            json=options["json"], junit=options["junit"], markdown=options["markdown"]
        )
        write_outputs(status, outputs)
        self.stdout.write(summary(status))
        if exit_code:
            code = run_exit(status, options["require_signoff"])
            if code:
                sys.exit(code)


def _one(rest: list[str], name: str) -> str:
    if len(rest) != 1:
        raise CommandError(f"Give one {name}.")
    return rest[0]


def _gate(name: str) -> Gate:
    gate = Gate.objects.filter(name=name).first()
    if gate is None:
        raise CommandError(f"No gate is named {name!r}.")
    return gate


def _run(text: str) -> GateRun:
    run = (
        GateRun.objects.select_related("gate", "job", "profile")
        .filter(pk=int(text) if text.isdigit() else 0)
        .first()
    )
    if run is None:
        raise CommandError(f"No gate run has the id {text!r}.")
    return run


def _actor(options: dict[str, Any], *, required: bool = False) -> Actor:
    username = options.get("user")
    if not username:
        if required:
            raise CommandError("Name the reviewer with --user.")
        return Actor.command()
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user is named {username!r}.")
    return Actor.command(user)
