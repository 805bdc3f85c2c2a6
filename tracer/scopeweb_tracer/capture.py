"""Reading hook points of a Gemma 3 model during forward passes it makes anyway.

``attach_hooks`` registers, for each hook, a forward hook on the module's output or a forward
pre-hook on its input (``attn_out`` reads the input of ``o_proj``), and hands every value to a
callback. The engine (``traces.engine.capture``) stops its pass after the deepest hook; the
tracer keeps the request's own passes running and only listens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from scopeweb_tracer.hooks import Hook

OnValue = Callable[[str, torch.Tensor], None]  # (hook name, tensor [batch, seq, width])


def hooked_module(model: torch.nn.Module, module_path: str) -> torch.nn.Module:
    """The module a hook names. Multimodal Gemma 3 checkpoints (4B and up) keep the text
    layers under ``model.language_model``; Gemma Scope 2 names them ``model.layers.N``."""
    try:
        return model.get_submodule(module_path)
    except AttributeError:
        if not module_path.startswith("model."):
            raise
        return model.get_submodule("model.language_model." + module_path.removeprefix("model."))


def _first(value: Any) -> torch.Tensor:
    found = value[0] if isinstance(value, tuple) else value
    assert isinstance(found, torch.Tensor)
    return found


def attach_hooks(
    model: torch.nn.Module, hooks: Sequence[Hook], on_value: OnValue
) -> list[RemovableHandle]:
    """Call ``on_value(hook name, tensor)`` each time a hook's module runs; remove the
    returned handles when done."""
    handles = []
    for hook in {h.name: h for h in hooks}.values():
        module = hooked_module(model, hook.module_path)
        if hook.reads == "input":
            handles.append(
                module.register_forward_pre_hook(
                    lambda _, args, name=hook.name: on_value(name, _first(args))
                )
            )
        else:
            handles.append(
                module.register_forward_hook(
                    lambda _, __, output, name=hook.name: on_value(name, _first(output))
                )
            )
    return handles
