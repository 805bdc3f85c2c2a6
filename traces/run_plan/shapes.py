"""The shapes a run plan reads, never the weights: a Gemma 3 ``config.json`` (``ModelShape``)
and each SAE's ``config.json`` and safetensors header (``SaeShape``). Torch-free."""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scopeweb_tracer.hooks import HookError, parse_hook, site_of
from traces.engine.model_files import DEFAULT_MODEL_IDS, default_model_files, hf_cache_folder

_SAFETENSORS_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2}
_SAFETENSORS_BYTES |= {"BF16": 2, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_SAFETENSORS_BYTES |= {"F8_E4M3": 1, "F8_E5M2": 1}
_MAX_HEADER = 100_000_000  # the safetensors format's own limit
_DEFAULT_SLIDING_PATTERN = 6  # Gemma 3: five sliding-window layers, then one global


class PlanError(ValueError):
    """A plan that cannot be made: a model or SAE whose shape cannot be read, or a run its model
    cannot serve; the message names the problem."""


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    num_hidden_layers: int
    vocab_size: int
    sliding_window: int | None
    layer_types: tuple[str, ...]  # "sliding_attention" or "full_attention", one per layer

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """From a Gemma 3 ``config.json``; multimodal ones keep these under ``text_config``."""
        text = config.get("text_config") or config
        try:
            d, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
            layers = int(text["num_hidden_layers"])
            types = text.get("layer_types")
            if not types:
                pattern = int(text.get("sliding_window_pattern") or _DEFAULT_SLIDING_PATTERN)
                types = [
                    "full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                    for i in range(layers)
                ]
            if len(types) != layers:
                raise ValueError(f"{len(types)} layer_types for {layers} layers")
            window = text.get("sliding_window")
            return cls(
                hidden_size=d,
                intermediate_size=int(text["intermediate_size"]),
                num_attention_heads=heads,
                num_key_value_heads=int(text.get("num_key_value_heads") or heads),
                head_dim=int(text.get("head_dim") or d // heads),
                num_hidden_layers=layers,
                vocab_size=int(text["vocab_size"]),
                sliding_window=int(window) if window else None,
                layer_types=tuple(str(t) for t in types),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(
                f"config.json is not a Gemma 3 config ({exc!r} missing or bad)."
            ) from None

    @property
    def attention_width(self) -> int:
        """The width of the attention output before ``o_proj`` (an attn_out SAE's ``d_in``)."""
        return self.num_attention_heads * self.head_dim

    def window(self, layer: int) -> int | None:
        """How many keys a token of ``layer`` attends to at most (None: the whole prefix)."""
        return self.sliding_window if self.layer_types[layer] == "sliding_attention" else None

    def parameter_count(self) -> int:
        """All parameters: the embedding (tied to the LM head), each layer's projections, MLP
        and norms (four of width d, q_norm and k_norm of width head_dim), the final norm."""
        d, hd = self.hidden_size, self.head_dim
        q_o = 2 * d * self.attention_width
        k_v = 2 * d * self.num_key_value_heads * hd
        per_layer = q_o + k_v + 3 * d * self.intermediate_size + 4 * d + 2 * hd
        return self.vocab_size * d + self.num_hidden_layers * per_layer + d

    def layer_matmul_flops(self) -> int:
        """Per token, one layer's weight matmuls: q, k, v, o and the gated MLP's three."""
        d = self.hidden_size
        q_o = 2 * 2 * d * self.attention_width
        k_v = 2 * 2 * d * self.num_key_value_heads * self.head_dim
        return q_o + k_v + 2 * 3 * d * self.intermediate_size

    def attention_flops(self, mean_context: float) -> float:
        """Per token, QKᵀ and AV over ``mean_context`` keys, for every query head."""
        return 2 * 2 * self.attention_width * mean_context


def mean_context(token_counts: Sequence[int], window: int | None) -> float:
    """The average number of keys a token attends to, causally (token i sees i keys, counting
    itself), at most ``window`` on a sliding-window layer."""
    seen = 0
    for n in token_counts:
        w = n if window is None else min(n, window)
        seen += w * (w + 1) // 2 + (n - w) * w
    total = sum(token_counts)
    return seen / total if total else 0.0


@dataclass(frozen=True)
class SaeShape:
    site: str  # resid_post, attn_out, mlp_out or transcoder (scopeweb_tracer.hooks.site_of)
    layer: int  # the deepest layer the SAE reads or writes: the model runs up to it
    d_in: int
    d_sae: int
    d_out: int
    affine: bool  # a transcoder's affine skip connection [d_in, d_out]
    dtype_bytes_on_disk: int
    l0: float | None = None  # active latents per token, as its config reports them

    @property
    def label(self) -> str:
        return f"{self.site} L{self.layer} {_width(self.d_sae)}"

    def parameter_count(self) -> int:
        """w_enc, w_dec, b_enc, threshold, b_dec and the affine skip when there is one."""
        skip = self.d_in * self.d_out if self.affine else 0
        return self.d_in * self.d_sae + self.d_sae * self.d_out + 2 * self.d_sae + self.d_out + skip

    def encode_flops(self) -> int:
        return 2 * self.d_in * self.d_sae

    def skip_flops(self) -> int:
        return 2 * self.d_in * self.d_out if self.affine else 0

    def decode_flops(self, top_k: int) -> int:
        """The sparse decode: only the kept latents' decoder rows."""
        return 2 * min(top_k, self.d_sae) * self.d_out


def _width(d_sae: int) -> str:
    """As Gemma Scope 2 names widths: 16k for 16,384, 262k for 262,144, 1m for 1,048,576."""
    if d_sae >= 1_000_000:
        return f"{d_sae // 1_000_000}m"
    return f"{d_sae // 1000}k" if d_sae >= 1000 else str(d_sae)


def safetensors_header(path: Path) -> dict[str, Any]:
    """A safetensors file's header: ``{name: {"dtype", "shape", "data_offsets"}}`` (and
    ``__metadata__``), read without the tensors: 8 bytes of little-endian length, then JSON."""
    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            raw = handle.read(length) if 0 <= length <= _MAX_HEADER else b""
    except OSError as exc:
        raise PlanError(f"{path}: cannot be read ({exc}).") from None
    try:
        header = json.loads(raw)
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise PlanError(f"{path}: not a safetensors file (its header cannot be read).")
    return header


def sae_shape_for(reference: str) -> SaeShape:
    """The shape of the SAE a folder holds, or a hub reference (``owner/repo/site/folder``)
    that the local hub cache holds; nothing is downloaded."""
    folder = Path(reference).expanduser()
    if folder.is_dir():
        return sae_shape_from_folder(folder)
    parts = reference.strip("/").split("/", 2)
    if len(parts) == 3 and all(parts):
        from huggingface_hub import try_to_load_from_cache

        with contextlib.suppress(ValueError):  # not a valid repo id
            found = try_to_load_from_cache(f"{parts[0]}/{parts[1]}", f"{parts[2]}/config.json")
            if isinstance(found, str):
                return sae_shape_from_folder(Path(found).parent)
    raise PlanError(
        f"{reference}: neither a folder nor an SAE in the local hub cache; its shape is known "
        "once a worker has fetched it."
    )


def sae_shape_from_folder(folder: Path) -> SaeShape:
    """From a Gemma Scope 2 folder's ``config.json`` and ``params.safetensors`` header."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanError(f"{folder}: config.json cannot be read ({exc}).") from None
    if not isinstance(config, dict):
        raise PlanError(f"{folder}: config.json must hold a JSON object.")
    tensors = safetensors_header(folder / "params.safetensors")
    w_enc, w_dec = tensors.get("w_enc"), tensors.get("w_dec")
    if not isinstance(w_enc, dict) or not isinstance(w_dec, dict):
        raise PlanError(f"{folder}: params.safetensors lacks w_enc or w_dec.")
    if len(w_enc.get("shape", ())) != 2 or len(w_dec.get("shape", ())) != 2:
        raise PlanError(f"{folder}: w_enc and w_dec must be 2-D.")
    d_in, d_sae = (int(n) for n in w_enc["shape"])
    d_out = int(w_dec["shape"][1])
    size = _SAFETENSORS_BYTES.get(str(w_enc.get("dtype")))
    if size is None:
        raise PlanError(f"{folder}: w_enc has an unknown dtype {w_enc.get('dtype')!r}.")
    name_in = str(config.get("hf_hook_point_in", ""))
    try:
        hook_in = parse_hook(name_in)
        hook_out = parse_hook(str(config.get("hf_hook_point_out") or name_in))
        site = site_of(hook_in, hook_out)
    except HookError as exc:
        raise PlanError(f"{folder}: {exc}") from None
    l0 = config.get("l0")
    return SaeShape(
        site=site,
        layer=max(hook_in.layer, hook_out.layer),
        d_in=d_in,
        d_sae=d_sae,
        d_out=d_out,
        affine="affine_skip_connection" in tensors,
        dtype_bytes_on_disk=size,
        l0=float(l0) if isinstance(l0, (int, float)) and l0 > 0 else None,
    )


def model_shape_for(reference: str) -> ModelShape:
    """The shape of a model: the default one from its cache folder, a local checkpoint folder,
    or a hub id the local hub cache holds; nothing is downloaded."""
    if reference in DEFAULT_MODEL_IDS:
        folder = hf_cache_folder(default_model_files())
        path = folder / "config.json"
        if not path.is_file():
            raise PlanError(
                f"The default model's config.json is not in its cache yet ({folder}); a worker "
                "writes it the first time it loads the model, so plan again after one run."
            )
    elif Path(reference).expanduser().is_dir():
        path = Path(reference).expanduser() / "config.json"
        if not path.is_file():
            raise PlanError(f"{reference}: the checkpoint folder has no config.json.")
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(reference, "config.json")
        except ValueError:  # not a valid repo id
            found = None
        if not isinstance(found, str):
            raise PlanError(
                f"{reference}: neither a folder nor a checkpoint whose config.json the local hub "
                "cache holds; its shape is known once a worker has fetched it."
            )
        path = Path(found)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: cannot be read ({exc}).") from None
    if not isinstance(config, dict):
        raise PlanError(f"{path}: must hold a JSON object.")
    return ModelShape.from_config(config)
