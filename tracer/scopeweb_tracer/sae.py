"""Sparse autoencoders in the Gemma Scope 2 layout, from a local folder or the hub.

A folder holds ``config.json`` and ``params.safetensors`` with ``w_enc [d_in, d_sae]``,
``w_dec [d_sae, d_out]``, ``b_enc [d_sae]``, ``b_dec [d_out]`` and ``threshold [d_sae]``;
affine transcoders add ``affine_skip_connection [d_in, d_out]``. Encoding is JumpReLU:
``pre = x @ w_enc + b_enc; f = relu(pre) * (pre > threshold)``, with no ``b_dec`` subtraction and
no input normalisation. Decoding: ``x_hat = f @ w_dec + b_dec (+ x @ affine_skip_connection)``.

Sites, by the hooks their configs name (``scopeweb_tracer.hooks``): ``resid_post`` reads a layer's
output, ``attn_out`` the input of ``self_attn.o_proj``, ``mlp_out`` the output of
``post_feedforward_layernorm``; a ``transcoder`` reads ``pre_feedforward_layernorm``'s output and
reconstructs ``post_feedforward_layernorm``'s. Crosscoders and cross-layer transcoders are
refused by name.

Weights are memory-mapped from the safetensors file: a float32 run reads them in place (the page
cache holds them, not the process), a bfloat16 run keeps one converted copy. Nothing here ever
holds a dense ``[tokens, d_sae]`` matrix: see ``scopeweb_tracer.encode``.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scopeweb_tracer.hooks import Hook, HookError, parse_hook, site_of

SUPPORTED_ARCHITECTURES = ("jump_relu",)
REQUIRED_TENSORS = ("w_enc", "w_dec", "b_enc", "b_dec", "threshold")
SKIP_TENSOR = "affine_skip_connection"
HUB_REPO = re.compile(r"^(?P<repo>[\w.-]+/gemma-scope-2-[\w.-]+)/(?P<folder>[\w./-]+)$")
# Gemma Scope 2 folders of kinds that read or write several hooks at once.
UNSUPPORTED_KINDS = {
    "clt": "a cross-layer transcoder (CLT)",
    "crosscoder": "a crosscoder",
    "crosscoders": "a crosscoder",
}
_FILE_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


class SaeError(ValueError):
    """An SAE folder this engine cannot use; the message names the problem."""


@dataclass(frozen=True)
class SaeConfig:
    architecture: str
    site: str  # resid_post, attn_out, mlp_out or transcoder
    hook_in: Hook
    hook_out: Hook  # what the reconstruction is measured against: hook_in but for transcoders
    model_name: str
    width: int
    l0: float | None
    raw: dict[str, Any]

    @property
    def hook_point_in(self) -> str:
        return self.hook_in.name

    @property
    def layer(self) -> int:
        return max(self.hook_in.layer, self.hook_out.layer)

    @property
    def module_path(self) -> str:
        return self.hook_in.module_path


class JumpReluSae(torch.nn.Module):
    def __init__(self, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.w_enc = torch.nn.Parameter(params["w_enc"], requires_grad=False)  # [d_in, d_sae]
        self.w_dec = torch.nn.Parameter(params["w_dec"], requires_grad=False)  # [d_sae, d_out]
        self.b_enc = torch.nn.Parameter(params["b_enc"], requires_grad=False)  # [d_sae]
        self.b_dec = torch.nn.Parameter(params["b_dec"], requires_grad=False)  # [d_out]
        self.threshold = torch.nn.Parameter(params["threshold"], requires_grad=False)  # [d_sae]
        skip = params.get(SKIP_TENSOR)
        self.w_skip = (  # [d_in, d_out], affine transcoders only
            torch.nn.Parameter(skip, requires_grad=False) if skip is not None else None
        )

    @property
    def d_in(self) -> int:
        return int(self.w_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.w_enc.shape[1])

    @property
    def d_out(self) -> int:
        return int(self.w_dec.shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., d_in]`` → feature activations ``[..., d_sae]`` (dense: tests and quality)."""
        pre = x @ self.w_enc + self.b_enc
        return torch.relu(pre) * (pre > self.threshold)

    def decode(self, f: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Dense decode; a transcoder's affine skip needs its input ``x``."""
        out = f @ self.w_dec + self.b_dec
        if self.w_skip is not None:
            if x is None:
                raise ValueError("an affine transcoder's decode needs its input x")
            out = out + x @ self.w_skip
        return out


@dataclass
class LoadedSae:
    reference: str  # what the user named: a registry name, a folder or a hub reference
    folder: Path
    config: SaeConfig
    sae: JumpReluSae
    params_sha256: str
    # [d_out] float32: the dataset-level mean of what it reconstructs, the FVU's centre (as
    # Gemma Scope 2 and SAELens report FVU); None until measured (traces.engine.quality)
    target_mean: torch.Tensor | None = None


def parse_config(raw: dict[str, Any], where: str, kind: str = "") -> SaeConfig:
    """Check a config.json; ``kind`` is the folder's site folder name (``resid_post``, ``clt``…)."""
    if kind.lower() in UNSUPPORTED_KINDS:
        raise SaeError(
            f"{where}: this is {UNSUPPORTED_KINDS[kind.lower()]}, which this engine does not run "
            "yet (it runs resid_post, attn_out, mlp_out and transcoder SAEs)."
        )
    architecture = str(raw.get("architecture", "")).lower()
    for word, what in UNSUPPORTED_KINDS.items():
        if word in architecture or word in str(raw.get("type", "")).lower():
            raise SaeError(f"{where}: this is {what}, which this engine does not run yet.")
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise SaeError(
            f"{where}: architecture {raw.get('architecture')!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})."
        )
    hook = raw.get("hf_hook_point_in")
    if isinstance(hook, list):
        raise SaeError(f"{where}: it reads several hooks ({len(hook)}), like a crosscoder.")
    if not isinstance(hook, str) or not hook:
        raise SaeError(f"{where}: config.json has no hf_hook_point_in.")
    out = raw.get("hf_hook_point_out") or hook
    if isinstance(out, list):
        raise SaeError(
            f"{where}: it writes several hooks ({len(out)}), like a cross-layer transcoder."
        )
    try:
        hook_in, hook_out = parse_hook(hook), parse_hook(str(out))
        site = site_of(hook_in, hook_out)
    except HookError as exc:
        raise SaeError(f"{where}: {exc}") from None
    return SaeConfig(
        architecture=architecture,
        site=site,
        hook_in=hook_in,
        hook_out=hook_out,
        model_name=str(raw.get("model_name", "")),
        width=int(raw.get("width", 0) or 0),
        l0=float(raw["l0"]) if isinstance(raw.get("l0"), (int, float)) else None,
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
    widths: Callable[[Hook], int | None] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedSae:
    """Load and check an SAE; every refusal is an ``SaeError`` that names the problem.

    ``widths`` gives the width the model has at a hook (``scopeweb_tracer.hooks.hook_width``);
    without it ``d_model`` is expected at every hook that carries the residual width."""
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
    config = parse_config(raw, reference, kind=folder.parent.name)
    if n_layers is not None and config.layer >= n_layers:
        raise SaeError(
            f"{reference}: hooks layer {config.layer}, but the model has {n_layers} layers "
            f"(0 to {n_layers - 1})."
        )
    mapped = mapped_params(folder / "params.safetensors", reference)
    _check_shapes(mapped.tensors, reference, config, widths, d_model)
    sae = JumpReluSae(
        {name: _checked(mapped, name, reference, dtype, device) for name in mapped.tensors}
    )
    return LoadedSae(
        reference=reference,
        folder=folder,
        config=config,
        sae=sae,
        params_sha256=path_sha256(folder / "params.safetensors"),
    )


@dataclass
class MappedParams:
    """Tensors viewing a private memory map of the file, and where each lies in it."""

    tensors: dict[str, torch.Tensor]
    mapping: mmap.mmap
    spans: dict[str, tuple[int, int]]  # byte range in the file, by tensor name

    def release(self, name: str, first: int, last: int) -> None:
        """Drop the mapped pages of bytes ``[first, last)`` of tensor ``name`` from this
        process (the page cache keeps the file): read once, they need not stay resident."""
        start = self.spans[name][0]
        page = mmap.PAGESIZE
        low = -(-(start + first) // page) * page
        high = (start + last) // page * page
        if high > low:
            self.mapping.madvise(mmap.MADV_DONTNEED, low, high - low)


def mapped_params(path: Path, reference: str) -> MappedParams:
    """The folder's tensors as views of a private memory map of the file: nothing is read until
    it is used, and the pages stay the file's (shared with the page cache) until written."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError) as exc:
        raise SaeError(f"{reference}: params.safetensors cannot be read ({exc}).") from None
    absent = [name for name in REQUIRED_TENSORS if name not in header]
    if absent:
        raise SaeError(f"{reference}: params.safetensors lacks {', '.join(absent)}.")
    names = [*REQUIRED_TENSORS, *([SKIP_TENSOR] if SKIP_TENSOR in header else [])]
    params, spans = {}, {}
    for name in names:
        info = header[name]
        dtype = _FILE_DTYPES.get(str(info.get("dtype")))
        if dtype is None:
            raise SaeError(
                f"{reference}: {name} is stored as {info.get('dtype')}, not F32/BF16/F16."
            )
        start, stop = (8 + size + int(at) for at in info["data_offsets"])
        shape = [int(n) for n in info["shape"]]
        count = int(torch.Size(shape).numel())
        if stop > len(mapped) or stop - start != count * dtype.itemsize:
            raise SaeError(f"{reference}: params.safetensors is truncated or damaged at {name}.")
        params[name] = torch.frombuffer(mapped, dtype=dtype, count=count, offset=start).view(shape)
        spans[name] = (start, stop)
    return MappedParams(params, mapped, spans)


SLICE_ELEMENTS = 1 << 24  # 64 MiB of float32 at a time


def _checked(
    mapped: MappedParams,
    name: str,
    reference: str,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """One tensor checked finite and in the run's dtype on its device, a slice at a time: a
    float32 file for a float32 CPU run stays mapped; a converted copy is made slice by slice,
    each slice's mapped pages released once read, so loading holds the copy and one slice
    (not the whole file besides the copy)."""
    tensor = mapped.tensors[name]
    flat = tensor.reshape(-1)
    keep = tensor.dtype == dtype and torch.device(device).type == "cpu"
    out = None if keep else torch.empty(flat.shape, dtype=dtype, device=device)
    size = tensor.element_size()
    for at in range(0, flat.numel(), SLICE_ELEMENTS):
        part = flat[at : at + SLICE_ELEMENTS]
        if not bool(torch.isfinite(part).all()):
            raise SaeError(f"{reference}: {name} holds NaN or Inf values.")
        if out is not None:
            out[at : at + part.numel()] = part.to(device=device, dtype=dtype)
            mapped.release(name, at * size, (at + part.numel()) * size)
    return tensor if out is None else out.view(tensor.shape)


def _check_shapes(
    params: dict[str, torch.Tensor],
    reference: str,
    config: SaeConfig,
    widths: Callable[[Hook], int | None] | None,
    d_model: int | None,
) -> None:
    w_enc, w_dec = params["w_enc"], params["w_dec"]
    if w_enc.ndim != 2 or w_dec.ndim != 2:
        raise SaeError(
            f"{reference}: w_enc and w_dec must be 2-D, not {tuple(w_enc.shape)} and "
            f"{tuple(w_dec.shape)} (a crosscoder's weights have a layer axis)."
        )
    d_in, d_sae = w_enc.shape
    d_out = w_dec.shape[1]
    if config.site != "transcoder" and tuple(w_dec.shape) != (d_sae, d_in):
        raise SaeError(
            f"{reference}: w_dec has shape {tuple(w_dec.shape)}; with w_enc [{d_in}, {d_sae}] it "
            f"must be [{d_sae}, {d_in}] (a {config.site} SAE reconstructs its input)."
        )
    expected = {
        "w_dec": (d_sae, d_out),
        "b_enc": (d_sae,),
        "b_dec": (d_out,),
        "threshold": (d_sae,),
    }
    if SKIP_TENSOR in params:
        expected[SKIP_TENSOR] = (d_in, d_out)
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise SaeError(
                f"{reference}: {name} has shape {tuple(params[name].shape)}; with w_enc "
                f"[{d_in}, {d_sae}] and w_dec [{d_sae}, {d_out}] it must be {list(shape)}."
            )
    if SKIP_TENSOR in params and config.site != "transcoder":
        raise SaeError(f"{reference}: has {SKIP_TENSOR}, but its hooks make it a {config.site}.")
    for hook, width, end in ((config.hook_in, d_in, "input"), (config.hook_out, d_out, "output")):
        if widths is not None:
            model_width = widths(hook)
        else:
            model_width = d_model if hook.residual_width else None
        if model_width is not None and width != model_width:
            raise SaeError(
                f"{reference}: its {end} width is {width}, but the model gives {model_width} at "
                f"{hook.name}."
            )


def path_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks (an SAE's params may be gigabytes)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
