"""Sparse autoencoders in the Gemma Scope 2 layout, from a local folder or the hub.

A folder holds ``config.json`` and ``params.safetensors`` with ``w_enc [d_in, d_sae]``,
``w_dec [d_sae, d_in]``, ``b_enc [d_sae]``, ``b_dec [d_in]`` and ``threshold [d_sae]``.
Encoding is JumpReLU: ``pre = x @ w_enc + b_enc; f = relu(pre) * (pre > threshold)``, with no
``b_dec`` subtraction and no input normalisation. Decoding: ``x_hat = f @ w_dec + b_dec``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from scopeweb.storage import path_sha256

SUPPORTED_ARCHITECTURES = ("jump_relu",)
REQUIRED_TENSORS = ("w_enc", "w_dec", "b_enc", "b_dec", "threshold")
HUB_REPO = re.compile(r"^(?P<repo>[\w.-]+/gemma-scope-2-[\w.-]+)/(?P<folder>[\w./-]+)$")
_HOOK = re.compile(r"^model\.layers\.(?P<layer>\d+)(?:\.(?P<part>[\w.]+))?$")


class SaeError(ValueError):
    """An SAE folder this engine cannot use; the message names the problem."""


@dataclass(frozen=True)
class SaeConfig:
    architecture: str
    hook_point_in: str
    model_name: str
    width: int
    l0: float | None
    layer: int
    module_path: str  # the module whose output is hooked, e.g. "model.layers.12"
    raw: dict[str, Any]


class JumpReluSae(torch.nn.Module):
    def __init__(self, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.w_enc = torch.nn.Parameter(params["w_enc"], requires_grad=False)  # [d_in, d_sae]
        self.w_dec = torch.nn.Parameter(params["w_dec"], requires_grad=False)  # [d_sae, d_in]
        self.b_enc = torch.nn.Parameter(params["b_enc"], requires_grad=False)  # [d_sae]
        self.b_dec = torch.nn.Parameter(params["b_dec"], requires_grad=False)  # [d_in]
        self.threshold = torch.nn.Parameter(params["threshold"], requires_grad=False)  # [d_sae]

    @property
    def d_in(self) -> int:
        return int(self.w_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.w_enc.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., d_in]`` → feature activations ``[..., d_sae]``."""
        pre = x @ self.w_enc + self.b_enc
        return torch.relu(pre) * (pre > self.threshold)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.w_dec + self.b_dec


@dataclass
class LoadedSae:
    reference: str  # what the user named: a registry name, a folder or a hub reference
    folder: Path
    config: SaeConfig
    sae: JumpReluSae
    params_sha256: str


def parse_config(raw: dict[str, Any], where: str) -> SaeConfig:
    architecture = str(raw.get("architecture", "")).lower()
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise SaeError(
            f"{where}: architecture {raw.get('architecture')!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})."
        )
    hook = raw.get("hf_hook_point_in")
    if not isinstance(hook, str) or not hook:
        raise SaeError(f"{where}: config.json has no hf_hook_point_in.")
    match = _HOOK.match(hook)
    if match is None:
        raise SaeError(f"{where}: hook point {hook!r} is not of the form model.layers.N[.part].")
    part = match.group("part") or "output"
    if part != "output":
        raise SaeError(
            f"{where}: hook point {hook!r} is not supported yet; this engine reads the residual "
            "stream after a layer (model.layers.N.output)."
        )
    layer = int(match.group("layer"))
    return SaeConfig(
        architecture=architecture,
        hook_point_in=hook,
        model_name=str(raw.get("model_name", "")),
        width=int(raw.get("width", 0) or 0),
        l0=float(raw["l0"]) if isinstance(raw.get("l0"), (int, float)) else None,
        layer=layer,
        module_path=f"model.layers.{layer}",
        raw=raw,
    )


def resolve_reference(reference: str) -> Path:
    """A local folder as it is; ``owner/gemma-scope-2-…/site/folder`` through the hub client.

    The hub client reads its local cache first, so machines without the internet work from a
    copy laid out like the hub (``HF_HUB_OFFLINE=1``); nothing is fetched when it is there.
    """
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    match = HUB_REPO.match(reference)
    if match is None:
        raise SaeError(
            f"{reference!r} is neither a folder nor a hub reference such as "
            "google/gemma-scope-2-270m-pt/resid_post/layer_12_width_16k_l0_medium."
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    repo, folder = match.group("repo"), match.group("folder").strip("/")
    try:
        for name in ("config.json", "params.safetensors"):
            local = hf_hub_download(repo_id=repo, filename=f"{folder}/{name}")
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError) as exc:
        raise SaeError(
            f"{reference}: cannot be had from the hub or its local cache ({type(exc).__name__})."
        ) from None
    return Path(local).parent


def load_sae(
    reference: str,
    *,
    d_model: int | None = None,
    n_layers: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedSae:
    """Load and check an SAE; every refusal is an ``SaeError`` that names the problem."""
    folder = resolve_reference(reference)
    missing = [n for n in ("config.json", "params.safetensors") if not (folder / n).is_file()]
    if missing:
        raise SaeError(f"{reference}: missing {', '.join(missing)} in {folder}.")
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SaeError(f"{reference}: config.json is not valid JSON ({exc}).") from None
    if not isinstance(raw, dict):
        raise SaeError(f"{reference}: config.json must hold a JSON object.")
    config = parse_config(raw, reference)
    params = _read_params(folder / "params.safetensors", reference)
    _check_shapes(params, reference, d_model)
    if n_layers is not None and config.layer >= n_layers:
        raise SaeError(
            f"{reference}: hooks layer {config.layer}, but the model has {n_layers} layers "
            f"(0 to {n_layers - 1})."
        )
    for name, tensor in params.items():
        if not torch.isfinite(tensor).all():
            raise SaeError(f"{reference}: {name} holds NaN or Inf values.")
    sae = JumpReluSae({k: v.to(dtype) for k, v in params.items()}).to(device)
    return LoadedSae(
        reference=reference,
        folder=folder,
        config=config,
        sae=sae,
        params_sha256=path_sha256(folder / "params.safetensors"),
    )


def _read_params(path: Path, reference: str) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            absent = [name for name in REQUIRED_TENSORS if name not in names]
            if absent:
                raise SaeError(f"{reference}: params.safetensors lacks {', '.join(absent)}.")
            return {name: handle.get_tensor(name).float() for name in REQUIRED_TENSORS}
    except SaeError:
        raise
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise SaeError(f"{reference}: params.safetensors cannot be read ({exc}).") from None


def _check_shapes(params: dict[str, torch.Tensor], reference: str, d_model: int | None) -> None:
    w_enc = params["w_enc"]
    if w_enc.ndim != 2:
        raise SaeError(f"{reference}: w_enc must be 2-D [d_in, d_sae], not {tuple(w_enc.shape)}.")
    d_in, d_sae = w_enc.shape
    expected = {
        "w_dec": (d_sae, d_in),
        "b_enc": (d_sae,),
        "b_dec": (d_in,),
        "threshold": (d_sae,),
    }
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise SaeError(
                f"{reference}: {name} has shape {tuple(params[name].shape)}; with w_enc "
                f"[{d_in}, {d_sae}] it must be {list(shape)}."
            )
    if d_model is not None and d_in != d_model:
        raise SaeError(
            f"{reference}: its input width is {d_in}, but the model's hidden size is {d_model}."
        )
