"""Tiny in-memory stand-ins for unit tests: a small Gemma 3 and SAE folders in the GS2 layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

if TYPE_CHECKING:
    from transformers import Gemma3ForCausalLM

D_MODEL = 64


def tiny_gemma3(seed: int = 0) -> Gemma3ForCausalLM:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(  # type: ignore[no-untyped-call]  # unannotated in transformers
        vocab_size=300,
        hidden_size=D_MODEL,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=8,
        max_position_embeddings=256,
    )
    model = Gemma3ForCausalLM(config)
    model.eval()  # type: ignore[no-untyped-call]  # PreTrainedModel.eval is unannotated
    return model


def sae_params(d_in: int = D_MODEL, d_sae: int = 128, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "w_enc": torch.randn(d_in, d_sae, generator=generator) / d_in**0.5,
        "w_dec": torch.randn(d_sae, d_in, generator=generator) / d_sae**0.5,
        "b_enc": torch.randn(d_sae, generator=generator) * 0.1,
        "b_dec": torch.randn(d_in, generator=generator) * 0.1,
        "threshold": torch.rand(d_sae, generator=generator) * 0.5,
    }


def write_sae_folder(
    folder: Path,
    params: dict[str, torch.Tensor] | None = None,
    config: dict[str, object] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(params if params is not None else sae_params(), folder / "params.safetensors")
    base: dict[str, object] = {
        "architecture": "jump_relu",
        "model_name": "tiny",
        "hf_hook_point_in": "model.layers.2.output",
        "hf_hook_point_out": "model.layers.2.output",
        "width": 128,
        "l0": 20,
        "affine_connection": False,
    }
    (folder / "config.json").write_text(json.dumps(base | (config or {})))
    return folder
