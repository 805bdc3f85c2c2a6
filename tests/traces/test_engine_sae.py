"""The Gemma Scope 2 loader: JumpReLU encoding, the hub path, and every refusal."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
import torch

from scopeweb_tracer.sae import SaeError, load_sae
from tests.traces.engine_fakes import D_MODEL, sae_params, write_sae_folder


def test_encoding_is_the_jumprelu_formula(tmp_path: Path) -> None:
    params = sae_params()
    loaded = load_sae(str(write_sae_folder(tmp_path / "sae", params)), d_model=D_MODEL, n_layers=4)
    x = torch.randn(10, D_MODEL)
    pre = x @ params["w_enc"] + params["b_enc"]
    expected = torch.relu(pre) * (pre > params["threshold"])
    assert torch.allclose(loaded.sae.encode(x), expected, atol=1e-6)
    assert torch.allclose(
        loaded.sae.decode(expected), expected @ params["w_dec"] + params["b_dec"], atol=1e-6
    )
    assert loaded.config.module_path == "model.layers.2" and loaded.config.layer == 2
    digest = hashlib.sha256((tmp_path / "sae" / "params.safetensors").read_bytes()).hexdigest()
    assert loaded.params_sha256 == digest


def test_hub_reference_resolves_through_a_local_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hub client's own cache layout: nothing is fetched when the files are there.
    repo = tmp_path / "hub" / "models--google--gemma-scope-2-270m-pt"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    write_sae_folder(repo / "snapshots" / revision / "resid_post" / "layer_2_width_16k_l0_medium")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    loaded = load_sae(
        "google/gemma-scope-2-270m-pt/resid_post/layer_2_width_16k_l0_medium", d_model=D_MODEL
    )
    assert loaded.folder.name == "layer_2_width_16k_l0_medium"
    assert loaded.sae.d_sae == 128


def test_hub_reference_absent_from_an_offline_machine_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SaeError, match="cannot be had from the hub or its local cache"):
        load_sae("google/gemma-scope-2-270m-pt/resid_post/layer_12_width_16k_l0_medium")


def _broken(name: str) -> dict[str, torch.Tensor]:
    params = sae_params()
    if name == "nan":
        params["w_enc"][3, 4] = float("nan")
    elif name == "inf":
        params["threshold"][0] = float("inf")
    elif name == "w_dec":
        params["w_dec"] = torch.zeros(128, D_MODEL + 1)
    elif name == "missing":
        del params["threshold"]
    return params


@pytest.mark.parametrize(
    ("params", "config", "kwargs", "message"),
    [
        ("nan", {}, {}, "w_enc holds NaN or Inf values"),
        ("inf", {}, {}, "threshold holds NaN or Inf values"),
        ("w_dec", {}, {}, r"w_dec has shape \(128, 65\); with w_enc \[64, 128\] it must be"),
        ("missing", {}, {}, "params.safetensors lacks threshold"),
        (None, {"architecture": "topk"}, {}, "architecture 'topk' is not supported"),
        (None, {"hf_hook_point_in": None}, {}, "config.json has no hf_hook_point_in"),
        (None, {"hf_hook_point_in": "blocks.2.hook_resid_post"}, {}, "is not of the form"),
        (None, {"hf_hook_point_in": "model.layers.2.mlp"}, {}, "is not supported yet"),
        (None, {}, {"d_model": 640}, "its input width is 64, but the model gives 640 at model.la"),
        (None, {"architecture": "jump_relu_crosscoder"}, {}, "this is a crosscoder"),
        (
            None,
            {"hf_hook_point_in": ["model.layers.1.output", "model.layers.2.output"]},
            {},
            "reads several hooks",
        ),
        (
            None,
            {"hf_hook_point_out": "model.layers.3.post_feedforward_layernorm.output"},
            {},
            "is not supported yet; this engine reads resid_post",
        ),
        (
            None,
            {"hf_hook_point_in": "model.layers.9.output", "hf_hook_point_out": None},
            {"n_layers": 4},
            "has 4 layers",
        ),
    ],
)
def test_unusable_folders_are_refused_naming_the_problem(
    tmp_path: Path,
    params: str | None,
    config: dict[str, object],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    folder = write_sae_folder(tmp_path / "sae", _broken(params) if params else None, config)
    with pytest.raises(SaeError, match=message):
        load_sae(str(folder), **kwargs)


def test_missing_files_are_named(tmp_path: Path) -> None:
    folder = write_sae_folder(tmp_path / "sae")
    (folder / "params.safetensors").unlink()
    with pytest.raises(SaeError, match=r"missing params\.safetensors"):
        load_sae(str(folder))
    (folder / "config.json").write_text("{broken")
    write_sae_folder(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text("{broken")
    with pytest.raises(SaeError, match=r"config\.json is not valid JSON"):
        load_sae(str(tmp_path / "other"))


def test_damaged_params_file_is_refused(tmp_path: Path) -> None:
    folder = write_sae_folder(tmp_path / "sae")
    (folder / "params.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(SaeError, match=r"params\.safetensors cannot be read"):
        load_sae(str(folder))


def test_unknown_reference_is_refused() -> None:
    with pytest.raises(SaeError, match="neither a folder nor a hub reference"):
        load_sae("not/a/thing")
