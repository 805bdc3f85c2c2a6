from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEFAULT_OUT = "saes/scopeweb-gemma-3-270m-pt/resid_post/layer_12_width_4k_l0_medium"


class Command(BaseCommand):
    help = (
        "Train the shipped JumpReLU SAE for Gemma 3 270M on the offline Debian text corpus "
        "(fortunes, python3.11-doc, debian-reference-en) and write it in the Gemma Scope 2 "
        "layout with its corpus record, seed, hyper-parameters and held-out quality."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, default=Path(settings.BASE_DIR) / DEFAULT_OUT)
        parser.add_argument("--layer", type=int, default=12)
        parser.add_argument("--width", type=int, default=4096)
        parser.add_argument("--k", type=int, default=64)
        parser.add_argument("--train-tokens", type=int, default=600_000)
        parser.add_argument("--heldout-tokens", type=int, default=40_000)
        parser.add_argument("--epochs", type=int, default=4)
        parser.add_argument("--seed", type=int, default=0)

    def _every(self, step: int, template: str) -> Any:
        marks = {"next": step}

        def report(count: int) -> None:
            if count >= marks["next"]:
                self.stdout.write(template.format(count))
                marks["next"] = (count // step + 1) * step

        return report

    def handle(self, *args: Any, **options: Any) -> None:
        import torch

        from scopeweb_tracer.sae import load_sae
        from traces.engine import corpus
        from traces.engine.model import load_default_model
        from traces.engine.quality import sae_quality
        from traces.engine.training import (
            TrainSettings,
            collect_activations,
            save_sae,
            split_by_tokens,
            tokenize_documents,
            train,
        )

        started = time.monotonic()
        spec = TrainSettings(
            layer=options["layer"],
            width=options["width"],
            k=options["k"],
            train_tokens=options["train_tokens"],
            heldout_tokens=options["heldout_tokens"],
            epochs=options["epochs"],
            seed=options["seed"],
        )
        try:
            sources = corpus.list_sources()
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        docs = corpus.documents(sources)
        fast = load_default_model(dtype=getattr(torch, spec.capture_dtype))
        sequences = tokenize_documents(fast, docs, spec.seq_len, spec.seed)
        train_seqs, heldout = split_by_tokens(sequences, spec.heldout_tokens)
        self.stdout.write(
            f"corpus: {len(docs):,} documents from {len(sources)} files; "
            f"{sum(len(s) - 1 for s in train_seqs):,} training tokens available"
        )
        acts = collect_activations(
            fast,
            train_seqs,
            spec.layer,
            spec.train_tokens,
            progress=self._every(50_000, "captured {:,} tokens"),
        )
        self.stdout.write(f"activations {tuple(acts.shape)} in {time.monotonic() - started:.0f} s")
        del fast
        result = train(acts, spec, progress=lambda line: self.stdout.write(line))
        out: Path = options["out"]
        record: dict[str, Any] = {
            "command": " ".join(["manage.py", "train_sae", *sys.argv[2:]]),
            "corpus": corpus.manifest(sources)
            | {
                "documents": len(docs),
                "train_tokens": int(acts.shape[0]),
                "heldout_tokens": sum(len(s) - 1 for s in heldout),
                "tokenizer": "gemma-3-270m (rebuilt from the package GGUF)",
            },
            "software": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
            },
            "train_seconds": round(result.seconds, 1),
            "threshold": result.threshold,
        }
        save_sae(out, result, spec, l0=float(spec.k), record=record)
        exact = load_default_model(dtype=torch.float32)
        sae = load_sae(str(out), d_model=exact.d_model, n_layers=exact.n_layers)
        quality = sae_quality(exact, sae, heldout)
        record["heldout_quality"] = quality.as_dict()
        record["total_seconds"] = round(time.monotonic() - started, 1)
        save_sae(out, result, spec, l0=quality.l0, record=record)
        self.stdout.write(json.dumps(quality.as_dict(), indent=2))
        self.stdout.write(f"saved to {out} in {record['total_seconds']} s")
