from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb_tracer.hooks import WIDTH_NAMES

WIDTHS = {name: width for width, name in WIDTH_NAMES.items()}


class Command(BaseCommand):
    help = (
        "Write a random JumpReLU SAE in the Gemma Scope 2 layout under ROOT "
        "(ROOT/SITE/layer_L_width_W_l0_medium), for trying real widths and every site without "
        "the hub. Thresholds are set from the default model's activations on the held-out "
        "passages so about --l0 latents fire per token; reconstructions are poor by design. "
        "Register it with manage.py register_sae FOLDER."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("root", type=Path)
        parser.add_argument(
            "--site", required=True, choices=["resid_post", "attn_out", "mlp_out", "transcoder"]
        )
        parser.add_argument("--layer", type=int, required=True)
        parser.add_argument("--width", choices=sorted(WIDTHS), default="16k")
        parser.add_argument("--l0", type=float, default=60.0)
        parser.add_argument("--affine", action="store_true", help="transcoders: an affine skip")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        from traces.engine.model import load_default_model
        from traces.engine.passages import passage_ids
        from traces.engine.random_sae import write_random_sae

        if options["affine"] and options["site"] != "transcoder":
            raise CommandError("--affine is for --site transcoder only")
        loaded = load_default_model()
        if not 0 <= options["layer"] < loaded.n_layers:
            raise CommandError(f"--layer must be 0 to {loaded.n_layers - 1}")
        folder = write_random_sae(
            loaded,
            options["root"],
            site=options["site"],
            layer=options["layer"],
            width=WIDTHS[options["width"]],
            sequences=passage_ids(loaded),
            l0=options["l0"],
            affine=options["affine"],
            seed=options["seed"],
        )
        self.stdout.write(str(folder))
