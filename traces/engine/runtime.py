"""What a worker process keeps loaded between tasks: models per (checkpoint, dtype), SAEs per
reference and device."""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable

import torch

from scopeweb_tracer.hooks import hook_width
from scopeweb_tracer.sae import LoadedSae, load_sae
from traces.engine.model import LoadedModel, load_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_lock = threading.Lock()
_models: dict[tuple[str, str], LoadedModel] = {}
_saes: dict[tuple[str, str, str], LoadedSae] = {}
KEEP_SAES = 8


def default_dtype() -> str:
    """What ``auto`` means on this machine: bfloat16 on CUDA and on CPUs with native bfloat16
    matrix units (AVX512-BF16 or AMX, where it is about twice as fast), float32 elsewhere. The
    benchmark measures its top-10 agreement with float32."""
    if torch.cuda.is_available():
        return "bfloat16"
    try:
        fast = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        fast = False
    mkldnn_available: Callable[[], bool] = torch.backends.mkldnn.is_available  # unannotated
    return "bfloat16" if fast and mkldnn_available() else "float32"


def model_for(reference: str, dtype: str) -> LoadedModel:
    with _lock:
        key = (reference, dtype)
        if key not in _models:
            _models[key] = load_model(reference, dtype=DTYPES[dtype])
        return _models[key]


def sae_for(reference: str, loaded: LoadedModel) -> LoadedSae:
    """The SAE in the model's dtype on its device; the most recent ``KEEP_SAES`` stay loaded."""
    with _lock:
        key = (reference, str(loaded.device), str(loaded.dtype))
        if key in _saes:
            _saes[key] = _saes.pop(key)  # most recently used last
        else:
            _saes[key] = load_sae(
                reference,
                n_layers=loaded.n_layers,
                widths=lambda hook: hook_width(loaded.text_config, hook),
                device=loaded.device,
                dtype=loaded.dtype,
            )
            while len(_saes) > KEEP_SAES:
                _saes.pop(next(iter(_saes)))
        return _saes[key]


def device_kind(loaded: LoadedModel) -> str:
    """Which hardware computed a run: same kind and dtype promise the same hashes."""
    if loaded.device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(loaded.device)}"
    return f"cpu:{_cpu_name()}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"
