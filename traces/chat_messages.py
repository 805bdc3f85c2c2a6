"""Conversations in prompt files: the messages of a JSONL line's ``"messages"``, checked, and
their readable rendering (``chat_text``).

A conversation is what an instruction-tuned checkpoint reads through its chat template: an
optional system message, then user and model turns in alternation, starting with the user (the
rule Gemma 3's template enforces; it calls the assistant "model", and so may a file).
"""

from __future__ import annotations

from typing import Any

ChatMessages = list[dict[str, str]]  # [{"role": ..., "content": ...}], in turn order
PromptInput = str | ChatMessages  # what the engine reads: a text, or a conversation
ROLES = ("user", "assistant", "model", "system")


def chat_text(messages: ChatMessages) -> str:
    """A conversation as one readable text, one ``role: content`` per message."""
    return "\n".join(f"{message['role']}: {message['content']}" for message in messages)


def _message(item: Any, at: str) -> tuple[dict[str, str], list[str]]:
    if not isinstance(item, dict):
        return {}, [f'{at} must be an object with "role" and "content"']
    wrong = []
    role, content = item.get("role"), item.get("content")
    if not isinstance(role, str) or role not in ROLES:
        named = "no role" if role is None else f"the role {role!r}"
        wrong.append(f"{at} has {named}; use user, assistant, model or system")
    if content is None:
        wrong.append(f'{at} has no "content"')
    elif not isinstance(content, str):
        wrong.append(f'{at}\'s "content" must be a string')
    elif not content.strip():
        wrong.append(f'{at}\'s "content" is empty')
    other = sorted(str(key) for key in item if key not in ("role", "content"))
    extra = ", ".join(f'"{key}"' for key in other)
    if extra:
        wrong.append(f'{at} has keys other than "role" and "content": {extra}')
    return {"role": str(role), "content": str(content)}, wrong


def _order_problem(messages: ChatMessages) -> str | None:
    """What breaks the turn order (system first, then user, model, user, ...), if anything."""
    first_turn = 2 if messages[0]["role"] == "system" else 1
    if first_turn > len(messages):
        return "a system message needs a user message after it"
    for number, message in enumerate(messages[first_turn - 1 :], start=first_turn):
        role = message["role"]
        if role == "system":
            return f"message {number} is a system message: only the first message may be one"
        if (role == "user") != ((number - first_turn) % 2 == 0):
            return (
                f"message {number} is from {role}: turns must alternate user and model "
                "(or assistant), starting with user"
            )
    return None


def chat_messages(value: Any) -> tuple[ChatMessages, list[str]]:
    """The messages of a ``"messages"`` value, and what is wrong with them (each problem names
    its message, counted from 1); the messages are only good when the list is empty."""
    if not isinstance(value, list):
        return [], ['"messages" must be a list of {"role": ..., "content": ...} objects']
    if not value:
        return [], ['"messages" is empty: give at least one user message']
    messages: ChatMessages = []
    wrong: list[str] = []
    for number, item in enumerate(value, start=1):
        message, problems = _message(item, f"message {number}")
        messages.append(message)
        wrong += problems
    if not wrong:
        order = _order_problem(messages)
        wrong += [order] if order else []
    return (messages, []) if not wrong else ([], wrong)
