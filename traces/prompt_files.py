"""Reading prompt-set files: JSONL, CSV or plain text.

``parse_prompt_file`` either returns every prompt or raises ``PromptFileError`` listing every
problem with its line number, so a bad file is refused whole and its author can fix it in one go.

A JSONL line holds either a ``"prompt"`` (text) or ``"messages"`` (a conversation for an
instruction-tuned checkpoint: ``[{"role": "user", "content": "..."}, ...]``). A conversation's
``text`` is a readable rendering of it (``chat_text``), for lists and search; the engine renders
the messages with the checkpoint's chat template instead.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from django.conf import settings

from scopeweb.refusals import Refused, quotable
from traces.chat_messages import ChatMessages, PromptInput, chat_messages, chat_text

FORMATS = ("jsonl", "csv", "txt")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "txt", ".text": "txt"}


@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based; None for the file as a whole
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", quotable(self.message))  # it may quote the line

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


@dataclass
class ParsedPrompt:
    line: int
    text: str  # a conversation's: its ``chat_text``
    external_id: str = ""
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: ChatMessages = field(default_factory=list)  # empty for a text prompt

    @property
    def content(self) -> PromptInput:
        return self.messages or self.text


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_prompts: int
    max_chars: int


class PromptFileError(Refused):
    """A prompt file refused, with every problem found (each naming its line)."""

    problems: list[Problem]

    def __init__(self, problems: list[Problem]) -> None:
        count = len(problems)
        first = "; ".join(str(problem) for problem in problems[:3])
        more = f" (and {count - 3} more)" if count > 3 else ""
        message = f"{count} problem{'s' if count != 1 else ''}: {first}{more}"
        super().__init__(message, status=400, problems=problems)


def detect_format(filename: str, requested: str = "") -> str:
    if requested:
        if requested not in FORMATS:
            raise PromptFileError(
                [Problem(None, f"Unknown format {requested!r}; use jsonl, csv or txt.")]
            )
        return requested
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in _EXTENSIONS:
        raise PromptFileError(
            [
                Problem(
                    None,
                    f"Cannot tell the format of {filename!r}: name it .jsonl, .csv or .txt, "
                    "or choose the format.",
                )
            ]
        )
    return _EXTENSIONS[suffix]


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    problems = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(
                Problem(
                    number,
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "save the file as UTF-8",
                )
            )
    raise PromptFileError(problems)


def _tags(value: Any, line: int, problems: list[Problem]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.replace("|", ";").split(";") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        problems.append(Problem(line, '"tags" must be a list of strings'))
        return []
    return [tag.strip()[:64] for tag in value if tag.strip()]


def _external_id(value: Any, line: int, problems: list[Problem]) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.append(Problem(line, '"id" must be a string or a whole number'))
        return ""
    text = str(value).strip()
    if len(text) > 200:
        problems.append(Problem(line, '"id" is longer than 200 characters'))
    return text


def _lines(text: str) -> list[str]:
    # Only newlines end a line (str.splitlines would also split on form feeds and U+2028),
    # so line numbers match what an editor shows.
    return [line.removesuffix("\r") for line in text.split("\n")]


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _unstorable(value: Any) -> str | None:
    """What no database column can hold, anywhere in a prompt's values: a NUL, or an unpaired
    surrogate (which a JSON escape such as "\\ud800" puts in a line)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
        elif isinstance(item, str):
            if "\x00" in item:
                return "a NUL character"
            surrogate = _SURROGATE.search(item)
            if surrogate:
                return f"an unpaired surrogate (U+{ord(surrogate[0]):04X}), which is not Unicode"
    return None


def _jsonl(text: str, problems: list[Problem]) -> list[ParsedPrompt]:
    prompts = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            problems.append(Problem(number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        except ValueError as exc:  # NaN or Infinity; an integer of more than 4,300 digits
            problems.append(Problem(number, f"not valid JSON: {exc}"))
            continue
        except RecursionError:
            problems.append(Problem(number, "not valid JSON: nested too deeply"))
            continue
        if not isinstance(row, dict):
            problems.append(
                Problem(number, 'each line must be a JSON object with a "prompt" or "messages"')
            )
            continue
        prompt = row.get("prompt")
        messages: ChatMessages = []
        if "messages" in row:
            if prompt is not None:
                problems.append(Problem(number, 'give "prompt" or "messages", not both'))
                continue
            messages, wrong = chat_messages(row["messages"])
            problems.extend(Problem(number, message) for message in wrong)
            if wrong:
                continue
            prompt = chat_text(messages)
        if not isinstance(prompt, str):
            problems.append(
                Problem(
                    number,
                    'missing "prompt" (or "messages")'
                    if prompt is None
                    else '"prompt" must be a string',
                )
            )
            continue
        skip = ("prompt", "messages", "id", "tags")
        extra = {key: value for key, value in row.items() if key not in skip}
        prompts.append(
            ParsedPrompt(
                line=number,
                text=prompt,
                external_id=_external_id(row.get("id"), number, problems),
                tags=_tags(row.get("tags"), number, problems),
                metadata=extra,
                messages=messages,
            )
        )
    return prompts


def _csv(text: str, problems: list[Problem]) -> list[ParsedPrompt]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        problems.append(Problem(1, f"not valid CSV ({exc})"))
        return []
    columns = [name.strip().lower() for name in header]
    if "prompt" not in columns:
        found = ", ".join(repr(name) for name in header) or "none"
        problems.append(Problem(1, f'the header has no "prompt" column (columns found: {found})'))
        return []
    at = {name: columns.index(name) for name in ("prompt", "id", "tags") if name in columns}
    prompts = []
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(start, f"not valid CSV ({exc})"))
            break
        number, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(
                Problem(number, f"has {len(row)} fields where the header has {len(header)}")
            )
            continue
        extra = {header[i]: cell for i, cell in enumerate(row) if i not in at.values()}
        prompts.append(
            ParsedPrompt(
                line=number,
                text=row[at["prompt"]],
                external_id=_external_id(row[at["id"]], number, problems) if "id" in at else "",
                tags=_tags(row[at["tags"]], number, problems) if "tags" in at else [],
                metadata=extra,
            )
        )
    return prompts


def _txt(text: str) -> list[ParsedPrompt]:
    return [
        ParsedPrompt(line=number, text=line)
        for number, line in enumerate(_lines(text), start=1)
        if line.strip()
    ]


def _check_prompts(prompts: list[ParsedPrompt], limits: Limits, problems: list[Problem]) -> None:
    seen_text: dict[str, int] = {}
    seen_id: dict[str, int] = {}
    for prompt in prompts:
        if not prompt.text.strip():
            problems.append(Problem(prompt.line, "the prompt is empty"))
            continue
        if "\x00" in prompt.text:
            problems.append(Problem(prompt.line, "the prompt holds a NUL character"))
        else:
            values = [prompt.text, prompt.external_id, prompt.tags, prompt.metadata]
            found = _unstorable(values)
            if found:
                problems.append(Problem(prompt.line, f"the line holds {found}"))
        if len(prompt.text) > limits.max_chars:
            problems.append(
                Problem(
                    prompt.line,
                    f"the prompt has {len(prompt.text):,} characters; the limit is "
                    f"{limits.max_chars:,}",
                )
            )
        if prompt.text in seen_text:
            problems.append(
                Problem(prompt.line, f"the same prompt as line {seen_text[prompt.text]}")
            )
        else:
            seen_text[prompt.text] = prompt.line
        if prompt.external_id:
            if prompt.external_id in seen_id:
                problems.append(
                    Problem(
                        prompt.line,
                        f'id "{prompt.external_id}" is already used on line '
                        f"{seen_id[prompt.external_id]}",
                    )
                )
            else:
                seen_id[prompt.external_id] = prompt.line


def parse_prompt_file(
    data: bytes, *, filename: str, limits: Limits, file_format: str = ""
) -> tuple[str, list[ParsedPrompt]]:
    """Return the format and the prompts, or raise ``PromptFileError`` with every problem."""
    fmt = detect_format(filename, file_format)
    if len(data) > limits.max_bytes:
        raise PromptFileError(
            [
                Problem(
                    None,
                    f"The file is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes.",
                )
            ]
        )
    text = _decode(data)
    if not text.strip():
        raise PromptFileError([Problem(None, "The file is empty: it holds no prompts.")])
    problems: list[Problem] = []
    if fmt == "jsonl":
        prompts = _jsonl(text, problems)
    elif fmt == "csv":
        prompts = _csv(text, problems)
    else:
        prompts = _txt(text)
    _check_prompts(prompts, limits, problems)
    if not prompts and not problems:
        problems.append(Problem(None, "The file holds no prompts."))
    if len(prompts) > limits.max_prompts:
        problems.append(
            Problem(
                None,
                f"The file holds {len(prompts):,} prompts; the limit is {limits.max_prompts:,}.",
            )
        )
    if problems:
        problems.sort(key=lambda problem: (problem.line is not None, problem.line or 0))
        raise PromptFileError(problems)
    return fmt, prompts


def prompt_limits() -> Limits:
    """The limits this deployment sets on prompt files (``SCOPEWEB_PROMPT_*`` settings)."""
    return Limits(
        max_bytes=settings.PROMPT_FILE_MAX_BYTES,
        max_prompts=settings.PROMPT_SET_MAX_PROMPTS,
        max_chars=settings.PROMPT_MAX_CHARS,
    )


def safe_file_name(filename: str) -> str:
    """A stored name for an uploaded file: its base name with anything but letters, digits,
    dots and dashes replaced, at most 100 characters."""
    name = re.sub(r"[^\w.-]+", "_", filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1])
    return name.strip("._")[:100] or "prompts"
