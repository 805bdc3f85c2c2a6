from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb.accounts.actor import Actor
from traces.ingest.models import InstrumentationManifest
from traces.services.manifests import (
    ManifestRefused,
    ingest_token_create,
    manifest_save,
    manifest_schema,
    manifest_yaml,
    parse_manifest_yaml,
)


class Command(BaseCommand):
    help = (
        "Instrumentation manifests: `import FILE` saves a YAML manifest (a new version when the "
        "service exists), `export SERVICE` prints one, `token SERVICE NAME` makes an ingest key "
        "(printed once), `schema` prints the JSON Schema."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["import", "export", "token", "schema"])
        parser.add_argument("operands", nargs="*", metavar="ARG")

    def handle(self, *args: Any, **options: Any) -> None:
        action, rest = options["action"], options["operands"]
        try:
            if action == "schema":
                import json

                self.stdout.write(json.dumps(manifest_schema(), indent=2))
            elif action == "import":
                text = Path(_one(rest, "FILE")).read_text(encoding="utf-8")
                saved = manifest_save(
                    document=parse_manifest_yaml(text), actor=Actor.command(), via="command"
                )
                self.stdout.write(f"saved {saved.service} version {saved.version}")
            elif action == "export":
                self.stdout.write(manifest_yaml(_manifest(_one(rest, "SERVICE"))), ending="")
            else:
                if len(rest) != 2:
                    raise CommandError("token takes SERVICE and NAME.")
                token, key = ingest_token_create(
                    manifest=_manifest(rest[0]), name=rest[1], actor=Actor.command()
                )
                self.stdout.write(key)
                print(f"ingest key {token.prefix}… for {rest[0]} (shown once)", file=sys.stderr)
        except ManifestRefused as exc:
            details = "".join(f"\n  {p['field']}: {p['problem']}" for p in exc.problems)
            raise CommandError(f"{exc}{details}") from None
        except OSError as exc:
            raise CommandError(str(exc)) from None


def _one(rest: list[str], what: str) -> str:
    if len(rest) != 1:
        raise CommandError(f"Give one {what}.")
    return rest[0]


def _manifest(service: str) -> InstrumentationManifest:
    found = InstrumentationManifest.objects.filter(service=service).first()
    if found is None:
        raise CommandError(f"No manifest for the service {service!r}.")
    return found
