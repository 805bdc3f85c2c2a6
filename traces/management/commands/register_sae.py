from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from traces.services.saes import sae_register, sae_register_shipped


class Command(BaseCommand):
    help = (
        "Add an SAE folder (Gemma Scope 2 layout) to the registry, or with --shipped every SAE "
        "this project ships. Idempotent: an existing entry is refreshed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", nargs="?", type=Path)
        parser.add_argument("--name", help="Registry name (default: derived from the folder)")
        parser.add_argument("--shipped", action="store_true", help="Register the shipped SAEs")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["shipped"]:
            for record in sae_register_shipped():
                self.stdout.write(f"registered {record.name} ({record.reference})")
            return
        folder: Path | None = options["folder"]
        if folder is None:
            raise CommandError("Name an SAE folder, or pass --shipped.")
        missing = [n for n in ("config.json", "params.safetensors") if not (folder / n).is_file()]
        if missing:
            raise CommandError(f"{folder}: missing {', '.join(missing)}")
        try:
            record = sae_register(folder.resolve(), name=options["name"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"registered {record.name} ({record.reference})")
