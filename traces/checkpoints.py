"""Gemma checkpoints by name: pretrained (pt) or instruction-tuned (it), and the warning for an
SAE trained on one kind used on the other.

Gemma Scope 2 trains separate SAEs on the pt and it models; an SAE read on the other kind sees
activations it was not trained on. Names are all there is to go by here (torch-free: the run form,
the run page and the CLI show the warning): a Gemma name with an ``it`` part is it, one with a
``pt`` part or none (``google/gemma-3-270m``, the default model) is pt.
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["pt", "it"]
_KIND_WORDS = {"pt": "pretrained (pt)", "it": "instruction-tuned (it)"}
_ARTICLE = {"pt": "a", "it": "an"}
_SIZE = re.compile(r"\d+(?:\.\d+)?[mb]")


def checkpoint_kind(name: str) -> Kind | None:
    """``"it"`` or ``"pt"`` for a Gemma checkpoint's name (a hub id, a folder or the name the
    registry records); None when the name is not a Gemma model's or says nothing of its kind."""
    base = name.strip().rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()
    if "gemma" not in base:
        return None
    parts = re.split(r"[-_.\s]+", base)
    if "it" in parts:
        return "it"
    if "pt" in parts or any(_SIZE.fullmatch(part) for part in parts):
        return "pt"  # Google names its pretrained checkpoints plainly: gemma-3-270m is pt
    return None


def checkpoint_mismatch(sae_model_name: str, checkpoint: str) -> str | None:
    """A sentence saying which is pt and which is it when the SAE was trained on one kind of
    Gemma model and ``checkpoint`` is the other; None when they agree or a kind is unknown."""
    sae_kind, model_kind = checkpoint_kind(sae_model_name), checkpoint_kind(checkpoint)
    if sae_kind is None or model_kind is None or sae_kind == model_kind:
        return None
    trained_on = f"{_ARTICLE[sae_kind]} {_KIND_WORDS[sae_kind]} model"
    return (
        f"The SAE was trained on {sae_model_name}, {trained_on}, but the checkpoint "
        f"{checkpoint} is {_KIND_WORDS[model_kind]}: Gemma Scope 2's {sae_kind} SAEs do not "
        f"transfer to {model_kind} models, so its features may not mean what their labels say. "
        f"Use an SAE trained on the {model_kind} model."
    )
