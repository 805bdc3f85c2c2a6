"""Held-out passages (``passages.jsonl``): prose from the Python 3.11 HOWTOs and the fortunes
package's literature file, the kind of text the shipped SAE was trained on, and none of it from a
test prompt set. The engine measures an SAE's dataset-level mean on them when its registry row
has none recorded (``traces.engine.quality.target_mean``); ``make bench`` times the engine on
them."""

from __future__ import annotations

import json
from pathlib import Path

from traces.engine.model import LoadedModel

PASSAGES = Path(__file__).with_name("passages.jsonl")
MAX_TOKENS = 1000


def passage_texts(path: Path = PASSAGES) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [str(json.loads(line)["prompt"]) for line in lines if line.strip()]


def passage_ids(loaded: LoadedModel, path: Path = PASSAGES) -> list[list[int]]:
    """The passages' token ids (BOS first), each at most ``MAX_TOKENS``."""
    encoded = loaded.tokenizer.encode_batch(passage_texts(path))
    return [list(e.ids)[:MAX_TOKENS] for e in encoded]
