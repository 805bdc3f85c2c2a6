"""Per-head attention statistics on the real Gemma 3 270M: they equal a numpy computation from
the model's own eager weights, ignore padding, run no deeper than asked, leave the model's
attention implementation as it was, and a perturbed layer's heads leave the baseline band."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from traces.engine.attention_stats import (
    DISTANT,
    STATS,
    AttentionStats,
    attention_stats,
    heads_outside_band,
)
from traces.engine.passages import passage_ids

if TYPE_CHECKING:
    from traces.engine.model import LoadedModel

LAYERS = (1, 3)  # 3 is sliding, 5 global on the 270M (layer_types)


@pytest.fixture(scope="module")
def passages(gemma: LoadedModel) -> list[list[int]]:
    return passage_ids(gemma)


@pytest.fixture(scope="module")
def baseline_ids(passages: list[list[int]]) -> list[list[int]]:
    """Twelve passages cut to 96 tokens: long enough for distant keys, short enough to be quick."""
    return [ids[:96] for ids in passages[:12]]


@pytest.fixture(scope="module")
def baseline(gemma: LoadedModel, baseline_ids: list[list[int]]) -> AttentionStats:
    return attention_stats(gemma, baseline_ids, LAYERS)


def _reference_figures(weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """STATS of one head from its weights ``[query, key]``, query by query, by the documented
    rule: BOS counts as ``bos`` only; ``distant`` is keys 1 .. q-DISTANT-1."""
    rows = []
    for q in range(1, weights.shape[0]):
        row = weights[q, : q + 1]
        p = row[row > 0]
        rows.append(
            (
                float(-(p * np.log(p)).sum()),
                row[0],
                row[q - 1] if q >= 2 else 0.0,
                row[1 : q - DISTANT].sum() if q - DISTANT > 1 else 0.0,
            )
        )
    means: npt.NDArray[np.float64] = np.asarray(rows, dtype=np.float64).mean(axis=0)
    return means


def test_stats_equal_a_numpy_computation_from_the_models_eager_weights(
    gemma: LoadedModel, passages: list[list[int]]
) -> None:
    ids = next(p for p in passages if len(p) > 520)[:530]  # past the 512-token sliding window
    layers = (3, 5)  # sliding, global
    found = attention_stats(gemma, [ids], layers).values[0]
    model: Any = gemma.model
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([ids], device=gemma.device), output_attentions=True)
    finally:
        model.set_attn_implementation(before)
    for at, layer in enumerate(layers):
        weights = out.attentions[layer][0].double().cpu().numpy()  # [heads, query, key]
        for head in range(weights.shape[0]):
            expected = _reference_figures(weights[head])
            np.testing.assert_allclose(found[at, head], expected, atol=1e-4)
    assert found[:, :, STATS.index("distant")].max() > 0  # the distant rule was exercised


def test_masses_lie_in_the_unit_interval_and_sum_to_at_most_one(
    baseline: AttentionStats, baseline_ids: list[list[int]]
) -> None:
    values = baseline.values
    assert values.dtype == np.float32
    assert values.shape == (len(baseline_ids), len(LAYERS), 4, len(STATS))
    masses = values[..., 1:]
    assert masses.min() >= 0 and masses.max() <= 1 + 1e-6
    assert masses.sum(-1).max() <= 1 + 1e-5  # bos, previous and distant are disjoint key sets
    entropy = values[..., 0]
    assert entropy.min() >= 0 and entropy.max() <= math.log(96) + 1e-5


def test_a_sequence_alone_and_in_a_padded_batch_give_the_same_stats(
    gemma: LoadedModel, passages: list[list[int]]
) -> None:
    short, long = passages[0][:90], passages[1][:100]  # one batch: 2 × 100 beats two passes
    widths: list[tuple[int, ...]] = []
    handle = gemma.model.model.layers[0].register_forward_pre_hook(
        lambda _, args: widths.append(tuple(args[0].shape[:2]))
    )
    try:
        together = attention_stats(gemma, [short, long], LAYERS).values
    finally:
        handle.remove()
    alone = attention_stats(gemma, [short], LAYERS).values
    assert widths == [(2, 100)]  # the short one was padded
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)


@pytest.fixture
def failing_layer(gemma: LoadedModel) -> Iterator[None]:
    def fail(*_: object) -> None:
        raise RuntimeError("boom")

    handle = gemma.model.model.layers[1].register_forward_hook(fail)
    yield
    handle.remove()


def test_the_attention_implementation_is_eager_only_during_the_pass(
    gemma: LoadedModel, baseline_ids: list[list[int]]
) -> None:
    model: Any = gemma.model
    before = model.config._attn_implementation
    assert before != "eager"  # sdpa, as loaded: otherwise this test proves nothing
    seen: list[str] = []
    handle = model.model.layers[0].register_forward_pre_hook(
        lambda *_: seen.append(model.config._attn_implementation)
    )
    try:
        attention_stats(gemma, baseline_ids[:1], (0,))
    finally:
        handle.remove()
    assert seen == ["eager"]
    assert model.config._attn_implementation == before
    assert model.model.config._attn_implementation == before


@pytest.mark.usefixtures("failing_layer")
def test_the_attention_implementation_is_restored_after_an_error(
    gemma: LoadedModel, baseline_ids: list[list[int]]
) -> None:
    before = gemma.model.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        attention_stats(gemma, baseline_ids[:1], (2,))
    assert gemma.model.config._attn_implementation == before


def test_no_layer_after_the_deepest_chosen_one_runs(
    gemma: LoadedModel, baseline_ids: list[list[int]]
) -> None:
    ran: list[str] = []
    handles = [
        gemma.model.get_submodule(name).register_forward_hook(lambda *_, n=name: ran.append(n))
        for name in ("model.layers.3", "model.layers.4", "model.norm", "lm_head")
    ]
    try:
        attention_stats(gemma, baseline_ids[:2], (1, 3))
    finally:
        for handle in handles:
            handle.remove()
    # layer 3's attention ran (its weights were read), the layer itself never returned
    assert ran == []


def test_a_set_against_itself_has_no_head_outside_the_band(baseline: AttentionStats) -> None:
    result = heads_outside_band(baseline, baseline)
    assert result.count == 0 and result.heads == ()


@pytest.fixture
def sharper_layer_3(gemma: LoadedModel) -> Iterator[None]:
    """Layer 3's keys three times longer: sharper attention. (Scaling k_proj would do nothing:
    k_norm normalises it away; Gemma's RMSNorm multiplies by 1 + weight.)"""
    weight = gemma.model.model.layers[3].self_attn.k_norm.weight
    kept = weight.detach().clone()
    with torch.no_grad():
        weight.mul_(3).add_(2)  # 1 + w' = 3 (1 + w)
    try:
        yield
    finally:
        with torch.no_grad():
            weight.copy_(kept)


def test_a_perturbed_layer_leaves_the_band_and_no_earlier_layer_does(
    gemma: LoadedModel,
    baseline: AttentionStats,
    baseline_ids: Sequence[list[int]],
    sharper_layer_3: None,
) -> None:
    candidate = attention_stats(gemma, baseline_ids, LAYERS)
    result = heads_outside_band(baseline, candidate)
    assert result.count > 0
    assert {h.layer for h in result.heads} == {3}
    entropy = [h for h in result.heads if h.stat == "entropy"]
    assert entropy and all(h.value < h.low for h in entropy)  # sharper: less entropy
    assert all(not h.low <= h.value <= h.high for h in result.heads)
    only_entropy = heads_outside_band(baseline, candidate, stats=("entropy",))
    assert {h.stat for h in only_entropy.heads} == {"entropy"}


def test_bands_of_different_layers_do_not_compare(baseline: AttentionStats) -> None:
    other = AttentionStats(layers=(1, 4), values=baseline.values)
    with pytest.raises(ValueError, match="layers"):
        heads_outside_band(baseline, other)


@pytest.mark.parametrize(
    ("sequences", "layers"),
    [([[2, 5, 6]], ()), ([[2, 5, 6]], (1, 1)), ([[2, 5, 6]], (18,)), ([[2]], (1,))],
)
def test_bad_layers_and_sequences_without_a_query_are_refused(
    gemma: LoadedModel, sequences: list[list[int]], layers: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError):
        attention_stats(gemma, sequences, layers)
