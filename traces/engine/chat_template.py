"""Chat templates: rendering a conversation as the checkpoint expects it, and its token ids.

The template comes from the checkpoint: ``chat_template.jinja`` or the ``chat_template`` of
``tokenizer_config.json`` in its folder; for the default model, the GGUF's
``tokenizer.chat_template`` (the package's GGUF holds none); otherwise Gemma 3's own
(``GEMMA3_CHAT_TEMPLATE``, which every Gemma 3 checkpoint ships). It is rendered as transformers'
``apply_chat_template`` renders it (a sandboxed jinja2 environment, ``trim_blocks`` and
``lstrip_blocks``, ``raise_exception``) with ``add_generation_prompt=True``, and the text is
tokenised without adding special tokens, since the template writes the BOS itself.

Torch-free: the prompt-set import counts a conversation's tokens with it.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from traces.chat_messages import ChatMessages, PromptInput
from traces.engine.model_files import ModelFiles, default_model_files

CACHE_FORMAT = 1  # of the default model's cached template (``_gguf_template_cache``)

# The "chat_template" of google/gemma-3-270m's tokenizer_config.json, as that file spells it (a
# JSON string), so it can be compared with the file character by character.
_GEMMA3_CHAT_TEMPLATE_JSON = (
    r"{{ bos_token }}\n"
    r"{%- if messages[0]['role'] == 'system' -%}\n"
    r"    {%- if messages[0]['content'] is string -%}\n"
    r"        {%- set first_user_prefix = messages[0]['content'] + '\n"
    r"\n"
    r"' -%}\n"
    r"    {%- else -%}\n"
    r"        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n"
    r"\n"
    r"' -%}\n"
    r"    {%- endif -%}\n"
    r"    {%- set loop_messages = messages[1:] -%}\n"
    r"{%- else -%}\n"
    r"    {%- set first_user_prefix = \"\" -%}\n"
    r"    {%- set loop_messages = messages -%}\n"
    r"{%- endif -%}\n"
    r"{%- for message in loop_messages -%}\n"
    r"    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    r"        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"  # noqa: E501
    r"    {%- endif -%}\n"
    r"    {%- if (message['role'] == 'assistant') -%}\n"
    r"        {%- set role = \"model\" -%}\n"
    r"    {%- else -%}\n"
    r"        {%- set role = message['role'] -%}\n"
    r"    {%- endif -%}\n"
    r"    {{ '<start_of_turn>' + role + '\n"
    r"' + (first_user_prefix if loop.first else \"\") }}\n"
    r"    {%- if message['content'] is string -%}\n"
    r"        {{ message['content'] | trim }}\n"
    r"    {%- elif message['content'] is iterable -%}\n"
    r"        {%- for item in message['content'] -%}\n"
    r"            {%- if item['type'] == 'image' -%}\n"
    r"                {{ '<start_of_image>' }}\n"
    r"            {%- elif item['type'] == 'text' -%}\n"
    r"                {{ item['text'] | trim }}\n"
    r"            {%- endif -%}\n"
    r"        {%- endfor -%}\n"
    r"    {%- else -%}\n"
    r"        {{ raise_exception(\"Invalid content type\") }}\n"
    r"    {%- endif -%}\n"
    r"    {{ '<end_of_turn>\n"
    r"' }}\n"
    r"{%- endfor -%}\n"
    r"{%- if add_generation_prompt -%}\n"
    r"    {{'<start_of_turn>model\n"
    r"'}}\n"
    r"{%- endif -%}\n"
)
GEMMA3_CHAT_TEMPLATE: str = json.loads(f'"{_GEMMA3_CHAT_TEMPLATE_JSON}"')


class ChatTemplateError(ValueError):
    """A conversation the chat template refuses (its ``raise_exception``), or no template."""


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    environment.globals["raise_exception"] = _raise_exception
    return environment.from_string(template)


def render_chat(template: str, messages: ChatMessages, *, bos_token: str, eos_token: str) -> str:
    """``messages`` rendered by ``template``, ready for the model's answer (the generation
    prompt added). Raises ``ChatTemplateError``."""
    try:
        text: str = _compiled(template).render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except TemplateError as exc:
        raise ChatTemplateError(f"the chat template refused the conversation: {exc}") from None
    return text


@functools.lru_cache(maxsize=16)
def folder_chat_template(folder: Path) -> str | None:
    """The chat template a checkpoint folder ships, if any."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    found = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    if isinstance(found, list):  # named templates: the default one
        named = {item.get("name"): item.get("template") for item in found if isinstance(item, dict)}
        found = named.get("default") or next(iter(named.values()), None)
    return found if isinstance(found, str) and found else None


def _gguf_template_cache(files: ModelFiles) -> Path:
    return files.cache_dir / f"chat-template-v{CACHE_FORMAT}.json"


@functools.lru_cache(maxsize=4)
def default_chat_template(files: ModelFiles | None = None) -> str:
    """The default model's template: its GGUF's ``tokenizer.chat_template``, else Gemma 3's.
    Reading a GGUF's metadata takes seconds, so what it holds is kept beside the tokenizer."""
    files = files or default_model_files()
    cache = _gguf_template_cache(files)
    try:
        found = json.loads(cache.read_text(encoding="utf-8"))["chat_template"]
    except (OSError, ValueError, KeyError, TypeError):
        from gguf import GGUFReader  # imported here: only a cache rebuild needs it

        field = GGUFReader(str(files.gguf())).fields.get("tokenizer.chat_template")
        found = str(field.contents()) if field is not None else None
        _write_json(cache, {"chat_template": found})
    return found if isinstance(found, str) and found else GEMMA3_CHAT_TEMPLATE


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(value, out)
    os.replace(temp, path)


def bos_id(tokenizer: Tokenizer) -> int:
    """The BOS id: what the tokenizer puts before a text (Gemma: ``<bos>``, 2)."""
    found = tokenizer.encode("").ids
    if found:
        return int(found[0])
    fallback = tokenizer.token_to_id("<bos>")
    if fallback is None:
        raise ChatTemplateError("the tokenizer has no BOS token")
    return int(fallback)


def chat_token_ids(
    tokenizer: Tokenizer, prompts: Sequence[PromptInput], template: str = ""
) -> list[list[int]]:
    """Token ids per prompt, each starting with exactly one BOS: a text as ``encode_batch``
    gives it, a conversation rendered by ``template`` and tokenised without a second BOS."""
    result: list[list[int]] = [[] for _ in prompts]
    texts = [(i, prompt) for i, prompt in enumerate(prompts) if isinstance(prompt, str)]
    chats = [(i, prompt) for i, prompt in enumerate(prompts) if not isinstance(prompt, str)]
    for (i, _), encoding in zip(texts, tokenizer.encode_batch([t for _, t in texts]), strict=True):
        result[i] = list(encoding.ids)
    if not chats:
        return result
    if not template:
        raise ChatTemplateError("conversations need a chat template")
    bos = bos_id(tokenizer)
    bos_token = tokenizer.id_to_token(bos) or "<bos>"
    eos_token = "<eos>" if tokenizer.token_to_id("<eos>") is not None else ""
    rendered = [
        render_chat(template, messages, bos_token=bos_token, eos_token=eos_token)
        for _, messages in chats
    ]
    encodings = tokenizer.encode_batch(rendered, add_special_tokens=False)
    for (i, _), encoding in zip(chats, encodings, strict=True):
        ids = list(encoding.ids)
        result[i] = ids if ids[:1] == [bos] else [bos, *ids]  # a template without a BOS
    return result
