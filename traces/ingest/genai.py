"""An LLM call's span read by the OpenTelemetry GenAI semantic conventions: its messages,
completion, model, token usage and tags, from the span's (and its resource's) attributes.

Which spans are LLM calls: those whose attributes hold input content, ``gen_ai.input.messages``,
``gen_ai.prompt`` or the flattened ``gen_ai.prompt.<n>.content``, and at least one message of
it (``input_messages`` is empty for any other span).

How the conventions map onto a record (span attributes unless said otherwise; the span's own
fields, its ids and start time, are read by ``traces.ingest.otlp``):

=================  ==========================================================================
record field       read from
=================  ==========================================================================
service            the resource attribute ``service.name``
model              ``gen_ai.request.model``, else ``gen_ai.response.model``
messages           ``gen_ai.system_instructions`` (parts, or plain text) as a leading system
                   message, then ``gen_ai.input.messages``; else ``gen_ai.prompt`` (a JSON list
                   of ``{role, content}``, or plain text: one user message); else
                   ``gen_ai.prompt.<n>.role`` / ``.content`` in order of ``n``
completion         the first message (choice) of ``gen_ai.output.messages``; else
                   ``gen_ai.completion`` (as ``gen_ai.prompt``); else
                   ``gen_ai.completion.0.content``
input_tokens       ``gen_ai.usage.input_tokens``, else ``gen_ai.usage.prompt_tokens``
output_tokens      ``gen_ai.usage.output_tokens``, else ``gen_ai.usage.completion_tokens``
tags["route"]      ``scopeweb.route``, else ``http.route``
tags["tenant"]     ``scopeweb.tenant``
tags["experiment"] ``scopeweb.experiment``
=================  ==========================================================================

A tag is read from the span's attributes first, then from the resource's. Messages are
``{"role", "parts": [...]}`` (the text parts' ``content`` joined by newlines, other parts
ignored) or ``{"role", "content"}``, given as a JSON string or as an OTLP array of kvlists.
``gen_ai.conversation.id`` and every other attribute are not kept.
"""

from __future__ import annotations

import re
from typing import Any

from traces.ingest.otlp_values import Attributes, any_value, attribute_value, json_object
from traces.ingest.records import (
    Message,
    PayloadError,
    check_name,
    check_role,
    check_tag_value,
    check_text,
    check_token_count,
    describe,
    fail,
    load_json_text,
)

_PROMPT_PART = re.compile(r"gen_ai\.prompt\.([0-9]{1,6})\.(role|content)")
_TAG_SOURCES = {
    "route": ("scopeweb.route", "http.route"),
    "tenant": ("scopeweb.tenant",),
    "experiment": ("scopeweb.experiment",),
}


def input_messages(attributes: Attributes) -> list[Message]:
    """The input as chat turns, from the newest convention the span follows; [] for none."""
    if "gen_ai.input.messages" in attributes:
        _, path = attributes["gen_ai.input.messages"]
        value = attribute_value(attributes, "gen_ai.input.messages")
        messages = _chat_messages(_json_if_text(value, path), path)
    elif "gen_ai.prompt" in attributes:
        _, path = attributes["gen_ai.prompt"]
        messages = _legacy_messages(attribute_value(attributes, "gen_ai.prompt"), path)
    else:
        messages = _flattened_prompt(attributes)
    if messages:
        return _system_instructions(attributes) + messages
    return []


def completion(attributes: Attributes) -> str:
    """The text the model produced: its first choice; "" when the span records none."""
    if "gen_ai.output.messages" in attributes:
        _, path = attributes["gen_ai.output.messages"]
        value = attribute_value(attributes, "gen_ai.output.messages")
        choices = _chat_messages(_json_if_text(value, path), path)
        return choices[0].content if choices else ""
    if "gen_ai.completion" in attributes:
        _, path = attributes["gen_ai.completion"]
        messages = _legacy_messages(attribute_value(attributes, "gen_ai.completion"), path)
        return messages[0].content if messages else ""
    if "gen_ai.completion.0.content" in attributes:
        _, path = attributes["gen_ai.completion.0.content"]
        return check_text(attribute_value(attributes, "gen_ai.completion.0.content"), path)
    return ""


def service_name(resource: Attributes) -> str:
    return _name(resource, ("service.name",))


def model_name(attributes: Attributes) -> str:
    return _name(attributes, ("gen_ai.request.model", "gen_ai.response.model"))


def input_tokens(attributes: Attributes) -> int | None:
    return _tokens(attributes, ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"))


def output_tokens(attributes: Attributes) -> int | None:
    return _tokens(attributes, ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"))


def tags(attributes: Attributes, resource: Attributes) -> dict[str, str]:
    """The route, tenant and experiment the span (else its resource) names, as text."""
    found_tags = {}
    for tag, keys in _TAG_SOURCES.items():
        found = next(
            (source[key] for source in (attributes, resource) for key in keys if key in source),
            None,
        )
        if found is not None:
            found_tags[tag] = _tag_value(any_value(*found), found[1])
    return found_tags


# --- messages ---------------------------------------------------------------------------------


def _system_instructions(attributes: Attributes) -> list[Message]:
    """``gen_ai.system_instructions`` as a leading system message, when it holds text."""
    if "gen_ai.system_instructions" not in attributes:
        return []
    _, path = attributes["gen_ai.system_instructions"]
    value = attribute_value(attributes, "gen_ai.system_instructions")
    if isinstance(value, str) and not value.lstrip().startswith("["):
        text = check_text(value, path)  # plain text, as some instrumentations record it
    else:
        text = _parts_text(_json_if_text(value, path), path)
    return [Message("system", text)] if text else []


def _json_if_text(value: Any, path: str) -> Any:
    """A structured attribute's value: recorded as a JSON string, or as an AnyValue already."""
    return load_json_text(value, path) if isinstance(value, str) else value


def _chat_messages(value: Any, path: str) -> list[Message]:
    if not isinstance(value, list):
        fail(path, "an array of messages", value)
    return [_chat_message(item, f"{path}[{index}]") for index, item in enumerate(value)]


def _chat_message(value: Any, path: str) -> Message:
    """``{"role", "parts": [...]}`` (the conventions) or ``{"role", "content"}`` (older)."""
    message = json_object(value, path)
    role = check_role(message.get("role"), f"{path}.role")
    if "parts" in message:
        return Message(role, _parts_text(message["parts"], f"{path}.parts"))
    if "content" in message:
        content = message["content"]
        return Message(role, "" if content is None else check_text(content, f"{path}.content"))
    raise PayloadError(path, 'has neither "parts" nor "content"')


def _parts_text(value: Any, path: str) -> str:
    """The text parts' content joined by newlines; tool calls, media and reasoning are left out."""
    if not isinstance(value, list):
        fail(path, "an array of parts", value)
    texts = []
    for index, raw in enumerate(value):
        part = json_object(raw, f"{path}[{index}]")
        if part.get("type") == "text":
            content = part.get("content")
            if not isinstance(content, str):
                fail(f"{path}[{index}].content", "a string", content)
            texts.append(content)
    return check_text("\n".join(texts), path)


def _legacy_messages(value: Any, path: str) -> list[Message]:
    """``gen_ai.prompt`` / ``gen_ai.completion``: a JSON list of messages, or plain text."""
    if isinstance(value, str):
        structured = _json_messages_or_none(value, path)
        if structured is None:
            return [Message("user", check_text(value, path))] if value else []
        value = structured
    return _chat_messages(value, path)


def _json_messages_or_none(text: str, path: str) -> list[Any] | None:
    """``text`` parsed, when it is a JSON array of objects with a role; else None (plain text)."""
    if not text.lstrip().startswith("["):
        return None
    try:
        value = load_json_text(text, path)
    except PayloadError:
        return None
    if isinstance(value, list) and all(isinstance(item, dict) and "role" in item for item in value):
        return value
    return None


def _flattened_prompt(attributes: Attributes) -> list[Message]:
    """The older flattening, ``gen_ai.prompt.<n>.role`` and ``gen_ai.prompt.<n>.content``."""
    numbers = sorted(
        {int(match[1]) for key in attributes if (match := _PROMPT_PART.fullmatch(key))}
    )
    messages = []
    for number in numbers:
        role_key, content_key = f"gen_ai.prompt.{number}.role", f"gen_ai.prompt.{number}.content"
        if content_key not in attributes:
            continue
        role = "user"
        if role_key in attributes:
            role = check_role(attribute_value(attributes, role_key), attributes[role_key][1])
        content = check_text(attribute_value(attributes, content_key), attributes[content_key][1])
        messages.append(Message(role, content))
    return messages


# --- names, usage and tags --------------------------------------------------------------------


def _name(attributes: Attributes, keys: tuple[str, ...]) -> str:
    for key in keys:
        if key in attributes:
            return check_name(attribute_value(attributes, key), attributes[key][1])
    return ""


def _tokens(attributes: Attributes, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        if key in attributes:
            return check_token_count(attribute_value(attributes, key), attributes[key][1])
    return None


def _tag_value(value: Any, path: str) -> str:
    """A scalar attribute as tag text (an integer tenant id, say); arrays and maps are refused."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    elif not isinstance(value, str):
        raise PayloadError(path, f"expected a string, got {describe(value)}")
    return check_tag_value(value, path)
