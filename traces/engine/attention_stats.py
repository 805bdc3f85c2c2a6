"""Per-head attention statistics of Gemma 3 at chosen layers, and the heads of a candidate that
leave a baseline's band (the gate metric "unusual attention patterns").

For each sequence, chosen layer and head, four figures averaged over the query positions
``1 .. n-1`` (BOS's own row is left out: it can only attend to itself). Position 0 is taken to
be BOS, as the engine's tokenizer puts it there.

- ``entropy``: Shannon entropy, in nats, of the query's attention distribution;
- ``bos``: the mass on key 0;
- ``previous``: the mass on key ``q - 1``, when that key is not BOS;
- ``distant``: the mass on keys more than ``DISTANT`` positions back (``q - k > DISTANT``),
  BOS left out.

The three masses cover disjoint sets of keys, so ``bos + previous + distant <= 1``: the BOS key
counts as ``bos`` only, so query 1's ``previous`` is 0 and BOS is never ``distant``.

``DISTANT`` is 64: far enough back to leave out the local syntax most heads read, and well inside
Gemma 3's smallest sliding window (512 on the 270M, 1024 on larger ones), so the figure means
the same on sliding and global layers. Sequences of 65 tokens or fewer have no distant keys;
their ``distant`` is 0.

The weights come from eager attention: the model is switched to it for the pass and switched
back afterwards, even on errors (sdpa returns no weights). The same model object must not run
other passes in another thread meanwhile. The pass stops after the deepest chosen layer, as
``traces.engine.capture.capture_hooks`` does. Sequences are batched by length with right
padding; a real query never sees a padded key (causal mask), and padded query rows are dropped,
so a sequence's figures do not depend on its batch. Memory: eager attention holds
``[batch, heads, seq, seq]`` float weights per layer, quadratic in the sequence length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from scopeweb_tracer.capture import hooked_module
from traces.engine.capture import Batch, batches_by_length, make_batch
from traces.engine.model import LoadedModel

__all__ = [
    "DISTANT",
    "STATS",
    "AttentionStats",
    "HeadOutside",
    "OutsideBand",
    "attention_stats",
    "eager_attention",
    "heads_outside_band",
]

DISTANT = 64  # keys more than this many positions behind the query are "distant"
STATS = ("entropy", "bos", "previous", "distant")

Values = npt.NDArray[np.float32]  # [sequences, layers, heads, len(STATS)]


@dataclass(frozen=True)
class AttentionStats:
    """The figures of ``sequences`` at ``layers`` (in the order they were asked for)."""

    layers: tuple[int, ...]
    values: Values  # [sequences, layers, heads, 4], float32, STATS order on the last axis


class HeadOutside(NamedTuple):
    """One statistic of one head whose candidate mean lies outside the baseline band."""

    layer: int  # the model's layer index, not the position in ``layers``
    head: int
    stat: str  # one of STATS
    value: float  # the candidate's mean over its sequences
    low: float  # the baseline band, [p_low, p_high] of its per-sequence values
    high: float


@dataclass(frozen=True)
class OutsideBand:
    """``count``: heads (distinct ``(layer, head)``) with at least one statistic outside the
    band. ``heads``: every such statistic, one entry each, by layer, head and STATS order; a
    head with two statistics outside appears twice here and once in ``count``."""

    count: int
    heads: tuple[HeadOutside, ...]


class _StopForward(Exception):
    pass


@contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Run ``model`` (a transformers model) with eager attention inside the block; restore its
    attention implementation afterwards, whatever happens."""
    previous = model.config._attn_implementation
    if previous == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def _key_masks(width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``previous`` and ``distant`` key masks ``[query, key]`` (BOS in neither)."""
    q = torch.arange(width, device=device)[:, None]
    k = torch.arange(width, device=device)[None, :]
    previous = (k == q - 1) & (k >= 1)
    distant = (k >= 1) & (q - k > DISTANT)
    return previous, distant


def _batch_figures(weights: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``weights [batch, heads, seq, seq]`` → the figures ``[batch, heads, 4]``, each averaged
    over the real queries ``1 .. length-1`` of its row."""
    w = weights.float()
    width = w.shape[-1]
    previous_keys, distant_keys = _key_masks(width, w.device)
    per_query = torch.stack(
        (
            -torch.special.xlogy(w, w).sum(-1),  # 0·log 0 = 0: masked keys add nothing
            w[..., 0],
            (w * previous_keys).sum(-1),
            (w * distant_keys).sum(-1),
        ),
        dim=-1,
    )  # [batch, heads, seq, 4]
    positions = torch.arange(width, device=w.device)[None, :]
    real = (positions >= 1) & (positions < lengths[:, None])  # [batch, seq]
    # where, not a product: a padded query's row must not leak even a NaN
    kept = torch.where(real[:, None, :, None], per_query, torch.zeros_like(per_query))
    return kept.sum(2) / (lengths - 1).to(w.dtype)[:, None, None]


def _run_batch(model: Any, layers: Sequence[int], batch: Batch) -> dict[int, torch.Tensor]:
    """The figures ``[batch, heads, 4]`` by layer, from one eager pass that stops after the
    deepest of ``layers``."""
    deepest = max(layers)
    lengths = torch.tensor(batch.lengths, device=batch.input_ids.device)
    found: dict[int, torch.Tensor] = {}

    def keep(layer: int, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if not isinstance(weights, torch.Tensor):
            raise RuntimeError(f"layer {layer}'s attention returned no weights (not eager?)")
        found[layer] = _batch_figures(weights, lengths)
        if layer == deepest:
            raise _StopForward

    handles = [
        hooked_module(model, f"model.layers.{layer}.self_attn").register_forward_hook(
            lambda _, __, output, layer=layer: keep(layer, output)
        )
        for layer in layers
    ]
    try:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = sorted(set(layers) - set(found))
    if missing:
        raise RuntimeError(f"the forward pass never reached layers {missing}")
    return found


@torch.inference_mode()
def attention_stats(
    loaded: LoadedModel,
    sequences: Sequence[Sequence[int]],
    layers: Sequence[int],
    *,
    max_batch_tokens: int = 4096,
) -> AttentionStats:
    """Each head's figures (``STATS``) at ``layers`` for each of ``sequences`` (token ids, BOS
    first, at least 2 tokens each): ``values [sequences, layers, heads, 4]`` float32, rows in
    the order of ``sequences``. Eager attention for these passes only; no layer after the
    deepest chosen one runs."""
    chosen = tuple(int(layer) for layer in layers)
    if not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"layers must be distinct and at least one: {list(chosen)}")
    if any(not 0 <= layer < loaded.n_layers for layer in chosen):
        raise ValueError(f"layers must lie in 0..{loaded.n_layers - 1}: {list(chosen)}")
    short = [i for i, seq in enumerate(sequences) if len(seq) < 2]
    if short:
        raise ValueError(f"sequences {short[:5]} have fewer than 2 tokens (no query after BOS)")
    heads = int(loaded.text_config.num_attention_heads)
    values = np.zeros((len(sequences), len(chosen), heads, len(STATS)), dtype=np.float32)
    with eager_attention(loaded.model):
        groups = batches_by_length([len(s) for s in sequences], max_tokens=max_batch_tokens)
        for group in groups:
            batch = make_batch([sequences[i] for i in group], 0, loaded.device)
            found = _run_batch(loaded.model, chosen, batch)
            for at, layer in enumerate(chosen):
                values[group, at] = found[layer].cpu().numpy()
    return AttentionStats(layers=chosen, values=values)


def heads_outside_band(
    baseline: AttentionStats,
    candidate: AttentionStats,
    *,
    low: float = 1,
    high: float = 99,
    stats: Sequence[str] = STATS,
) -> OutsideBand:
    """The heads whose candidate figures leave the baseline band. Per (layer, head, statistic)
    the band is ``[p_low, p_high]`` of the baseline's per-sequence values (numpy's linear
    percentile); a statistic is outside when the candidate's mean over its sequences lies
    strictly below or above it. ``stats`` narrows which statistics count (DESIGN.md's
    "attention anomaly count" reads entropy only; the gate issue reads all four).

    Raises ValueError when the two were taken at different layers, have different head counts,
    either holds no sequence, or ``stats`` names an unknown statistic."""
    if baseline.layers != candidate.layers:
        raise ValueError(
            f"baseline layers {list(baseline.layers)} differ from the candidate's "
            f"{list(candidate.layers)}"
        )
    if baseline.values.shape[1:] != candidate.values.shape[1:]:
        raise ValueError(
            f"baseline shape {baseline.values.shape[1:]} differs from the candidate's "
            f"{candidate.values.shape[1:]}"
        )
    if len(baseline.values) == 0 or len(candidate.values) == 0:
        raise ValueError("the baseline and the candidate need at least one sequence each")
    unknown = sorted(set(stats) - set(STATS))
    if unknown or not 0 <= low <= high <= 100:
        raise ValueError(f"bad statistics {unknown} or band [{low}, {high}]")
    wanted = [STATS.index(stat) for stat in STATS if stat in stats]
    base = baseline.values.astype(np.float64)
    lows, highs = np.percentile(base, [low, high], axis=0)  # each [layers, heads, 4]
    means = candidate.values.astype(np.float64).mean(axis=0)
    outside = (means < lows) | (means > highs)
    found: list[HeadOutside] = []
    for at, head, which in zip(*np.nonzero(outside), strict=True):
        if which in wanted:
            found.append(
                HeadOutside(
                    layer=baseline.layers[at],
                    head=int(head),
                    stat=STATS[which],
                    value=float(means[at, head, which]),
                    low=float(lows[at, head, which]),
                    high=float(highs[at, head, which]),
                )
            )
    return OutsideBand(count=len({(h.layer, h.head) for h in found}), heads=tuple(found))
