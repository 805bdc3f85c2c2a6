"""Capture reads the hooked layer's output and runs no deeper; padding changes nothing."""

from __future__ import annotations

import random

import pytest
import torch

from tests.traces.engine_fakes import tiny_gemma3
from traces.engine.capture import batches_by_length, capture_residual, make_batch


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_gemma3()


def test_capture_equals_the_models_hidden_state(model: torch.nn.Module) -> None:
    ids = [2, 17, 45, 99, 23, 5, 8, 200, 31]
    batch = make_batch([ids], 0, torch.device("cpu"))
    captured = capture_residual(model, "model.layers.2", batch)
    with torch.inference_mode():
        reference = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    # hidden_states[0] is the embedding output, so layer 2's output is hidden_states[3].
    assert torch.allclose(captured, reference[3], atol=1e-5)


def test_capture_stops_before_later_layers_and_the_lm_head(model: torch.nn.Module) -> None:
    ran: list[str] = []
    handles = [
        model.get_submodule(name).register_forward_hook(lambda *_, n=name: ran.append(n))
        for name in ("model.layers.3", "lm_head", "model.norm")
    ]
    try:
        capture_residual(model, "model.layers.1", make_batch([[2, 5, 6]], 0, torch.device("cpu")))
    finally:
        for handle in handles:
            handle.remove()
    assert ran == []


def test_right_padding_leaves_real_tokens_unchanged(model: torch.nn.Module) -> None:
    short, long = [2, 11, 12, 13], [2, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]
    together = capture_residual(
        model, "model.layers.3", make_batch([short, long], 0, torch.device("cpu"))
    )
    alone = capture_residual(model, "model.layers.3", make_batch([short], 0, torch.device("cpu")))
    assert torch.allclose(together[0, : len(short)], alone[0], atol=1e-5)


def test_batches_by_length_cover_each_item_once_within_budget() -> None:
    lengths = [5, 300, 7, 120, 121, 6, 60, 2, 299]
    groups = batches_by_length(lengths, max_tokens=400, max_batch=3)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:
        assert len(group) <= 3
        assert len(group) == 1 or max(lengths[i] for i in group) * len(group) <= 400


def test_batches_by_length_split_where_padding_costs_more_than_a_pass() -> None:
    lengths = [100, 10, 100, 10, 100, 10, 100, 10]
    # One batch would pad every short item to 100 (800 tokens); two cost 40 + 400 + 2 × 64.
    assert batches_by_length(lengths, max_tokens=1000, overhead=64) == [[1, 3, 5, 7], [0, 2, 4, 6]]
    # With a pass dearer than the padding it saves, one batch.
    assert batches_by_length(lengths, max_tokens=1000, overhead=500) == [[1, 3, 5, 7, 0, 2, 4, 6]]


def _cheapest(ordered: list[int], at: int = 0) -> int:
    """Brute force over the cut points of sorted lengths: budget 120, 8 per batch."""
    if at == len(ordered):
        return 0
    return min(
        ordered[stop - 1] * (stop - at) + 8 + _cheapest(ordered, stop)
        for stop in range(at + 1, len(ordered) + 1)
        if stop - at == 1 or ordered[stop - 1] * (stop - at) <= 120
    )


def test_batches_by_length_are_the_cheapest_grouping_of_the_sorted_lengths() -> None:
    rng = random.Random(7)
    for _ in range(200):
        lengths = [rng.randint(1, 50) for _ in range(rng.randint(1, 7))]
        groups = batches_by_length(lengths, max_tokens=120, overhead=8)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        cost = sum(max(lengths[i] for i in g) * len(g) + 8 for g in groups)
        assert cost == _cheapest(sorted(lengths))
