"""What is stored of a prompt: every field redacted under the profiles that redact before
storage (UK ``required``, FR ``strong``), as given otherwise (US ``best_effort``), where
credentials are flagged (counted, kept).

``stored_prompt`` is the one place an imported prompt's fields become what the database holds,
so every later reader (the prompts API, the prompt-set and trace pages, exports, PDF reports)
gets the redacted values: the text (a conversation message by message), the external id, the
tags, and every metadata value, nested ones included (extra CSV columns and JSONL keys; the
keys are kept, being the file's column names). A number is redacted when its digits are
personal data (a JSON ``9434765919`` is an NHS number) and then stored as the redacted text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scopeweb.redaction import pii_flags, redact_text
from scopeweb.retention.models import RetentionProfile
from traces.chat_messages import ChatMessages, PromptInput, chat_text
from traces.prompt_files import ParsedPrompt

EXTERNAL_ID_MAX = 200  # Prompt.external_id's length
FIELDS = ("text", "external_id", "tags", "metadata")


@dataclass(frozen=True)
class StoredPrompt:
    """A prompt's fields as stored, with what redaction found in them."""

    text: str
    messages: ChatMessages
    external_id: str
    tags: list[str]
    metadata: dict[str, Any]
    redactions: dict[str, int] = field(default_factory=dict)  # category -> spans, all fields
    fields: dict[str, int] = field(default_factory=dict)  # field -> spans redacted in it
    flagged: dict[str, int] = field(default_factory=dict)  # category -> spans found and kept


def stored_content(
    content: PromptInput, profile: RetentionProfile
) -> tuple[str, ChatMessages, dict[str, int]]:
    """A prompt's text and messages as stored, and its redacted spans per category: redacted
    for the profiles that redact before storage (a conversation message by message, its text
    rendered from the redacted messages), as given otherwise."""
    if not profile.redacts_before_storage:
        return (content, [], {}) if isinstance(content, str) else (chat_text(content), content, {})
    if isinstance(content, str):
        found = redact_text(content, profile)
        return found.text, [], dict(found.counts)
    messages, counts = [], Counter[str]()
    for message in content:
        found = redact_text(message["content"], profile)
        messages.append({"role": message["role"], "content": found.text})
        counts.update(found.counts)
    return chat_text(messages), messages, dict(sorted(counts.items()))


def _each_value(value: Any, clean: Callable[[str], str]) -> Any:
    """``value`` with every string (and every number's digits) passed through ``clean``; keys,
    booleans and nulls as they are."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        written = str(value)
        cleaned = clean(written)
        return value if cleaned == written else cleaned
    if isinstance(value, list):
        return [_each_value(item, clean) for item in value]
    if isinstance(value, dict):
        return {key: _each_value(item, clean) for key, item in value.items()}
    return value


def stored_prompt(prompt: ParsedPrompt, profile: RetentionProfile) -> StoredPrompt:
    """``prompt`` as stored under ``profile``: every field redacted before storage (UK, FR),
    or every field as given with its credentials flagged (US)."""
    text, messages, text_counts = stored_content(prompt.content, profile)
    counts: dict[str, Counter[str]] = {name: Counter() for name in FIELDS}
    counts["text"].update(text_counts)
    if not profile.redacts_before_storage:
        flagged: Counter[str] = Counter()

        def flag(value: str) -> str:
            flagged.update(pii_flags(value, profile))
            return value

        for piece in [m["content"] for m in prompt.messages] or [prompt.text]:
            flag(piece)
        _each_value([prompt.external_id, prompt.tags, prompt.metadata], flag)
        return StoredPrompt(
            text,
            messages,
            prompt.external_id,
            prompt.tags,
            prompt.metadata,
            flagged=dict(sorted(flagged.items())),
        )

    def redactor(name: str) -> Callable[[str], str]:
        def clean(value: str) -> str:
            found = redact_text(value, profile)
            counts[name].update(found.counts)
            return found.text

        return clean

    external_id = redactor("external_id")(prompt.external_id)[:EXTERNAL_ID_MAX]
    tags = [redactor("tags")(tag) for tag in prompt.tags]
    metadata = _each_value(prompt.metadata, redactor("metadata"))
    total: Counter[str] = sum(counts.values(), Counter())
    return StoredPrompt(
        text,
        messages,
        external_id,
        tags,
        metadata,
        redactions=dict(sorted(total.items())),
        fields={name: n for name, found in counts.items() if (n := found.total())},
    )


def import_redaction_summary(stored: list[StoredPrompt]) -> dict[str, Any]:
    """What the import's job result and audit event say about redaction: prompts redacted (or
    flagged), spans per category and per field."""
    counts: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    for prompt in stored:
        counts.update(prompt.redactions)
        fields.update(prompt.fields)
        flagged.update(prompt.flagged)
    return {
        "prompts_redacted": sum(1 for prompt in stored if prompt.redactions),
        "redacted": dict(sorted(counts.items())),
        "redacted_fields": {name: fields[name] for name in FIELDS if fields[name]},
        "prompts_flagged": sum(1 for prompt in stored if prompt.flagged),
        "flagged": dict(sorted(flagged.items())),
    }
