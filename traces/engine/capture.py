"""Reading SAEs' hook points in one forward pass that runs the model no deeper than needed.

Every hook a pass needs stores its tensor, and the last one to fire stops the pass, so no layer
after the deepest hook (and no LM head) runs. Batches group prompts of similar length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from traces.engine.hooks import Hook, parse_hook


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
    """The module a hook names. Multimodal Gemma 3 checkpoints (4B and up) keep the text
    layers under ``model.language_model``; Gemma Scope 2 names them ``model.layers.N``."""
    try:
        return model.get_submodule(module_path)
    except AttributeError:
        if not module_path.startswith("model."):
            raise
        return model.get_submodule("model.language_model." + module_path.removeprefix("model."))


@torch.inference_mode()
def capture_hooks(
    model: torch.nn.Module, hooks: Sequence[Hook], batch: Batch
) -> dict[str, torch.Tensor]:
    """Each hook's tensor ``[batch, seq, width]`` by hook name, from one forward pass that stops
    as soon as the last of them has fired."""
    wanted = {hook.name: hook for hook in hooks}
    store: dict[str, torch.Tensor] = {}
    handles = []

    def keep(name: str, value: object) -> None:
        store[name] = value[0] if isinstance(value, tuple) else value  # type: ignore[assignment]
        if len(store) == len(wanted):
            raise _StopForward

    for hook in wanted.values():
        module = hooked_module(model, hook.module_path)
        if hook.reads == "input":
            handles.append(
                module.register_forward_pre_hook(
                    lambda _, args, name=hook.name: keep(name, args[0])
                )
            )
        else:
            handles.append(
                module.register_forward_hook(
                    lambda _, __, output, name=hook.name: keep(name, output)
                )
            )
    try:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = sorted(set(wanted) - set(store))
    if missing:
        raise RuntimeError(f"the forward pass never reached {', '.join(missing)}")
    return store


def capture_residual(model: torch.nn.Module, module_path: str, batch: Batch) -> torch.Tensor:
    """The output of ``module_path`` (e.g. ``model.layers.12``): ``[batch, seq, d_model]``."""
    return capture_hooks(model, [parse_hook(f"{module_path}.output")], batch)[
        f"{module_path}.output"
    ]
