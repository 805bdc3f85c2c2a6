"""Hook points as Gemma Scope 2 names them, and the site a pair of them makes.

A name is ``model.layers.L[.sub.module].(input|output)``: ``input`` is read by a forward
pre-hook (``self_attn.o_proj.input``: the heads' concatenated outputs before the projection),
``output`` by a forward hook (``traces.engine.capture``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"^model\.layers\.(?P<layer>\d+)(?:\.(?P<rest>[\w.]+))?$")
# Gemma Scope 2's names for its widths, as in its folder names (layer_9_width_262k_l0_medium)
WIDTH_NAMES = {16384: "16k", 65536: "65k", 262144: "262k", 1048576: "1m"}
SITE_HOOKS = {
    "resid_post": "model.layers.L.output",
    "attn_out": "model.layers.L.self_attn.o_proj.input",
    "mlp_out": "model.layers.L.post_feedforward_layernorm.output",
    "transcoder": "model.layers.L.pre_feedforward_layernorm.output → "
    "model.layers.L.post_feedforward_layernorm.output",
}


class HookError(ValueError):
    """A hook name that is not one of the Gemma Scope 2 sites; the message says which are."""


@dataclass(frozen=True)
class Hook:
    name: str  # as the config gives it, e.g. "model.layers.5.self_attn.o_proj.input"
    layer: int
    module_path: str  # "model.layers.5.self_attn.o_proj"
    reads: str  # "input" (a pre-hook) or "output"

    @property
    def part(self) -> str:
        """The module inside the layer ("" for the layer itself)."""
        return self.module_path.removeprefix(f"model.layers.{self.layer}").lstrip(".")

    @property
    def residual_width(self) -> bool:
        """Whether the tensor here is as wide as the residual stream (all but o_proj's input)."""
        return not (self.part == "self_attn.o_proj" and self.reads == "input")


def parse_hook(name: str) -> Hook:
    match = _NAME.match(name)
    if match is None:
        raise HookError(f"hook point {name!r} is not of the form model.layers.N[.part].")
    layer = int(match.group("layer"))
    parts = (match.group("rest") or "").split(".") if match.group("rest") else []
    reads = parts.pop() if parts and parts[-1] in ("input", "output") else "output"
    return Hook(
        name=name,
        layer=layer,
        module_path=".".join([f"model.layers.{layer}", *parts]),
        reads=reads,
    )


def site_of(hook_in: Hook, hook_out: Hook) -> str:
    """Which Gemma Scope 2 site a pair of hooks is; ``HookError`` naming the sites otherwise."""
    known = {
        ("", "output"): "resid_post",
        ("self_attn.o_proj", "input"): "attn_out",
        ("post_feedforward_layernorm", "output"): "mlp_out",
    }
    if hook_in == hook_out and (hook_in.part, hook_in.reads) in known:
        return known[(hook_in.part, hook_in.reads)]
    if (
        (hook_in.part, hook_in.reads) == ("pre_feedforward_layernorm", "output")
        and (hook_out.part, hook_out.reads) == ("post_feedforward_layernorm", "output")
        and hook_in.layer == hook_out.layer
    ):
        return "transcoder"
    shown = hook_in.name if hook_in == hook_out else f"{hook_in.name} → {hook_out.name}"
    sites = "; ".join(f"{site}: {hooks}" for site, hooks in SITE_HOOKS.items())
    raise HookError(f"hook point {shown!r} is not supported yet; this engine reads {sites}.")


def hook_width(text_config: Any, hook: Hook) -> int:
    """The width of the tensor at ``hook`` for a Gemma 3 text config."""
    if hook.residual_width:
        return int(text_config.hidden_size)
    heads = int(text_config.num_attention_heads)
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    return heads * int(head_dim)
