"""Reading SAEs' hook points in one forward pass that runs the model no deeper than needed.

Every hook a pass needs stores its tensor, and the last one to fire stops the pass, so no layer
after the deepest hook (and no LM head) runs. Batches group prompts of similar length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from scopeweb_tracer.capture import attach_hooks
from scopeweb_tracer.hooks import Hook, parse_hook


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


BATCH_OVERHEAD = 64  # a forward pass's fixed cost, in padded tokens (measured by make bench)


def batches_by_length(
    lengths: Sequence[int],
    *,
    max_tokens: int,
    max_batch: int = 64,
    overhead: int = BATCH_OVERHEAD,
) -> list[list[int]]:
    """Group item indices into batches of similar length, each batch's padded size
    (longest × rows) under ``max_tokens`` (a longer item goes alone). Of all groupings of the
    sorted lengths into runs, the one with the fewest padded tokens plus ``overhead`` per batch
    (dynamic programming, at most ``max_batch`` rows per batch). Order inside is by length."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    count = len(order)
    best = [0] + [-1] * count  # best[j]: the cheapest cost of the first j sorted items
    cut = [0] * (count + 1)
    for stop in range(1, count + 1):
        width = lengths[order[stop - 1]]  # the longest of any run ending here
        for start in range(stop - 1, max(-1, stop - 1 - max_batch), -1):
            rows = stop - start
            if rows > 1 and width * rows > max_tokens:
                break
            cost = best[start] + width * rows + overhead
            if best[stop] < 0 or cost < best[stop]:
                best[stop], cut[stop] = cost, start
    groups: list[list[int]] = []
    stop = count
    while stop > 0:
        groups.append(order[cut[stop] : stop])
        stop = cut[stop]
    return groups[::-1]


@torch.inference_mode()
def capture_hooks(
    model: torch.nn.Module, hooks: Sequence[Hook], batch: Batch
) -> dict[str, torch.Tensor]:
    """Each hook's tensor ``[batch, seq, width]`` by hook name, from one forward pass that stops
    as soon as the last of them has fired."""
    wanted = {hook.name: hook for hook in hooks}
    store: dict[str, torch.Tensor] = {}

    def keep(name: str, value: torch.Tensor) -> None:
        store[name] = value
        if len(store) == len(wanted):
            raise _StopForward

    handles = attach_hooks(model, list(wanted.values()), keep)
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
