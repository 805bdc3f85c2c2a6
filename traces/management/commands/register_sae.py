from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from traces.services.saes import sae_register_reference, sae_register_shipped


class Command(BaseCommand):
    help = (
        "Add an SAE (a Gemma Scope 2 folder or hub reference) to the registry, or with "
        "--shipped every SAE this project ships. Idempotent: an existing entry is refreshed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "reference",
            nargs="?",
            help="A folder in the Gemma Scope 2 layout, or a hub reference such as "
            "google/gemma-scope-2-270m-pt/resid_post/layer_12_width_16k_l0_medium",
        )
        parser.add_argument("--name", help="Registry name (default: derived from the folder)")
        parser.add_argument("--shipped", action="store_true", help="Register the shipped SAEs")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["shipped"]:
            for record in sae_register_shipped():
                self.stdout.write(f"registered {record.name} ({record.reference})")
            return
        reference: str | None = options["reference"]
        if reference is None:
            raise CommandError("Name an SAE folder or hub reference, or pass --shipped.")
        try:
            record = sae_register_reference(reference, name=options["name"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"registered {record.name} ({record.reference})")
