"""Token ids of prompts for the engine: a text as the tokenizer gives it (BOS first), a
conversation rendered by the checkpoint's chat template (``traces.engine.chat_template``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from traces.chat_messages import PromptInput
from traces.engine.chat_template import (
    GEMMA3_CHAT_TEMPLATE,
    chat_token_ids,
    default_chat_template,
    folder_chat_template,
)
from traces.engine.model import DEFAULT_MODEL, LoadedModel

__all__ = ["PromptInput", "checkpoint_chat_template", "prompt_token_ids"]


def prompt_token_ids(loaded: LoadedModel, prompts: Sequence[PromptInput]) -> list[list[int]]:
    """Token ids per prompt, in order, each starting with exactly one BOS. Raises
    ``ChatTemplateError`` (a ``ValueError``) for a conversation the template refuses."""
    chats = any(not isinstance(prompt, str) for prompt in prompts)
    template = checkpoint_chat_template(loaded) if chats else ""
    return chat_token_ids(loaded.tokenizer, prompts, template)


def checkpoint_chat_template(loaded: LoadedModel) -> str:
    """The checkpoint's chat template: from its folder when it ships one; for the default
    model, its GGUF's; otherwise Gemma 3's."""
    folder = str(getattr(loaded.model, "name_or_path", "") or "")
    found = folder_chat_template(Path(folder)) if folder and Path(folder).is_dir() else None
    if found:
        return found
    return default_chat_template() if loaded.name == DEFAULT_MODEL else GEMMA3_CHAT_TEMPLATE
