"""Reading the residual stream at an SAE's hook point, running the model no deeper than that.

A forward hook on the hooked layer stores its output and stops the forward pass, so the layers
after it and the LM head never run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


class _StopForward(Exception):
    pass


@dataclass
class Batch:
    input_ids: torch.Tensor  # [batch, seq], right-padded
    attention_mask: torch.Tensor  # [batch, seq], 1 for real tokens
    lengths: list[int]


def make_batch(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> Batch:
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return Batch(ids.to(device), mask.to(device), [len(seq) for seq in sequences])


def batches_by_length(
    lengths: Sequence[int], *, max_tokens: int, max_batch: int = 64
) -> list[list[int]]:
    """Group item indices so that similar lengths share a batch (little padding) and each
    batch's padded size stays under ``max_tokens``. Order inside the result is by length."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = max([lengths[i] for i in current] + [lengths[index]])
        if current and (width * (len(current) + 1) > max_tokens or len(current) >= max_batch):
            groups.append(current)
            current = []
        current.append(index)
    if current:
        groups.append(current)
    return groups


def hooked_module(model: torch.nn.Module, module_path: str) -> torch.nn.Module:
    """The module an SAE's hook names. Multimodal Gemma 3 checkpoints (4B and up) keep the text
    layers under ``model.language_model``; Gemma Scope 2 names them ``model.layers.N``."""
    try:
        return model.get_submodule(module_path)
    except AttributeError:
        if not module_path.startswith("model."):
            raise
        return model.get_submodule("model.language_model." + module_path.removeprefix("model."))


@torch.inference_mode()
def capture_residual(model: torch.nn.Module, module_path: str, batch: Batch) -> torch.Tensor:
    """The output of ``module_path`` (e.g. ``model.layers.12``): ``[batch, seq, d_model]``."""
    module = hooked_module(model, module_path)
    store: dict[str, torch.Tensor] = {}

    def hook(_: torch.nn.Module, __: object, output: object) -> None:
        store["hidden"] = output[0] if isinstance(output, tuple) else output  # type: ignore[assignment]
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if "hidden" not in store:
        raise RuntimeError(f"the forward pass never reached {module_path}")
    return store["hidden"]
