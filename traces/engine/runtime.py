"""What a worker process keeps loaded between tasks: the model per dtype, SAEs per file hash."""

from __future__ import annotations

import threading

import torch

from traces.engine.model import LoadedModel, load_default_model
from traces.engine.sae import LoadedSae, load_sae

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_lock = threading.Lock()
_models: dict[str, LoadedModel] = {}
_saes: dict[tuple[str, str], LoadedSae] = {}


def model_for(dtype: str) -> LoadedModel:
    with _lock:
        if dtype not in _models:
            _models[dtype] = load_default_model(dtype=DTYPES[dtype])
        return _models[dtype]


def sae_for(reference: str, loaded: LoadedModel) -> LoadedSae:
    with _lock:
        key = (reference, str(loaded.device))
        if key not in _saes:
            _saes[key] = load_sae(
                reference, d_model=loaded.d_model, n_layers=loaded.n_layers, device=loaded.device
            )
        return _saes[key]


def device_kind(loaded: LoadedModel) -> str:
    if loaded.device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(loaded.device)}"
    return "cpu"
